"""Driving an engine from a test: a recording bridge and loop helpers.

:class:`Recorder` stands in for a bridge and keeps what a port reports;
:func:`run_until` turns an engine's loop until a condition holds (or fails
after :data:`TIMEOUT` seconds), on a real engine or on a
:class:`~xcon.testing.fakeport.FakeEngine` (timer by timer on its own clock).
Used by the shared port suite (``tests/integration/test_port_suite.py``), the
engine contract (``tests/unit/test_engines.py``) and per-kind port tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from xcon.engines import Engine
from xcon.framing import iter_frames
from xcon.ports import Port
from xcon.testing.fakeport import FakeEngine
from xcon.testing.frames import encode_frames
from xcon.testing.wait import WaitTimeout

__all__ = ["TIMEOUT", "Recorder", "run_for", "run_until"]

TIMEOUT = 5.0


class Recorder:
    """A bridge that keeps what it is told: events, frames, zero-length drops.

    ``queue`` holds bytes to send to the port, sent as a bridge would (what
    does not go now waits for ``writable``)."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.frames: list[bytes] = []
        self.zero = 0
        self.queue = bytearray()
        self.port: Port | None = None

    def port_up(self, port: Port) -> None:
        self.events.append("up")
        self.flush()

    def port_down(self, port: Port, reason: str) -> None:
        self.events.append(("down", reason))

    def received(self, port: Port) -> None:
        buf = port.inbuf
        self.zero += buf.take_zero_frames()
        for off, n in iter_frames(buf.mv, buf.start, buf.ready):
            self.frames.append(bytes(buf.mv[off : off + n]))
        buf.consume(buf.pending)

    def writable(self, port: Port) -> None:
        self.flush()

    def port_state(self, port: Port) -> None:
        self.events.append("state")

    def send(self, frames: list[bytes]) -> None:
        self.queue += encode_frames(frames)
        self.flush()

    def flush(self) -> None:
        port = self.port
        if port is None or not port.up or not self.queue:
            return
        n = port.send(memoryview(self.queue))
        del self.queue[:n]
        port.set_writing(bool(self.queue))

    @property
    def ups(self) -> int:
        return self.events.count("up")

    @property
    def downs(self) -> list[str]:
        return [e[1] for e in self.events if isinstance(e, tuple)]


def run_until(engine: Engine, cond: Callable[[], bool], what: str) -> None:
    """Turn the loop until ``cond()`` holds; fail after TIMEOUT seconds (on a
    FakeEngine: when nothing is scheduled any more, or after TIMEOUT seconds of
    its clock)."""
    if isinstance(engine, FakeEngine):
        _step_until(engine, cond, what)
        return
    deadline = time.monotonic() + TIMEOUT
    timed_out = []

    def check() -> None:
        if cond():
            engine.stop()
        elif time.monotonic() > deadline:
            timed_out.append(True)
            engine.stop()

    ticker = engine.call_every(0.002, check)
    try:
        if not cond():
            engine.run()
    finally:
        ticker.cancel()
    if timed_out:
        raise WaitTimeout(f"timed out after {TIMEOUT:g} s waiting for {what}")


def _step_until(engine: FakeEngine, cond: Callable[[], bool], what: str) -> None:
    deadline = engine.now + TIMEOUT
    while not cond():
        if engine.now > deadline:
            raise WaitTimeout(f"timed out after {TIMEOUT:g} s (fake clock) waiting for {what}")
        if not engine.step():
            raise WaitTimeout(f"nothing left to run while waiting for {what}")


def run_for(engine: Engine, seconds: float) -> None:
    """Turn the loop for ``seconds`` of its clock."""
    if isinstance(engine, FakeEngine):
        engine.run_until(engine.now + seconds)
        return
    end = time.monotonic() + seconds
    run_until(engine, lambda: time.monotonic() >= end, "time to pass")
