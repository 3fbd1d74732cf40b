"""The qemu NIC client: ``host/N`` is TCP ``host:10000+N``, reconnecting forever.

The host is resolved at every attempt (docker ``--link`` names move when a
container is re-created; names go through a thread so a slow resolver never
stalls the loop).  A router that is not up yet is not an error: the port stays
down and keeps trying.  Retries start 20 ms after a failure and double up to
:data:`BACKOFF_CAP`, with up to 10 % taken off at random so that many ports do
not retry in lockstep; the cap is never exceeded.  The cap is short because a
lab wants a restarted router's links back at once and a refused connect on a
LAN costs next to nothing.

**A lab that is still booting** (hundreds of ports down) must cost next to
nothing.  The ports of one host (one router) share a :class:`HostGate`: one
name resolution for all of them (cached :data:`RESOLVE_TTL` seconds; a name
that fails to resolve is asked again after a delay that doubles up to
:data:`RESOLVE_RETRY_CAP`), and while none of the host's ports is connected
only one of them probes at a time, in turn, on the backoff above.  qemu
opens every NIC's listening socket at once, so when the probe connects the
host is up and all its waiting ports connect at once: each link is still back
within one retry interval of its router listening, at the cost of one
connection attempt per host instead of one per port.  While some port of the
host is connected, each other port retries on its own.

When every address of a host is local (loopback, or one of this host's: the
routers run here), the gate does not even probe: it asks the kernel which TCP
ports listen (:mod:`xcon.ports.listeners`, one ``sock_diag`` dump for all
hosts every 100 ms) and connects only once a NIC's port appears.  A booting
lab of routers on this host then costs no connection attempts at all, and a
link is still back within about 100 ms of its router listening.  A name is
looked up again every :data:`WATCH_RESOLVE_TTL` seconds while it is watched.

The backoff starts again from 20 ms only after a connection has proved itself
(it carried frames, or stayed up :data:`STABLE_AFTER` seconds).  A peer that
accepts and closes at once (not a qemu NIC, or one shutting down) therefore
sees retries slow to the cap instead of a reconnect storm, and its repeated
"connected"/"link down" lines are logged once, then summed up every
:data:`FLAP_REPORT_EVERY` seconds.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from xcon.engines import WRITE, Callback, Engine, Registration, Stream, TimerHandle
from xcon.limits import qemu_tcp_port
from xcon.ports import fmt_addr
from xcon.ports.listeners import ListenerWatch, Waiter, is_local, listener_key
from xcon.ports.stream import StreamPort, unix_buffers

log = logging.getLogger("xcon.port")

BACKOFF_FIRST = 0.02
BACKOFF_CAP = 0.25
#: Random share taken off each retry delay (never added: the cap holds).
BACKOFF_JITTER = 0.1
#: Retries are due on this grid (seconds), so many ports share one wake-up.
RETRY_GRID = 0.01
CONNECT_TIMEOUT = 3.0
#: How long a resolved name is reused by the ports of its host.
RESOLVE_TTL = 1.0
#: A name that fails to resolve is asked again after 250 ms, doubling up to this.
RESOLVE_RETRY_CAP = 5.0
#: While a host's ports wait on the listener watch, its name is looked up this often.
WATCH_RESOLVE_TTL = 15.0
#: A connection up this long, or that carried frames, resets the backoff.
STABLE_AFTER = 1.0
#: How often repeated short-lived connections are summed up in the log.
FLAP_REPORT_EVERY = 60.0


def backoff_delay(attempt: int) -> float:
    """Delay before retry number ``attempt`` (0-based): 20 ms doubling, at most the cap.

    Due times are rounded down to a :data:`RETRY_GRID` grid, so the retries of
    many ports wake the loop together rather than one by one."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * (2 ** min(attempt, 16)))
    delay *= 1.0 - BACKOFF_JITTER * random.random()
    now = time.monotonic()
    return max(0.0, (now + delay) // RETRY_GRID * RETRY_GRID - now)


def _literal_family(host: str) -> int | None:
    """AF_INET/AF_INET6 for an IP literal, None for a name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


#: (family, address without port) pairs of a host.
Addrs = list[tuple[int, tuple[Any, ...]]]
Resolved = Callable[[Addrs | None, str], None]


class HostGate:
    """What the ports of one host share (see the module docstring)."""

    def __init__(self, engine: Engine, host: str) -> None:
        self.engine = engine
        self.host = host
        family = _literal_family(host)
        self._literal: Addrs | None = [(family, (host, 0))] if family is not None else None
        self.live = 0  # ports of this host that are connected
        self._waiting: deque[QemuPort] = deque()
        self._probe: QemuPort | None = None
        self._probe_timer: TimerHandle | None = None
        self._attempts = 0
        self._watch = listener_watch(engine)
        self._waiter: Waiter | None = None
        # name resolution
        self._addrs: Addrs | None = None
        self._error = ""
        self._expires = 0.0
        self._resolved_at = 0.0
        self._neg_delay = 0.0
        self._pending: list[Resolved] = []

    # -- resolution -----------------------------------------------------------------
    def resolve(self, done: Resolved) -> None:
        """``done(addrs, "")`` or ``done(None, error)``, now or from the loop."""
        if self._literal is not None:
            done(self._literal, "")
            return
        if time.monotonic() < self._expires:
            done(self._addrs, self._error)
            return
        self._pending.append(done)
        if len(self._pending) > 1:
            return  # a lookup is under way
        host = self.host

        def lookup() -> Addrs:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            return [(fam, addr) for fam, _t, _p, _c, addr in infos]

        self.engine.run_in_thread(lookup, self._resolved)

    def _resolved(self, result: object, err: BaseException | None) -> None:
        now = time.monotonic()
        if err is None and result:
            self._addrs, self._error = result, ""  # type: ignore[assignment]
            self._neg_delay = 0.0
            self._resolved_at = now
            self._expires = now + RESOLVE_TTL
        else:
            self._addrs, self._error = None, f"cannot resolve {self.host!r}: {err}"
            self._neg_delay = min(RESOLVE_RETRY_CAP, max(BACKOFF_CAP, 2 * self._neg_delay))
            self._expires = now + self._neg_delay
        pending, self._pending = self._pending, []
        for done in pending:
            done(self._addrs, self._error)

    # -- who may try ----------------------------------------------------------------
    def want(self, port: QemuPort, at_once: bool = True) -> None:
        """``port`` is down and wants to connect (now, or after the first backoff
        step when its connection was just lost)."""
        if self.live or port._flaps:
            # The host is up (or this port's peer accepts and closes at once):
            # the port retries on its own backoff.
            port._schedule_retry()
            return
        if port not in self._waiting and port is not self._probe:
            self._waiting.append(port)
            if self._waiter is not None:  # watch this port's listener too
                self._unwatch()
                self._next_probe()
                return
        if at_once:
            self._kick()
        elif self._probe is None and self._probe_timer is None:
            delay = backoff_delay(self._attempts)
            self._attempts += 1
            self._probe_timer = self.engine.call_later(delay, self._next_probe)

    def failed(self, port: QemuPort) -> None:
        """An attempt of ``port`` failed."""
        if port is self._probe:
            self._probe = None
            self._waiting.append(port)
            delay = backoff_delay(self._attempts)
            self._attempts += 1
            self._probe_timer = self.engine.call_later(delay, self._next_probe)
        else:
            self.want(port)

    def connected(self, port: QemuPort) -> None:
        """``port`` connected: the host is up, every waiting port tries now."""
        self.live += 1
        self._attempts = 0
        self._unwatch()
        if port is self._probe:
            self._probe = None
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None
        waiting, self._waiting = self._waiting, deque()
        for p in waiting:
            p._attempt()

    def lost(self, port: QemuPort) -> None:
        """``port``'s connection ended (it will call :meth:`want` to come back)."""
        self.live -= 1

    def leave(self, port: QemuPort) -> None:
        """``port`` closed for good."""
        if port in self._waiting:
            self._waiting.remove(port)
            if self._waiter is not None:
                self._unwatch()
                self._kick()
        if port is self._probe:
            self._probe = None
            self._kick()

    def _kick(self) -> None:
        if (
            self._probe is None
            and self._probe_timer is None
            and self._waiter is None
            and self._waiting
        ):
            self._next_probe()

    def _next_probe(self) -> None:
        self._probe_timer = None
        if self.live or not self._waiting or self._probe is not None:
            return
        addrs = self._watchable()
        if addrs is not None:
            # Every address is local: connect only a port whose listener is there.
            for p in self._waiting:
                if self._watch.listening(self._keys(p, addrs)):
                    self._waiting.remove(p)
                    self._probe = p
                    p._attempt()
                    return
            keys = frozenset(k for p in self._waiting for k in self._keys(p, addrs))
            self._waiter = self._watch.wait(keys, self._listener_seen)
            if self._waiter is not None:
                for p in self._waiting:
                    p._not_listening()
                return
            if self._watch.broken:
                return self._next_probe()
        self._probe = self._waiting.popleft()
        self._probe._attempt()

    def _watchable(self) -> Addrs | None:
        """The host's addresses when all are local and the listener watch works;
        None to probe with connect instead (a stale name is looked up again first)."""
        if self._watch.broken:
            return None
        addrs = self._literal
        if addrs is None:
            if self._addrs is None:
                return None
            if time.monotonic() - self._resolved_at >= WATCH_RESOLVE_TTL:
                self._expires = 0.0
                self.resolve(self._looked_up)
                return None if self._addrs is None else self._addrs
            addrs = self._addrs
        if all(is_local(fam, a[0]) for fam, a in addrs):
            return addrs
        return None

    def _looked_up(self, addrs: Addrs | None, error: str) -> None:
        """A watched name was looked up again: match its listeners at its new addresses."""
        if self._waiter is not None:
            self._unwatch()
            self._kick()

    @staticmethod
    def _keys(port: QemuPort, addrs: Addrs) -> list[bytes]:
        return [
            listener_key(fam, socket.inet_pton(fam, a[0].split("%", 1)[0]), port.tcp_port)
            for fam, a in addrs
        ]

    def _listener_seen(self) -> None:
        self._waiter = None
        self._next_probe()

    def _unwatch(self) -> None:
        if self._waiter is not None:
            self._watch.cancel(self._waiter)
            self._waiter = None


_gates: weakref.WeakKeyDictionary[Engine, dict[str, HostGate]] = weakref.WeakKeyDictionary()
_watches: weakref.WeakKeyDictionary[Engine, ListenerWatch] = weakref.WeakKeyDictionary()


def listener_watch(engine: Engine) -> ListenerWatch:
    """The listener watch shared by every host gate on ``engine``."""
    watch = _watches.get(engine)
    if watch is None:
        watch = _watches[engine] = ListenerWatch(engine)
    return watch


def host_gate(engine: Engine, host: str) -> HostGate:
    """The gate shared by every port of ``host`` on ``engine``."""
    gates = _gates.setdefault(engine, {})
    key = host.lower().rstrip(".")
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = HostGate(engine, host)
    return gate


class QemuPort(StreamPort):
    """TCP client to a qemu socket netdev (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
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
        self._gate: HostGate | SoloGate = self._make_gate()
        self._connecting = False  # from an attempt until connected or failed

    def _make_gate(self) -> HostGate | SoloGate:
        return host_gate(self.engine, self.host)

    def _sockaddr(self, host_addr: tuple[Any, ...]) -> Any:
        """The address to connect to, from one of the host's resolved addresses."""
        return (host_addr[0], self.tcp_port, *host_addr[2:])

    # -- connecting ---------------------------------------------------------------
    def start(self) -> None:
        self._closed = False
        gate = self._gate
        if isinstance(gate, HostGate) and gate.live and not self._flaps:
            # The host is up (a link added while its other links run): connect
            # now rather than after a first backoff step.
            self._attempt()
        else:
            gate.want(self)

    def _attempt(self) -> None:
        """One connection attempt now (the gate decides when)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed or self.up or self._connecting:
            return
        self._connecting = True
        self._gate.resolve(self._resolved)

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
            self._gate.connected(self)

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
        self._gate.failed(self)

    def _not_listening(self) -> None:
        """Waiting on the listener watch (a local router that is not listening yet)."""
        self.stats.last_error = "not listening"
        if not self._logged_waiting:
            log.info("%s: not listening yet; connecting as soon as it is", self.name)
            self._logged_waiting = True

    def _schedule_retry(self) -> None:
        """Retry on this port's own backoff (its host is up)."""
        if self._closed or self._timer is not None or self._connecting:
            return
        delay = backoff_delay(self._attempts)
        self._attempts += 1
        self._timer = self.engine.call_later(delay, self._attempt)

    # -- Port hooks -----------------------------------------------------------------
    def _went_down(self, reason: str) -> None:
        self._gate.lost(self)
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
        self._gate.want(self, at_once=False)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._abort_connect()
        self._gate.leave(self)
        if self.up:
            self._gate.lost(self)
        super().close()


class SoloGate:
    """The gate of a port that shares nothing with others (a unix socket path):
    it retries on its own backoff; a missing path or a refused connect costs
    one system call."""

    def __init__(self, family: int, address: tuple[Any, ...]) -> None:
        self._addrs: Addrs = [(family, address)]

    def resolve(self, done: Resolved) -> None:
        done(self._addrs, "")

    def want(self, port: QemuPort, at_once: bool = True) -> None:
        if at_once:
            port._attempt()
        else:
            port._schedule_retry()

    def failed(self, port: QemuPort) -> None:
        port._schedule_retry()

    def connected(self, port: QemuPort) -> None:
        pass

    def lost(self, port: QemuPort) -> None:
        pass

    def leave(self, port: QemuPort) -> None:
        pass


class UnixPort(QemuPort):
    """``unix:PATH``: client of a qemu ``-netdev stream`` unix socket (qemu's
    ``addr.type=unix,server=on``), with the same length-prefixed frames and the
    same reconnecting as a TCP NIC."""

    def __init__(self, engine: Engine, path: str, name: str | None = None) -> None:
        self.path = path
        super().__init__(engine, path, 0, name=name or f"unix:{path}", port=0)

    def _make_gate(self) -> SoloGate:
        return SoloGate(socket.AF_UNIX, (self.path,))

    def _sockaddr(self, host_addr: tuple[Any, ...]) -> Any:
        return self.path


def _fmt_peer(s: socket.socket) -> str:
    try:
        return fmt_addr(s.getpeername())
    except OSError:
        return "?"
