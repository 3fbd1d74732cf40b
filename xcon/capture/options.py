"""A capture's options (light: the command line imports this)."""

from __future__ import annotations

from dataclasses import dataclass

#: ``snaplen``: 0 (whole frames) or 1..MAX_SNAPLEN bytes (libpcap's largest).
MAX_SNAPLEN = 262144


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
