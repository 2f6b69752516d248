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
import zlib
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


def is_dataset_dir(path: Path) -> bool:
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


#: Leading bytes of document and archive formats that may be ASCII-only in their first kilobytes (a PDF's header
#: and dictionaries) and so pass the NUL-byte test: never text to distil on.
_BINARY_MAGIC = (b"%PDF-", b"%!PS", b"PK\x03\x04", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x7fELF",
                 b"\xd0\xcf\x11\xe0", b"{\\rtf", b"7z\xbc\xaf", b"Rar!", b"\x1f\x8b")


def corrupt_file_error(path: Path, e: BaseException) -> BertpressError:
    """The one-line error for a file that cannot be read to its end (a partial download, a broken archive)."""
    what = "truncated or corrupt gzip file" if path.suffix == ".gz" else "unreadable file"
    return BertpressError(f"{path}: {what} ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'ends early'}): "
                          "re-download or re-create it, or remove it from data.sources")


#: What reading a damaged (.gz) file raises: ``EOFError`` when it ends early, ``BadGzipFile``/``zlib.error`` when
#: its bytes are not a valid stream, ``OSError`` for the rest.
READ_ERRORS = (EOFError, OSError, zlib.error)


def _looks_binary(path: Path) -> bool:
    try:
        with _open_binary(path) as f:
            head = f.read(8192)
    except READ_ERRORS as e:
        raise corrupt_file_error(path, e) from None
    return b"\0" in head or head.startswith(_BINARY_MAGIC)


def _is_jsonl(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith((".jsonl", ".json", ".ndjson"))


def _lines(path: Path) -> Iterator[bytes]:
    """Raw lines of a (gzipped) file; a damaged file is one :class:`BertpressError` naming it, at any point."""
    try:
        with _open_binary(path) as f:
            yield from f
    except READ_ERRORS as e:
        raise corrupt_file_error(path, e) from None


def read_text_file(path: Path, stats: ReadStats, encoding: str = "utf-8") -> Iterator[str | None]:
    """Lines of a plain-text file; blank lines and WikiExtractor ``<doc …>``/``</doc>`` lines end documents.
    Lines that do not decode in ``encoding`` are skipped and counted."""
    for raw in _lines(path):
        try:
            line = raw.decode(encoding).strip()
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
    for n, raw in enumerate(_lines(path), start=1):
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


def read_files(source: str, text_field: str, stats: ReadStats, encoding: str = "utf-8") -> Iterator[str | None]:
    """Every file a path/glob/directory source names; a saved ``datasets`` directory is read as a dataset."""
    if is_dataset_dir(Path(source).expanduser()):
        yield from read_dataset(load_hf_dataset(source, None, "train"), text_field, stats, name=source,
                                setting="data.text_field")
        return
    for path in expand_files(source):
        if _looks_binary(path):
            stats.skipped_files.append(str(path))
            log.warning("skipping %s: binary file", path)
            continue
        stats.files += 1
        yield from (read_jsonl_file(path, text_field, stats) if _is_jsonl(path)
                    else read_text_file(path, stats, encoding))


#: rows of a dataset read at a time
_DATASET_BATCH = 1000


def load_hf_dataset(dataset: str, config: str | None, split: str, revision: str | None = None, *,
                    streaming: bool = False) -> Any:
    """A ``datasets`` split from a saved directory (memory-mapped) or the hub at ``revision``, downloaded or, with
    ``streaming``, read as it arrives (clear error offline)."""
    import datasets

    path = Path(dataset).expanduser()
    try:
        if is_dataset_dir(path):
            ds = datasets.load_from_disk(str(path))
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(dataset, config, split=split, revision=revision, streaming=streaming)
    except (FileNotFoundError, ConnectionError, ValueError, OSError, KeyError) as e:
        raise BertpressError(
            f"cannot load dataset {dataset!r} (config {config!r}, split {split!r}): {str(e).splitlines()[0][:160]}: "
            "check the name and split, or that the hub is reachable (HF_DATASETS_OFFLINE unset)"
        ) from None


def read_dataset(ds: Any, text_field: str, stats: ReadStats, *, name: str = "",
                 setting: str = "text_field") -> Iterator[str | None]:
    """Rows of column ``text_field`` of a loaded (or streamed) dataset, read in batches so the column is never held
    whole (``name`` and ``setting`` only word the error)."""
    def refuse(columns: list[str]) -> BertpressError:
        return BertpressError(f"dataset {name or 'source'!r} has no column {text_field!r} (columns: "
                              f"{', '.join(columns)}): set {setting} to the text column")

    if ds.column_names is not None and text_field not in ds.column_names:  # a stream may not know them up front
        raise refuse(ds.column_names)
    for batch in ds.iter(batch_size=_DATASET_BATCH):
        if text_field not in batch:
            raise refuse(list(batch))
        yield from _dataset_texts(batch[text_field], stats)
    yield None


def _dataset_texts(texts: list[str | None], stats: ReadStats) -> Iterator[str | None]:
    for text in texts:
        if not text or not text.strip():
            yield None
            continue
        stripped = text.strip()
        if stripped.startswith("= ") and stripped.endswith(" ="):  # WikiText article/section titles
            yield None
        stats.lines += 1
        yield stripped
