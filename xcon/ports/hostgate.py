"""When a qemu NIC client may try to connect: the gates of :mod:`xcon.ports.qemu`.

Every :class:`~xcon.ports.qemu.QemuPort` asks its gate before each
connection attempt, and tells it how the attempt went.  Retries start 20 ms
after a failure and double up to :data:`BACKOFF_CAP`, with up to 10 % taken
off at random so that many ports do not retry in lockstep; the cap is never
exceeded.  The cap is short because a lab wants a restarted router's links
back at once and a refused connect on a LAN costs next to nothing.

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

The gates of one engine, its listener watch and its cache of local addresses
are the engine's :class:`~xcon.ports.services.PortServices`: every port of
the engine shares them.  A port that shares nothing (a unix socket path) has a
:class:`SoloGate` of its own.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from xcon.engines import Engine, TimerHandle
from xcon.ports.listeners import ListenerWatch, LocalAddresses, Waiter, listener_key

BACKOFF_FIRST = 0.02
BACKOFF_CAP = 0.25
#: Random share taken off each retry delay (never added: the cap holds).
BACKOFF_JITTER = 0.1
#: Retries are due on this grid (seconds), so many ports share one wake-up.
RETRY_GRID = 0.01
#: How long a resolved name is reused by the ports of its host.
RESOLVE_TTL = 1.0
#: A name that fails to resolve is asked again after 250 ms, doubling up to this.
RESOLVE_RETRY_CAP = 5.0
#: While a host's ports wait on the listener watch, its name is looked up this often.
WATCH_RESOLVE_TTL = 15.0


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


class GatedPort(Protocol):
    """What a gate asks of its ports (:class:`~xcon.ports.qemu.QemuPort`)."""

    @property
    def tcp_port(self) -> int: ...

    @property
    def flapping(self) -> bool:
        """Its last connections closed right after connecting."""

    def attempt(self) -> None:
        """Try to connect now."""

    def retry_later(self) -> None:
        """Try again on the port's own backoff."""

    def not_listening(self) -> None:
        """It waits on the listener watch."""


class Gate(Protocol):
    """What a port asks of its gate: :class:`HostGate` or :class:`SoloGate`."""

    @property
    def live(self) -> int:
        """Ports of the gate that are connected."""

    def resolve(self, done: Resolved) -> None: ...
    def want(self, port: GatedPort, at_once: bool = True) -> None: ...
    def failed(self, port: GatedPort) -> None: ...
    def connected(self, port: GatedPort) -> None: ...
    def lost(self, port: GatedPort) -> None: ...
    def leave(self, port: GatedPort) -> None: ...


class HostGate:
    """What the ports of one host share (see the module docstring)."""

    def __init__(
        self, engine: Engine, host: str, watch: ListenerWatch, local: LocalAddresses
    ) -> None:
        self.engine = engine
        self.host = host
        family = _literal_family(host)
        self._literal: Addrs | None = [(family, (host, 0))] if family is not None else None
        self.live = 0  # ports of this host that are connected
        self._waiting: deque[GatedPort] = deque()
        self._probe: GatedPort | None = None
        self._probe_timer: TimerHandle | None = None
        self._attempts = 0
        self._watch = watch
        self._local = local
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
    def want(self, port: GatedPort, at_once: bool = True) -> None:
        """``port`` is down and wants to connect (now, or after the first backoff
        step when its connection was just lost)."""
        if self.live or port.flapping:
            # The host is up (or this port's peer accepts and closes at once):
            # the port retries on its own backoff.
            port.retry_later()
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

    def failed(self, port: GatedPort) -> None:
        """An attempt of ``port`` failed."""
        if port is self._probe:
            self._probe = None
            self._waiting.append(port)
            delay = backoff_delay(self._attempts)
            self._attempts += 1
            self._probe_timer = self.engine.call_later(delay, self._next_probe)
        else:
            self.want(port)

    def connected(self, port: GatedPort) -> None:
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
            p.attempt()

    def lost(self, port: GatedPort) -> None:
        """``port``'s connection ended (it will call :meth:`want` to come back)."""
        self.live -= 1

    def leave(self, port: GatedPort) -> None:
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
                    p.attempt()
                    return
            keys = frozenset(k for p in self._waiting for k in self._keys(p, addrs))
            self._waiter = self._watch.wait(keys, self._listener_seen)
            if self._waiter is not None:
                for p in self._waiting:
                    p.not_listening()
                return
            if self._watch.broken:
                return self._next_probe()
        self._probe = self._waiting.popleft()
        self._probe.attempt()

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
        if all(self._local.is_local(fam, a[0]) for fam, a in addrs):
            return addrs
        return None

    def _looked_up(self, addrs: Addrs | None, error: str) -> None:
        """A watched name was looked up again: match its listeners at its new addresses."""
        if self._waiter is not None:
            self._unwatch()
            self._kick()

    @staticmethod
    def _keys(port: GatedPort, addrs: Addrs) -> list[bytes]:
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


class SoloGate:
    """The gate of a port that shares nothing with others (a unix socket path):
    it retries on its own backoff; a missing path or a refused connect costs
    one system call."""

    live = 0

    def __init__(self, family: int, address: tuple[Any, ...]) -> None:
        self._addrs: Addrs = [(family, address)]

    def resolve(self, done: Resolved) -> None:
        done(self._addrs, "")

    def want(self, port: GatedPort, at_once: bool = True) -> None:
        if at_once:
            port.attempt()
        else:
            port.retry_later()

    def failed(self, port: GatedPort) -> None:
        port.retry_later()

    def connected(self, port: GatedPort) -> None:
        pass

    def lost(self, port: GatedPort) -> None:
        pass

    def leave(self, port: GatedPort) -> None:
        pass
