"""(b) The work with TextBrewer's ``GeneralDistiller``: the same intermediate matches (embedding and hidden-state MSE,
attention MSE along the uniform mapping, weight 1 each), optimizer, schedule and batches. One process, one JSON result.

TextBrewer 0.2.1 runs unmodified on torch 2.13 / transformers 5 (no shim needed). Its ``train`` does not switch
model modes itself (only its context manager does), so the teacher is put in eval and the student in train mode here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import textbrewer
from common import (
    MAX_GRAD_NORM,
    WARMUP_RATIO,
    base_parser,
    finish,
    reference_run,
    warmup_steps,
)
from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
from torch import Tensor
from transformers import get_linear_schedule_with_warmup


def adaptor(batch: dict[str, Tensor], outputs: Any) -> dict[str, Any]:
    return {"hidden": outputs.hidden_states, "attention": outputs.attentions, "inputs_mask": batch["attention_mask"]}


def matches(mapping: list[int]) -> list[dict[str, Any]]:
    """TinyBERT's matches: hidden state i (0 = embeddings) and attention of layer i (0-based in HF's tuple)."""
    out = [{"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1}]
    for s, t in enumerate(mapping, start=1):
        out.append({"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1})
    for s, t in enumerate(mapping, start=1):
        out.append({"layer_T": t - 1, "layer_S": s - 1, "feature": "attention", "loss": "attention_mse", "weight": 1})
    return out


class RecordingDistiller(GeneralDistiller):
    """GeneralDistiller that also keeps each step's total loss (for the equivalence check)."""

    losses: list[float]

    def train_on_batch(self, batch: dict[str, Tensor], args: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        total, terms = super().train_on_batch(batch, args)
        self.losses.append(float(total.detach()))
        return total, terms


def main() -> None:
    args = base_parser(__doc__).parse_args()
    run = reference_run(args)  # TextBrewer builds its own scheduler from the same class and arguments
    max_steps = run.max_steps
    with tempfile.TemporaryDirectory() as tmp:
        train_config = TrainingConfig(device=args.device, output_dir=tmp, ckpt_steps=max_steps, log_dir=None)
        distill_config = DistillationConfig(kd_loss_weight=0.0, intermediate_matches=matches(run.mapping))
        distiller = RecordingDistiller(train_config, distill_config, run.teacher, run.student, adaptor, adaptor)
        distiller.losses = []
        distiller.train(run.opt, run.loader, num_steps=max_steps, max_grad_norm=MAX_GRAD_NORM,
                        scheduler_class=get_linear_schedule_with_warmup,
                        scheduler_args={"num_warmup_steps": warmup_steps(max_steps), "num_training_steps": max_steps},
                        output_hidden_states=True, output_attentions=True)
        saved = sorted(p.name for p in Path(tmp).iterdir())
    finish(args.out, {"system": "textbrewer", "version": textbrewer.__version__, "losses": distiller.losses,
                      "dropout": not args.no_dropout, "warmup_ratio": WARMUP_RATIO, "checkpoints_written": saved},
           run.clock, args.warmup, args.steps)


if __name__ == "__main__":
    main()
