"""Shared fixtures: tiny teachers (with and without MLM head), a tiny corpus, offline hub settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread; with two, every op can wait a scheduler slice on a shared CPU.
torch.set_num_threads(1)

from task_fixtures import write_task_data  # noqa: E402

from tiny_models import save_tiny_teacher, tiny_text  # noqa: E402


@pytest.fixture(autouse=True)
def _fp32_by_default(monkeypatch):
    """``train.mixed_precision: auto`` (the default) resolves to fp32 in every in-process test, whatever the CPU: the
    numbers tests pin are fp32's. Tests of ``auto`` itself patch the hardware probe they need; subprocess runs get
    the machine's real choice."""
    from bertpress.train import precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda *args, **kwargs: [])


def shared_data_dir() -> Path:
    """``$BERTPRESS_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("BERTPRESS_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_teacher_mlm(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher_mlm"), mlm=True)


@pytest.fixture(scope="session")
def tiny_teacher_bare(tmp_path_factory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher_bare"), mlm=False)


@pytest.fixture(params=["mlm", "bare"])
def tiny_teacher(request, tiny_teacher_mlm, tiny_teacher_bare) -> Path:
    return tiny_teacher_mlm if request.param == "mlm" else tiny_teacher_bare


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(tiny_text())
    return path


@pytest.fixture
def data_dir() -> Path:
    """The shared real data; tests using it skip cleanly when it is absent."""
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data not found at {d} (set BERTPRESS_DATA)")
    return d


@pytest.fixture(scope="session")
def task_data(tmp_path_factory) -> Path:
    """A small data directory with SST-2, RTE, MRPC, STS-B, SQuAD v1.1 (gzipped train) and CoNLL-2003."""
    return write_task_data(tmp_path_factory.mktemp("task_data"))
