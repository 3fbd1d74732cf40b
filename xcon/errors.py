"""Errors meant for the user: one clear line and an exit code, never a traceback."""

from __future__ import annotations

import argparse


def one_line(text: str) -> str:
    """``text`` with every line break or other unprintable character escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr and exit 2 (no usage block: ``--help`` has it)."""
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


class ModeError(Exception):
    """A mode cannot start (bad combination, missing privilege or kernel support)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LinkError(Exception):
    """A request to change the links was refused; the message is one line for the
    user.  :attr:`status` is the HTTP status the control API answers with."""

    status = 400


class BadRequest(LinkError):
    """Malformed input (a link spec that does not parse, a bad option)."""

    status = 400


class NotFound(LinkError):
    """No such link."""

    status = 404


class Conflict(LinkError):
    """The request clashes with the links present (a NIC already linked, a link
    that cannot be removed, a resource that cannot be opened)."""

    status = 409


class Unavailable(LinkError):
    """Something outside xcon (a router's qemu monitor) did not do its part."""

    status = 502
