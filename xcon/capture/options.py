"""A capture's options (light: the command line imports this)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from xcon.limits import (
    CAPTURE_FILES,
    CAPTURE_SECONDS,
    CAPTURE_SIZE_MB,
    MAX_SNAPLEN,
    SNAPLEN,
    OutOfRange,
)

__all__ = [
    "MAX_SNAPLEN",
    "CaptureOptions",
    "OutOfRange",
    "check_file",
    "check_ranges",
    "checked_options",
]


@dataclass(frozen=True)
class CaptureOptions:
    """What to record and, for files, how to rotate them."""

    snaplen: int = 0
    filter: str | None = None
    #: Record dropped frames too (inbound, with the reason as a comment).
    drops: bool = True
    #: Ring files: a new file when this many bytes would be exceeded (0: never),
    #: or after this many seconds (0: never); keep the newest ``files`` (0: all).
    size: int = 0
    seconds: float = 0.0
    files: int = 0

    @property
    def ring(self) -> bool:
        return bool(self.size or self.seconds)


def checked_options(
    snaplen: object = 0,
    size_mb: object = 0,
    seconds: object = 0,
    files: object = 0,
    filter: str | None = None,
    drops: bool = True,
) -> CaptureOptions:
    """Options from the numbers any front end has (text, ints, floats),
    checked against :mod:`xcon.limits`' ranges (``size_mb`` in million
    bytes); raises :class:`~xcon.limits.OutOfRange`."""
    return CaptureOptions(
        snaplen=SNAPLEN.check(snaplen),
        filter=filter,
        drops=drops,
        size=int((CAPTURE_SIZE_MB.exact(size_mb) * 1_000_000).to_integral_value()),
        seconds=CAPTURE_SECONDS.check(seconds),
        files=CAPTURE_FILES.check(files),
    )


def check_file(path: object) -> str:
    """``path`` if it can name a file (a non-empty string the file system
    takes: no NUL, no lone surrogate); raises ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("a capture's file is a path (a non-empty string)")
    try:
        encoded = os.fsencode(path)
    except UnicodeError:
        raise ValueError(f"file {path[:64]!r} cannot be a file name") from None
    if b"\0" in encoded:
        raise ValueError(f"file {path[:64]!r} holds a NUL character")
    return path


def check_ranges(o: CaptureOptions) -> None:
    """Raise :class:`~xcon.limits.OutOfRange` for a number of ``o`` out of range."""
    SNAPLEN.check(o.snaplen)
    CAPTURE_SIZE_MB.check(o.size, scale=Decimal("0.000001"), shown=f"{o.size} bytes")
    CAPTURE_SECONDS.check(o.seconds)
    CAPTURE_FILES.check(o.files)
