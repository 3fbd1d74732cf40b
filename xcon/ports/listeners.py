"""Which TCP ports are listening on this host, without connecting to any of them.

A lab that is still booting has hundreds of router NICs down.  When the
routers run on this host (``docker run --network host``, or qemu on loopback
as in tests), asking the kernel for its listening sockets is far cheaper than
trying to connect to each NIC every retry interval: one ``NETLINK_SOCK_DIAG``
dump (what ``ss -lt`` does) every :data:`WATCH_EVERY` seconds lists every
listener, and only a port whose listener appeared is connected to.  A host's
addresses are watched this way when each is local (loopback, or an address
this host has); for any other address the kernel cannot know, and the ports
probe with ``connect`` as before.

Nothing here needs privileges: any user may list the sockets of its own
network namespace, which is the one xcon connects from.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable

from xcon.engines import Engine, TimerHandle

log = logging.getLogger("xcon.port")

#: How often the listeners are listed while some port waits for one (seconds).
WATCH_EVERY = 0.1
#: How long an address is known to be local (or not) before it is checked again.
LOCAL_TTL = 10.0

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCP_LISTEN = 10
_NLMSG = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBxI48x")  # inet_diag_req_v2 with an empty socket id
_ALIGN = 4


def listener_key(family: int, packed_ip: bytes, port: int) -> bytes:
    """The key of ``ip:port`` as :meth:`ListenerWatch.dump` reports listeners."""
    return bytes((family,)) + port.to_bytes(2, "big") + packed_ip.ljust(16, b"\0")


def _wildcard(family: int, port: int) -> bytes:
    return listener_key(family, b"", port)


class LocalAddresses:
    """Which IP addresses are this host's, each answer kept :data:`LOCAL_TTL`
    seconds (one per engine: :class:`~xcon.ports.services.PortServices`)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str], tuple[bool, float]] = {}

    def is_local(self, family: int, ip: str) -> bool:
        """True when ``ip`` is loopback or one of this host's addresses (so a
        listener on it shows in this namespace's socket list)."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if addr.is_loopback:
            return True
        if addr.is_link_local or addr.is_multicast or addr.is_unspecified:
            return False
        now = time.monotonic()
        hit = self._cache.get((family, ip))
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((ip, 0))
            local = True
        except OSError:
            local = False  # EADDRNOTAVAIL: not ours (or not allowed: probe as before)
        self._cache[(family, ip)] = (local, now + LOCAL_TTL)
        return local


class Waiter:
    """What the watch calls back: a set of ``listener_key`` s and a callback."""

    __slots__ = ("keys", "seen")

    def __init__(self, keys: frozenset[bytes], seen: Callable[[], None]) -> None:
        self.keys = keys
        self.seen = seen


class ListenerWatch:
    """Lists this namespace's TCP listeners while someone waits for one.

    :meth:`wait` registers keys (from :func:`listener_key`) and a callback run
    once, from the loop, as soon as any of them (or a wildcard listener on the
    same port and family, or ``[::]`` for either family) is listening.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._by_port: dict[bytes, set[Waiter]] = {}  # family+port -> waiters
        self._timer: TimerHandle | None = None
        self._listening: set[bytes] = set()
        self._listed_at = -1e9
        self._seq = 0
        self._sock: socket.socket | None = None
        self.broken = False  # sock_diag unavailable: callers probe instead

    # -- waiting --------------------------------------------------------------------
    def wait(self, keys: frozenset[bytes], seen: Callable[[], None]) -> Waiter | None:
        """Call ``seen()`` once one of ``keys`` listens; None when that is already so
        (the caller connects at once) or when the kernel cannot be asked."""
        if self.broken:
            return None
        if self._match_fresh(keys):
            return None
        w = Waiter(keys, seen)
        for k in keys:
            self._by_port.setdefault(k[:3], set()).add(w)
        if self._timer is None:
            self._timer = self.engine.call_later(WATCH_EVERY, self._tick)
        return w

    def cancel(self, w: Waiter) -> None:
        for k in w.keys:
            ws = self._by_port.get(k[:3])
            if ws is not None:
                ws.discard(w)
                if not ws:
                    del self._by_port[k[:3]]
        if not self._by_port and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def listening(self, keys: list[bytes] | frozenset[bytes]) -> bool:
        """Whether one of ``keys`` is listening (a list at most half a watch
        interval old is trusted; an older one is taken again first)."""
        return self._match_fresh(keys)

    def _match_fresh(self, keys: list[bytes] | frozenset[bytes]) -> bool:
        if time.monotonic() - self._listed_at > WATCH_EVERY / 2:
            self._refresh()
        return not self.broken and self._match(keys)

    def _match(self, keys: list[bytes] | frozenset[bytes]) -> bool:
        listening = self._listening
        for k in keys:
            port = int.from_bytes(k[1:3], "big")
            if (
                k in listening
                or _wildcard(k[0], port) in listening
                or _wildcard(socket.AF_INET6, port) in listening
            ):
                return True
        return False

    def _tick(self) -> None:
        self._timer = None
        self._refresh()
        if self.broken:
            # Hand every waiter back: they probe with connect from now on.
            waiters = {w for ws in self._by_port.values() for w in ws}
            self._by_port.clear()
            for w in waiters:
                w.seen()
            return
        ready: set[Waiter] = set()
        for key in self._listening:
            ws = self._by_port.get(key[:3])
            if ws:
                ready.update(w for w in ws if w not in ready and self._match(w.keys))
            if key[3:] == bytes(16) and key[0] == socket.AF_INET6:
                # [::]:port also accepts IPv4: wake IPv4 waiters of that port
                ws4 = self._by_port.get(bytes((socket.AF_INET,)) + key[1:3])
                if ws4:
                    ready.update(ws4)
        for w in ready:
            self.cancel(w)
        if self._by_port:
            self._timer = self.engine.call_later(WATCH_EVERY, self._tick)
        for w in ready:
            w.seen()

    # -- the kernel's list ----------------------------------------------------------
    def _refresh(self) -> None:
        try:
            listening: set[bytes] = set()
            for family in (socket.AF_INET, socket.AF_INET6):
                self._dump(family, listening)
        except OSError as e:
            log.debug("listing TCP listeners failed (%s): probing with connect", e)
            self.broken = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            return
        self._listening = listening
        self._listed_at = time.monotonic()

    def _dump(self, family: int, out: set[bytes]) -> None:
        """Add a key per TCP listener of ``family`` to ``out`` (one netlink dump)."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
            self._sock.settimeout(1.0)
        s = self._sock
        self._seq += 1
        body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
        s.send(_NLMSG.pack(_NLMSG.size + len(body), _SOCK_DIAG_BY_FAMILY,
                           _NLM_F_REQUEST | _NLM_F_DUMP, self._seq, 0) + body)  # fmt: skip
        fam = bytes((family,))
        width = 4 if family == socket.AF_INET else 16
        pad = bytes(16 - width)
        while True:
            data = s.recv(1 << 16)
            pos = 0
            while pos + _NLMSG.size <= len(data):
                length, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, pos)
                if length < _NLMSG.size:
                    raise OSError(errno.EPROTO, "bad netlink message")
                if seq == self._seq:
                    if kind == _NLMSG_DONE:
                        return
                    if kind == _NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, pos + _NLMSG.size)
                        if code:
                            raise OSError(-code, "sock_diag: " + errno.errorcode.get(-code, ""))
                        return
                    # inet_diag_msg: family, state, timer, retrans, then the socket
                    # id: sport (big endian) at +4, source address at +8 (16 bytes).
                    m = pos + _NLMSG.size
                    out.add(fam + data[m + 4 : m + 6] + data[m + 8 : m + 8 + width] + pad)
                pos += (length + _ALIGN - 1) & ~(_ALIGN - 1)
