"""The one switch for progress bars: ``--no-progress`` on any verb sets ``$BERTPRESS_NO_PROGRESS``."""

from __future__ import annotations

import os

ENV = "BERTPRESS_NO_PROGRESS"


def bars_enabled() -> bool:
    """False when progress bars were turned off for this process (and its workers)."""
    return os.environ.get(ENV, "") in ("", "0")
