"""Several students from one teacher on the same batches, with one teacher forward per batch.

The teacher is frozen, so when several students learn from it on the same data in the same order (the candidates of
a layer mapping search, a family of sizes, ablations of an objective) its forward is the same for all of them: a
cohort runs the members' loops in lockstep, one optimizer step each per round, and computes each training batch's
teacher features once, with a tap that captures what any member reads. Every member's result is bit for bit the
one it would get alone: the teacher's outputs do not depend on which of them are captured, and each member keeps
its own random state (dropout), swapped in around its steps.

    results = distill_cohort(["a.yaml", "b.yaml"])   # or recipes / dicts; one RunResult per member
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bertpress.errors import BertpressError
from bertpress.models.features import FeatureRequest, Features, FeatureTap, teacher_forward
from bertpress.models.teacher import Teacher
from bertpress.recipe import RESULT_NEUTRAL_FIELDS, Recipe
from bertpress.train.build import resolve_recipe
from bertpress.train.callbacks import Callback
from bertpress.train.run import PreparedRun, RunResult, finish_run, prepare_run

log = logging.getLogger(__name__)

#: recipe fields every member must share: they decide the teacher and the batches it sees
SHARED_FIELDS = ("teacher", "data", "seed", "train.batch_size", "train.grad_accum", "train.mixed_precision",
                 "train.teacher_inference_mode")


class SharedTeacher:
    """The teacher forward of a cohort's training batches: features of the batches of the current round are kept
    and handed to every member that asks for the same inputs (compared exactly), computed once.

    ``requests``: what each member's objectives read; the tap captures their union (the deepest layer any of them
    needs sets how far the teacher runs)."""

    def __init__(self, teacher: Teacher, requests: Sequence[FeatureRequest], *, inference_mode: bool = True) -> None:
        union = FeatureRequest()
        for r in requests:
            union = union | r
        self.tap = FeatureTap(teacher.parts, union, truncate=True)
        self.inference_mode = inference_mode
        self._round: list[tuple[dict[str, Tensor], Features]] = []
        self.forwards = self.hits = 0

    def new_round(self) -> None:
        """Forget the kept features: every member has taken its step."""
        self._round.clear()

    def __call__(self, inputs: dict[str, Tensor]) -> Features:
        for kept, feats in self._round:
            if kept.keys() == inputs.keys() and all(torch.equal(kept[k], inputs[k]) for k in inputs):
                self.hits += 1
                return feats
        feats = teacher_forward(self.tap, inference_mode=self.inference_mode, **inputs)
        self.forwards += 1
        self._round.append((inputs, feats))
        return feats

    def close(self) -> None:
        self.tap.close()


def _field(recipe: Recipe, path: str) -> Any:
    value: Any = recipe.to_dict()
    for part in path.split("."):
        value = value[part]
    if isinstance(value, dict):  # where the corpus cache lives does not change the batches
        value = {k: v for k, v in value.items() if f"{path}.{k}" not in RESULT_NEUTRAL_FIELDS}
    return value


def check_cohort(recipes: Sequence[Recipe]) -> None:
    """One line naming the first field on which a member differs from the first (they must share teacher, data,
    seed, batch size, accumulation, precision), or two members that write the same output directory."""
    if len(recipes) < 2:
        raise BertpressError(f"a cohort needs at least 2 recipes, got {len(recipes)}: run one with bertpress distill")
    first = recipes[0]
    cached = next((i for i, r in enumerate(recipes, 1) if r.train.teacher_cache), None)
    if cached is not None:
        raise BertpressError(f"cohort member {cached} sets train.teacher_cache: a cohort already runs the teacher "
                             "once per batch for all members; turn it off")
    for i, r in enumerate(recipes[1:], 2):
        for path in SHARED_FIELDS:
            if _field(r, path) != _field(first, path):
                raise BertpressError(f"cohort member {i} ({r.name}) differs from member 1 in {path}: members share "
                                     "one teacher forward per batch, so they need the same teacher, data, seed, batch "
                                     "size, grad_accum and precision; distil it on its own")
        if r.teacher.source_task is not None:
            raise BertpressError(f"cohort member {i}: teacher.source_task needs a fine-tuned teacher: fine-tune it "
                                 "first and give its directory as teacher.name_or_path")
    outs = [Path(r.output_dir).resolve() for r in recipes]
    dup = next((o for o in outs if outs.count(o) > 1), None)
    if dup is not None:
        raise BertpressError(f"two cohort members write {dup}: give each recipe its own output_dir")


def distill_cohort(recipes: Sequence[Recipe | str | Path | dict], *, overwrite: bool = False, resume: bool = False,
                   callbacks: Sequence[Callback] = ()) -> list[RunResult]:
    """Distil every recipe's student from one teacher forward per batch; returns one :class:`RunResult` per recipe,
    each equal (weights, metrics) to what :func:`bertpress.train.run.distill` gives for that recipe alone.

    Members may differ in anything but :data:`SHARED_FIELDS` (student, init, objective, mapping, stages, steps, lr,
    output_dir...); a member with fewer steps simply finishes first. ``resume`` resumes every member from its last
    checkpoint (members checkpoint on their own, as in a solo run). One process (the teacher's forward is shared
    inside it); for several GPUs, launch solo runs."""
    resolved = [resolve_recipe(r) for r in recipes]
    check_cohort(resolved)
    members: list[PreparedRun] = []
    teacher: Teacher | None = None
    for recipe in resolved:
        members.append(prepare_run(recipe, resume=resume, overwrite=overwrite, callbacks=callbacks, teacher=teacher))
        teacher = members[-1].teacher  # with teacher.fit_mlm_head, the fitted teacher of member 1
        members[-1].fitted_head = members[0].fitted_head
    if members[0].accelerator.num_processes > 1:
        raise BertpressError("distill_cohort runs in one process: launch solo runs under accelerate for several "
                             "processes")
    requests = [s.objective.requests()[0] for m in members for s in m.distiller.stages]
    shared = SharedTeacher(members[0].teacher, requests, inference_mode=resolved[0].train.teacher_inference_mode)
    for m in members:
        m.distiller.shared_teacher = shared
    loops = {i: m.distiller.steps(resume=resume) for i, m in enumerate(members)}
    rng: dict[int, tuple[Tensor, list[Tensor]]] = {}
    results: dict[int, dict[str, Any]] = {}
    try:
        while loops:
            shared.new_round()
            for i in list(loops):
                if i in rng:
                    _set_rng(rng[i])
                try:
                    next(loops[i])
                except StopIteration as done:
                    results[i] = done.value
                    del loops[i]
                rng[i] = _get_rng()
    finally:
        shared.close()
        for m in members:
            m.distiller.shared_teacher = None
    log.info("cohort of %d: %d teacher forwards for %d member batches", len(members), shared.forwards,
             shared.forwards + shared.hits)
    cohort = {"members": len(members), "teacher_forwards": shared.forwards,
              "member_batches": shared.forwards + shared.hits}
    return [finish_run(m, results[i], {"cohort": {**cohort, "member": i + 1}}) for i, m in enumerate(members)]


def _get_rng() -> tuple[Tensor, list[Tensor]]:
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []


def _set_rng(state: tuple[Tensor, list[Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])
