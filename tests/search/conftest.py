"""Search fixtures: a 6-layer tiny teacher, recipes with a search section, the synthetic fitness environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiny_models import save_tiny_teacher


@pytest.fixture(scope="session")
def teacher6(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher6"), mlm=True, num_hidden_layers=6)


@pytest.fixture
def synth(tmp_path, monkeypatch):
    """The synthetic fitness's environment; ``synth.calls()`` lists the mappings it was called with."""
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("LMS_CALLS", str(calls))
    monkeypatch.setenv("LMS_TARGET", "2,5,5")
    monkeypatch.setenv("LMS_MARK", str(tmp_path / "fault.mark"))
    for var in ("LMS_DIE_AFTER", "LMS_KILL_MAIN", "LMS_FAULT"):
        monkeypatch.delenv(var, raising=False)

    class Synth:
        target = (2, 5, 5)

        @staticmethod
        def calls() -> list[list[int]]:
            return [json.loads(x)["mapping"] for x in calls.read_text().splitlines()] if calls.is_file() else []

        @staticmethod
        def pids() -> set[int]:
            return {json.loads(x)["pid"] for x in calls.read_text().splitlines()} if calls.is_file() else set()

    return Synth()


@pytest.fixture
def search_recipe(tmp_path, teacher6, tiny_corpus):
    """A recipe dict (3-layer student of the 6-layer tiny teacher) whose search uses the synthetic fitness."""

    def make(**search) -> dict:
        return {
            "output_dir": str(tmp_path / "run"),
            "seed": 3,
            "teacher": {"name_or_path": str(teacher6)},
            "student": {"num_layers": 3, "init": "select"},
            "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
            "objective": {"name": "tinybert"},
            "train": {"max_steps": 5, "batch_size": 4, "num_workers": 0},
            "search": {"population": 6, "generations": 5, "seed": 1, "workers": 0, "fitness": "synthetic:peak",
                       **search},
        }

    return make
