"""The run directory: refuse to clobber another run, and publish the final student atomically.

Layout of ``output_dir``: ``student/`` (the model directory: ``AutoModel.from_pretrained`` /
``SentenceTransformer`` load it, ``bertpress push`` uploads it), ``recipe.yaml``, ``bertpress.json`` (the run
summary, also in ``student/``), ``metrics.jsonl``, ``checkpoints/`` and ``tensorboard/``. Every bertpress command
that takes a model accepts the run directory itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertpress.atomic import atomic_dir, atomic_write_json
from bertpress.config import load_yaml
from bertpress.errors import BertpressError
from bertpress.models.sentence_stack import copy_sentence_stack
from bertpress.models.teacher import STUDENT_DIR
from bertpress.recipe import RESULT_NEUTRAL_FIELDS
from bertpress.train.card import model_card

RUN_MARKERS = ("recipe.yaml", "bertpress.json", "checkpoints")


def flat_recipe(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}`` (``init_args`` stays one value)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "init_args":
            out.update(flat_recipe(v, f"{key}."))
        else:
            out[key] = v
    return out


def is_run_dir(path: Path) -> bool:
    return any((path / m).exists() for m in RUN_MARKERS)


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (where a new output directory would be created)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_job_dir(path: Path, *, label: str, holds: Callable[[Path], bool], job: str, other: str, resume: bool,
                  overwrite: bool, on_resume: Callable[[Path], None] | None = None) -> None:
    """Check that directory ``path`` (called ``label`` in messages) may receive a ``job`` (a run, a search): it is
    new or empty, or ``holds`` one and ``resume`` / ``overwrite`` says what to do with it. Nothing is written."""
    if resume and overwrite:
        raise BertpressError("--resume and --overwrite contradict each other: pass only one")
    if path.exists() and not path.is_dir():
        raise BertpressError(f"{label} {str(path)!r} is a file: choose a directory path")
    where = existing_ancestor(path)
    if shutil.disk_usage(where).total == 0:
        raise BertpressError(f"{label} {str(path)!r} is on a virtual file system ({where} has no disk space, "
                             "like /proc and /sys): choose a directory on a disk")
    if path.is_dir() and any(path.iterdir()):
        if not holds(path):
            raise BertpressError(f"{label} {str(path)!r} is not empty and holds no {job}: choose a new or empty "
                                 "directory")
        if resume:
            if on_resume is not None:
                on_resume(path)
        elif not overwrite:
            raise BertpressError(f"{label} {str(path)!r} already holds a {job.split()[-1]}: pass --resume to continue "
                                 f"it, --overwrite to replace it, or choose another {other}")
    elif resume:
        raise BertpressError(f"nothing to resume in {str(path)!r}: run without --resume to start")


def check_output_dir(path: Path, recipe: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Check that ``path`` may receive this run; nothing is written or deleted here."""
    check_job_dir(path, label="output_dir", holds=is_run_dir, job="bertpress run", other="output_dir",
                  resume=resume, overwrite=overwrite, on_resume=lambda p: check_resumable(p, recipe))


@contextmanager
def opened_output_dir(path: Path, *, overwrite: bool, resume: bool, enabled: bool = True) -> Iterator[None]:
    """After every check passed: create the directory (with ``overwrite``, replacing a previous run) for the body
    of the ``with``, which sets the run up. If the set-up fails, the disk is left as it was before: what was created
    is removed and a replaced run is put back, so a corrected re-run is not refused as "already holds a run".

    ``resume`` uses the directory as it is; ``enabled`` is false on every process but the main one.
    """
    if resume or not enabled:
        yield
        return
    backup = None
    if overwrite and path.is_dir() and is_run_dir(path):
        backup = path.with_name(f".{path.name}.replaced")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(path, backup)
    existed = path.is_dir()  # then it is empty (check_output_dir)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if existed:
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
        if backup is not None:
            os.replace(backup, path)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def check_resumable(path: Path, recipe: dict[str, Any]) -> None:
    saved_file = path / "recipe.yaml"
    if not saved_file.is_file():
        return
    saved, now = flat_recipe(load_yaml(saved_file.read_text()) or {}), flat_recipe(recipe)
    changed = sorted(k for k in saved.keys() | now.keys()
                     if saved.get(k) != now.get(k) and k not in RESULT_NEUTRAL_FIELDS)
    if changed:
        k = changed[0]
        raise BertpressError(
            f"cannot resume {str(path)!r}: the recipe changed ({k}: {saved.get(k)!r} -> {now.get(k)!r}); resume with "
            "the original recipe, or use --overwrite / a new output_dir")


#: The folder of a run with a task teacher that holds the student with its task head (``student/`` is the encoder).
TASK_STUDENT_DIR = "task-student"


def publish_student(out_dir: Path, student, tokenizer, summary: dict[str, Any],
                    sentence_stack: Path | None = None, *, task: bool = False) -> Path:
    """Write ``out_dir/student/``, the publishable model directory, as a whole and atomically: the student and
    tokenizer, the sentence-transformers stack of the model directory ``sentence_stack`` when it has one, the model
    card (``README.md``), ``recipe.yaml`` and ``bertpress.json``; then the run's own ``bertpress.json`` last (the
    mark of a finished run). Checkpoints, logs and metrics stay outside it. Returns the student directory.
    ``task``: the student has a task head: ``student/`` gets the plain encoder and :data:`TASK_STUDENT_DIR` the
    whole task model (loadable with ``AutoModelFor{Sequence,Token}Classification``)."""
    if task:
        with atomic_dir(out_dir / TASK_STUDENT_DIR) as tmp:
            student.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        student = student.base_model
    target = out_dir / STUDENT_DIR
    with atomic_dir(target) as tmp:
        student.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if sentence_stack is not None:
            summary["sentence_transformers"] = copy_sentence_stack(sentence_stack, Path(tmp),
                                                                   student.config.hidden_size)
        (Path(tmp) / "README.md").write_text(model_card(summary), encoding="utf-8")
        shutil.copy(out_dir / "recipe.yaml", Path(tmp) / "recipe.yaml")
        atomic_write_json(Path(tmp) / "bertpress.json", summary)
    atomic_write_json(out_dir / "bertpress.json", summary)
    return target
