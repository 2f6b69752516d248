"""A named collection of bad-input cases for the error-catalogue tests (each name is a row of docs/errors.md)."""

from __future__ import annotations

from collections.abc import Callable


class Catalogue(dict):
    """``name -> case function``; ``@CASES.case("name")`` adds one."""

    def case(self, name: str) -> Callable[[Callable], Callable]:
        def add(fn: Callable) -> Callable:
            self[name] = fn
            return fn
        return add
