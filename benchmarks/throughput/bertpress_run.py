"""(a) The work with bertpress: ``distill(recipe)``, unmodified, timed through its callback seam. One process, one
JSON result.

Ablation switches (applied by the benchmark's callback when the run starts; the library is not changed): ``--set``
recipe overrides (e.g. ``train.num_workers=0``), ``--no-dropout``, ``--eager-attention`` (teacher and student on HF's
eager attention instead of SDPA, i.e. every layer materialises its attention probabilities as ``output_attentions``
requires; the objective recomputes them from Q and K), ``--recompute-attention`` (the student's mapped layers on SDPA
and their attention probabilities recomputed from the captured Q and K, as before the kernel handed them over),
``--no-truncate`` (the teacher runs all its layers even when the mapping stops earlier), ``--torch-dropout``
(torch's dropout, one Bernoulli draw per element, instead of :mod:`bertpress.models.dropout`'s 16-bit masks),
``--foreach-adamw`` (the multi-tensor AdamW instead of the fused kernel), ``--fp32-mse`` (MSE losses on fp32 copies
of 16-bit features, as before the 16-bit MSE), ``--where-dropout`` (the dropout mask applied with a boolean
``where``, as before the 0/1 multiply), ``--mt-bits`` (the dropout bits from torch's Mersenne Twister, as before
SFC64).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from common import StepClock, base_parser, finish, recipe, step_clock
from torch import nn
from torch.nn import functional as F

from bertpress.models import attention
from bertpress.models import dropout as dropout_module
from bertpress.models.features import FeatureTap
from bertpress.objectives import losses
from bertpress.train import distiller as loop
from bertpress.train.callbacks import Callback
from bertpress.train.distiller import Distiller
from bertpress.train.run import distill
from bertpress.train.stages import Stage


def where_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """:func:`bertpress.models.dropout.dropout` as it was before the 0/1 multiply: the same bits, mask and values,
    applied with a boolean ``where`` (and its backward)."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    levels, n = dropout_module.LEVELS, x.numel()
    bits = dropout_module.random_words((n + 3) // 4)
    threshold = min(round(p * levels), levels - 1)
    keep = (bits.view(torch.int16)[:n] >= threshold - levels // 2).view(x.shape)
    return x.where(keep, 0.0).mul_(levels / (levels - threshold))


class Timed(Callback):
    """Installs the step clock on the run's models, and the ablation switches, when the (only) stage starts."""

    def __init__(self, clock: StepClock, *, dropout: bool, eager: bool, truncate: bool) -> None:
        self.clock, self.dropout, self.eager, self.truncate = clock, dropout, eager, truncate

    def on_stage_start(self, distiller: Distiller, stage: Stage) -> None:
        teacher, student = distiller.teacher.model, distiller.module.student
        if not self.dropout:  # attention dropout reads its module's p as well, so this turns all of it off
            for m in student.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        if self.eager:
            teacher.set_attn_implementation("eager")
            student.set_attn_implementation("eager")
        if not self.truncate:
            distiller.teacher_tap.close()
            distiller.teacher_tap = FeatureTap(distiller.teacher.parts, stage.objective.requests()[0], truncate=False)
        self.clock.install(distiller.teacher.parts.base, distiller.module.parts.base)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--eager-attention", action="store_true")
    p.add_argument("--no-truncate", action="store_true")
    p.add_argument("--recompute-attention", action="store_true")
    p.add_argument("--torch-dropout", action="store_true")
    p.add_argument("--foreach-adamw", action="store_true")
    p.add_argument("--fp32-mse", action="store_true")
    p.add_argument("--where-dropout", action="store_true")
    p.add_argument("--mt-bits", action="store_true")
    args = p.parse_args()
    if args.mt_bits:
        dropout_module.random_words = lambda n: torch.empty(n, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)
    if args.fp32_mse:
        losses.HALF = ()
    if args.where_dropout:
        attention.fast_dropout = dropout_module.dropout = where_dropout
    if args.torch_dropout:
        attention.fast_dropout = lambda x, prob, training=True: F.dropout(x, prob, training)
        loop.use_fast_dropout = lambda model: 0
    if args.foreach_adamw:
        loop.adamw = lambda groups, lr, **kw: torch.optim.AdamW(groups, lr=lr, foreach=True, **kw)
    if args.recompute_attention or args.eager_attention:  # no model type takes its matrices from the kernel
        attention.CAPTURE_TYPES = frozenset()
    max_steps = args.warmup + args.steps
    clock = step_clock(args)
    timed = Timed(clock, dropout=not args.no_dropout, eager=args.eager_attention, truncate=not args.no_truncate)
    with tempfile.TemporaryDirectory() as tmp:
        result = distill(recipe(Path(tmp) / "run", max_steps, args.teacher, args.batch_size), overrides=args.set,
                         overwrite=True, callbacks=[timed])
        rows = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    finish(args.out, {"system": "bertpress", "losses": [r["loss"] for r in train], "dropout": not args.no_dropout,
                      "overrides": args.set, "eager_attention": args.eager_attention,
                      "recompute_attention": args.recompute_attention, "torch_dropout": args.torch_dropout,
                      "foreach_adamw": args.foreach_adamw, "fp32_mse": args.fp32_mse,
                      "where_dropout": args.where_dropout, "mt_bits": args.mt_bits,
                      "truncate": not args.no_truncate, "frozen": result.summary["frozen"],
                      "mapping": result.summary["mapping"]},
           clock, args.warmup, args.steps)


if __name__ == "__main__":
    main()
