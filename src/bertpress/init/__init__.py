"""Student initialisers, chosen by name in a recipe: ``random``, ``select`` (and the ETD extractors)."""

from bertpress.init import scratch, select  # noqa: F401 - registers the initialisers
from bertpress.init.base import INITIALISERS, InitContext, initialise

__all__ = ["INITIALISERS", "InitContext", "initialise"]
