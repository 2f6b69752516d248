"""Content fingerprints of data files, so caches survive copies, re-mounts and ``touch`` but not edits."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


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


def file_digest(path: Path) -> str:
    """SHA-256 (20 hex digits) of the file's bytes; re-read only when its size or modification time changes."""
    st = Path(path).stat()
    return _digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
