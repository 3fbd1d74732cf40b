"""ping from inside a network namespace, its output read back: replies, round
trips, which sequence numbers came back and when (:class:`Pinger`: a ping
running in the background while a test changes something, its outages read
back by :meth:`Ping.gaps`)."""

from __future__ import annotations

import math
import re
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass

from xcon.testing.wait import wait_until

__all__ = ["Ping", "Pinger", "parse_ping", "ping", "wait_ping"]


@dataclass
class Ping:
    transmitted: int
    received: int
    rtt: tuple[float, float, float] | None  # min, avg, max in ms
    times: list[float]  # each reply's round trip, ms
    replies: list[tuple[float, int]]  # (timestamp, icmp_seq) with -D
    output: str

    def figures(self) -> str:
        if not self.times or not self.rtt:
            return f"{self.received}/{self.transmitted} replies"
        median = statistics.median(self.times)
        return (
            f"{self.received}/{self.transmitted} replies, rtt ms min {self.rtt[0]:.2f} "
            f"median {median:.2f} avg {self.rtt[1]:.2f} max {self.rtt[2]:.2f}"
        )

    def gaps(self) -> list[tuple[float, int]]:
        """Between each two replies in a row (``-D``): the seconds between them
        and how many sequence numbers went unanswered there, in reply order."""
        return [
            (b_ts - a_ts, b_seq - a_seq - 1)
            for (a_ts, a_seq), (b_ts, b_seq) in zip(self.replies, self.replies[1:], strict=False)
        ]


def parse_ping(output: str) -> Ping:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, output
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", output)
    replies = [
        (float(ts), int(seq))
        for ts, seq in re.findall(r"^\[([\d.]+)\] \d+ bytes from .*icmp_seq=(\d+)", output, re.M)
    ]
    return Ping(
        int(m.group(1)),
        int(m.group(2)),
        (float(rtt.group(1)), float(rtt.group(2)), float(rtt.group(3))) if rtt else None,
        [float(t) for t in re.findall(r"icmp_seq=\d+ ttl=\d+ time=([\d.]+)", output)],
        replies,
        output,
    )


def ping(netns: str, dst: str, count: int = 1, interval: float = 0.2, wait: float = 1) -> Ping:
    """``count`` pings from ``netns``; each reply may take up to ``wait`` seconds.

    ``-w`` (a deadline) rather than ``-W`` alone: once replies have been seen,
    ping otherwise waits only two round trips for the last one.  With ``-w``
    ping keeps sending until ``count`` replies are in, so a late reply can make
    it send (and get) one or two more: callers check ``received >= count``.
    """
    deadline = math.ceil(count * interval + wait)
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "ping", "-n", "-c", str(count), "-i", str(interval)]
        + ["-W", str(wait), "-w", str(deadline), dst],
        capture_output=True,
        text=True,
        timeout=deadline + 20,
    )
    return parse_ping(r.stdout + r.stderr)


def wait_ping(netns: str, dst: str, timeout: float = 15) -> float:
    """Ping from ``netns`` until ``dst`` answers; returns the seconds it took
    (raises WaitTimeout after ``timeout``)."""
    start = time.monotonic()
    wait_until(
        lambda: ping(netns, dst, wait=0.5).received > 0,
        timeout,
        f"a reply from {dst} in {netns}",
        poll=0.05,
    )
    return time.monotonic() - start


class Pinger:
    """``ping -D -i INTERVAL DST`` from ``netns`` in the background until
    :meth:`stop` (a context manager: killed on leaving, also after a failure)."""

    def __init__(self, netns: str, dst: str, interval: float = 0.01) -> None:
        self.interval = interval
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ping", "-n", "-D", "-i", str(interval)]
            + ["-W", "1", dst],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> Ping:
        """Stop it as ^C does and read what it printed."""
        try:
            self.proc.send_signal(signal.SIGINT)
            out, _ = self.proc.communicate(timeout=30)
        finally:
            self.kill()
        return parse_ping(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Pinger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
