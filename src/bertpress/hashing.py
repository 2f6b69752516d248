"""Content fingerprints of data files, so caches survive copies, re-mounts and ``touch`` but not edits."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from bertpress.atomic import atomic_write_text


def update_with_file(digest, path: str | Path) -> None:
    """Feed the bytes of ``path`` to ``digest`` (a ``hashlib`` object), 1 MiB at a time."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


@lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()[:20]


def file_digest(path: Path, memo: Path | None = None) -> str:
    """SHA-256 (20 hex digits) of the file's bytes; re-read only when its size or modification time changes.

    ``memo``: a directory where digests are also kept on disk (one small file per source file and version), so
    other processes (the ranks of ``accelerate launch``, later runs) do not read the file again."""
    st = Path(path).stat()
    where = str(Path(path).resolve())
    if memo is None:
        return _digest(where, st.st_size, st.st_mtime_ns)
    kept = memo / hashlib.sha256(f"{where}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    if kept.is_file():
        return kept.read_text()
    digest = _digest(where, st.st_size, st.st_mtime_ns)
    memo.mkdir(parents=True, exist_ok=True)
    atomic_write_text(kept, digest)
    return digest
