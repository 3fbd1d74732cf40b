"""A listening port: the qemu side connects to xcon (``--tap-listen`` / ``--raw-listen``).

:class:`ListenPort` listens on ``[::]:10000+N`` (dual stack: IPv4 clients
arrive as v4-mapped addresses; a host without IPv6 falls back to
``0.0.0.0``) and serves **one client at a time**, like qemu's own
``-netdev socket,listen=``: while a client is served the listening socket is
not watched at all, so a second client's connect completes in the kernel
backlog and waits there until the first one leaves.  The served connection is
an ordinary :class:`~xcon.ports.stream.StreamPort` (length-prefixed frames, the
same receive buffer and validation as a :class:`~xcon.ports.qemu.QemuPort`).
When the client leaves (EOF, reset, protocol error) the partial frame it was
sending is discarded, the port goes down and listening resumes.

Health: xcon plays a router's NIC here, so the port counts as healthy as soon
as it listens (a router container is healthy before anything is linked to
it), whether or not a client is connected.  It counts as *connected* only once
the client has sent a whole frame: a client that connects and stays silent (or
stops inside a frame header) is not reported as a working link.

**Squatters.**  Serving one client at a time means an idle client can hold the
only slot.  A client that has not sent a whole frame within
:data:`IDLE_GRACE` seconds is dropped as soon as another client is waiting in
the backlog (checked every :data:`SQUAT_CHECK` seconds while it is silent), so
squatting and connection floods cannot lock out the real client; a silent
client that nobody else is waiting for is left alone (qemu's ``connect=``
never reconnects, so dropping it would cut the link for good).  The backlog
is bounded (:data:`BACKLOG`).

**Floods.**  While the served client has sent no whole frame, xcon keeps
accepting: newcomers wait as *candidates* (at most :data:`CANDIDATES`; over
that the longest-waiting silent one is closed), watched for their first byte.
The first candidate that sends anything takes the place of the silent served
client at once.  A flood of idle connections thus churns through the
candidate list while the real client, which sends a frame as soon as it
connects, is served within moments; candidates still waiting when the served
client proves itself keep their place and are served, in order, when it leaves.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import stat
import time
from typing import TYPE_CHECKING

from xcon.engines import READ, Callback, Engine, Registration, TimerHandle
from xcon.errors import ModeError
from xcon.ports import fmt_addr
from xcon.ports.stream import StreamPort, unix_buffers

if TYPE_CHECKING:
    from xcon.linkspec import ListenEnd, ListenUnixEnd
    from xcon.ports.services import PortServices

log = logging.getLogger("xcon.port")

#: Connections the kernel queues while one client is served.
BACKLOG = 8
#: Pause before accepting again after a resource error (EMFILE, ENOBUFS ...).
ACCEPT_PAUSE = 1.0
#: A client silent this long (no whole frame) gives its place to a waiting one.
IDLE_GRACE = 2.0
#: How often a silent client is checked for others waiting.
SQUAT_CHECK = 0.5
#: Connections accepted while the served client is silent, waiting their turn.
CANDIDATES = 16


class ListenPort(StreamPort):
    """Accepts one stream client at a time on ``[::]:port``."""

    def __init__(
        self,
        engine: Engine,
        port: int,
        name: str | None = None,
        host: str = "::",
        path: str | None = None,
    ) -> None:
        super().__init__(engine, name or (f"listen:unix:{path}" if path else f"tcp:{port}"))
        self.tcp_port = port
        self.host = host
        #: A unix socket path to listen on instead of TCP (``listen:unix:PATH``).
        self.path = path
        self._inode: tuple[int, int] | None = None  # of the socket file this port made
        self.lsock: socket.socket | None = None
        self._lreg: Registration | None = None
        self._pause: TimerHandle | None = None
        self._squat: TimerHandle | None = None
        self._accepted_at = 0.0
        self.peer = ""
        # fd -> (socket, registration or None once it sent data, peer)
        self._cands: dict[int, tuple[socket.socket, Registration | None, str]] = {}
        self._next: tuple[socket.socket, str] | None = None  # serve after going down
        self._serving = False  # a client is attached or being attached

    @property
    def connected(self) -> bool:
        """A client is attached and has sent a whole frame."""
        return self.up and self.proved

    @property
    def healthy(self) -> bool:
        """Listening (ready for a client) or serving one."""
        return self._lreg is not None or self.up

    # -- listening ------------------------------------------------------------------
    def prepare(self) -> None:
        """Listen now (a port in use is an error at start)."""
        self.bind()

    def bind(self) -> None:
        """Create the listening socket now (so a busy port is an error at start)."""
        if self.lsock is not None:
            return
        if self.path is not None:
            self._bind_unix(self.path)
            return
        try:
            s = self._bind_dual() if self.host == "::" else self._bind_one(self.host)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ModeError(
                    f"cannot listen on TCP port {self.tcp_port}: it is already in use"
                ) from None
            raise ModeError(
                f"cannot listen on TCP port {self.tcp_port}: {e.strerror or e}"
            ) from None
        s.setblocking(False)
        self.lsock = s
        log.info("%s: listening on %s", self.name, _fmt_sockname(s))

    def _bind_unix(self, path: str) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                s.bind(path)
            except OSError as e:
                if e.errno != errno.EADDRINUSE or not _stale_socket(path):
                    raise
                os.unlink(path)  # left behind by a process that is gone
                s.bind(path)
            st = os.stat(path)
            self._inode = (st.st_dev, st.st_ino)
            s.listen(BACKLOG)
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRINUSE:
                why = "something listens there already" if _is_socket(path) else "a file is there"
                raise ModeError(f"cannot listen on unix socket {path}: {why}") from None
            raise ModeError(f"cannot listen on unix socket {path}: {e.strerror or e}") from None
        s.setblocking(False)
        self.lsock = s
        log.info("%s: listening on unix socket %s", self.name, path)

    def _unlink(self) -> None:
        """Remove the socket file this port made (not one made since by another)."""
        path, made, self._inode = self.path, self._inode, None
        if path is None or made is None:
            return
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == made:
                os.unlink(path)
        except OSError:
            pass

    def _bind_dual(self) -> socket.socket:
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError as e:
            if e.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                return self._bind_one("0.0.0.0")
            raise
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", self.tcp_port))
            s.listen(BACKLOG)
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRNOTAVAIL:  # IPv6 disabled on this host
                return self._bind_one("0.0.0.0")
            raise
        return s

    def _bind_one(self, host: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, self.tcp_port))
            s.listen(BACKLOG)
        except OSError:
            s.close()
            raise
        return s

    def start(self) -> None:
        self._closed = False
        self.bind()
        assert self.lsock is not None
        if self._lreg is None:
            self._lreg = self.engine.register(self.lsock.fileno(), Callback(self._accept), READ)

    def _listen(self, on: bool) -> None:
        if self._lreg is not None:
            self._lreg.set(READ if on else 0)

    def _accept(self) -> None:
        if self._closed or self.lsock is None or (self.up and self.proved):
            self._listen(False)
            return
        try:
            s, addr = self.lsock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                return
            # Out of descriptors or memory: the backlog stays readable, so pause
            # instead of spinning on it.
            log.error("%s: accept failed (%s); retrying in %.0f s", self.name, e, ACCEPT_PAUSE)
            self._listen(False)
            self._pause = self.engine.call_later(ACCEPT_PAUSE, self._resume)
            return
        s.setblocking(False)
        if self.path is not None:
            unix_buffers(s)
        else:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self._serving:
            self._add_candidate(s, fmt_addr(addr))
            return
        self._serve(s, fmt_addr(addr))

    def _serve(self, s: socket.socket, peer: str) -> None:
        """Attach client ``s``; the listening socket stays watched until it proves itself."""
        self._serving = True
        self.peer = peer
        log.info("%s: client connected from %s", self.name, self.peer)
        self._accepted_at = time.monotonic()
        if self._squat is None:
            self._squat = self.engine.call_later(SQUAT_CHECK, self._check_squatter)
        self._open_stream(s)

    # -- candidates: clients accepted while the served one is silent ----------------------
    def _add_candidate(self, s: socket.socket, peer: str) -> None:
        if len(self._cands) >= CANDIDATES:
            silent = next((fd for fd, c in self._cands.items() if c[1] is not None), None)
            if silent is None:
                s.close()  # every candidate has sent data already: this one waits no more
                return
            self._drop_candidate(silent)
        fd = s.fileno()
        reg = self.engine.register(fd, Callback(lambda: self._candidate_readable(fd)), READ)
        self._cands[fd] = (s, reg, peer)
        log.debug("%s: client %s waits its turn", self.name, peer)

    def _drop_candidate(self, fd: int) -> None:
        s, reg, _peer = self._cands.pop(fd)
        if reg is not None:
            reg.close()
        s.close()

    def _candidate_readable(self, fd: int) -> None:
        c = self._cands.get(fd)
        if c is None:
            return
        s, reg, peer = c
        try:
            data = s.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_candidate(fd)  # left before its turn
            return
        assert reg is not None
        reg.close()
        self._cands[fd] = (s, None, peer)  # it talks: keep it, stop watching
        if not self.proved and self._next is None:
            del self._cands[fd]
            if self.up and self._failing is None:
                log.warning(
                    "%s: client %s sent no frame, client %s did; serving %s",
                    self.name,
                    self.peer,
                    peer,
                    peer,
                )
                self._next = (s, peer)
                self.fail(f"client {peer} sent data first")
            elif self._serving:
                self._next = (s, peer)  # taken when the current client is gone
            else:
                self._serve(s, peer)

    def _take_next(self) -> tuple[socket.socket, str] | None:
        """The client to serve next: the one chosen, else the first candidate that
        sent data, else the longest waiting."""
        if self._next is not None:
            nxt, self._next = self._next, None
            return nxt
        if not self._cands:
            return None
        fd = next((fd for fd, c in self._cands.items() if c[1] is None), next(iter(self._cands)))
        s, reg, peer = self._cands.pop(fd)
        if reg is not None:
            reg.close()
        return s, peer

    def _check_squatter(self) -> None:
        self._squat = None
        if self._closed or self.proved or self.lsock is None:
            return
        if not self.up and self._stream is None and self._failing is None:
            return  # not attached (yet)
        if time.monotonic() - self._accepted_at >= IDLE_GRACE and (
            self._cands or _pending(self.lsock)
        ):
            log.warning(
                "%s: client %s sent no frame in %.0f s and another client is waiting; dropping it",
                self.name,
                self.peer,
                IDLE_GRACE,
            )
            self.fail(f"no frame in {IDLE_GRACE:.0f} s, another client waiting")
            return
        self._squat = self.engine.call_later(SQUAT_CHECK, self._check_squatter)

    def _proved(self) -> None:
        super()._proved()
        self._listen(False)  # serving: newcomers wait in the backlog
        if self.owner is not None:
            self.owner.port_state(self)  # now counted as connected

    def _resume(self) -> None:
        self._pause = None
        if not self.up and not self._closed:
            self._listen(True)

    # -- Port hooks -----------------------------------------------------------------
    def _went_down(self, reason: str) -> None:
        log.warning("%s: client %s left (%s); listening again", self.name, self.peer, reason)

    def _again(self, reason: str) -> None:
        self._serving = False
        if self._squat is not None:
            self._squat.cancel()
            self._squat = None
        if self._closed:
            return
        nxt = self._take_next()
        if nxt is not None:
            self._serve(*nxt)
        if self._pause is None:
            self._listen(True)

    def close(self) -> None:
        self._closed = True
        if self._squat is not None:
            self._squat.cancel()
            self._squat = None
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        for fd in list(self._cands):
            self._drop_candidate(fd)
        if self._next is not None:
            self._next[0].close()
            self._next = None
        super().close()
        if self._lreg is not None:
            self._lreg.close()
            self._lreg = None
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None
        self._unlink()


def listen_port(services: PortServices, end: ListenEnd) -> ListenPort:
    """``listen:[HOST:]PORT``: xcon plays the qemu NIC on TCP."""
    return ListenPort(services.engine, end.port, name=str(end), host=end.host or "::")


def listen_unix_port(services: PortServices, end: ListenUnixEnd) -> ListenPort:
    """``listen:unix:PATH``: the same on a unix socket."""
    return ListenPort(services.engine, 0, name=str(end), path=end.path)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _stale_socket(path: str) -> bool:
    """Whether ``path`` is a unix socket nobody listens on any more."""
    if not _is_socket(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def _pending(lsock: socket.socket) -> bool:
    """Whether a connection waits in the listening socket's backlog."""
    try:
        readable, _w, _x = select.select([lsock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


def _fmt_sockname(s: socket.socket) -> str:
    try:
        return fmt_addr(s.getsockname())
    except OSError:
        return "?"
