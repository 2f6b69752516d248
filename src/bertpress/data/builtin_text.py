"""A small English corpus that every machine already has: the docstrings of Python's standard library.

The quickstart uses it so that it works offline with nothing but the package installed; ``--corpus`` replaces it
with real data. Extraction is deterministic (sorted files, ``ast`` docstrings, fixed size cap).
"""

from __future__ import annotations

import ast
import sysconfig
import warnings
from pathlib import Path

from bertpress.atomic import atomic_write_text


def stdlib_docstrings(max_chars: int = 2_000_000) -> str:
    """Module, class and function docstrings of the standard library, one paragraph per line, blank between."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    size = 0
    for path in sorted(root.rglob("*.py")):
        if any(p in {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo"} for p in path.parts):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 80:
                continue
            paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
            text = "\n".join(p for p in paragraphs if len(p) > 40 and not p.startswith((">>>", "...")))
            if text:
                parts.append(text)
                size += len(text)
        if size >= max_chars:
            break
    return "\n\n".join(parts) + "\n"


def write_builtin_corpus(path: Path, max_chars: int = 2_000_000) -> Path:
    """Write the standard-library docstring corpus to ``path`` (once; reused when present)."""
    if not path.is_file():
        atomic_write_text(path, stdlib_docstrings(max_chars))
    return path
