"""A port without a descriptor and an engine without a loop, for testing bridges
(and later stages inside links) with no sockets at all.

:class:`FakePort` behaves as a real port does toward its bridge: frames the
test feeds land in its own :class:`~xcon.framing.FrameBuffer` and are handed
on with ``received``; ``send`` takes at most :attr:`FakePort.capacity` bytes
(set it per call, or ``None`` for all), records them, and reports a broken
send by failing from the loop afterwards, as real ports do.  Up and down are
switches.  :class:`FakeEngine` runs what ports defer (``call_soon``) when the
test says so, and timers when the test advances its clock.
"""

from __future__ import annotations

import heapq
import itertools
import socket
from collections import deque
from collections.abc import Callable, Iterable

from xcon.engines import Handler, Registration, StreamEvents, TimerHandle
from xcon.framing import TOO_BIG
from xcon.limits import MAX_FRAME
from xcon.ports import Port
from xcon.testing.frames import encode_frames, split_frames

__all__ = ["FakeEngine", "FakePort"]


class _Timer:
    __slots__ = ("when", "seq", "callback", "cancelled")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when, self.seq, self.callback, self.cancelled = when, seq, callback, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class FakeEngine:
    """An :class:`~xcon.engines.Engine` whose loop the test turns by hand.

    Its clock (:attr:`now`) moves only when the test says so; otherwise it keeps
    the real engines' order (``tests/unit/test_engines.py`` holds it to it):
    deferred calls run first in, first out, after the timers due at the same
    time; timers run in order of due time, those due together in the order they
    were set.  :meth:`run` runs what is ready and returns (it never waits);
    :func:`xcon.testing.loop.run_until` turns it timer by timer instead.
    """

    name = "fake"

    def __init__(self) -> None:
        self.now = 0.0
        self.soon: deque[Callable[[], None]] = deque()
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self.stopped = False

    def run_soon(self) -> int:
        """Run what was deferred with :meth:`call_soon` (and what that defers); how many."""
        n = 0
        while self.soon:
            self.soon.popleft()()
            n += 1
        return n

    def _fire_due(self) -> None:
        """Run the timers due by :attr:`now`, then what they deferred (and again,
        while that sets timers already due): a real engine's round after a wake-up."""
        self.run_soon()
        while self._timers and self._timers[0].when <= self.now:
            while self._timers and self._timers[0].when <= self.now:
                t = heapq.heappop(self._timers)
                if not t.cancelled:
                    t.callback()
            self.run_soon()

    def advance(self, seconds: float) -> None:
        """Move the clock on at once, running due timers and deferred calls (as an
        engine that woke up late: every overdue timer in one round)."""
        self.now += seconds
        self._fire_due()

    def _next_due(self) -> float | None:
        """When the nearest live timer is due (cancelled ones are dropped)."""
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return timers[0].when if timers else None

    def run_until(self, when: float) -> None:
        """Move the clock to ``when`` timer by timer: the timers due at the same
        time run together with the clock at that time (as a precise engine runs
        them), then deferred calls."""
        while (due := self._next_due()) is not None and due <= when:
            self.now = max(self.now, due)
            self._fire_due()
        self.now = max(self.now, when)
        self.run_soon()

    def step(self) -> bool:
        """One round: what was deferred, else the nearest timers with the clock
        moved to their time.  False when nothing at all is scheduled."""
        if self.soon:
            self.run_soon()
            return True
        due = self._next_due()
        if due is None:
            return False
        self.run_until(due)
        return True

    # -- Engine ---------------------------------------------------------------------
    def register(self, fd: int, handler: Handler, mask: int) -> Registration:
        raise NotImplementedError("FakeEngine has no descriptors")

    def open_stream(self, sock: socket.socket, events: StreamEvents) -> None:
        raise NotImplementedError("FakeEngine has no descriptors")

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        t = _Timer(self.now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, t)
        return t

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        t = _Timer(when, next(self._seq), callback)
        heapq.heappush(self._timers, t)
        return t

    def call_every(self, interval: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _Timer(0.0, -1, callback)

        def tick() -> None:
            if not handle.cancelled:
                callback()
                self.call_later(interval, tick)

        self.call_later(interval, tick)
        return handle

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def run_in_thread(
        self, fn: Callable[[], object], done: Callable[[object, BaseException | None], None]
    ) -> None:
        try:
            result, err = fn(), None
        except BaseException as e:  # noqa: BLE001 - handed back as a real engine does
            result, err = None, e
        self.soon.append(lambda: done(result, err))

    def add_signal_handler(self, signum: int, callback: Callable[[int], None]) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> None:
        self.run_soon()

    def close(self) -> None:
        pass


class FakePort(Port):
    """A link end driven by the test (see the module docstring)."""

    def __init__(self, engine: FakeEngine, name: str) -> None:
        super().__init__(engine, name)
        self.fake_engine = engine
        #: Bytes the following sends may take in all (None: no limit).
        self.capacity: int | None = None
        #: Everything sent to this port, in order.
        self.sent = bytearray()
        #: Length of the view offered by each send call.
        self.offers: list[int] = []
        #: (engine time, length of ``sent`` after it) for each send that took bytes.
        self.send_times: list[tuple[float, int]] = []
        #: The next send breaks the port with this reason.
        self.break_next_send: str | None = None
        #: Set while the port is inside ``owner.received`` (to catch re-entry).
        self.in_received = False

    # -- switches -----------------------------------------------------------------------
    def start(self) -> None:
        self._closed = False
        self.set_up()

    def set_up(self) -> None:
        """Connect (``port_up``)."""
        if not self.up:
            self._became_up()

    def set_down(self, reason: str = "pulled") -> None:
        """Break and let the loop take the port down (``port_down``)."""
        self.fail(reason)
        self.fake_engine.run_soon()

    @property
    def reading(self) -> bool:
        return self._reading

    @property
    def writing(self) -> bool:
        return self._writing

    # -- input ------------------------------------------------------------------------
    def feed(self, data: bytes) -> int:
        """Bytes arrive, as one read: whole frames go to the owner.  Returns the
        FrameBuffer status; an oversized length fails the port (as a stream port)."""
        if not self.up or self._failing is not None:
            raise AssertionError(f"{self.name}: fed while down")
        if not self._reading:
            raise AssertionError(f"{self.name}: fed while paused (a real port would not read)")
        buf = self.inbuf
        room = buf.room()
        if len(data) > len(room):
            raise AssertionError(f"{self.name}: {len(data)} bytes do not fit in one read")
        room[: len(data)] = data
        status = buf.filled(len(data))
        if buf.nready or buf.zero_frames:
            assert self.owner is not None
            self.in_received = True
            try:
                self.owner.received(self)
            finally:
                self.in_received = False
        if status == TOO_BIG:
            self.protocol_error(f"frame length {buf.bad_length()} exceeds {MAX_FRAME}")
        return status

    def feed_frames(self, frames: Iterable[bytes]) -> int:
        return self.feed(encode_frames(frames))

    # -- output -----------------------------------------------------------------------
    def send(self, view: memoryview) -> int:
        self.offers.append(len(view))
        if not self.up or self._failing is not None:
            return 0
        if self.break_next_send is not None:
            reason, self.break_next_send = self.break_next_send, None
            self.fail(reason)
            return 0
        n = len(view) if self.capacity is None else min(self.capacity, len(view))
        if self.capacity is not None:
            self.capacity -= n
        self.sent += view[:n]
        if n:
            self.send_times.append((self.fake_engine.now, len(self.sent)))
        return n

    def drain(self, capacity: int | None = None) -> None:
        """The peer read: allow ``capacity`` more bytes and report writability."""
        self.capacity = capacity
        if self._writing and self.owner is not None:
            self.owner.writable(self)

    def sent_frames(self) -> list[bytes]:
        return split_frames(self.sent)

    # -- Port hooks ---------------------------------------------------------------------
    def _interest(self) -> None:
        pass

    def _quiet(self) -> None:
        pass

    def _release(self) -> None:
        pass
