"""The engine contract (xcon.engines.Engine), one set of tests run on every engine:
epoll, asyncio, uvloop (when installed) and the FakeEngine of the unit tests.

What a port or a bridge may count on: deferred calls run from the loop, first
in first out, after the timers due with them; timers in order of due time,
those due together in the order they were set, a cancelled one never;
``call_at`` never early on the engine's clock; ``call_every`` until cancelled
(also from its own callback); work handed to a thread or from another thread
comes back on the loop.  Descriptors and streams (real engines; the
FakeEngine refuses them): readiness, a hang-up reported with no interest set,
bytes into the port's buffer, one close.  Each test ends on an event that
comes after the one it checks, never on a wait for nothing to happen.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from xcon import engines
from xcon.engines import ERRORS, READ, Engine, Stream, make_engine
from xcon.engines.uvloop import AsyncioEngine
from xcon.framing import FrameBuffer, iter_frames
from xcon.testing.fakeport import FakeEngine
from xcon.testing.frames import encode_frames, ether
from xcon.testing.loop import run_until

#: ``call_later`` runs on the loop's own timers: libuv's millisecond clock, read
#: once per round, may let one fire up to a millisecond or so before ``time()``
#: says it is due.  ``call_at`` is the precise timer.
LATER_RESOLUTION = 0.002


def _make(name: str) -> Engine:
    if name == "fake":
        return FakeEngine()
    if name == "asyncio":
        return AsyncioEngine(use_uvloop=False)
    if name == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'xcon[uvloop]')")
    return make_engine(name)


@pytest.fixture(params=["epoll", "asyncio", "uvloop", "fake"])
def loop(request):
    eng = _make(request.param)
    yield eng
    eng.close()


def is_fake(loop: Engine) -> bool:
    return isinstance(loop, FakeEngine)


def on_loop(loop: Engine, fn) -> None:
    """Run ``fn`` from the loop, where ports and bridges set their timers."""
    loop.call_soon(fn)


# -- deferred calls -------------------------------------------------------------------


def test_deferred_calls_run_from_the_loop_first_in_first_out(loop):
    order: list[int] = []
    loop.call_soon(lambda: order.append(1))
    loop.call_soon(lambda: (order.append(2), loop.call_soon(lambda: order.append(4))))
    loop.call_soon(lambda: order.append(3))
    assert order == []  # never from inside call_soon
    run_until(loop, lambda: len(order) == 4, "the deferred calls")
    assert order == [1, 2, 3, 4]


def test_calls_deferred_by_a_timer_run_after_the_timers_due_with_it(loop):
    order: list[str] = []

    def first() -> None:
        order.append("t1")
        loop.call_soon(lambda: order.append("deferred"))

    def schedule() -> None:
        when = loop.time() + 0.01
        loop.call_at(when, first)
        loop.call_at(when, lambda: order.append("t2"))

    on_loop(loop, schedule)
    run_until(loop, lambda: len(order) == 3, "two timers and a deferred call")
    assert order == ["t1", "t2", "deferred"]


def test_a_call_from_another_thread_runs_on_the_loop(loop):
    ran_on: list[int] = []
    t = threading.Thread(
        target=lambda: loop.call_soon_threadsafe(lambda: ran_on.append(threading.get_ident()))
    )
    t.start()
    t.join()
    run_until(loop, lambda: bool(ran_on), "the call from another thread")
    assert ran_on == [threading.get_ident()]


def test_work_on_a_thread_hands_back_its_result_or_error_on_the_loop(loop):
    done: dict[str, tuple[object, object, int]] = {}

    def boom() -> object:
        raise ValueError("no")

    for name, fn in (("ok", lambda: 42), ("error", boom)):
        loop.run_in_thread(
            fn, lambda r, e, name=name: done.setdefault(name, (r, e, threading.get_ident()))
        )
    assert done == {}  # never from inside run_in_thread
    run_until(loop, lambda: len(done) == 2, "both results")
    me = threading.get_ident()
    assert done["ok"] == (42, None, me)
    result, error, thread = done["error"]
    assert result is None and isinstance(error, ValueError) and thread == me


@pytest.mark.parametrize("name", ["epoll", "asyncio", "uvloop"])
def test_work_that_ends_after_the_loop_closed_is_dropped_quietly(name, monkeypatch):
    """xcon stopping while a worker runs (a monitor's set_link, a reload):
    the outcome has no loop to go to, and the worker says nothing."""
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    # one worker: the second job runs once the first has handed its outcome back
    monkeypatch.setattr(engines, "_workers", engines._Workers(1))
    eng = _make(name)
    release, finished = threading.Event(), threading.Event()

    def job() -> object:
        release.wait(5)
        return 1

    eng.run_in_thread(job, lambda r, e: None)
    eng.run_in_thread(finished.set, lambda r, e: None)
    eng.close()
    release.set()
    finished.wait(5)
    assert finished.is_set() and raised == []


def test_stop_from_a_callback_returns_from_run_and_the_loop_runs_again(loop):
    ran: list[str] = []
    loop.call_soon(lambda: ran.append("before stop"))
    loop.call_soon(loop.stop)
    loop.run()
    assert ran == ["before stop"]
    loop.call_soon(lambda: ran.append("again"))
    run_until(loop, lambda: len(ran) == 2, "a call after run returned")


# -- timers ---------------------------------------------------------------------------


def test_timers_run_in_order_of_due_time_whatever_the_order_set(loop):
    # call_later (the loop's own timers) and call_at (the precise ones) each keep
    # their order; between the two kinds only a loop that is on time does.
    later: list[str] = []
    at: list[str] = []

    def schedule() -> None:
        now = loop.time()
        loop.call_later(0.03, lambda: later.append("c"))
        loop.call_at(now + 0.03, lambda: at.append("c"))
        loop.call_at(now + 0.02, lambda: at.append("b"))
        loop.call_later(0.01, lambda: later.append("a"))
        loop.call_later(0.02, lambda: later.append("b"))
        loop.call_at(now - 1.0, lambda: at.append("past"))
        loop.call_at(now + 0.01, lambda: at.append("a"))

    on_loop(loop, schedule)
    run_until(loop, lambda: len(later) + len(at) == 7, "seven timers")
    assert later == ["a", "b", "c"]
    assert at == ["past", "a", "b", "c"]


def test_timers_due_together_run_in_the_order_set(loop):
    order: list[int] = []

    def schedule() -> None:
        when = loop.time() + 0.01
        for i in range(5):
            loop.call_at(when, lambda i=i: order.append(i))

    on_loop(loop, schedule)
    run_until(loop, lambda: len(order) == 5, "five timers")
    assert order == [0, 1, 2, 3, 4]


def test_a_cancelled_timer_never_runs(loop):
    ran: list[str] = []

    def schedule() -> None:
        loop.call_later(0.01, lambda: ran.append("later")).cancel()
        loop.call_at(loop.time() + 0.01, lambda: ran.append("at")).cancel()
        loop.call_later(0.02, lambda: ran.append("after them"))

    on_loop(loop, schedule)
    run_until(loop, lambda: bool(ran), "the timer due after the cancelled ones")
    assert ran == ["after them"]


def test_call_at_is_never_early_on_the_engines_clock(loop):
    seen: dict[str, float] = {}
    set_at: list[float] = []

    def schedule() -> None:
        set_at.append(loop.time())
        loop.call_at(set_at[0] + 0.02, lambda: seen.setdefault("at", loop.time()))
        loop.call_later(0.02, lambda: seen.setdefault("later", loop.time()))

    on_loop(loop, schedule)
    run_until(loop, lambda: len(seen) == 2, "both timers")
    assert seen["at"] >= set_at[0] + 0.02
    assert seen["later"] >= set_at[0] + 0.02 - LATER_RESOLUTION


def test_the_clock_never_goes_back(loop):
    seen: list[float] = []
    loop.call_every(0.002, lambda: seen.append(loop.time()))
    run_until(loop, lambda: len(seen) >= 5, "five ticks")
    assert seen == sorted(seen) and seen[-1] > seen[0]


def test_call_every_repeats_at_its_interval_until_cancelled(loop):
    ticks: list[float] = []
    handle = loop.call_every(0.005, lambda: ticks.append(loop.time()))
    run_until(loop, lambda: len(ticks) >= 4, "four ticks")
    handle.cancel()
    n = len(ticks)
    ended: list[bool] = []
    loop.call_later(0.03, lambda: ended.append(True))  # six intervals later
    run_until(loop, lambda: bool(ended), "six intervals after the cancel")
    assert len(ticks) == n
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert min(gaps) >= 0.005 - LATER_RESOLUTION, gaps


def test_call_every_cancelled_from_its_own_callback_stops(loop):
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 2:
            handle.cancel()

    handle = loop.call_every(0.005, tick)
    ended: list[bool] = []
    loop.call_later(0.05, lambda: ended.append(True))  # ten intervals
    run_until(loop, lambda: bool(ended), "ten intervals")
    assert len(ticks) == 2


# -- descriptors and streams ----------------------------------------------------------


class Events:
    """A descriptor's handler: keeps each readiness mask."""

    def __init__(self) -> None:
        self.masks: list[int] = []

    def handle_event(self, events: int) -> None:
        self.masks.append(events)


def test_readiness_is_reported_and_a_hang_up_even_with_no_interest(loop):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        handler = Events()
        if is_fake(loop):
            with pytest.raises(NotImplementedError, match="no descriptors"):
                loop.register(a.fileno(), handler, READ)
            return
        reg = loop.register(a.fileno(), handler, READ)
        b.send(b"x")
        run_until(loop, lambda: any(m & READ for m in handler.masks), "readable")
        assert a.recv(10) == b"x"
        reg.set(0)
        handler.masks.clear()
        b.close()
        run_until(loop, lambda: any(m & ERRORS for m in handler.masks), "the hang-up")
        reg.close()


class StreamEnd:
    """What a port is to its stream: the buffer reads land in, and each event."""

    def __init__(self) -> None:
        self.inbuf = FrameBuffer()
        self.stream: Stream | None = None
        self.frames: list[bytes] = []
        self.closed: list[str] = []
        self.close_soon: Callable[[Callable[[], None]], None] = lambda fn: fn()

    def stream_opened(self, stream: Stream) -> None:
        self.stream = stream

    def stream_data(self, n: int) -> bool:
        buf = self.inbuf
        buf.filled(n)
        for off, length in iter_frames(buf.mv, buf.start, buf.ready):
            self.frames.append(bytes(buf.mv[off : off + length]))
        buf.consume(buf.pending)
        return True

    def stream_writable(self) -> None:
        pass

    def stream_closed(self, reason: str) -> None:
        self.closed.append(reason)
        if self.stream is not None:  # as a port does: closed from the loop soon after
            self.close_soon(self.stream.close)


def test_a_stream_reads_into_the_ports_buffer_sends_and_reports_one_close(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    end = StreamEnd()
    try:
        if is_fake(loop):
            with pytest.raises(NotImplementedError, match="no descriptors"):
                loop.open_stream(a, end)
            return
        end.close_soon = loop.call_soon
        loop.open_stream(a, end)
        run_until(loop, lambda: end.stream is not None, "the stream to open")
        sent = [ether(bytes([i]) * 60) for i in range(3)]
        b.sendall(encode_frames(sent))
        run_until(loop, lambda: len(end.frames) == 3, "three frames")
        assert end.frames == sent
        assert end.stream is not None
        out = encode_frames([ether(b"back")])
        assert end.stream.send(memoryview(out)) == len(out)
        b.settimeout(5)
        assert b.recv(len(out)) == out
        b.close()
        run_until(loop, lambda: bool(end.closed), "the close")
        loop.call_later(0.02, loop.stop)
        loop.run()  # later rounds: no second close
        assert len(end.closed) == 1, end.closed
    finally:
        a.close()
        b.close()
        end.inbuf.close()
