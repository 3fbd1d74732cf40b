"""The second engine: the same ports and bridges on an asyncio loop (uvloop).

Stream ports (qemu connections, accepted clients) run on transports instead of
raw readiness:

* **Reading** goes through :class:`asyncio.BufferedProtocol`: ``get_buffer``
  hands the transport the free space of the port's own
  :class:`~xcon.framing.FrameBuffer`, ``buffer_updated(n)`` tells the bridge
  that ``n`` bytes landed there.  No allocation per read, and the bridge code
  after the read is the same as on the epoll engine.
* **Writing** hands ``transport.write`` a memoryview of the bridge's buffer
  (zero copy).  A transport that cannot send everything at once keeps a
  reference to the unsent part of *that memory* (uvloop does not copy), so the
  port reports nothing released until the transport has drained: the bridge
  then treats the destination as blocked, stops reading the source and does not
  touch the bytes being sent.  The write-buffer high water mark is 0, so
  ``resume_writing`` arrives exactly when the transport has drained, and the
  port then releases the bytes and tells the bridge it may go on.

Everything that is not a stream (timers, signals, tap and packet sockets,
connects in progress) uses the same small interface as the epoll engine:
``register(fd, handler, mask)`` maps onto ``add_reader``/``add_writer``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xcon.engine import READ, WRITE, Handler, run_in_thread
from xcon.ports import QUICKACK_BELOW

if TYPE_CHECKING:
    from xcon.ports import StreamPort


class EngineUnavailable(RuntimeError):
    """The engine's event loop library is not installed."""


class AioRegistration:
    """An fd watched with add_reader/add_writer; mirrors the epoll Registration."""

    __slots__ = ("engine", "fd", "handler", "mask")

    def __init__(self, engine: AsyncioEngine, fd: int, handler: Handler, mask: int) -> None:
        self.engine = engine
        self.fd = fd
        self.handler = handler
        self.mask = 0
        self.set(mask)

    def set(self, mask: int) -> None:
        loop, fd, old = self.engine.loop, self.fd, self.mask
        if mask == old:
            return
        if (mask ^ old) & READ:
            if mask & READ:
                loop.add_reader(fd, self.handler.handle_event, READ)
            else:
                loop.remove_reader(fd)
        if (mask ^ old) & WRITE:
            if mask & WRITE:
                loop.add_writer(fd, self.handler.handle_event, WRITE)
            else:
                loop.remove_writer(fd)
        self.mask = mask

    def close(self) -> None:
        self.set(0)


class StreamProtocol(asyncio.BufferedProtocol):
    """Connects a transport to a :class:`~xcon.ports.StreamPort` and its bridge."""

    __slots__ = ("port", "transport", "active")

    def __init__(self, port: StreamPort) -> None:
        self.port = port
        self.transport: Any = None
        self.active = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=0, low=0)
        if self.active:
            self.port._transport_made(self, transport)
        else:
            transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.port.inbuf.room()

    def buffer_updated(self, nbytes: int) -> None:
        if self.active:
            port = self.port
            if nbytes < QUICKACK_BELOW:
                port.quickack()
            owner = port.owner
            assert owner is not None
            owner.received(port, nbytes)

    def eof_received(self) -> bool:
        if self.active:
            self.port.fail("connection closed by peer")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.active:
            self.port.fail(str(exc) if exc else "connection closed")

    def pause_writing(self) -> None:
        pass  # the port notices held bytes itself (get_write_buffer_size)

    def resume_writing(self) -> None:
        if self.active:
            owner = self.port.owner
            assert owner is not None
            owner.writable(self.port)


class AsyncioEngine:
    """Runs every port and bridge on one asyncio event loop (uvloop by default)."""

    transports = True

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

    # -- file descriptors ------------------------------------------------------------
    def register(self, fd: int, handler: Handler, mask: int) -> AioRegistration:
        return AioRegistration(self, fd, handler, mask)

    def attach_stream(self, port: StreamPort, sock: socket.socket) -> StreamProtocol:
        """Wrap a connected socket in a transport whose protocol feeds ``port``."""
        proto = StreamProtocol(port)

        async def attach() -> None:
            try:
                await self.loop.connect_accepted_socket(lambda: proto, sock)
            except OSError as e:
                if proto.active:
                    port._attach_failed(str(e))

        self.loop.create_task(attach())
        return proto

    # -- time ---------------------------------------------------------------------
    def time(self) -> float:
        return self.loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(max(0.0, delay), callback)

    def call_every(self, interval: float, callback: Callable[[], None]) -> Any:
        state: dict[str, Any] = {}

        class Repeating:
            def cancel(self) -> None:
                state["handle"].cancel()

        def tick() -> None:
            callback()
            state["handle"] = self.loop.call_later(interval, tick)

        state["handle"] = self.loop.call_later(interval, tick)
        return Repeating()

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
        for signum in self._signals:
            self.loop.remove_signal_handler(signum)
        self._signals.clear()
        # Let transports finish closing (connection_lost callbacks) before the loop goes.
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
