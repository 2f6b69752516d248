"""Fine-tuning results cached per (model, task, data, run settings, seed), so a re-run computes only what is new.

The model is identified by the content of its directory (weights, config, tokenizer), not its path, so a
re-trained student in the same folder is evaluated again and a copied one is not.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from bertpress.atomic import atomic_write_json
from bertpress.data.corpus import default_cache_dir
from bertpress.hashing import update_with_file

log = logging.getLogger(__name__)

#: Bump when a code change alters results, so old entries are not reused.
CACHE_VERSION = 1
#: Files of a model directory that do not affect fine-tuning.
_IGNORED = {"README.md", "bertpress.json", "metrics.jsonl", "recipe.yaml"}


@lru_cache(maxsize=64)
def _fingerprint(path: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for file in sorted(Path(path).iterdir()):
        if file.is_file() and not file.name.startswith(".") and file.name not in _IGNORED:
            digest.update(file.name.encode() + b"\0")
            update_with_file(digest, file)
    return digest.hexdigest()[:20]


def model_fingerprint(model_dir: Path) -> str:
    """Hash of the files directly inside ``model_dir`` (weights, config, tokenizer)."""
    files = sorted(p for p in Path(model_dir).iterdir() if p.is_file())
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(str(Path(model_dir).resolve()), stamp)


class ResultCache:
    """JSON entries under ``<root>/<task>/<key>.json``; ``read=False`` recomputes everything (and rewrites)."""

    def __init__(self, root: Path | None = None, *, read: bool = True) -> None:
        self.root = Path(root) if root else default_cache_dir() / "evaluate"
        self.read = read

    @staticmethod
    def key(model: str, task: str, data: Any, run: dict[str, Any]) -> str:
        ident = {"v": CACHE_VERSION, "model": model, "task": task, "data": data, "run": run}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def _path(self, task: str, key: str) -> Path:
        return self.root / task / f"{key}.json"

    def get(self, task: str, key: str) -> dict[str, Any] | None:
        path = self._path(task, key)
        if not self.read or not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("ignoring unreadable cache entry %s (%s)", path, e)
            return None

    def put(self, task: str, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self._path(task, key), record)
