"""Stage schedules: recipes that expand into stages once the student's depth is known (MobileBERT's progressive
transfer, XtremeDistil's staged task transfer)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bertpress.config import Strict
from bertpress.recipe.sections import MappingSpec, ObjectiveSpec
from bertpress.recipe.stages import EarlyStoppingSpec, StageSpec

#: MobileBERT's pre-training distillation (Sun et al., 2020, sec. 3.5): MLM and soft-target KD, equal weights
FINAL_DISTILLATION = {"name": "distilbert", "alpha_ce": 0.5, "alpha_mlm": 0.5, "alpha_cos": 0.0, "temperature": 1.0}


class ProgressiveSpec(Strict):
    """Progressive knowledge transfer (MobileBERT, Sun et al., 2020): one stage per student layer, then optionally a
    final stage on everything. Layer ``k``'s stage keeps only the objective's matches on student layer ``k``; the
    embeddings stay fixed until the final stage."""

    name: Literal["progressive"] = Field("progressive", description="the schedule")
    steps_per_layer: int = Field(gt=0, description="steps of each layer's stage")
    lower_layers: Literal["freeze", "slow"] = Field(
        "freeze", description="during layer k's stage: freeze the layers below (the paper), or slow them (the "
                              "authors' code: layer k at current_scale x lr, layers below at lower_scale x lr)")
    current_scale: float = Field(3.0, gt=0, description="slow: lr multiplier of the layer in its stage (authors: 3)")
    lower_scale: float = Field(0.3, gt=0, description="slow: lr multiplier of the layers below (authors: 0.3)")
    final_steps: int = Field(0, ge=0, description="steps of the final stage on everything (0: none)")
    final_objective: ObjectiveSpec | None = Field(
        None, description="objective of the final stage; default with an MLM head (the teacher's or a fitted one): "
                          "MLM + soft-target KD (distilbert with alpha_ce 0.5, alpha_mlm 0.5, alpha_cos 0, T 1), "
                          "else the recipe's objective on all layers")
    final_lr: float | None = Field(None, gt=0, le=1, description="peak lr of the final stage (default: train.lr)")

    def stages(self, num_layers: int, has_head: bool) -> list[StageSpec]:
        """The stages this schedule expands into for a student of ``num_layers`` layers."""
        out = []
        for k in range(1, num_layers + 1):
            if self.lower_layers == "freeze":
                trainable, scale = [f"layer {k}", "projections"], {}
            else:
                trainable = [f"layers 1-{k}", "projections"]
                scale = {f"layer {k}": self.current_scale, **({f"layers 1-{k - 1}": self.lower_scale} if k > 1 else {})}
            out.append(StageSpec(name=f"layer-{k}", steps=self.steps_per_layer, trainable=trainable, lr_scale=scale,
                                 only_layers=[k]))
        if self.final_steps:
            final = self.final_objective or (ObjectiveSpec(**FINAL_DISTILLATION) if has_head else None)
            out.append(StageSpec(name="final", steps=self.final_steps, objective=final, lr=self.final_lr))
        return out


class XtremeDistilSpec(Strict):
    """XtremeDistil's staged transfer (Mukherjee et al., 2021; the authors' ``run_xtreme_distil.py``): stage 1
    matches the teacher's top hidden states on the transfer data; stage 2 matches its task logits there, first with
    the encoder frozen and then unfreezing it from the top; stage 3 trains on the source task's labels, unfreezing
    the same way. Every stage stops early on its held-out loss and keeps its best weights."""

    name: Literal["xtremedistil"] = Field("xtremedistil", description="the schedule")
    representation_steps: int = Field(gt=0, description="stage 1 steps (hidden states, all parameters)")
    logit_steps: int = Field(gt=0, description="steps of each stage-2 step of unfreezing (task logits)")
    labelled_steps: int = Field(0, ge=0, description="steps of each stage-3 step of unfreezing (source labels; "
                                                     "0: no stage 3)")
    unfreeze: Literal["gradual", "none"] = Field(
        "gradual", description="gradual: head only, then one more layer from the top per stage, then everything "
                               "(the authors'); none: one stage 2 (and 3) on everything")
    attention: bool = Field(False, description="stage 1 also matches attention probabilities (head counts must "
                                               "agree, or relation heads are used)")
    logit_loss: Literal["mse", "kl"] = Field("mse", description="stage 2 loss: MSE on logits (the authors') or "
                                                                 "soft cross-entropy at temperature 1")
    patience: int | None = Field(3, gt=0, description="early stopping patience of every stage, in validations "
                                                      "(train.eval_every steps); null: no early stopping")
    labelled_lr: float | None = Field(None, gt=0, le=1, description="peak lr of stage 3 (default: train.lr)")

    def stages(self, num_layers: int) -> list[StageSpec]:
        """The stages for a student of ``num_layers`` layers (mapping ``last``: top-aligned)."""
        stop = None if self.patience is None else EarlyStoppingSpec(patience=self.patience)
        representation = ObjectiveSpec(name="tinybert", embedding=0.0, hidden=1.0,
                                       attention=1.0 if self.attention else 0.0, attention_on="probabilities")
        out = [StageSpec(name="representation", steps=self.representation_steps, objective=representation,
                         mapping=MappingSpec(strategy="last"), early_stopping=stop)]
        top = [(f"top-{k}", ["head", f"layers {num_layers - k + 1}-{num_layers}"]) for k in range(1, num_layers + 1)]
        steps = [("head", ["head"]), *top, ("all", ["all"])] if self.unfreeze == "gradual" else [("all", ["all"])]
        loss = "logit_mse" if self.logit_loss == "mse" else "soft_cross_entropy"
        logits = ObjectiveSpec(name="matches", matches=[{"student": "logits", "teacher": "logits", "loss": loss,
                                                         "term": "logits"}])
        labels = ObjectiveSpec(name="matches", masking=False,
                               matches=[{"student": "logits", "teacher": "labels", "loss": "task_loss",
                                         "term": "labels"}])
        for phase, n, objective, data, lr in (("logits", self.logit_steps, logits, "transfer", None),
                                              ("labelled", self.labelled_steps, labels, "labelled", self.labelled_lr)):
            out += [StageSpec(name=f"{phase}-{tag}", steps=n, objective=objective, trainable=trainable, data=data,
                              lr=lr, early_stopping=stop) for tag, trainable in steps if n]
        return out
