"""Name -> callable tables, so that a recipe selects losses, initialisers, objectives and mappings by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from bertpress.errors import BertpressError

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class Entry(Generic[F]):
    """One registered callable, with the pydantic model that validates its recipe options (if it takes any)."""

    name: str
    fn: F
    options: type[BaseModel] | None
    summary: str
    preflight: Callable | None = None


class Registry(Generic[F]):
    """A table of named callables of one kind (``"loss"``, ``"initialiser"``, ...).

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("mse")
    ... def mse(a, b): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, *, options: type[BaseModel] | None = None,
                 preflight: Callable | None = None) -> Callable[[F], F]:
        """Decorator adding ``fn`` under ``name``; ``options`` validates the recipe arguments it receives and
        ``preflight`` (same arguments as ``fn``) checks cheaply, before any output is written, that it can run."""

        def add(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (fn.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, fn, options, doc[0] if doc else "", preflight)
            return fn

        return add

    def get(self, name: str) -> Entry[F]:
        """The entry called ``name``, or a one-line error listing the valid names."""
        try:
            return self._entries[name]
        except KeyError:
            raise BertpressError(
                f"unknown {self.kind} {name!r}: choose one of {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[F]]:
        return iter(self._entries[n] for n in self.names())
