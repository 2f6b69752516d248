"""Benchmark scripts are not a package: tests load one as a module by its folder name."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture
def benchmark_script():
    """``benchmark_script("quality")`` -> ``benchmarks/quality/run.py`` as a module (``script`` names another file of
    the folder)."""
    def load(name: str, script: str = "run") -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_{script}", BENCHMARKS / name / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
