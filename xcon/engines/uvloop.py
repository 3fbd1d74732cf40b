"""The second engine: the same ports and bridges on an asyncio loop (uvloop).

A port's stream (a qemu connection, an accepted client) is a transport here,
wrapped in a :class:`TransportStream`, instead of a socket read by the loop:

* **Reading** goes through :class:`asyncio.BufferedProtocol`: ``get_buffer``
  hands the transport the free space of the port's own
  :class:`~xcon.framing.FrameBuffer`, ``buffer_updated(n)`` tells the port
  that ``n`` bytes landed there (``stream_data``), exactly as the epoll
  engine's socket stream does.  No allocation per read.
* **Writing** hands ``transport.write`` a memoryview of the bridge's buffer
  (zero copy).  A transport that cannot send everything at once keeps a
  reference to the unsent part of *that memory* (uvloop does not copy), so the
  port reports nothing released until the transport has drained: the bridge
  then treats the destination as blocked, stops reading the source and does not
  touch the bytes being sent.  The write-buffer high water mark is 0, so
  ``resume_writing`` arrives exactly when the transport has drained, and the
  port then releases the bytes and tells the bridge it may go on.

Everything that is not a stream (tap and packet sockets, datagram sockets,
listening sockets, connects in progress) uses the same small interface as the
epoll engine, ``register(fd, handler, mask)``, and the same epoll semantics:
those descriptors are in an epoll set of this engine's own, which the loop
watches as one readable descriptor (each readiness runs one ``epoll_wait(0)``
and dispatches).  Not ``add_reader``/``add_writer``: libuv treats ``EPOLLERR``
on a watched descriptor as fatal and silently stops watching it, so a UDP
socket's ICMP error or a packet socket's "network down" would leave the port
deaf; here errors reach the port, as on the epoll engine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import select
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from xcon.engines import (
    QUICKACK_BELOW,
    READ,
    Callback,
    EngineUnavailable,
    Handler,
    StreamEvents,
    Timer,
    TimerHandle,
    quickack,
    run_in_thread,
)

if TYPE_CHECKING:
    from xcon.engines.timerfd import TimerFd

__all__ = ["AsyncioEngine", "EngineUnavailable", "TransportStream"]


class AioRegistration:
    """An fd in the engine's own epoll set; mirrors the epoll Registration."""

    __slots__ = ("engine", "fd", "handler", "mask")

    def __init__(self, engine: AsyncioEngine, fd: int, handler: Handler, mask: int) -> None:
        self.engine = engine
        self.fd = fd
        self.handler = handler
        self.mask = mask
        engine._fds.register(fd, mask)
        engine._handlers[fd] = handler

    def set(self, mask: int) -> None:
        if mask != self.mask:
            self.engine._fds.modify(self.fd, mask)
            self.mask = mask

    def close(self) -> None:
        engine = self.engine
        if engine._handlers.get(self.fd) is self.handler:
            del engine._handlers[self.fd]
            try:
                engine._fds.unregister(self.fd)
            except (OSError, ValueError):
                pass


class _Transport(Protocol):
    """What a stream uses of an asyncio/uvloop transport."""

    def write(self, data: memoryview) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...
    def get_extra_info(self, name: str) -> Any: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abort(self) -> None: ...


class TransportStream(asyncio.BufferedProtocol):
    """A port's stream on a transport: the protocol and the port's send side.

    ``send`` hands the transport a view of the caller's memory.  If the
    transport cannot send it all at once it keeps a reference to that memory
    (uvloop does not copy), so nothing is reported released until it has
    drained (high water mark 0: ``resume_writing`` means drained); the caller
    meanwhile treats the stream as blocked and leaves those bytes alone."""

    def __init__(self, events: StreamEvents) -> None:
        self.events = events
        self.transport: _Transport | None = None
        self.sock: socket.socket | None = None
        self.active = True
        self._held = 0  # bytes the transport still holds from the last send()
        self._paused = False
        self._writing = False

    # -- asyncio.BufferedProtocol ------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.active:
            transport.abort()
            return
        transport.set_write_buffer_limits(high=0, low=0)
        self.sock = transport.get_extra_info("socket")
        self.events.stream_opened(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.events.inbuf.room()

    def buffer_updated(self, nbytes: int) -> None:
        if self.active:
            if nbytes < QUICKACK_BELOW and self.sock is not None:
                quickack(self.sock)
            self.events.stream_data(nbytes)

    def eof_received(self) -> bool:
        self._closed("connection closed by peer")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(str(exc) if exc else "connection closed")

    def pause_writing(self) -> None:
        pass  # send() notices held bytes itself (get_write_buffer_size)

    def resume_writing(self) -> None:
        if self.active and self._writing:
            self.events.stream_writable()

    def _closed(self, reason: str) -> None:
        if self.active:
            self.active = False
            self.events.stream_closed(reason)

    # -- Stream ------------------------------------------------------------------------
    def send(self, view: memoryview) -> int:
        t = self.transport
        if not self.active or t is None:
            return 0
        released = 0
        if self._held:
            if t.get_write_buffer_size():
                return 0
            released, self._held = self._held, 0
            view = view[released:]
            if not view:
                return released
        t.write(view)
        if not self.active:
            return released  # the write failed: the port goes down from the loop
        if t.get_write_buffer_size():
            self._held = len(view)
            return released
        return released + len(view)

    def set_reading(self, on: bool) -> None:
        t = self.transport
        if t is None or not self.active or on != self._paused:
            return
        self._paused = not on
        if on:
            t.resume_reading()
        else:
            t.pause_reading()

    def set_writing(self, on: bool) -> None:
        self._writing = on  # the transport calls resume_writing when it drains

    def close(self) -> None:
        self.active = False
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._held = 0


class AsyncioEngine:
    """Runs every port and bridge on one asyncio event loop (uvloop by default)."""

    def __init__(self, use_uvloop: bool = True) -> None:
        if use_uvloop:
            try:
                import uvloop
            except ImportError as e:
                raise EngineUnavailable(
                    "the uvloop engine needs the uvloop package (pip install 'xcon[uvloop]')"
                ) from e
            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            self.name = "uvloop"
        else:
            self.loop = asyncio.new_event_loop()
            self.name = "asyncio"
        self._signals: list[int] = []
        # Descriptors a port drives itself live in an epoll set of their own,
        # watched by the loop as one readable descriptor (see the module docstring).
        self._fds = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self.loop.add_reader(self._fds.fileno(), self._dispatch)
        self._tfd: TimerFd | None = None
        self._precise: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    # -- file descriptors ------------------------------------------------------------
    def register(self, fd: int, handler: Handler, mask: int) -> AioRegistration:
        return AioRegistration(self, fd, handler, mask)

    def _dispatch(self) -> None:
        handlers = self._handlers
        for fd, ev in self._fds.poll(0, 256):
            h = handlers.get(fd)
            if h is not None:
                h.handle_event(ev)

    def open_stream(self, sock: socket.socket, events: StreamEvents) -> None:
        proto = TransportStream(events)

        async def attach() -> None:
            try:
                await self.loop.connect_accepted_socket(lambda: proto, sock)
            except OSError as e:
                sock.close()
                proto._closed(e.strerror or str(e))

        self.loop.create_task(attach())

    # -- time ---------------------------------------------------------------------
    def call_soon(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.loop.call_later(max(0.0, delay), callback)

    def time(self) -> float:
        # Not loop.time(): uvloop's is libuv's cached, millisecond clock.
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Precise timers: a heap of their own and a timerfd in the engine's epoll
        set (libuv's timers have millisecond resolution)."""
        if self._tfd is None:
            from xcon.engines.timerfd import TimerFd, set_timer_slack

            set_timer_slack()
            self._tfd = TimerFd()
            self.register(self._tfd.fd, Callback(self._fire), READ)
        t = Timer(callback)
        heapq.heappush(self._precise, (when, next(self._seq), t))
        if when < self._tfd.armed or not self._tfd.armed:
            self._tfd.arm(when)
        return t

    def _fire(self) -> None:
        tfd, heap = self._tfd, self._precise
        assert tfd is not None
        tfd.clear()
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            t = heapq.heappop(heap)[2]
            if not t.cancelled:
                t.callback()
        if heap:
            tfd.arm(heap[0][0])

    def call_every(self, interval: float, callback: Callable[[], None]) -> TimerHandle:
        return _Repeating(self.loop, interval, callback)

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def run_in_thread(
        self, fn: Callable[[], object], done: Callable[[object, BaseException | None], None]
    ) -> None:
        run_in_thread(self.call_soon_threadsafe, fn, done)

    # -- signals and running ----------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callable[[int], None]) -> None:
        self.loop.add_signal_handler(signum, callback, signum)
        self._signals.append(signum)

    def stop(self) -> None:
        self.loop.stop()

    def run(self) -> None:
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.remove_reader(self._fds.fileno())
        self._fds.close()
        if self._tfd is not None:
            self._tfd.close()
        self._handlers.clear()
        for signum in self._signals:
            self.loop.remove_signal_handler(signum)
        self._signals.clear()
        # Let transports finish closing (connection_lost callbacks) before the loop goes.
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


class _Repeating:
    """``callback`` every ``interval`` seconds until cancelled."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, callback: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.interval = interval
        self.callback = callback
        self.cancelled = False
        self.handle = loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self.callback()
        if not self.cancelled:  # the callback may cancel its own repetition
            self.handle = self.loop.call_later(self.interval, self._tick)

    def cancel(self) -> None:
        self.cancelled = True
        self.handle.cancel()
