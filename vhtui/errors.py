"""The one exception type users see: its message is printed as one line, never a traceback."""

from __future__ import annotations


class VhtuiError(Exception):
    """A failure caused by the user's input or environment, explained in one line."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(VhtuiError):
    """An execution, datum, alias, step or file that does not exist."""


class StoreError(VhtuiError):
    """The store itself failed (damaged, removed, on a full disk, locked too long): nothing the
    caller asked for was stored, and nothing stored before is touched. `kind` is "busy", "full",
    "damaged", "unusable", "replaced" or "other": a caller that can wait (a supervisor) retries
    a busy store."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


def did_you_mean(given: str, known: list[str]) -> str:
    """"; did you mean X?" for the nearest of `known`, or nothing when none is near."""
    import difflib

    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def quoted(text: str, limit: int = 60) -> str:
    """A user's text as a message shows it: quoted, and cut short when it is long."""
    return repr(text if len(text) <= limit else text[:limit] + "…")
