"""(a) The work with bertpress: ``distill(recipe)``, unmodified, timed by hooks. One process, one JSON result.

Ablation switches (benchmark-only patches, the library is not changed): ``--set`` recipe overrides (e.g.
``train.num_workers=0``), ``--eager-attention`` (teacher and student on HF's eager attention instead of SDPA, i.e.
every layer materialises its attention probabilities as ``output_attentions`` requires), ``--no-truncate`` (the
teacher runs all its layers even when the mapping stops earlier).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from common import StepClock, base_parser, finish, no_dropout, recipe

import bertpress.train.distiller as distiller_mod
import bertpress.train.run as run_mod
from bertpress.models.anatomy import anatomy
from bertpress.models.features import FeatureTap


def patch(clock: StepClock, *, dropout: bool, eager: bool, truncate: bool) -> None:
    """Install the step clock on the models distill() builds, and the ablation switches."""
    build_student, load_teacher = run_mod.build_student, run_mod.load_teacher

    def student(config, **kwargs: Any):
        model = build_student(config if dropout else no_dropout(config), **kwargs)
        if eager:
            model.set_attn_implementation("eager")
        return model

    def teacher(*args: Any, **kwargs: Any):
        loaded = load_teacher(*args, **kwargs)
        if eager:
            loaded.model.set_attn_implementation("eager")
        return loaded

    class TimedDistiller(run_mod.Distiller):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            clock.install(self.teacher.parts.base, anatomy(self.module.student).base)

    run_mod.build_student, run_mod.load_teacher, run_mod.Distiller = student, teacher, TimedDistiller
    if not truncate:
        def full_tap(parts, request, *, truncate: bool = False, runner=None) -> FeatureTap:
            return FeatureTap(parts, request, truncate=False, runner=runner)

        distiller_mod.FeatureTap = full_tap


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    p.add_argument("--eager-attention", action="store_true")
    p.add_argument("--no-truncate", action="store_true")
    args = p.parse_args()
    max_steps = args.warmup + args.steps
    clock = StepClock(sample_after=args.warmup)
    patch(clock, dropout=not args.no_dropout, eager=args.eager_attention, truncate=not args.no_truncate)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_mod.distill(recipe(Path(tmp) / "run", max_steps), overrides=args.set, overwrite=True)
        rows = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    finish(args.out, {"system": "bertpress", "losses": [r["loss"] for r in train], "dropout": not args.no_dropout,
                      "overrides": args.set, "eager_attention": args.eager_attention,
                      "truncate": not args.no_truncate, "frozen": result.summary["frozen"],
                      "mapping": result.summary["mapping"]},
           clock, args.warmup, args.steps)


if __name__ == "__main__":
    main()
