"""Per-direction counters of a link, and their one-line rendering."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

#: Upper bounds (seconds) of the buckets of :class:`Lateness`.
LATE_BUCKETS = (10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3)


class Lateness:
    """How late frames left a delay line: the time they were sent minus the
    time they were due, in buckets (a histogram, as Prometheus keeps one).

    What the delay line itself adds to the delay it was asked for: the
    reactor waking late, other work ahead of the release, a destination that
    does not take the frames.  Observed once per run of frames that were due
    together (one departure time), weighted by their count."""

    __slots__ = ("counts", "sum", "frames")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATE_BUCKETS) + 1)  # the last: above the last bound
        self.sum = 0.0
        self.frames = 0

    def observe(self, late: float, n: int) -> None:
        if late < 0.0:
            late = 0.0
        self.counts[bisect_left(LATE_BUCKETS, late)] += n
        self.sum += late * n
        self.frames += n

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, frames at most that late)``, the last bound ``inf``."""
        out, acc = [], 0
        for bound, n in zip((*LATE_BUCKETS, float("inf")), self.counts, strict=True):
            acc += n
            out.append((bound, acc))
        return out

    def within(self, bound: float) -> float:
        """The share of frames at most ``bound`` late (``bound`` one of LATE_BUCKETS)."""
        if not self.frames:
            return 1.0
        i = LATE_BUCKETS.index(bound)
        return sum(self.counts[: i + 1]) / self.frames

    def reset(self) -> None:
        self.counts = [0] * (len(LATE_BUCKETS) + 1)
        self.sum = 0.0
        self.frames = 0

    def as_json(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "mean_us": round(self.sum / self.frames * 1e6, 1) if self.frames else None,
            "at_most_us": {
                ("inf" if b == float("inf") else f"{b * 1e6:g}"): n for b, n in self.cumulative()
            },
        }


class FlowStats:
    """Counters of one forwarding direction (frames and bytes are payload, not headers)."""

    __slots__ = ("name", "frames", "bytes", "drops", "events", "late")

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = 0
        self.bytes = 0
        #: dropped frames by reason: port_down, zero_length, untagged, other_vlan,
        #: runt, too_big, queue_full, impair_loss, impair_queue, impair_cleared
        self.drops: Counter[str] = Counter()
        #: things done to frames that still crossed (impairment): duplicated,
        #: corrupted, reordered
        self.events: Counter[str] = Counter()
        #: How late frames left the direction's delay line (once it had one).
        self.late: Lateness | None = None

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
        if self.late is not None:
            self.late.reset()

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
