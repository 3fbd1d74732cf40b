"""The control API's listening sockets, made without the server: xcon binds
them before its links start (a client that sees the socket file can connect
at once: its connection waits in the backlog) and loads the server once the
links forward (:func:`xcon.control.start_control`).  A handover passes them
to the next process as they are (:mod:`xcon.handover`)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

#: Connections waiting to be accepted on each listening socket.
BACKLOG = 128


class Bound:
    """One listening socket: its address as shown, and the socket file to
    remove when it closes (None: TCP, or a file handed to another xcon)."""

    __slots__ = ("sock", "address", "unlink")

    def __init__(self, sock: socket.socket, address: str, unlink: str | None = None) -> None:
        self.sock = sock
        self.address = address
        self.unlink = unlink

    def close(self) -> None:
        self.sock.close()
        if self.unlink is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unlink)


def bind_unix(path: str, group: int | None = None) -> Bound:
    """Listen on a unix socket at ``path``, mode 0600 (only this user may
    connect), or 0660 owned by ``group``.  A stale socket file is replaced;
    one something listens on is an OSError (EADDRINUSE)."""
    path = os.path.abspath(path)
    remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
        # At once: a client that sees the file can connect (mode 0600 already).
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        if group is not None:
            os.chown(path, -1, group)
        os.chmod(path, 0o600 if group is None else 0o660)
    except OSError:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return Bound(sock, path, unlink=path)


def bind_tcp(host: str, port: int) -> Bound:
    """Listen on TCP ``host:port`` (port 0: any); the address shown is ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(BACKLOG)
    h, p = sock.getsockname()[:2]
    return Bound(sock, f"[{h}]:{p}" if ":" in h else f"{h}:{p}")


def remove_stale(path: str) -> None:
    """Remove a socket file nothing listens on; refuse one in use or any other file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left behind by a process that died
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process listens on {path}")
