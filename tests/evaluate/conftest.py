"""Evaluation fixtures: a tiny teacher/student pair (the task data fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_models import save_tiny_teacher


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A 4-layer tiny teacher and a 2-layer tiny student (128 positions, so latency runs at length 128)."""
    teacher = save_tiny_teacher(tmp_path_factory.mktemp("eval_teacher"), mlm=False, max_position_embeddings=128)
    student = save_tiny_teacher(tmp_path_factory.mktemp("eval_student"), mlm=False, seed=1, num_hidden_layers=2,
                                max_position_embeddings=128)
    return teacher, student
