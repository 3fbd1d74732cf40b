"""The control API of an :class:`~xcon.testing.process.XconProcess`, for tests:
its socket, JSON calls, ``xcon ctl`` run as a user runs it, and config files
replaced the way an editor saves them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from xcon.control.client import Client
from xcon.testing.process import XconProcess
from xcon.testing.wait import wait_until

__all__ = ["api", "call", "ctl", "ctl_argv", "read_head", "socket_path", "wait_api", "write"]


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
