"""``distill(recipe)``: build everything a recipe names and run it — the Python API behind ``bertpress distill``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import accelerate
import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedDataParallelKwargs

import bertpress
from bertpress.atomic import atomic_write_text
from bertpress.data.corpus import PackedCorpus, default_cache_dir, load_corpus
from bertpress.errors import BertpressError
from bertpress.init import InitContext, initialise
from bertpress.init.etd import ETDImptOptions
from bertpress.init.importance import load_or_compute
from bertpress.models.mlm_head import fit_mlm_head
from bertpress.models.sentence_stack import local_model_dir
from bertpress.models.teacher import STUDENT_DIR, Teacher, resolve_model
from bertpress.nas.training import SupernetModule
from bertpress.recipe import Recipe
from bertpress.train.build import Run, build_run, resolve_recipe
from bertpress.train.callbacks import Callback
from bertpress.train.distiller import Distiller
from bertpress.train.init_average import average_with_init, snapshot
from bertpress.train.output import (
    TASK_STUDENT_DIR,
    check_output_dir,
    flat_recipe,
    opened_output_dir,
    publish_student,
)
from bertpress.train.precision import resolve_precision
from bertpress.train.preflight import check_corpus_and_disk
from bertpress.train.shrinking import SpaceShrinking

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """The run directory, the run summary (the content of ``bertpress.json``) and where the student is."""

    output_dir: Path
    summary: dict[str, Any]

    @property
    def student_dir(self) -> Path:
        """The publishable model directory (``output_dir/student``)."""
        return self.output_dir / STUDENT_DIR


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def sample_batches(corpus: PackedCorpus, batch_size: int, seed: int):
    """``sample(n)``: up to ``n`` seeded batches of training blocks (what initialisers measure importance on)."""
    def sample(n: int) -> Iterator[dict[str, torch.Tensor]]:
        order = np.random.default_rng(seed).permutation(corpus.train_index)
        for b in range(min(n, len(order) // batch_size)):
            ids = torch.as_tensor(np.asarray(corpus.blocks[np.sort(order[b * batch_size:(b + 1) * batch_size])]),
                                  dtype=torch.long)
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    return sample


def initialise_student(recipe: Recipe, teacher: Teacher, student: torch.nn.Module, corpus: PackedCorpus,
                       out: Path) -> dict[str, Any]:
    """Initialise ``student`` as a run of ``recipe`` does (its initialiser, seed and importance batches; caches in
    ``out``); returns the init plan."""
    spec = recipe.student
    sample = sample_batches(corpus, min(recipe.train.batch_size, 32), recipe.seed)
    return initialise(spec.init, InitContext(teacher, student, recipe.seed, sample, out), spec.init_args)


def rank_supernet(run: Run, corpus: PackedCorpus, cache_dir: Path) -> None:
    """``supernet.order: importance``: rank the supernet's units by the teacher's ETD-Impt scores, measured on the
    batches ``etd-impt`` uses and cached in ``cache_dir`` (shared with an ``etd-impt`` init). Called right
    after the init: the supernet must be the teacher then, whose scores are its own."""
    spec = run.recipe.supernet
    if run.supernet is None or spec is None or spec.order != "importance":
        return
    theirs = dict(run.teacher.model.named_parameters())
    if any(n not in theirs or theirs[n].shape != p.shape or not torch.equal(theirs[n].detach().cpu(), p.detach().cpu())
           for n, p in run.student.named_parameters()):
        raise BertpressError("supernet.order importance ranks the teacher's units, so the supernet must start as the "
                             "teacher: give the student the teacher's shape and init etd-impt with init_args {layers: "
                             "first}, or set supernet.order: leading")
    recipe = run.recipe
    batches = list(sample_batches(corpus, min(recipe.train.batch_size, 32), recipe.seed)(spec.importance_batches))
    scores, _ = load_or_compute(run.teacher, batches, seed=recipe.seed,
                                mlm_probability=ETDImptOptions().mlm_probability, cache_dir=cache_dir)
    run.supernet.rank(scores)


#: ``train.report_to`` name -> the module its accelerate tracker needs
TRACKER_MODULES = {"wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml", "aim": "aim", "clearml": "clearml",
                   "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}


def accelerate_trackers(report_to: Sequence[str]) -> list[str]:
    """The trackers accelerate runs (all but TensorBoard, which bertpress writes itself so a resume can purge the
    lost steps), refusing one whose package is missing before anything is written."""
    import importlib.util

    out = [t for t in report_to if t != "tensorboard"]
    for t in out:
        if importlib.util.find_spec(TRACKER_MODULES[t]) is None:
            raise BertpressError(f"train.report_to {t!r} needs the {TRACKER_MODULES[t]} package: pip install "
                                 f"{TRACKER_MODULES[t]}, or remove it from train.report_to")
    return out


def _multi_cpu() -> bool:
    """Several CPU processes (``torchrun --nproc_per_node N``): accelerate needs ``cpu=True`` to pick gloo."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def process_state() -> PartialState:
    """This process's place among the launched ones (initialised as :func:`make_accelerator` would, so it is right
    before any accelerator exists; a bare ``PartialState()`` on CPUs would see one process)."""
    return PartialState(cpu=_multi_cpu())


def make_accelerator(mixed_precision: str, *, staged: bool = False, log_with: Sequence[str] = (),
                     cpu: bool = False) -> Accelerator:
    """An :class:`Accelerator` for this run; in a single process a previous run's state is reset, so several
    runs with different precisions or devices can share one Python process (search, evaluation, benchmarks,
    notebooks). ``staged``: the trainable set changes between stages, so DDP must accept parameters without
    gradients in a step. ``cpu``: stay on the CPU even with a GPU present."""
    state = AcceleratorState._shared_state
    device = PartialState._shared_state.get("device")
    moved = device is not None and cpu and device.type != "cpu"
    if (moved or state.get("_mixed_precision", mixed_precision) != mixed_precision) and process_state().num_processes == 1:
        AcceleratorState._reset_state(reset_partial_state=moved)
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if staged else []
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu or _multi_cpu(), kwargs_handlers=handlers,
                       log_with=list(log_with) or None)


@dataclass
class PreparedRun:
    """A run built, its corpus loaded, its student initialised and its :class:`Distiller` ready, before the loop."""

    recipe: Recipe
    run: Run
    accelerator: Accelerator
    corpus: PackedCorpus
    teacher: Teacher
    distiller: Distiller
    plan: dict[str, Any]
    fitted_head: bool
    teacher_path: str | None
    labelled: PackedCorpus | None
    started: float
    initial: dict[str, torch.Tensor] | None = None  # the initialised student's weights (train.average_with_init)


def distill(recipe: Recipe | str | Path | dict, *, overrides: list[str] | None = None, resume: bool = False,
            overwrite: bool = False, stop_after: int | None = None, accelerator: Accelerator | None = None,
            callbacks: Sequence[Callback] = (), teacher_path: str | None = None,
            labelled: PackedCorpus | None = None) -> RunResult:
    """Run the distillation a recipe describes; returns the output directory and its summary.

    ``resume`` continues from the last complete checkpoint; ``overwrite`` replaces a previous run in the output
    directory; ``stop_after`` ends the loop early after that many steps (tests and smoke runs); ``callbacks`` are
    called at stage start, step end, evaluation and save (:class:`~bertpress.train.callbacks.Callback`);
    ``teacher_path`` and ``labelled`` are the source-task teacher and its labelled examples, which
    :func:`bertpress.pipeline.distill` prepares for a recipe with ``teacher.source_task``.
    """
    prepared = prepare_run(recipe, overrides=overrides, resume=resume, overwrite=overwrite, accelerator=accelerator,
                           callbacks=callbacks, teacher_path=teacher_path, labelled=labelled)
    return finish_run(prepared, prepared.distiller.run(resume=resume, stop_after=stop_after))


def prepare_run(recipe: Recipe | str | Path | dict, *, overrides: list[str] | None = None, resume: bool = False,
                overwrite: bool = False, accelerator: Accelerator | None = None, callbacks: Sequence[Callback] = (),
                teacher_path: str | None = None, labelled: PackedCorpus | None = None,
                teacher: Teacher | None = None) -> PreparedRun:
    """Everything :func:`distill` does before the training loop (arguments as there); ``teacher``: an already
    loaded teacher to use instead of loading the recipe's (a cohort shares one)."""
    t0 = time.perf_counter()
    recipe = resolve_recipe(recipe, overrides)
    out = Path(recipe.output_dir)
    run = build_run(recipe, teacher_path=teacher_path, teacher=teacher)  # first: a schedule's stages fill in train.max_steps, which the resume check compares
    check_output_dir(out, recipe.to_dict(), resume=resume, overwrite=overwrite)
    teacher, student, spec = run.teacher, run.student, recipe.student
    trackers = accelerate_trackers(recipe.train.report_to)
    acc = accelerator or make_accelerator(resolve_precision(recipe.train.mixed_precision),
                                          staged=len(run.stages) > 1 or run.supernet is not None, log_with=trackers)
    with acc.main_process_first():
        corpus = load_corpus(recipe.data, run.tokenizer, seed=recipe.seed)
    check_corpus_and_disk(recipe, corpus, out, acc.num_processes, count_parameters(student))
    fitted_head = recipe.teacher.fit_mlm_head is not None and not teacher.has_mlm_head
    if fitted_head:
        fit = recipe.teacher.fit_mlm_head
        with acc.main_process_first():  # the main process fits and caches the head, the others read it
            teacher = fit_mlm_head(teacher, corpus.blocks, corpus.train_index, corpus_key=corpus.meta["key"],
                                   steps=fit.steps, batch_size=fit.batch_size, lr=fit.lr, seed=recipe.seed,
                                   mlm_probability=recipe.data.mlm_probability,
                                   cache_dir=Path(recipe.data.cache_dir) if recipe.data.cache_dir else default_cache_dir())
    acc.wait_for_everyone()
    with opened_output_dir(out, overwrite=overwrite, resume=resume, enabled=acc.is_main_process):
        if acc.is_main_process:
            atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
        acc.wait_for_everyone()
        plan = initialise_student(recipe, teacher, student, corpus, out)
        if spec.projection_init == "extracted" and "hidden_dims" in plan:
            aligned = [stage.objective.align_projection(plan["hidden_dims"]) for stage in run.stages]
            if any(aligned):
                plan = {**plan, "projection": "extracted"}
        if spec.head_match == "extracted" and "heads" in plan and any(  # a list: every stage aligns
                [stage.objective.align_heads(plan["layers"], plan["heads"]) for stage in run.stages]):
            plan = {**plan, "head_match": "extracted"}
        rank_supernet(run, corpus, out)
        initial = snapshot(student) if recipe.train.average_with_init else None
        module = None
        if run.supernet is not None:  # sub-networks drawn per micro-batch train in place of the student
            sn = recipe.supernet
            module = SupernetModule(run.supernet, [s.objective for s in run.stages], seed=recipe.seed,
                                    sampling=sn.sampling, random=sn.random, inplace=sn.inplace,
                                    block=sn.block)
            if sn.shrink is not None:
                k = sn.shrink
                callbacks = [*callbacks, SpaceShrinking(k.every, k.fraction, k.bins, k.batches)]
        distiller = Distiller(teacher=teacher, student=student, stages=run.stages, corpus=corpus,
                              tokenizer=run.tokenizer, train=recipe.train, seed=recipe.seed, out_dir=out,
                              mlm_probability=recipe.data.mlm_probability, accelerator=acc, callbacks=callbacks,
                              labelled=labelled, module=module)
        if recipe.train.teacher_cache:
            distiller.open_teacher_caches(Path(recipe.data.cache_dir) if recipe.data.cache_dir else default_cache_dir())
    if acc.log_with:  # W&B, MLflow, ... (and trackers of an accelerator passed in)
        acc.init_trackers(recipe.name, config=flat_recipe(recipe.to_dict()))
    return PreparedRun(recipe, run, acc, corpus, teacher, distiller, plan, fitted_head, teacher_path, labelled, t0,
                       initial)


def finish_run(prepared: PreparedRun, result: dict[str, Any], extra: dict[str, Any] | None = None) -> RunResult:
    """After the loop: the run summary (``bertpress.json``, with ``extra`` entries), the published student and the
    model card."""
    p, acc = prepared, prepared.accelerator
    recipe, run, teacher, corpus, labelled = p.recipe, p.run, p.teacher, p.corpus, p.labelled
    out = Path(recipe.output_dir)
    if acc.log_with:
        acc.end_training()
    final_student = p.distiller.student()
    averaged = {}
    if p.initial is not None:
        share = recipe.train.average_with_init
        average_with_init(final_student, p.initial, share)
        averaged = {"average_with_init": {"share": share, "valid": p.distiller.validate(),
                                          "note": "final: the distilled weights; valid: the saved average's"}}
    s_config = run.student_config
    last = run.stages[-1]
    summary = {
        "bertpress_version": bertpress.__version__,
        "recipe": recipe.to_dict(),
        "teacher": {"source": p.teacher_path or recipe.teacher.name_or_path, "description": teacher.describe(),
                    "parameters": count_parameters(teacher.model),
                    "mlm_head": "fitted (teacher.fit_mlm_head)" if p.fitted_head else teacher.has_mlm_head},
        "student": {"parameters": count_parameters(final_student), "num_layers": s_config.num_hidden_layers,
                    "hidden_size": s_config.hidden_size, "num_heads": s_config.num_attention_heads,
                    "intermediate_size": getattr(s_config, teacher.parts.layout.ffn_size),
                    "mlm_head": teacher.has_mlm_head},
        "init": p.plan,
        "mapping": last.mapping,
        "objective": {"name": run.stage_specs[-1].objective.name, **last.objective.describe()},
        "stages": [s.describe() for s in run.stages],
        "frozen": p.distiller.frozen,
        "corpus": corpus.meta,
        "final": result["valid"],
        **averaged,
        **({"early_stopping": result["state"]["early"]} if result["state"]["early"] else {}),
        **({"task_student": TASK_STUDENT_DIR} if teacher.task else {}),
        **({"labelled": labelled.meta} if labelled is not None else {}),
        **({"supernet": {"shapes": len(run.supernet.space.archs()), "largest": run.supernet.space.largest.name,
                         "smallest": run.supernet.space.smallest.name,
                         **({"shrinking": result["state"]["callbacks"]["shrinking"]}
                            if "shrinking" in result["state"]["callbacks"] else {})}}
           if run.supernet is not None else {}),
        "steps": result["state"]["step"],
        "tokens_seen": result["state"]["tokens"],
        "train_time_s": round(result["state"]["elapsed"], 2),
        "train_cpu_s": round(result["state"]["cpu"], 2),
        "wall_time_s": round(time.perf_counter() - p.started, 2),
        "skipped_batches": result["state"]["skipped_batches"],
        "processes": acc.num_processes,
        "mixed_precision": acc.mixed_precision,
        **({"teacher_cache": [{"path": str(c.path), "gb": round(c.bytes / 1e9, 3), "batches_read": c.hits,
                               "batches_run_live": c.misses} for c in p.distiller.teacher_caches.values()]}
           if p.distiller.teacher_caches else {}),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "accelerate": accelerate.__version__},
        **(extra or {}),
    }
    if acc.is_main_process:
        publish_student(out, final_student, run.tokenizer, summary,
                        local_model_dir(resolve_model(recipe.teacher.name_or_path), recipe.teacher.revision),
                        task=teacher.task is not None)
    acc.wait_for_everyone()
    return RunResult(out, summary)
