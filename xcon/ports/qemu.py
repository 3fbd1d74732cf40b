"""The qemu NIC client: ``host/N`` is TCP ``host:10000+N``, reconnecting forever.

The host is resolved at every attempt (docker ``--link`` names move when a
container is re-created; names go through a thread so a slow resolver never
stalls the loop).  A router that is not up yet is not an error: the port stays
down and keeps trying.  When to try is its gate's decision
(:mod:`xcon.ports.hostgate`: 20 ms doubling to 250 ms, and while a host is
down one probe for all of its ports, or none at all when the kernel can say
that nothing listens yet).

The backoff starts again from 20 ms only after a connection has proved itself
(it carried frames, or stayed up :data:`STABLE_AFTER` seconds).  A peer that
accepts and closes at once (not a qemu NIC, or one shutting down) therefore
sees retries slow to the cap instead of a reconnect storm, and its repeated
"connected"/"link down" lines are logged once, then summed up every
:data:`FLAP_REPORT_EVERY` seconds.

``HOST/N``, ``tcp:HOST:PORT`` and ``unix:PATH`` ends are ports of this module
(:func:`qemu_port`, :func:`tcp_port`, :func:`unix_port`).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from xcon.engines import WRITE, Callback, Engine, Registration, Stream, TimerHandle
from xcon.limits import qemu_tcp_port
from xcon.ports import fmt_addr
from xcon.ports.hostgate import Addrs, Gate, SoloGate, backoff_delay
from xcon.ports.stream import StreamPort, unix_buffers

if TYPE_CHECKING:
    from xcon.linkspec import Endpoint, TcpEnd, UnixEnd
    from xcon.ports.services import PortServices

log = logging.getLogger("xcon.port")

CONNECT_TIMEOUT = 3.0
#: A connection up this long, or that carried frames, resets the backoff.
STABLE_AFTER = 1.0
#: How often repeated short-lived connections are summed up in the log.
FLAP_REPORT_EVERY = 60.0


class QemuPort(StreamPort):
    """TCP client to a qemu socket netdev (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        gate: Gate,
        host: str,
        nic: int,
        name: str | None = None,
        port: int | None = None,
    ) -> None:
        self.host = host
        self.nic = nic
        self.tcp_port = port if port is not None else qemu_tcp_port(nic)
        shown = f"[{host}]" if ":" in host else host
        super().__init__(engine, name or f"{shown}/{nic}")
        self._attempts = 0
        self._addr_index = 0
        self._timer: TimerHandle | None = None
        self._csock: socket.socket | None = None
        self._creg: Registration | None = None
        self._logged_waiting = False
        self._opened_at = 0.0
        self._rx_at_open = 0
        self._flaps = 0  # short, silent connections in a row
        self._flaps_unreported = 0
        self._flap_report_at = 0.0
        #: Says when this port may try to connect (shared by the ports of its host).
        self.gate = gate
        self._connecting = False  # from an attempt until connected or failed

    def _sockaddr(self, host_addr: tuple[Any, ...]) -> Any:
        """The address to connect to, from one of the host's resolved addresses."""
        return (host_addr[0], self.tcp_port, *host_addr[2:])

    # -- connecting ---------------------------------------------------------------
    def start(self) -> None:
        self._closed = False
        if self.handed is not None:
            self._connecting = True
            self._opened_at = time.monotonic()
            self._rx_at_open = self.rx_bytes
            self._take_handed()
            return
        gate = self.gate
        if gate.live and not self._flaps:
            # The host is up (a link added while its other links run): connect
            # now rather than after a first backoff step.
            self.attempt()
        else:
            gate.want(self)

    @property
    def flapping(self) -> bool:
        """Its last connections closed right after connecting (the gate lets it
        retry on its own backoff)."""
        return bool(self._flaps)

    def attempt(self) -> None:
        """One connection attempt now (the gate decides when)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed or self.up or self._connecting:
            return
        self._connecting = True
        self.gate.resolve(self._resolved)

    def _resolved(self, addrs: Addrs | None, error: str) -> None:
        if self._closed:
            return
        if addrs is None:
            self._retry(error)
        else:
            self._connect(addrs)

    def _connect(self, addrs: Sequence[tuple[int, Any]]) -> None:
        family, host_addr = addrs[self._addr_index % len(addrs)]
        addr = self._sockaddr(host_addr)
        self._addr_index += 1
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            self._retry(f"socket: {e.strerror}")
            return
        s.setblocking(False)
        if family != socket.AF_UNIX:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            unix_buffers(s)
        err = s.connect_ex(addr)
        if err == errno.EAGAIN and family == socket.AF_UNIX:
            err = errno.ECONNREFUSED  # the listener's backlog is full: try again later
        if err == errno.EINPROGRESS:
            # On loopback (and any local address) the refusal is already known
            # when connect() returns: fail now, without a round through the loop.
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.EINPROGRESS
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._retry(errno.errorcode.get(err, str(err)))
            return
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
        # Hand the descriptor from the connecting handler to the stream.
        assert self._creg is not None
        self._creg.close()
        self._creg = None
        self._csock = None
        self._logged_waiting = False
        self._opened_at = time.monotonic()
        self._rx_at_open = self.rx_bytes
        level = logging.DEBUG if self._flaps else logging.INFO
        self.peer = _fmt_peer(s)
        log.log(level, "%s: connected to %s", self.name, self.peer)
        self._open_stream(s)

    def stream_opened(self, stream: Stream) -> None:
        self._connecting = False
        super().stream_opened(stream)
        if self.up:
            self.gate.connected(self)

    def _setup_failed(self, reason: str) -> None:
        self._retry(reason)

    def _retry(self, reason: str) -> None:
        """An attempt failed: log it, and let the gate say when to try again."""
        self._connecting = False
        self.stats.last_error = reason
        if self._closed:
            return
        if not self._logged_waiting:
            log.info("%s: not reachable (%s); retrying until it is", self.name, reason)
            self._logged_waiting = True
        else:
            log.debug("%s: attempt failed (%s)", self.name, reason)
        self.gate.failed(self)

    def not_listening(self) -> None:
        """Waiting on the listener watch (a local router that is not listening yet)."""
        self.stats.last_error = "not listening"
        if not self._logged_waiting:
            log.info("%s: not listening yet; connecting as soon as it is", self.name)
            self._logged_waiting = True

    def retry_later(self) -> None:
        """Retry on this port's own backoff (its host is up)."""
        if self._closed or self._timer is not None or self._connecting:
            return
        delay = backoff_delay(self._attempts)
        self._attempts += 1
        self._timer = self.engine.call_later(delay, self.attempt)

    # -- Port hooks -----------------------------------------------------------------
    def _went_down(self, reason: str) -> None:
        self.gate.lost(self)
        self._logged_waiting = True  # the line below says it: no "not reachable" too
        now = time.monotonic()
        if self.rx_bytes != self._rx_at_open or now - self._opened_at >= STABLE_AFTER:
            if self._flaps_unreported:
                self._report_flaps()
            self._flaps = 0
            self._attempts = 0  # a connection that worked: retry at once
            log.warning("%s: link down (%s); reconnecting", self.name, reason)
            return
        # Closed right after connecting, nothing received: keep backing off.
        self._flaps += 1
        if self._flaps == 1:
            log.warning(
                "%s: link down right after connecting (%s); reconnecting with backoff",
                self.name,
                reason,
            )
            self._flap_report_at = now + FLAP_REPORT_EVERY
            return
        self._flaps_unreported += 1
        log.debug("%s: link down right after connecting (%s)", self.name, reason)
        if now >= self._flap_report_at:
            self._report_flaps()
            self._flap_report_at = now + FLAP_REPORT_EVERY

    def _report_flaps(self) -> None:
        log.warning(
            "%s: %d more connections closed by the peer right after connecting",
            self.name,
            self._flaps_unreported,
        )
        self._flaps_unreported = 0

    def _again(self, reason: str) -> None:
        self.gate.want(self, at_once=False)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._abort_connect()
        self.gate.leave(self)
        if self.up:
            self.gate.lost(self)
        super().close()


class UnixPort(QemuPort):
    """``unix:PATH``: client of a qemu ``-netdev stream`` unix socket (qemu's
    ``addr.type=unix,server=on``), with the same length-prefixed frames and the
    same reconnecting as a TCP NIC."""

    def __init__(self, engine: Engine, path: str, name: str | None = None) -> None:
        self.path = path
        gate = SoloGate(socket.AF_UNIX, (path,))
        super().__init__(engine, gate, path, 0, name=name or f"unix:{path}", port=0)

    def _sockaddr(self, host_addr: tuple[Any, ...]) -> Any:
        return self.path


def _fmt_peer(s: socket.socket) -> str:
    try:
        return fmt_addr(s.getpeername())
    except OSError:
        return "?"


def qemu_port(services: PortServices, end: Endpoint) -> QemuPort:
    """``HOST/N``: qemu NIC N of HOST, through the host's gate."""
    return QemuPort(services.engine, services.host_gate(end.host), end.host, end.nic)


def tcp_port(services: PortServices, end: TcpEnd) -> QemuPort:
    """``tcp:HOST:PORT``: a qemu NIC on any TCP port, through the host's gate."""
    gate = services.host_gate(end.host)
    return QemuPort(services.engine, gate, end.host, 0, name=str(end), port=end.port)


def unix_port(services: PortServices, end: UnixEnd) -> UnixPort:
    """``unix:PATH``: a qemu ``-netdev stream`` unix socket (a gate of its own)."""
    return UnixPort(services.engine, end.path, name=str(end))
