"""Student initialisers, chosen by name in a recipe: ``random``, ``select``, ``etd-rand``, ``etd-impt`` and
``teacher-embeddings``."""

from bertpress.init import embeddings, etd, pretrained, scratch, select  # noqa: F401 - registers the initialisers
from bertpress.init.base import INITIALISERS, InitContext, check_initialiser, initialise

__all__ = ["INITIALISERS", "InitContext", "check_initialiser", "initialise"]
