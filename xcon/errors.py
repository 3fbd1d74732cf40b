"""Errors meant for the user: one clear line and an exit code, never a traceback."""


class ModeError(Exception):
    """A mode cannot start (bad combination, missing privilege or kernel support)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
