"""The qemu NIC client: ``host/N`` is TCP ``host:10000+N``, reconnecting forever.

The host is resolved at every attempt (docker ``--link`` names move when a
container is re-created; names go through a thread so a slow resolver never
stalls the loop).  A router that is not up yet is not an error: the port stays
down and keeps trying.  Retries start 20 ms after a failure and double up to
:data:`BACKOFF_CAP`, with up to 10 % taken off at random so that many ports do
not retry in lockstep; the cap is never exceeded.  The cap is short because a
lab wants a restarted router's links back at once and a refused connect on a
LAN costs next to nothing.

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
from collections.abc import Sequence
from typing import Any

from xcon.engines import WRITE, Callback, Engine, Registration, TimerHandle
from xcon.limits import qemu_tcp_port
from xcon.ports import fmt_addr
from xcon.ports.stream import StreamPort

log = logging.getLogger("xcon.port")

BACKOFF_FIRST = 0.02
BACKOFF_CAP = 0.25
#: Random share taken off each retry delay (never added: the cap holds).
BACKOFF_JITTER = 0.1
CONNECT_TIMEOUT = 3.0
#: A connection up this long, or that carried frames, resets the backoff.
STABLE_AFTER = 1.0
#: How often repeated short-lived connections are summed up in the log.
FLAP_REPORT_EVERY = 60.0


def backoff_delay(attempt: int) -> float:
    """Delay before retry number ``attempt`` (0-based): 20 ms doubling, at most the cap."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * (2 ** min(attempt, 16)))
    return delay * (1.0 - BACKOFF_JITTER * random.random())


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


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
        log.log(level, "%s: connected to %s", self.name, _fmt_peer(s))
        self._open_stream(s)

    def _retry(self, reason: str) -> None:
        self.stats.last_error = reason
        if self._closed:
            return
        delay = backoff_delay(self._attempts)
        self._attempts += 1
        if not self._logged_waiting:
            log.info("%s: not reachable (%s); retrying until it is", self.name, reason)
            self._logged_waiting = True
        else:
            log.debug("%s: attempt %d failed (%s)", self.name, self._attempts, reason)
        self._timer = self.engine.call_later(delay, self._attempt)

    # -- Port hooks -----------------------------------------------------------------
    def _went_down(self, reason: str) -> None:
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
        self._retry(reason)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._abort_connect()
        super().close()


def _fmt_peer(s: socket.socket) -> str:
    try:
        return fmt_addr(s.getpeername())
    except OSError:
        return "?"
