"""The downstream tasks: names, what each scores, and where its train and dev data come from."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bertpress.data.tasks.conll import conll_file, read_conll
from bertpress.data.tasks.files import file_identity, find_file
from bertpress.data.tasks.glue import GLUE_TASKS, HUB_DATASET, glue_tsv_files, load_glue_hub, read_glue_tsv
from bertpress.data.tasks.squad import read_squad
from bertpress.errors import BertpressError

log = logging.getLogger(__name__)

Kind = Literal["glue", "squad", "ner", "embedding"]
GlueSource = Literal["auto", "tsv", "hub"]


@dataclass(frozen=True)
class TaskInfo:
    """A task's name (as on the command line), its title in tables, its kind and what its score means."""

    name: str
    title: str
    kind: Kind
    score_name: str


TASKS: dict[str, TaskInfo] = {t.name: t for t in (
    TaskInfo("cola", "CoLA", "glue", "Matthews corr."),
    TaskInfo("sst2", "SST-2", "glue", "accuracy"),
    TaskInfo("mrpc", "MRPC", "glue", "mean of F1 and accuracy"),
    TaskInfo("qqp", "QQP", "glue", "mean of F1 and accuracy"),
    TaskInfo("stsb", "STS-B", "glue", "mean of Pearson and Spearman corr."),
    TaskInfo("mnli", "MNLI", "glue", "matched accuracy (mismatched in details)"),
    TaskInfo("qnli", "QNLI", "glue", "accuracy"),
    TaskInfo("rte", "RTE", "glue", "accuracy"),
    TaskInfo("wnli", "WNLI", "glue", "accuracy"),
    TaskInfo("squad", "SQuAD1.1", "squad", "F1 (EM in details)"),
    TaskInfo("squad2", "SQuAD2.0", "squad", "F1 (EM in details)"),
    TaskInfo("conll2003", "CoNLL03", "ner", "entity-level F1 (seqeval)"),
    TaskInfo("stsb-zeroshot", "STS-B 0-shot", "embedding",
             "Spearman corr. of pooled-embedding cosines, no fine-tuning (Pearson in details)"),
)}

#: Names that select several tasks at once.
TASK_GROUPS = {"glue": tuple(GLUE_TASKS)}

#: Files looked for under ``<data>/squad/`` (the first present wins; ``.gz`` is tried too).
SQUAD_FILES = {
    "squad": (("train-v1.1.json", "train-v1.1.reconstructed.json"), ("dev-v1.1.json",)),
    "squad2": (("train-v2.0.json",), ("dev-v2.0.json",)),
}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def parse_tasks(names: Sequence[str]) -> list[str]:
    """Canonical task names from command-line names (case and dashes ignored: ``SST-2``, ``CoNLL-2003``)."""
    lookup = {_key(n): (n,) for n in TASKS} | {_key(g): ts for g, ts in TASK_GROUPS.items()}
    out: list[str] = []
    for name in names:
        found = lookup.get(_key(name))
        if found is None:
            raise BertpressError(
                f"unknown task {name!r}: choose from {', '.join([*TASKS, *TASK_GROUPS])} (comma-separated)")
        out += [t for t in found if t not in out]
    if not out:
        raise BertpressError("no task given: pass --tasks, e.g. --tasks rte,mrpc")
    return out


@dataclass
class TaskData:
    """A task's examples: ``train`` and the dev sets by name (``dev``; MNLI: ``m`` and ``mm``), its label names
    (``None`` for regression and QA) and what identifies the data in cache keys."""

    info: TaskInfo
    train: list[Any]
    dev: dict[str, list[Any]]
    labels: tuple[str, ...] | None
    identity: list[Any] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _glue(info: TaskInfo, data_dir: Path, source: GlueSource) -> TaskData:
    task = GLUE_TASKS[info.name]
    folder = data_dir / "glue" / task.folder
    if source == "hub" or (source == "auto" and not (folder / "train.tsv").is_file()):
        log.info("%s: no TSVs in %s, loading %s from the hub", info.title, folder, HUB_DATASET)
        splits = load_glue_hub(task)
        ident: list[Any] = [HUB_DATASET, task.name]
        return TaskData(info, splits.pop("train"), splits, task.labels, ident, [f"hub:{HUB_DATASET}/{task.name}"])
    files = glue_tsv_files(data_dir, task)
    examples = {name: read_glue_tsv(path, task) for name, path in files.items()}
    return TaskData(info, examples.pop("train"), examples, task.labels,
                    [file_identity(p) for p in files.values()], [str(p) for p in files.values()])


def _squad(info: TaskInfo, data_dir: Path) -> TaskData:
    train_names, dev_names = SQUAD_FILES[info.name]
    folder = data_dir / "squad"
    train_path = find_file(folder, train_names, f"{info.title} train file")
    dev_path = find_file(folder, dev_names, f"{info.title} dev file")
    if "reconstructed" in train_path.name:
        log.info("%s: training on %s (rebuilt from the explorer pages, not the official file)", info.title,
                 train_path.name)
    return TaskData(info, read_squad(train_path), {"dev": read_squad(dev_path)}, None,
                    [file_identity(train_path), file_identity(dev_path)], [str(train_path), str(dev_path)])


def _conll(info: TaskInfo, data_dir: Path) -> TaskData:
    """Train and dev; the test set too when its file is there (scored as ``test_*`` metrics)."""
    paths = {"train": conll_file(data_dir, "train"), "dev": conll_file(data_dir, "dev")}
    try:
        paths["test"] = conll_file(data_dir, "test")
    except BertpressError:
        log.info("%s: no test file, scoring the dev set only", info.title)
    splits = {name: read_conll(path) for name, path in paths.items()}
    train = splits.pop("train")
    tags = {t for s in train for t in s.tags}
    labels = ("O", *sorted(tags - {"O"}, key=lambda t: (t[2:], t)))
    return TaskData(info, train, splits, labels, [file_identity(p) for p in paths.values()],
                    [str(p) for p in paths.values()])


def load_task(name: str, data_dir: Path, glue_source: GlueSource = "auto") -> TaskData:
    """Read a task's train and dev data from ``data_dir`` (GLUE: TSVs, or the hub when asked or when absent)."""
    info = TASKS[name]
    if info.kind == "embedding":  # the STS-B dev pairs, scored without training
        sts = _glue(TASKS["stsb"], data_dir, glue_source)
        return TaskData(info, [], sts.dev, None, sts.identity, sts.sources)
    if info.kind == "glue":
        return _glue(info, data_dir, glue_source)
    if info.kind == "squad":
        return _squad(info, data_dir)
    return _conll(info, data_dir)
