"""Where task data lives and how its files are read: the data-dir setting, ``.gz``-aware text, file identity."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from bertpress.errors import BertpressError
from bertpress.hashing import file_digest

#: Environment variable naming the data directory (``glue/``, ``squad/``, ``conll2003/`` inside).
DATA_ENV = "BERTPRESS_DATA"


def default_data_dir() -> Path:
    """``$BERTPRESS_DATA``, else ``../shared/data`` beside the repository (or the working directory)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[4]
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return (base / ".." / "shared" / "data").resolve()


def resolve_data_dir(path: str | os.PathLike | None) -> Path:
    """The data directory to read: ``path`` when given, else :func:`default_data_dir`; must exist."""
    d = Path(path).expanduser() if path else default_data_dir()
    if not d.is_dir():
        raise BertpressError(f"data directory {str(d)!r} not found: pass --data-dir or set {DATA_ENV}")
    return d


def find_file(folder: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (each also tried with ``.gz``) present in ``folder``."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise BertpressError(f"{what} not found in {folder} (looked for {', '.join(names)}, also .gz): "
                         "check --data-dir and the folder layout (docs/evaluation.md)")


def read_text(path: Path) -> str:
    """The whole file as text (gunzipped when it ends in ``.gz``; a UTF-8 BOM is dropped)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, zlib.error) as e:
        raise BertpressError(f"{path}: cannot read ({e}): check the file is complete") from None
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise BertpressError(f"{path}:{line}: not UTF-8 text: re-save the file as UTF-8") from None


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for each line of a text file.

    Only ``\\n`` ends a line (``str.splitlines`` would also split on characters such as U+2028 inside a text field).
    """
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line.removesuffix("\r")


def file_identity(path: Path) -> list:
    """What identifies a data file in a cache key: its name and a hash of its content (not its path or mtime)."""
    return [path.name, file_digest(path)]
