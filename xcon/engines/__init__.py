"""Engines: the readiness loop that drives every port, and the contract both
engines satisfy.

An :class:`Engine` owns the loop: file descriptors and their interest masks
(:meth:`Engine.register`), connected stream sockets (:meth:`Engine.open_stream`,
the one place where the engines differ in how bytes move), timers, signals and
work handed to a thread.  Ports are written against this protocol only, so a
port runs unchanged on either engine:

* :mod:`xcon.engines.epoll` (default): level-triggered epoll, the port's
  stream is a non-blocking socket read and written by the loop itself;
* :mod:`xcon.engines.uvloop`: asyncio on uvloop, the stream is a transport
  with a ``BufferedProtocol`` reading straight into the port's frame buffer.

A stream reports to its port through :class:`StreamEvents`; the port turns
bytes into whole frames and hands them to its bridge.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from xcon.framing import FrameBuffer

__all__ = [
    "ERRORS",
    "READ",
    "WRITE",
    "Callback",
    "Engine",
    "Handler",
    "Registration",
    "Stream",
    "StreamEvents",
    "Timer",
    "TimerHandle",
    "make_engine",
    "run_in_thread",
]

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
#: Reported whatever the interest mask (a paused reader whose peer hung up).
ERRORS = select.EPOLLERR | select.EPOLLHUP
#: Reads per readiness event before yielding to other links.
READS_PER_EVENT = 4
#: Reads shorter than this renew TCP_QUICKACK (see :func:`quickack`).
QUICKACK_BELOW = 16 * 1024
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


class Handler(Protocol):
    """Something that handles readiness events of one descriptor."""

    def handle_event(self, events: int) -> None: ...


class Callback:
    """A readiness handler that just calls ``fn()`` (accepting, connect completion)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def handle_event(self, events: int) -> None:
        self.fn()


class Registration(Protocol):
    """A descriptor's place in the loop."""

    def set(self, mask: int) -> None:
        """Watch for ``mask`` (READ | WRITE); ERRORS are always reported."""

    def close(self) -> None:
        """Stop watching (before the descriptor is closed)."""


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class StreamEvents(Protocol):
    """What a connected stream reports to its port."""

    @property
    def inbuf(self) -> FrameBuffer:
        """Where reads land (``inbuf.room()``)."""

    def stream_opened(self, stream: Stream) -> None:
        """The stream is ready for I/O."""

    def stream_data(self, n: int) -> bool:
        """``n`` bytes landed in ``inbuf.room()``; returns whether to go on reading now."""

    def stream_writable(self) -> None:
        """A send that was cut short has drained: more may go."""

    def stream_closed(self, reason: str) -> None:
        """The stream ended (EOF, reset, error) or could not be set up."""


class Stream(Protocol):
    """A connected byte stream as a port sees it (a socket or a transport)."""

    def send(self, view: memoryview) -> int:
        """Send from ``view``; returns the bytes the caller may reuse now (0 when
        none).  Never raises: a broken stream reports ``stream_closed``."""

    def set_reading(self, on: bool) -> None: ...

    def set_writing(self, on: bool) -> None:
        """Ask for ``stream_writable`` once a cut-short send can go on."""

    def close(self) -> None: ...


class Engine(Protocol):
    """The loop every port and bridge runs on (see the module docstring)."""

    name: str

    def register(self, fd: int, handler: Handler, mask: int) -> Registration: ...

    def open_stream(self, sock: socket.socket, events: StreamEvents) -> None:
        """Take over connected non-blocking ``sock``; ``events.stream_opened``
        follows (at once or from the loop), or ``events.stream_closed``."""

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` from the loop, after the current event's handlers."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...

    def time(self) -> float:
        """The loop's clock, seconds (``CLOCK_MONOTONIC`` on real engines)."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` at :meth:`time` ``when``, precisely (a timerfd, not
        epoll's millisecond timeout): the delay line's timer."""
        ...

    def call_every(self, interval: float, callback: Callable[[], None]) -> TimerHandle: ...

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None: ...

    def run_in_thread(
        self, fn: Callable[[], object], done: Callable[[object, BaseException | None], None]
    ) -> None:
        """Run blocking ``fn`` on a thread; ``done(result, error)`` runs on the loop."""

    def add_signal_handler(self, signum: int, callback: Callable[[int], None]) -> None: ...

    def stop(self) -> None: ...

    def run(self) -> None: ...

    def close(self) -> None: ...


class EngineUnavailable(RuntimeError):
    """The engine's event loop library is not installed."""


ENGINES = ("epoll", "uvloop")


def make_engine(name: str) -> Engine:
    """The engine called ``name``; raises EngineUnavailable or ValueError."""
    if name == "epoll":
        from xcon.engines.epoll import EpollEngine

        return EpollEngine()
    if name == "uvloop":
        from xcon.engines.uvloop import AsyncioEngine

        return AsyncioEngine()
    raise ValueError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")


#: Most threads that run blocking calls (name lookups) for the loop at once.
WORKERS_MAX = 256
#: A worker with nothing to do for this long ends.
WORKER_IDLE = 10.0


class _Workers:
    """Daemon threads for blocking calls: an idle one takes the next job, a new one
    starts only when none is idle (up to ``size``), and one idle for
    :data:`WORKER_IDLE` seconds ends.  Thousands of quick lookups a second then
    cost no thread creation, while a resolver that stalls some lookups for
    seconds still leaves threads for the others."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.threads = 0
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            if self.idle > 0:
                self.idle -= 1  # claimed: the next idle worker takes it
            elif self.threads < self.size:
                self.threads += 1
                threading.Thread(target=self._work, name="xcon-worker", daemon=True).start()
        self.jobs.put(job)

    def _work(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=WORKER_IDLE)
            except queue.Empty:
                with self.lock:
                    if self.idle > 0:
                        self.idle -= 1
                        self.threads -= 1
                        return
                continue  # a job was promised to this worker: wait for it
            job()
            with self.lock:
                self.idle += 1


_workers = _Workers(WORKERS_MAX)


def run_in_thread(
    call_soon_threadsafe: Callable[[Callable[[], None]], None],
    fn: Callable[[], object],
    done: Callable[[object, BaseException | None], None],
) -> None:
    """Run blocking ``fn`` on a worker thread; ``done(result, error)`` runs on the loop."""

    def work() -> None:
        try:
            result, err = fn(), None
        except BaseException as e:  # noqa: BLE001 - handed back to the loop
            result, err = None, e
        try:
            call_soon_threadsafe(lambda: done(result, err))
        except (OSError, RuntimeError):  # the loop closed meanwhile: nothing waits for it
            pass

    _workers.submit(work)


def quickack(sock: socket.socket) -> None:
    """Acknowledge at once rather than after the delayed-ACK timer.

    qemu leaves Nagle on for its socket netdev: after a small frame it holds
    the next one until that frame is acknowledged, so a delayed ACK from us
    (up to 40 ms) would become latency and jitter on the link.  Linux drops out
    of quick-ACK mode by itself, so this is renewed after each small read;
    large reads mean a busy link, where ACKs go out anyway."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
    except OSError:
        pass


def socket_error(sock: socket.socket) -> str:
    """The pending error of ``sock`` as a name (``ECONNRESET``), or ``hang-up``."""
    import errno

    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError:
        return "hang-up"
    return errno.errorcode.get(err, "hang-up") if err else "hang-up"


class Timer:
    """A scheduled callback of the engines' own timer heaps (epoll, uvloop):
    :meth:`cancel` makes it a no-op.

    The heap holds ``(when, seq, timer)`` tuples, so ordering is compared in C
    (a lab with many ports down keeps thousands of retry timers)."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
