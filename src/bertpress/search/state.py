"""The search state on disk: every evaluated mapping (the cache) and the progress, rewritten atomically after each
evaluation, so a killed search loses at most the evaluations in flight and never leaves a half-written file.

Cache keys hash the mapping together with the fitness settings (recipe, proxy setting, fitness function), so a
mapping is never evaluated twice under the same settings.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from bertpress.atomic import atomic_write_json, atomic_write_text
from bertpress.errors import BertpressError

STATE_FILE = "state.json"
LOG_FILE = "evaluations.jsonl"
FORMAT = 1


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mapping_key(mapping: tuple[int, ...] | list[int], settings_digest: str) -> str:
    """Cache key of one mapping under one set of fitness settings."""
    text = json.dumps([list(mapping), settings_digest])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


class SearchState:
    """Records by cache key (in the order they finished), progress, and the time spent over all sessions."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = Path(root)
        self.settings = settings
        self.digest = settings_hash(settings)
        self.records: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, Any] = {"generation": 0, "population": [], "requested": 0}
        self.previous_s = 0.0
        self.sessions = 0
        self.complete = False
        self._since = time.perf_counter()

    @property
    def path(self) -> Path:
        return self.root / STATE_FILE

    def key(self, mapping: tuple[int, ...]) -> str:
        return mapping_key(mapping, self.digest)

    def get(self, mapping: tuple[int, ...]) -> dict[str, Any] | None:
        return self.records.get(self.key(mapping))

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        self.save()

    def elapsed(self) -> float:
        return self.previous_s + time.perf_counter() - self._since

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "settings_hash": self.digest, "settings": self.settings,
                "progress": self.progress, "complete": self.complete, "sessions": self.sessions,
                "elapsed_s": round(self.elapsed(), 2), "records": list(self.records.values())}

    def save(self) -> None:
        """state.json and evaluations.jsonl, each written to a temporary file and renamed."""
        atomic_write_json(self.path, self.to_dict())
        atomic_write_text(self.root / LOG_FILE,
                          "".join(json.dumps(r, default=str) + "\n" for r in self.records.values()))

    @classmethod
    def load(cls, root: Path, settings: dict[str, Any]) -> SearchState:
        """The saved state of ``root``; refuses one made under other fitness settings."""
        path = Path(root) / STATE_FILE
        try:
            data = json.loads(path.read_text())
            records = data["records"]
            saved = data["settings"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BertpressError(f"search state {str(path)!r} is unreadable ({type(e).__name__}: {e}): pass "
                                 "--overwrite to start the search over") from None
        state = cls(root, settings)
        if data.get("settings_hash") != state.digest:
            a, b = _flatten(saved), _flatten(settings)
            changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)) or ["(unknown)"]
            k = changed[0]
            raise BertpressError(
                f"cannot resume the search in {str(root)!r}: the fitness settings changed ({k}: {a.get(k)!r} -> "
                f"{b.get(k)!r}), so old scores are not comparable: resume with the original recipe, or pass "
                "--overwrite / another search directory")
        state.records = {r["key"]: r for r in records}
        state.progress = data.get("progress", state.progress)
        state.previous_s = float(data.get("elapsed_s", 0.0))
        state.sessions = int(data.get("sessions", 0))
        return state
