"""A qemu HMP monitor for tests: it speaks as qemu's does on a TCP (or unix)
chardev, remembers what it was told, and keeps each netdev's link state.

qemu's monitor greets with a banner and the ``(qemu)`` prompt, echoes what
is typed with cursor movements, answers, and prompts again; it serves one
client at a time.  :class:`FakeMonitor` does the same; ``answers`` maps a
command to its output (``Error: ...`` for a refusal), ``links`` holds each
netdev's state after ``set_link``, and ``changes`` each change with its
time, so a test can measure how soon xcon told it.
"""

from __future__ import annotations

import socket
import threading
import time


class FakeMonitor:
    """One router's monitor (see the module docstring)."""

    def __init__(
        self,
        answers: dict[str, str] | None = None,
        path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.answers = answers or {}
        self.commands: list[str] = []
        #: netdev -> True (on) / False (off), as set_link left it.
        self.links: dict[str, bool] = {}
        #: (time.monotonic(), netdev, on) for every set_link that changed a link.
        self.changes: list[tuple[float, str, bool]] = []
        self.path = path
        if path is None:
            self.sock = socket.socket()
            self.sock.bind((host, port))
            self.port = self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(path)
            self.port = 0
        self.sock.listen(4)
        self._lock = threading.Lock()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    @property
    def address(self) -> str:
        """How xcon names it: ``127.0.0.1:PORT`` or ``unix:PATH``."""
        return f"unix:{self.path}" if self.path else f"{self.sock.getsockname()[0]}:{self.port}"

    def link(self, netdev: str = "p01") -> bool | None:
        """The netdev's link as the last set_link left it (None: never set)."""
        with self._lock:
            return self.links.get(netdev)

    def wait_link(self, on: bool, netdev: str = "p01", timeout: float = 5.0) -> float:
        """Wait until the netdev's link is ``on``; returns when (monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.links.get(netdev) is on:
                    return next(t for t, n, o in reversed(self.changes) if n == netdev)
            if time.monotonic() > deadline:
                raise AssertionError(f"{netdev} not {'on' if on else 'off'}: {self.commands}")
            time.sleep(0.002)

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                try:
                    self._session(c)
                except OSError:
                    pass

    def _session(self, c: socket.socket) -> None:
        c.sendall(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ")
        line = b""
        while not line.endswith(b"\n"):
            data = c.recv(100)
            if not data:
                return
            line += data
        cmd = line.decode().strip()
        out = self.answers.get(cmd, "")
        with self._lock:
            self.commands.append(cmd)
            words = cmd.split()
            if not out and len(words) == 3 and words[0] == "set_link":
                on = words[2] == "on"
                if self.links.get(words[1]) is not on:
                    self.changes.append((time.monotonic(), words[1], on))
                self.links[words[1]] = on
        echo = "".join(f"{cmd[: i + 1]}\x1b[K" + "\x1b[D" * (i + 1) for i in range(len(cmd)))
        c.sendall(echo.encode() + b"\r\n" + (out + "\r\n" if out else "").encode() + b"(qemu) ")

    def close(self) -> None:
        self.sock.close()
