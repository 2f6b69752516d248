"""Read raw text from the corpus sources of a recipe: files/globs (.gz too), JSONL, dataset dirs, hub datasets.

Every reader yields text lines and ``None`` at document boundaries (blank lines, JSONL records, WikiExtractor
``<doc>`` markup), which the packer turns into separator tokens.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertpress.errors import BertpressError

log = logging.getLogger(__name__)

_DATASET_DIR_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass
class ReadStats:
    """What was read and what was skipped (binary files, undecodable lines)."""

    files: int = 0
    lines: int = 0
    skipped_files: list[str] = field(default_factory=list)
    skipped_lines: int = 0


def _is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _DATASET_DIR_MARKERS)


def expand_files(source: str) -> list[Path]:
    """Files named by a path, a glob or a directory (recursively, sorted); an error when nothing matches."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if Path(p).is_file())
    if not files:
        raise BertpressError(
            f"data source {source!r} matched no files: check the path or glob, or use "
            f"{{dataset: NAME}} for a Hugging Face dataset"
        )
    return files


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _looks_binary(path: Path) -> bool:
    try:
        with _open_binary(path) as f:
            head = f.read(8192)
    except (OSError, EOFError):
        return True
    return b"\0" in head


def _is_jsonl(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith((".jsonl", ".json", ".ndjson"))


def read_text_file(path: Path, stats: ReadStats) -> Iterator[str | None]:
    """Lines of a plain-text file; blank lines and WikiExtractor ``<doc …>``/``</doc>`` lines end documents."""
    with _open_binary(path) as f:
        for raw in f:
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                stats.skipped_lines += 1
                continue
            if not line or line.startswith("<doc ") or line == "</doc>":
                yield None
                continue
            stats.lines += 1
            yield line
    yield None


def read_jsonl_file(path: Path, text_field: str, stats: ReadStats) -> Iterator[str | None]:
    """One document per JSON record (``text_field`` holds its text); malformed lines name file and line."""
    with _open_binary(path) as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BertpressError(f"{path}:{n}: not a valid JSON line ({e}): fix or remove that line") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise BertpressError(
                    f"{path}:{n}: record has no string field {text_field!r}: set data.text_field to the text column"
                )
            for line in record[text_field].splitlines():
                if line.strip():
                    stats.lines += 1
                    yield line.strip()
            yield None


def read_files(source: str, text_field: str, stats: ReadStats) -> Iterator[str | None]:
    for path in expand_files(source):
        if _looks_binary(path):
            stats.skipped_files.append(str(path))
            log.warning("skipping %s: binary or unreadable file", path)
            continue
        stats.files += 1
        yield from (read_jsonl_file(path, text_field, stats) if _is_jsonl(path) else read_text_file(path, stats))


def load_hf_dataset(dataset: str, config: str | None, split: str) -> Any:
    """A ``datasets`` split from a saved directory or the hub (clear error offline)."""
    import datasets

    path = Path(dataset).expanduser()
    try:
        if _is_dataset_dir(path):
            ds = datasets.load_from_disk(str(path))
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(dataset, config, split=split)
    except (FileNotFoundError, ConnectionError, ValueError, OSError) as e:
        raise BertpressError(
            f"cannot load dataset {dataset!r} (config {config!r}, split {split!r}): {str(e).splitlines()[0][:160]}: "
            "check the name and split, or that the hub is reachable (HF_DATASETS_OFFLINE unset)"
        ) from None


def read_dataset(ds: Any, text_field: str, stats: ReadStats) -> Iterator[str | None]:
    if text_field not in ds.column_names:
        raise BertpressError(
            f"dataset has no column {text_field!r} (columns: {', '.join(ds.column_names)}): set text_field"
        )
    for text in ds[text_field]:
        if not text or not text.strip():
            yield None
            continue
        stripped = text.strip()
        if stripped.startswith("= ") and stripped.endswith(" ="):  # WikiText article/section titles
            yield None
        stats.lines += 1
        yield stripped
    yield None
