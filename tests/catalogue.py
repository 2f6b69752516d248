"""A named collection of bad-input cases for the error-catalogue tests (each name is a row of docs/errors.md)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path


class Catalogue(dict):
    """``name -> case function``; ``@CASES.case("name")`` adds one."""

    def case(self, name: str) -> Callable[[Callable], Callable]:
        def add(fn: Callable) -> Callable:
            self[name] = fn
            return fn
        return add


def assert_one_line_error(code: int, stderr: str, pattern: str) -> None:
    """Exit 2 and exactly one ``bertpress: error: ...`` line, the last one, matching ``pattern``; no traceback."""
    lines = stderr.strip().splitlines()
    err = [line for line in lines if line.startswith("bertpress")]
    assert code == 2
    assert len(err) == 1 and err[0] == lines[-1] and err[0].startswith("bertpress: error: "), lines
    assert not any("Traceback" in line for line in lines)
    assert re.search(pattern, err[0]), err[0]


def truncated_copy(model_dir: Path, dest: Path) -> Path:
    """A copy of ``model_dir`` whose ``model.safetensors`` stops half way (a partial download)."""
    shutil.copytree(model_dir, dest)
    weights = (dest / "model.safetensors").read_bytes()
    (dest / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    return dest
