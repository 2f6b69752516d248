"""The one exception type users see: a single line naming the problem and the fix."""

from __future__ import annotations


class BertpressError(Exception):
    """A bad input or an impossible request, reported as one line; the CLI exits with ``exit_code``.

    Messages follow the pattern ``<what is wrong>: <the fix>`` so that a user can act on them without a traceback.
    """

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__("\n".join(" ".join(line.split()) for line in message.strip().split("\n")))
        if exit_code is not None:
            self.exit_code = exit_code
