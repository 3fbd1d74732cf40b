"""The control API of an :class:`~xcon.testing.process.XconProcess`, for tests:
its socket, JSON calls, ``xcon ctl`` run as a user runs it, and config files
replaced the way an editor saves them."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

from xcon.control.client import Client
from xcon.testing.process import XconProcess
from xcon.testing.wait import wait_until

__all__ = [
    "Follower",
    "api",
    "call",
    "ctl",
    "ctl_argv",
    "read_head",
    "socket_path",
    "wait_api",
    "write",
]


def socket_path(xc: XconProcess) -> str:
    """The control socket xcon makes in its working directory by default."""
    return os.path.join(xc.workdir, "xcon.sock")


def api(xc: XconProcess, timeout: float | None = None) -> Client:
    """A client of ``xc``'s control socket (``timeout`` s per request if given)."""
    if timeout is None:
        return Client(path=socket_path(xc))
    return Client(path=socket_path(xc), timeout=timeout)


def call(xc: XconProcess, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One request: the status and the answer (parsed when it is JSON, else text)."""
    status, data, ctype = api(xc).request(method, path, body)
    return status, (json.loads(data) if "json" in ctype else data.decode())


def ctl_argv(xc: XconProcess, *args: str) -> list[str]:
    """The command line of ``xcon ctl --control SOCKET ARGS...`` (to start it yourself)."""
    return [sys.executable, "-m", "xcon", "ctl", "--control", socket_path(xc), *args]


def ctl(xc: XconProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``xcon ctl --control SOCKET ARGS...`` run to its end."""
    return subprocess.run(ctl_argv(xc, *args), capture_output=True, text=True, timeout=30)


def read_head(sock: socket.socket) -> bytes:
    """Read an HTTP answer from ``sock`` up to the end of its head (or of the
    stream); returns what came, which may go on past the head."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def wait_api(xc: XconProcess) -> None:
    """Wait for the control socket to exist (raises WaitTimeout after 10 s)."""
    wait_until(lambda: os.path.exists(socket_path(xc)), 10, "the control socket")


def write(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file at ``path`` at once (a reader never sees half of it)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def timed_health(xc: XconProcess, timeout: float = 2.0) -> float:
    """Ask ``xc``'s /health, which must answer 200 with code 0; return the seconds taken."""
    t0 = time.monotonic()
    status, data, _ = api(xc, timeout=timeout).request("GET", "/health")
    assert status == 200 and b'"code": 0' in data, (status, data)
    return time.monotonic() - t0


class Follower:
    """``GET /events`` of ``xc`` (``query``: ``?type=...``), read as it comes:
    every event so far in :attr:`events`.  The request is answered (its
    subscriber made) when the constructor returns."""

    def __init__(self, xc: XconProcess, query: str = "") -> None:
        self.live = api(xc).stream("GET", "/events" + query)
        self.events: list[dict[str, Any]] = []
        self._rest = b""
        self.ended = False
        wait_until(lambda: self._read(0.05) or self.live.status != 0, 10, "the answer's head")
        if self.live.status != 200:
            while self._read(1.0) and not self.ended:
                pass
            raise AssertionError(f"GET /events: {self.live.status} {b''.join(self.live.take())!r}")

    def _read(self, timeout: float) -> bool:
        """Take what came within ``timeout`` s; False when nothing did."""
        if self.ended or not select.select([self.live.sock], [], [], timeout)[0]:
            return False
        self.ended = not self.live.receive()
        if self.live.status != 200:
            return True  # an error: its body waits in live.take()
        *lines, self._rest = (self._rest + b"".join(self.live.take())).split(b"\n")
        self.events += [json.loads(x) for x in lines]
        return True

    def wait(self, pred: Any, timeout: float = 10.0, what: str = "events") -> list[dict[str, Any]]:
        """Read until ``pred(events)`` is true; returns the events."""

        def seen() -> bool:
            self._read(0.01)
            return bool(pred(self.events))

        wait_until(seen, timeout, lambda: f"{what}: {self.events}")
        return self.events

    def types(self, link: str | None = None) -> list[str]:
        """The events' types (of ``link`` only, when given)."""
        return [e["type"] for e in self.events if link is None or e["link"] == link]

    def close(self) -> None:
        self.live.close()
