"""Who may do what through the control API (docs/security.md).

Three doors, three kinds of client:

* **admin**: a peer on the unix socket whose user is root or the user xcon runs
  as (the kernel says who, ``SO_PEERCRED``).  Everything.
* **operator**: a peer on the unix socket in the group named by
  ``--control-group``, or a request on the TCP listener carrying the token
  (``Authorization: Bearer``, the token from ``--control-token-file``).  What
  a lab user does to links that exist: pull and plug cables, impair, capture
  (into the capture directory only), reset counters, remove links, reload the
  config file.  Adding links only with ends of the kinds that
  ``--control-allow-ends`` names (none by default: an end opens sockets,
  devices and files on the host), and naming a router's monitor not at all.
* **reader**: a request on the TCP listener without the token: ``GET`` (and
  ``HEAD``) of the routes the route table marks ``read`` (the index, the
  links, the health and ``/metrics``: what a Prometheus scrape needs).  Not a
  live capture: frames are the lab's traffic.

Any other unix peer (the socket's mode let it in, but it is none of the
above) is refused everything.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Iterable

from xcon.control.routes import read_paths, readable
from xcon.errors import ModeError
from xcon.linkspec import KINDS

log = logging.getLogger("xcon.control")

ADMIN, OPERATOR, READER, NOBODY = "admin", "operator", "reader", "nobody"

#: End kinds ``--control-allow-ends`` may name: linkspec's kinds, ``qemu`` for HOST/N.
END_KINDS = ("qemu", *KINDS)
#: Shortest token read from a token file (characters).
MIN_TOKEN = 16
#: A token file larger than this is not a token file.
MAX_TOKEN_FILE = 4096
#: Seconds between two log lines about refused requests (the rest are counted).
REFUSED_LOG_EVERY = 10.0

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


class Peer:
    """Who sent a request, as far as the server can tell."""

    __slots__ = ("transport", "uid", "gid", "pid", "groups", "address")

    def __init__(
        self,
        transport: str,  # "unix" or "tcp" ("local": in-process, trusted)
        uid: int | None = None,
        gid: int | None = None,
        pid: int | None = None,
        groups: tuple[int, ...] = (),
        address: str = "",
    ) -> None:
        self.transport = transport
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.groups = groups
        self.address = address

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"uid {self.uid} (pid {self.pid}) on the unix socket"
        if self.transport == "tcp":
            return f"{self.address} on TCP"
        return self.transport


#: What an in-process caller (tests, tools built on the API object) is.
LOCAL = Peer("local")


def unix_peer(sock: socket.socket) -> Peer:
    """The credentials of a unix socket's peer (``SO_PEERCRED``, and its
    supplementary groups where the kernel gives them)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
    except OSError:
        return Peer("unix")
    groups: tuple[int, ...] = ()
    with contextlib.suppress(OSError):
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
        groups = struct.unpack(f"{len(raw) // 4}I", raw)
    return Peer("unix", uid=uid, gid=gid, pid=pid, groups=groups)


class Refused(Exception):
    """A request this client may not make: ``status`` (401 or 403) and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Access:
    """The operator's rules (``--control-group``, ``--control-token-file``,
    ``--control-allow-ends``) and the decision for each request."""

    def __init__(
        self,
        token: str | None = None,
        group: int | None = None,
        allow_ends: Iterable[str] = (),
        token_file: str | None = None,
    ) -> None:
        self.token = token.encode() if token else None
        self.token_file = token_file
        self.group = group
        self.allow_ends = frozenset(allow_ends)
        self.euid = os.geteuid()
        #: Refused requests by reason ("token", "forbidden"), for the metrics.
        self.refused: dict[str, int] = {}
        self._logged_at = 0.0
        self._unlogged = 0

    # -- who ------------------------------------------------------------------------
    def role(self, peer: Peer, authorization: str | None) -> str:
        if peer.transport == "local":
            return ADMIN
        if peer.transport == "unix":
            if peer.uid is not None and peer.uid in (0, self.euid):
                return ADMIN
            if self.group is not None and (peer.gid == self.group or self.group in peer.groups):
                return OPERATOR
            return NOBODY
        if self.token is not None and authorization:
            scheme, _, given = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "replace"), self.token
            ):
                return OPERATOR
        return READER

    # -- what -----------------------------------------------------------------------
    def check(self, peer: Peer, method: str, path: str, authorization: str | None) -> str:
        """The client's role, or :class:`Refused` when it may not make this
        request at all (finer checks: :meth:`check_add`, :meth:`check_monitors`)."""
        role = self.role(peer, authorization)
        if role in (ADMIN, OPERATOR):
            return role
        if role == NOBODY:
            raise self._refuse(
                peer,
                403,
                f"uid {peer.uid} may not use this control socket (root, uid {self.euid}"
                + (f" or group {self.group}" if self.group is not None else "")
                + " only)",
            )
        if readable(method, path):
            return role
        if self.token is None:
            raise self._refuse(
                peer,
                403,
                f"the TCP listener is read-only (GET of {', '.join(read_paths())}): "
                "start xcon with --control-token-file to allow changes with a token",
            )
        raise self._refuse(
            peer,
            401,
            "this needs the control token: Authorization: Bearer TOKEN "
            f"(xcon ctl --token-file {self.token_file or 'FILE'})",
        )

    def check_add(self, role: str, peer: Peer, kinds: Iterable[str]) -> None:
        """An operator adds a link only with ends of the allowed kinds."""
        if role == ADMIN:
            return
        refused = sorted({k for k in kinds if k not in self.allow_ends})
        if refused:
            allowed = ", ".join(sorted(self.allow_ends)) or "none"
            raise self._refuse(
                peer,
                403,
                f"only root may add links with {', '.join(refused)} ends here "
                f"(--control-allow-ends: {allowed})",
            )

    def check_monitors(self, role: str, peer: Peer) -> None:
        """Naming a router's monitor makes xcon connect to it: root only."""
        if role != ADMIN:
            raise self._refuse(peer, 403, "only root may name routers' monitors")

    def _refuse(self, peer: Peer, status: int, message: str) -> Refused:
        reason = "token" if status == 401 else "forbidden"
        self.refused[reason] = self.refused.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSED_LOG_EVERY:
            more = f" ({self._unlogged} more refused since the last line)" if self._unlogged else ""
            log.warning("control: refused %s: %s%s", peer, message, more)
            self._logged_at, self._unlogged = now, 0
        else:
            self._unlogged += 1
        return Refused(status, message)


# -- the operator's settings ------------------------------------------------------------
def parse_allow_ends(text: str) -> frozenset[str]:
    """``--control-allow-ends qemu,udp``; raises ValueError with the message."""
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    if kinds == {"none"}:
        return frozenset()
    unknown = sorted(kinds - set(END_KINDS))
    if unknown or not kinds:
        raise ValueError(
            f"--control-allow-ends {text!r}: expected kinds from {', '.join(END_KINDS)} "
            "(comma-separated; qemu is HOST/N), or none"
        )
    return frozenset(kinds)


def parse_group(text: str) -> int:
    """``--control-group NAME|GID``; raises ValueError with the message."""
    import grp

    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError(f"--control-group {text!r}: no such group") from None


def load_token(path: str) -> str:
    """The token in ``path``; a file that does not exist is made (mode 0600, a
    new random token).  Raises ModeError (exit 2) for a file others may read, a
    file that is not ours or not regular, or one that holds no token."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return _make_token(path)
    except OSError as e:
        raise ModeError(f"--control-token-file {path}: {e.strerror or e}", 2) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModeError(f"--control-token-file {path}: not a regular file", 2)
        if st.st_uid != os.geteuid():
            raise ModeError(
                f"--control-token-file {path}: owned by uid {st.st_uid}, not by xcon's user", 2
            )
        if st.st_mode & 0o077:
            raise ModeError(
                f"--control-token-file {path}: others may read it (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}",
                2,
            )
        data = os.read(fd, MAX_TOKEN_FILE + 1)
    finally:
        os.close(fd)
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if len(data) > MAX_TOKEN_FILE or len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise ModeError(
            f"--control-token-file {path}: expected one token of {MIN_TOKEN} to "
            f"{MAX_TOKEN_FILE} printable ASCII characters",
            2,
        )
    return token


def _make_token(path: str) -> str:
    import secrets

    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as e:
        raise ModeError(
            f"--control-token-file {path}: cannot make it: {e.strerror or e}", 2
        ) from None
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    log.info("control token made in %s (mode 0600)", path)
    return token


def read_token_file(path: str) -> str:
    """The client's side (``xcon ctl --token-file``): the token, or ValueError."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise ValueError(f"--token-file {path}: {e.strerror or e}") from None
    token = data.decode("ascii", "replace").strip()
    if not token or len(data) > MAX_TOKEN_FILE:
        raise ValueError(f"--token-file {path}: no token in it")
    return token
