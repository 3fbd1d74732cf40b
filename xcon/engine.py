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
* Timers live in a heap; the poll timeout is the time to the nearest one.
* Signals arrive through ``signal.set_wakeup_fd`` on a socket pair, so a
  SIGTERM during ``epoll.poll`` is handled by the loop itself, between batches,
  never inside a half-done forward.
* Work finished on another thread (name resolution) comes back through the
  same wake-up socket with :meth:`EpollEngine.call_soon_threadsafe`.
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
from typing import Protocol

log = logging.getLogger("xcon.engine")

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
_ERRORS = select.EPOLLERR | select.EPOLLHUP


class Handler(Protocol):
    def handle_event(self, events: int) -> None: ...


class Callback:
    """A readiness handler that just calls ``fn()`` (accepting, connect completion)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def handle_event(self, events: int) -> None:
        self.fn()


def run_in_thread(
    call_soon_threadsafe: Callable[[Callable[[], None]], None],
    fn: Callable[[], object],
    done: Callable[[object, BaseException | None], None],
) -> None:
    """Run blocking ``fn`` on a daemon thread; ``done(result, error)`` runs on the loop."""

    def work() -> None:
        try:
            result, err = fn(), None
        except BaseException as e:  # noqa: BLE001 - handed back to the loop
            result, err = None, e
        call_soon_threadsafe(lambda: done(result, err))

    threading.Thread(target=work, name="xcon-resolve", daemon=True).start()


class Timer:
    """A scheduled callback; :meth:`cancel` makes it a no-op."""

    __slots__ = ("when", "seq", "callback", "cancelled")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


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
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._running = False
        self._soon: deque[Callable[[], None]] = deque()
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._old_wakeup = -1
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_lock = threading.Lock()
        self._ep.register(self._wake_r.fileno(), READ)

    # -- file descriptors ------------------------------------------------------------
    def register(self, fd: int, handler: Handler, mask: int) -> Registration:
        self._ep.register(fd, mask)
        self._handlers[fd] = handler
        return Registration(self, fd, mask)

    def _unregister(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- time ---------------------------------------------------------------------
    @staticmethod
    def time() -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        t = Timer(time.monotonic() + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, t)
        return t

    def call_every(self, interval: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` every ``interval`` seconds; cancel the returned timer to stop."""
        handle = Timer(0.0, -1, callback)

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
        """Run blocking ``fn`` on a daemon thread; ``done(result, error)`` runs on the loop."""

        def work() -> None:
            try:
                result, err = fn(), None
            except BaseException as e:  # noqa: BLE001 - handed back to the loop
                result, err = None, e
            self.call_soon_threadsafe(lambda: done(result, err))

        threading.Thread(target=work, name="xcon-resolve", daemon=True).start()

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
        while self._running:
            timeout = -1.0
            if timers:
                timeout = max(0.0, timers[0].when - monotonic())
            events = ep_poll(timeout, 256)
            for fd, ev in events:
                if fd == wake_fd:
                    self._drain_wakeups()
                    continue
                h = handlers.get(fd)
                if h is not None:
                    h.handle_event(ev)
            if timers:
                now = monotonic()
                while timers and timers[0].when <= now:
                    t = heapq.heappop(timers)
                    if not t.cancelled:
                        t.callback()

    def close(self) -> None:
        if self._signal_handlers:
            for signum in self._signal_handlers:
                signal.signal(signum, signal.SIG_DFL)
            signal.set_wakeup_fd(self._old_wakeup)
            self._signal_handlers.clear()
        self._ep.close()
        self._wake_r.close()
        self._wake_w.close()


def _ignore(signum: int, frame: object) -> None:
    """Python-level handler: the real work happens on the loop via the wake-up fd."""


ERRORS = _ERRORS
