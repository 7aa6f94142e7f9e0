"""The one exception type users see: its message is printed as one line, never a traceback."""


class VhtuiError(Exception):
    """A failure caused by the user's input or environment, explained in one line."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(VhtuiError):
    """An execution, datum, alias, step or file that does not exist."""
