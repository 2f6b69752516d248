"""GLUE: the nine tasks' formats, read from the original TSV layout (``glue/<Task>/{train,dev}.tsv``) or the hub.

Labels are indices into :attr:`GlueTask.labels` in the order the ``nyu-mll/glue`` hub dataset uses, so both sources
give the same numbers; STS-B labels are floats (regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertpress.data.sources import load_hf_dataset
from bertpress.data.tasks.files import find_file, read_lines
from bertpress.errors import BertpressError

#: Hub dataset holding every GLUE task as a config.
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class EvalSplit:
    """One dev set of a task: its name in results, its TSV file and its hub split."""

    name: str
    tsv: str
    hub: str


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is laid out: folder, text and label columns (header names, or positions when the file
    has no header), the label names (``None``: regression) and the hub columns."""

    name: str
    folder: str
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...] | None
    hub_columns: tuple[str, ...]
    dev: tuple[EvalSplit, ...] = (EvalSplit("dev", "dev.tsv", "validation"),)
    positions: tuple[tuple[int, ...], int, int] | None = None  # (text positions, label position, field count)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
GLUE_TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("cola", "CoLA", ("sentence",), "label", _BINARY, ("sentence",), positions=((3,), 1, 4)),
    GlueTask("sst2", "SST-2", ("sentence",), "label", _BINARY, ("sentence",)),
    GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", _BINARY, ("sentence1", "sentence2")),
    GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", _BINARY, ("question1", "question2")),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("sentence1", "sentence2")),
    GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
             ("premise", "hypothesis"), dev=(EvalSplit("m", "dev_matched.tsv", "validation_matched"),
                                             EvalSplit("mm", "dev_mismatched.tsv", "validation_mismatched"))),
    GlueTask("qnli", "QNLI", ("question", "sentence"), "label", _NLI2, ("question", "sentence")),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", _NLI2, ("sentence1", "sentence2")),
    GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), "label", _BINARY, ("sentence1", "sentence2")),
)}


@dataclass(frozen=True)
class TextExample:
    """A sentence or sentence pair with its label (class index, or a float for regression)."""

    text_a: str
    text_b: str | None
    label: int | float


def _label(task: GlueTask, value: str, where: str) -> int | float:
    if task.labels is None:
        try:
            return float(value)
        except ValueError:
            raise BertpressError(f"{where}: score {value!r} is not a number: fix the row") from None
    try:
        return task.labels.index(value.strip())
    except ValueError:
        raise BertpressError(
            f"{where}: label {value!r} is not one of {', '.join(task.labels)}: fix the row or check the task") from None


def _columns(task: GlueTask, path: Path, header: list[str]) -> tuple[list[int], int]:
    missing = [c for c in (*task.text_columns, task.label_column) if c not in header]
    if missing:
        raise BertpressError(f"{path}:1: header lacks column {missing[0]!r} (has {', '.join(header)}): "
                             f"use the original GLUE {task.folder} TSV")
    return [header.index(c) for c in task.text_columns], header.index(task.label_column)


def read_glue_tsv(path: Path, task: GlueTask) -> list[TextExample]:
    """Examples of one GLUE TSV file; a row with the wrong field count or label is reported with its line."""
    lines = read_lines(path)
    if task.positions is not None:
        text_idx, label_idx, width = list(task.positions[0]), task.positions[1], task.positions[2]
    else:
        first = next(lines, None)
        if first is None:
            raise BertpressError(f"{path}: empty file: use the original GLUE {task.folder} TSV")
        header = first[1].split("\t")
        text_idx, label_idx = _columns(task, path, header)
        width = len(header)
    out = []
    for number, line in lines:
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) != width:
            raise BertpressError(f"{where}: expected {width} tab-separated fields, found {len(fields)}: "
                                 "fix or remove the row")
        texts = [fields[i] for i in text_idx]
        out.append(TextExample(texts[0], texts[1] if len(texts) > 1 else None, _label(task, fields[label_idx], where)))
    if not out:
        raise BertpressError(f"{path}: no examples: use the original GLUE {task.folder} TSV")
    return out


def examples_from_rows(task: GlueTask, rows: Any, source: str) -> list[TextExample]:
    """Examples from a hub ``datasets`` split (or any table with the hub's columns and integer/float labels)."""
    missing = [c for c in (*task.hub_columns, "label") if c not in rows.column_names]
    if missing:
        raise BertpressError(f"{source} lacks column {missing[0]!r}: load the {HUB_DATASET} config {task.name!r}")
    cols = [rows[c] for c in task.hub_columns]
    labels = rows["label"]
    out = []
    for i, label in enumerate(labels):
        if task.labels is not None and not 0 <= int(label) < len(task.labels):
            raise BertpressError(f"{source} row {i}: label {label} is outside 0..{len(task.labels) - 1} "
                                 "(unlabelled test split?): use the train or validation split")
        out.append(TextExample(cols[0][i], cols[1][i] if len(cols) > 1 else None,
                               float(label) if task.labels is None else int(label)))
    return out


def glue_task(name: str) -> GlueTask:
    try:
        return GLUE_TASKS[name]
    except KeyError:
        raise BertpressError(f"unknown GLUE task {name!r}: choose one of {', '.join(GLUE_TASKS)}") from None


def glue_tsv_files(data_dir: Path, task: GlueTask) -> dict[str, Path]:
    """``{"train": path, <dev split name>: path, ...}`` in ``data_dir/glue/<Folder>/``."""
    folder = data_dir / "glue" / task.folder
    files = {"train": find_file(folder, ["train.tsv"], f"GLUE {task.folder} train.tsv")}
    for split in task.dev:
        files[split.name] = find_file(folder, [split.tsv], f"GLUE {task.folder} {split.tsv}")
    return files


def load_glue_hub(task: GlueTask) -> dict[str, list[TextExample]]:
    """``{"train": ..., <dev split name>: ...}`` from the hub (needs a connection or a warm ``datasets`` cache)."""
    out = {"train": examples_from_rows(task, load_hf_dataset(HUB_DATASET, task.name, "train"), f"{HUB_DATASET}/{task.name}")}
    for split in task.dev:
        rows = load_hf_dataset(HUB_DATASET, task.name, split.hub)
        out[split.name] = examples_from_rows(task, rows, f"{HUB_DATASET}/{task.name}:{split.hub}")
    return out
