"""``train.mixed_precision: auto``: bf16 where the hardware computes it natively, recorded in the run's output."""

import json

import pytest

from bertpress.train import precision
from bertpress.train.precision import native_bf16_cpu, resolve_precision
from bertpress.train.run import distill


@pytest.mark.parametrize(("flags", "found"), [
    ("fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile", ["amx_bf16", "avx512_bf16"]),
    ("fpu sse2 avx2 avx512f", []),
])
def test_native_bf16_flags_are_read_from_cpuinfo(tmp_path, flags, found):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n")
    assert native_bf16_cpu(info) == found
    assert native_bf16_cpu(tmp_path / "missing") == []


@pytest.mark.parametrize(("cuda", "cuda_bf16", "cpu_flags", "cpu", "expected"), [
    (False, False, ["amx_bf16"], False, "bf16"),
    (False, False, [], False, "no"),
    (True, True, [], False, "bf16"),
    (True, False, ["amx_bf16"], False, "no"),
    (True, True, [], True, "no"),  # kept on the CPU: the CPU decides
])
def test_auto_resolves_by_hardware(monkeypatch, cuda, cuda_bf16, cpu_flags, cpu, expected):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: cuda_bf16)
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: cpu_flags)
    assert resolve_precision("auto", cpu=cpu) == expected
    assert resolve_precision("no") == "no" and resolve_precision("bf16") == "bf16"


def test_a_run_records_the_precision_auto_chose(tmp_path, tiny_teacher_bare, tiny_corpus, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: [])
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    result = distill({"output_dir": str(tmp_path / "o"), "teacher": {"name_or_path": str(tiny_teacher_bare)},
                      "student": {"num_layers": 2},
                      "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "c")},
                      "train": {"max_steps": 2, "batch_size": 4, "eval_every": 0, "save_every": 0, "num_workers": 0,
                                "mixed_precision": "auto"}})
    summary = json.loads((result.output_dir / "bertpress.json").read_text())
    assert summary["mixed_precision"] == "no" and summary["recipe"]["train"]["mixed_precision"] == "auto"
