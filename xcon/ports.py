"""Ports: the only objects (with the engine) that touch file descriptors.

A port owns one descriptor, knows how to (re)open it, and hands readiness to
its owner (a bridge).  A port that loses its descriptor goes *down*: the
bridge drops what is sent to it (a pulled cable) until it is *up* again.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from xcon.engine import ERRORS, READ, WRITE, Callback, EpollEngine, Registration, Timer
from xcon.framing import FrameBuffer

log = logging.getLogger("xcon.port")

QEMU_BASE_PORT = 10000
#: First reconnect attempt after a drop, then doubling up to the cap.  The cap
#: is short because a lab wants a restarted router back at once, and a refused
#: connect on a LAN costs next to nothing.
BACKOFF_FIRST = 0.02
BACKOFF_CAP = 0.25
CONNECT_TIMEOUT = 3.0
#: Reads shorter than this renew TCP_QUICKACK (see StreamPort.quickack).
QUICKACK_BELOW = 16 * 1024
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


class PortOwner(Protocol):
    def port_up(self, port: Port) -> None: ...
    def port_down(self, port: Port, reason: str) -> None: ...
    def readable(self, port: Port) -> None: ...
    def received(self, port: Port, n: int) -> object: ...
    def writable(self, port: Port) -> None: ...


@dataclass
class PortStats:
    connects: int = 0
    drops: int = 0  # times an established connection went away
    protocol_errors: int = 0
    partial_bytes: int = 0  # bytes of incomplete frames lost with a connection
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Port:
    """Base class: a named endpoint with a socket-like descriptor and a receive buffer."""

    kind = "port"

    def __init__(self, engine: EpollEngine, name: str, owner: PortOwner | None = None) -> None:
        self.engine = engine
        self.name = name
        self.owner: PortOwner | None = owner
        self.up = False
        self.inbuf = FrameBuffer()
        self.stats = PortStats()
        self._reading = True
        self._writing = False
        self._reg: Registration | None = None

    # -- interest -----------------------------------------------------------------
    def _mask(self) -> int:
        return (READ if self._reading else 0) | (WRITE if self._writing else 0)

    def set_reading(self, on: bool) -> None:
        self._reading = on
        if self._reg is not None and self.up:
            self._reg.set(self._mask())

    def set_writing(self, on: bool) -> None:
        self._writing = on
        if self._reg is not None and self.up:
            self._reg.set(self._mask())

    # -- data -----------------------------------------------------------------------
    def recv_into(self, view: memoryview) -> int:
        """Read into ``view``; 0 means nothing now; -1 means the port just went down."""
        raise NotImplementedError

    def send(self, view: memoryview) -> int:
        """Send what the kernel takes now; -1 means the port just went down."""
        raise NotImplementedError

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def fail(self, reason: str) -> None:
        raise NotImplementedError

    def protocol_error(self, reason: str) -> None:
        """The peer sent something qemu itself would reject: reset this connection."""
        self.stats.protocol_errors += 1
        self.fail(f"protocol error: {reason}")


class StreamPort(Port):
    """A port over a connected stream socket carrying length-prefixed frames.

    On the epoll engine the port reads and writes the socket itself; on an
    engine with transports (asyncio/uvloop, see :mod:`xcon.aioengine`) the
    socket is handed to a transport and the port only relays its callbacks.
    """

    def __init__(self, engine: EpollEngine, name: str, owner: PortOwner | None = None) -> None:
        super().__init__(engine, name, owner)
        self.sock: socket.socket | None = None
        self._recv_into = None  # bound methods cached while connected
        self._send = None
        self._proto: Any = None  # StreamProtocol while on a transport
        self._transport: Any = None
        self._held = 0  # bytes a transport still holds from the last send()
        self._paused = False

    def _attach(self, sock: socket.socket) -> None:
        """The stream is established: become up and tell the owner."""
        self.sock = sock
        if getattr(self.engine, "transports", False):
            self._proto = self.engine.attach_stream(self, sock)  # type: ignore[attr-defined]
            return
        self._recv_into = sock.recv_into  # type: ignore[assignment]
        self._send = sock.send  # type: ignore[assignment]
        self._became_up()
        if self._reg is None:
            self._reg = self.engine.register(sock.fileno(), self, self._mask())
        else:
            self._reg.set(self._mask())
        assert self.owner is not None
        self.owner.port_up(self)

    def _became_up(self) -> None:
        self.up = True
        self.stats.connects += 1
        self._writing = False
        self._reading = True

    def _transport_made(self, proto: Any, transport: Any) -> None:
        self._transport = transport
        self.sock = transport.get_extra_info("socket")  # for quickack()
        self._held = 0
        self._paused = False
        self._became_up()
        assert self.owner is not None
        self.owner.port_up(self)

    def _attach_failed(self, reason: str) -> None:
        self._proto = None
        self.sock = None
        self._retry_after_failure(reason)

    def _retry_after_failure(self, reason: str) -> None:
        """A connection could not be set up (subclasses decide what comes next)."""

    def _went_down(self, reason: str, msg: str, *args: object) -> bool:
        """An established stream ended: count it, lose only the partial frame in
        flight, log ``msg`` and tell the owner.  False if the port was not up."""
        if not self.up:
            return False
        self.up = False
        self.stats.drops += 1
        self.stats.last_error = reason
        self.stats.partial_bytes += self.inbuf.discard_partial()
        self._detach()
        log.warning(msg, *args)
        assert self.owner is not None
        self.owner.port_down(self, reason)
        return True

    def set_reading(self, on: bool) -> None:
        t = self._transport
        if t is None:
            super().set_reading(on)
            return
        self._reading = on
        if on == self._paused:  # paused and asked to read, or reading and asked to pause
            self._paused = not on
            if on:
                t.resume_reading()
            else:
                t.pause_reading()

    def set_writing(self, on: bool) -> None:
        if self._transport is None:
            super().set_writing(on)
        else:
            self._writing = on  # the transport calls resume_writing when it drains

    def _detach(self) -> None:
        if self._proto is not None:
            self._proto.active = False
            self._proto = None
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
            self.sock = None  # the transport owned it
        self._held = 0
        if self._reg is not None:
            self._reg.close()
            self._reg = None
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._recv_into = self._send = None

    def recv_into(self, view: memoryview) -> int:
        """Read into ``view``; 0 means nothing now; -1 means the port just went down."""
        try:
            n = self._recv_into(view)  # type: ignore[misc]
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            self.fail(e.strerror or str(e))
            return -1
        if n == 0:
            self.fail("connection closed by peer")
            return -1
        if n < QUICKACK_BELOW:
            self.quickack()
        return int(n)

    def quickack(self) -> None:
        """Acknowledge at once rather than after the delayed-ACK timer.

        qemu leaves Nagle on for its socket netdev: after a small frame it holds
        the next one until that frame is acknowledged, so a delayed ACK from us
        (up to 40 ms) would become latency and jitter on the link.  Linux drops
        out of quick-ACK mode by itself, so this is renewed after each small
        read; large reads mean a busy link, where ACKs go out anyway."""
        s = self.sock
        if s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                pass

    def send(self, view: memoryview) -> int:
        """Send; returns the bytes released to the caller, -1 if the port just went down.

        On a socket, the bytes the kernel took.  On a transport, ``view`` is
        handed over whole; if the transport could not send it at once it keeps
        a reference to that memory, so nothing is released until it drains."""
        if self._transport is not None:
            return self._send_transport(view)
        try:
            return int(self._send(view))  # type: ignore[misc]
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            self.fail(e.strerror or str(e))
            return -1

    def _send_transport(self, view: memoryview) -> int:
        t = self._transport
        released = 0
        if self._held:
            if t.get_write_buffer_size():
                return 0
            released, self._held = self._held, 0
            view = view[released:]
            if not view:
                return released
        t.write(view)
        if self._transport is None:
            return -1  # the write failed and the port went down
        if t.get_write_buffer_size():
            self._held = len(view)
            return released
        return released + len(view)

    def handle_event(self, events: int) -> None:
        owner = self.owner
        assert owner is not None
        if events & READ:
            owner.readable(self)
            if not self.up:
                return
        if events & WRITE:
            owner.writable(self)
            if not self.up:
                return
        if events & ERRORS and not events & READ:
            err = 0
            if self.sock is not None:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.fail(errno.errorcode.get(err, "hang-up") if err else "hang-up")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class QemuPort(StreamPort):
    """TCP client to a qemu socket netdev at ``host:10000+nic``, reconnecting forever.

    The host is resolved at every attempt (docker ``--link`` names move when a
    container is re-created).  A router that is not up yet is not an error:
    the port stays down and keeps trying with exponential backoff.
    """

    kind = "qemu"

    def __init__(
        self,
        engine: EpollEngine,
        host: str,
        nic: int,
        owner: PortOwner | None = None,
        name: str | None = None,
        port: int | None = None,
    ) -> None:
        self.host = host
        self.nic = nic
        self.tcp_port = port if port is not None else QEMU_BASE_PORT + nic
        shown = f"[{host}]" if ":" in host else host
        super().__init__(engine, name or f"{shown}/{nic}", owner)
        self.connecting = False
        self._attempts = 0
        self._addr_index = 0
        self._timer: Timer | None = None
        self._closed = False
        self._csock: socket.socket | None = None
        self._creg: Registration | None = None
        self._logged_waiting = False

    # -- connecting ---------------------------------------------------------------
    def start(self) -> None:
        self._closed = False
        self._attempt()

    def _attempt(self) -> None:
        self._timer = None
        if self._closed:
            return
        if _is_ip_literal(self.host):
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self._connect([(family, (self.host, self.tcp_port))])
            return
        host, port = self.host, self.tcp_port

        def resolve() -> list[tuple[int, Any]]:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            return [(fam, addr) for fam, _t, _p, _c, addr in infos]

        def resolved(result: object, err: BaseException | None) -> None:
            if self._closed:
                return
            if err is not None or not result:
                self._retry(f"cannot resolve {host!r}: {err}")
            else:
                self._connect(result)  # type: ignore[arg-type]

        self.connecting = True
        self.engine.run_in_thread(resolve, resolved)

    def _connect(self, addrs: Sequence[tuple[int, Any]]) -> None:
        family, addr = addrs[self._addr_index % len(addrs)]
        self._addr_index += 1
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            self._retry(f"socket: {e.strerror}")
            return
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._retry(errno.errorcode.get(err, str(err)))
            return
        self.connecting = True
        self._csock = s
        self._creg = self.engine.register(s.fileno(), Callback(self._connect_event), WRITE)
        self._timer = self.engine.call_later(CONNECT_TIMEOUT, self._connect_timeout)

    def _connect_timeout(self) -> None:
        self._timer = None
        self._abort_connect()
        self._retry("connect timed out")

    def _abort_connect(self) -> None:
        if self._creg is not None:
            self._creg.close()
            self._creg = None
        if self._csock is not None:
            self._csock.close()
            self._csock = None

    def _connect_event(self) -> None:
        s = self._csock
        assert s is not None
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if err:
            self._abort_connect()
            self._retry(errno.errorcode.get(err, str(err)))
            return
        # Hand the descriptor from the connecting handler to the port itself.
        assert self._creg is not None
        self._creg.close()
        self._creg = None
        self._csock = None
        self.connecting = False
        self._attempts = 0
        self._logged_waiting = False
        log.info("%s: connected to %s", self.name, fmt_peer(s))
        self._attach(s)

    def _retry(self, reason: str) -> None:
        self.connecting = False
        self.stats.last_error = reason
        if self._closed:
            return
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * (2 ** min(self._attempts, 16)))
        delay *= random.uniform(0.9, 1.1)
        self._attempts += 1
        if not self._logged_waiting:
            log.info("%s: not reachable (%s); retrying until it is", self.name, reason)
            self._logged_waiting = True
        else:
            log.debug("%s: attempt %d failed (%s)", self.name, self._attempts, reason)
        self._timer = self.engine.call_later(delay, self._attempt)

    def _retry_after_failure(self, reason: str) -> None:
        self._retry(reason)

    # -- established ----------------------------------------------------------------
    def fail(self, reason: str) -> None:
        if self._went_down(reason, "%s: link down (%s)", self.name, reason):
            self._retry(reason)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._abort_connect()
        was_up = self.up
        self.up = False
        self._detach()
        if was_up and self.owner is not None:
            self.owner.port_down(self, "closed")


def fmt_addr(addr: tuple[Any, ...]) -> str:
    """``host:port`` or ``[v6]:port``; v4-mapped IPv6 addresses shown as IPv4."""
    host, port = str(addr[0]), addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def fmt_peer(s: socket.socket) -> str:
    try:
        return fmt_addr(s.getpeername())
    except OSError:
        return "?"
