"""The epoll reactor: one thread, level-triggered readiness, timers, signals.

How this loop uses epoll, and why:

* Every file descriptor is registered once, when its socket is created, with
  the events its owner wants.  Interest is changed with ``epoll.modify`` only
  when it actually changes (a port stops reading because its peer is
  backlogged, or starts waiting for writability): :class:`Registration` keeps
  the last mask so the common case costs no system call.
* Level-triggered mode: a handler may do one bounded batch of work per wake-up
  and leave the rest for the next round, which keeps one busy link from
  starving the others and needs no "drain until EAGAIN" discipline.
* ``EPOLLHUP`` and ``EPOLLERR`` are reported even for a descriptor whose
  interest mask is empty (a paused reader whose peer hung up), so handlers must
  act on them rather than ignore them, or the loop would spin.
* Timers live in a heap; the poll timeout is the time to the nearest one,
  and a ``timerfd`` armed at that time (:mod:`xcon.engines.timerfd`) wakes
  the poll on time: epoll's own timeout has millisecond resolution, a delay
  line (:mod:`xcon.bridges.impair`) needs tens of microseconds.
* Signals arrive through ``signal.set_wakeup_fd`` on a socket pair, so a
  SIGTERM during ``epoll.poll`` is handled by the loop itself, between batches,
  never inside a half-done forward.
* Work finished on another thread (name resolution) comes back through the
  same wake-up socket with :meth:`EpollEngine.call_soon_threadsafe`.
* :meth:`EpollEngine.call_soon` callbacks run after the handlers of the
  current round (before the next poll): a port that fails inside a bridge's
  send goes down from there, never in the middle of the bridge's work.
* A connected stream socket is a :class:`SocketStream`: it reads straight into
  its port's frame buffer (a bounded batch per event) and sends with one
  ``send`` per call.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from socket import IPPROTO_TCP

from xcon.engines import (
    ERRORS,
    QUICKACK_BELOW,
    READ,
    READS_PER_EVENT,
    TCP_QUICKACK,
    WRITE,
    Handler,
    StreamEvents,
    Timer,
    run_in_thread,
    socket_error,
)
from xcon.engines.timerfd import TimerFd, set_timer_slack

log = logging.getLogger("xcon.engine")


class Registration:
    """An fd's place in the loop; remembers its mask so modify() is only called on change."""

    __slots__ = ("engine", "fd", "mask")

    def __init__(self, engine: EpollEngine, fd: int, mask: int) -> None:
        self.engine = engine
        self.fd = fd
        self.mask = mask

    def set(self, mask: int) -> None:
        if mask != self.mask:
            self.mask = mask
            self.engine._ep.modify(self.fd, mask)

    def close(self) -> None:
        self.engine._unregister(self.fd)


class EpollEngine:
    """Readiness loop for every port of the process."""

    name = "epoll"

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._running = False
        self._soon: deque[Callable[[], None]] = deque()
        self._ready: deque[Callable[[], None]] = deque()
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._old_wakeup = -1
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_lock = threading.Lock()
        self._ep.register(self._wake_r.fileno(), READ)
        self._tfd = TimerFd()
        self._ep.register(self._tfd.fd, READ)

    # -- file descriptors ------------------------------------------------------------
    def register(self, fd: int, handler: Handler, mask: int) -> Registration:
        self._ep.register(fd, mask)
        self._handlers[fd] = handler
        return Registration(self, fd, mask)

    def open_stream(self, sock: socket.socket, events: StreamEvents) -> None:
        events.stream_opened(SocketStream(self, sock, events))

    def _unregister(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- time ---------------------------------------------------------------------
    def time(self) -> float:
        """The loop's clock (``time.monotonic``)."""
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        t = Timer(callback)
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), t))
        return t

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` at :meth:`time` ``when`` (tens of microseconds late at most)."""
        t = Timer(callback)
        heapq.heappush(self._timers, (when, next(self._seq), t))
        return t

    def call_every(self, interval: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` every ``interval`` seconds; cancel the returned timer to stop."""
        handle = Timer(callback)

        def tick() -> None:
            if handle.cancelled:
                return
            callback()
            self.call_later(interval, tick)

        self.call_later(interval, tick)
        return handle

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        with self._wake_lock:
            self._soon.append(callback)
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def run_in_thread(
        self, fn: Callable[[], object], done: Callable[[object, BaseException | None], None]
    ) -> None:
        run_in_thread(self.call_soon_threadsafe, fn, done)

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._ready.append(callback)

    # -- signals ------------------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callable[[int], None]) -> None:
        if not self._signal_handlers:
            self._old_wakeup = signal.set_wakeup_fd(
                self._wake_w.fileno(), warn_on_full_buffer=False
            )
        self._signal_handlers[signum] = callback
        signal.signal(signum, _ignore)

    def _drain_wakeups(self) -> None:
        try:
            data = self._wake_r.recv(4096)
        except BlockingIOError:
            data = b""
        for b in data:
            cb = self._signal_handlers.get(b)
            if cb is not None:
                cb(b)
        with self._wake_lock:
            soon, self._soon = self._soon, deque()
        for fn in soon:
            fn()

    # -- the loop -----------------------------------------------------------------
    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        self._running = True
        ep_poll = self._ep.poll
        handlers = self._handlers
        timers = self._timers
        wake_fd = self._wake_r.fileno()
        monotonic = time.monotonic
        ready = self._ready
        tfd = self._tfd
        tfd_fd = tfd.fd
        set_timer_slack()
        while self._running:
            timeout = -1.0
            if ready:
                timeout = 0.0
            elif timers:
                head = timers[0][0]
                timeout = max(0.0, head - monotonic())
                if timeout and head != tfd.armed:
                    tfd.arm(head)
            events = ep_poll(timeout, 256)
            for fd, ev in events:
                if fd == wake_fd:
                    self._drain_wakeups()
                    continue
                if fd == tfd_fd:
                    tfd.clear()
                    continue
                h = handlers.get(fd)
                if h is not None:
                    h.handle_event(ev)
            while ready:
                ready.popleft()()
            if timers:
                now = monotonic()
                while timers and timers[0][0] <= now:
                    t = heapq.heappop(timers)[2]
                    if not t.cancelled:
                        t.callback()

    def close(self) -> None:
        if self._signal_handlers:
            for signum in self._signal_handlers:
                signal.signal(signum, signal.SIG_DFL)
            signal.set_wakeup_fd(self._old_wakeup)
            self._signal_handlers.clear()
        self._ep.close()
        self._tfd.close()
        self._wake_r.close()
        self._wake_w.close()


def _ignore(signum: int, frame: object) -> None:
    """Python-level handler: the real work happens on the loop via the wake-up fd."""


class SocketStream:
    """A connected non-blocking stream socket driven by the epoll loop.

    Reads land in the port's frame buffer (``events.inbuf.room()``), a bounded
    batch per readiness event; the port says after each read whether to go
    on.  Sends are one ``send`` of the span; what the kernel does not take
    stays with the caller, who asks for writability."""

    __slots__ = (
        "sock",
        "events",
        "reg",
        "_reading",
        "_writing",
        "_closed",
        "_recv_into",
        "_send",
        "_setsockopt",
    )

    def __init__(self, engine: EpollEngine, sock: socket.socket, events: StreamEvents) -> None:
        self.sock = sock
        self.events = events
        self._reading = True
        self._writing = False
        self._closed = False
        self._recv_into = sock.recv_into
        self._send = sock.send
        self._setsockopt = sock.setsockopt
        self.reg = engine.register(sock.fileno(), self, READ)

    def _update(self) -> None:
        if not self._closed:
            self.reg.set((READ if self._reading else 0) | (WRITE if self._writing else 0))

    def set_reading(self, on: bool) -> None:
        if on != self._reading:
            self._reading = on
            self._update()

    def set_writing(self, on: bool) -> None:
        if on != self._writing:
            self._writing = on
            self._update()

    def send(self, view: memoryview) -> int:
        if self._closed:
            return 0
        try:
            return self._send(view)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            self._broken(e.strerror or str(e))
            return 0

    def _broken(self, reason: str) -> None:
        self._reading = self._writing = False
        self._update()
        self.events.stream_closed(reason)

    def handle_event(self, events: int) -> None:
        if self._closed:
            return
        ev = self.events
        if events & READ:
            buf = ev.inbuf
            recv_into = self._recv_into
            for _ in range(READS_PER_EVENT):
                room = buf.room()
                try:
                    n = recv_into(room)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    self._broken(e.strerror or str(e))
                    return
                if n == 0:
                    self._broken("connection closed by peer")
                    return
                if n < QUICKACK_BELOW:
                    try:  # quickack(), without the call: once per small read
                        self._setsockopt(IPPROTO_TCP, TCP_QUICKACK, 1)
                    except OSError:
                        pass
                if not ev.stream_data(n) or n < len(room):
                    break
            if self._closed:
                return
        if events & WRITE and self._writing:
            ev.stream_writable()
            if self._closed:
                return
        if events & ERRORS and not events & READ:
            self._broken(socket_error(self.sock))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.reg.close()
        try:
            self.sock.close()
        except OSError:
            pass
