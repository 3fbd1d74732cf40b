"""Per-direction counters of a link, and their one-line rendering."""

from __future__ import annotations

from collections import Counter


class FlowStats:
    """Counters of one forwarding direction (frames and bytes are payload, not headers)."""

    __slots__ = ("name", "frames", "bytes", "drops", "events")

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = 0
        self.bytes = 0
        #: dropped frames by reason: port_down, zero_length, untagged, other_vlan,
        #: runt, too_big, queue_full, impair_loss, impair_queue
        self.drops: Counter[str] = Counter()
        #: things done to frames that still crossed (impairment): duplicated,
        #: corrupted, reordered
        self.events: Counter[str] = Counter()

    def event(self, name: str, n: int = 1) -> None:
        self.events[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.drops[reason] += n

    def reset(self) -> None:
        """Counters back to zero (``xcon ctl reset``)."""
        self.frames = 0
        self.bytes = 0
        self.drops.clear()
        self.events.clear()

    @property
    def dropped(self) -> int:
        """Frames dropped for any reason."""
        return sum(self.drops.values())

    def render(self) -> str:
        drops = ",".join(f"{k}={v}" for k, v in sorted(self.drops.items()) if v) or "0"
        line = f"{self.name}: frames={self.frames} bytes={self.bytes} drops={drops}"
        if self.events:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(self.events.items()))
        return line
