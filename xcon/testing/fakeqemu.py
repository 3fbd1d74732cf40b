"""A stand-in for a qemu socket netdev, for tests, the demo and the benchmark.

Like ``-netdev socket,listen=HOST:PORT`` it listens on ``HOST:10000+N``,
serves one client at a time (a second client's connect completes in the
kernel backlog and waits until the first one leaves), speaks the same framing
(4-byte big-endian length, then the frame) and applies qemu's rules to what it
receives: a zero length is ignored, a length above 69632 makes it drop the
connection.  It can be stopped and restarted, stop reading, send malformed
input, and records every frame it receives.

Its parser is written independently of :mod:`xcon.framing` on purpose, so the
tests do not check xcon's framing against itself.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable

from xcon.testing.frames import encode_frames, wire
from xcon.testing.wait import wait_until

QEMU_MAX_FRAME = 69632


def _readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` is readable within ``timeout`` s (poll: any descriptor number,
    so a test may run a thousand of these)."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def endpoint(q: FakeQemu) -> str:
    """The end that names ``q`` on xcon's command line: ``host/N``."""
    return f"{q.host}/{q.nic}"


def stop_all(peers: Iterable[FakeQemu]) -> None:
    """Stop many fake NICs at once: all are told first, then each is waited for."""
    peers = list(peers)
    for q in peers:
        q._stop.set()
        q._reading.set()
    for q in peers:
        q.stop()


class FakeQemu:
    """One qemu NIC listening like ``-netdev socket,listen=host:port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        nic: int = 1,
        port: int | None = None,
        record: bool = True,
        on_frame: Callable[[memoryview], None] | None = None,
        path: str | None = None,
        on_client: Callable[[str | None], None] | None = None,
    ) -> None:
        self.host = host
        self.nic = nic
        self.port = port if port is not None else 10000 + nic
        #: Listen on this unix socket path instead (qemu ``-netdev stream``, unix).
        self.path = path
        self.record = record
        self.on_frame = on_frame
        #: Called with the client's address when one is accepted, None when it leaves.
        self.on_client = on_client
        self.frames: list[bytes] = []
        self.frame_count = 0
        self.byte_count = 0
        self.oversized = 0  # connections dropped for a length qemu rejects
        self.zero_frames = 0
        self.accepted = 0
        self._lsock: socket.socket | None = None
        self._client: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reading = threading.Event()
        self._reading.set()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> FakeQemu:
        if self.path is not None:
            ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(self.path):
                os.unlink(self.path)
            ls.bind(self.path)
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            ls = socket.socket(family, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((self.host, self.port))
        ls.listen(1)
        self._lsock = ls
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"fakeqemu-{self.host}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and the client, like a qemu that exits."""
        self._stop.set()
        self._reading.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for s in (self._client, self._lsock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._client = None
        self._lsock = None
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)  # as qemu does when it exits
        with self._cond:
            self._cond.notify_all()

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> FakeQemu:
        return self.start() if self._lsock is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None

    def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait for a client (xcon) to be connected; raises WaitTimeout."""
        wait_until(
            lambda: self._client is not None, timeout, f"a client on {self.port}", self._cond
        )

    def wait_disconnected(self, timeout: float = 5.0) -> None:
        wait_until(
            lambda: self._client is None, timeout, f"the client of {self.port} to go", self._cond
        )

    def wait_frames(self, n: int, timeout: float = 5.0) -> None:
        """Wait until ``n`` frames in all have arrived; raises WaitTimeout."""
        wait_until(
            lambda: self.frame_count >= n,
            timeout,
            lambda: f"{n} frames on {self.port} (have {self.frame_count})",
            self._cond,
        )

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def clear(self) -> None:
        with self._cond:
            self.frames.clear()
            self.frame_count = 0
            self.byte_count = 0

    # -- sending --------------------------------------------------------------------
    def send_raw(self, data: bytes, timeout: float = 10.0) -> None:
        """Send bytes as they are (for malformed input).

        A client whose connect() completed may still wait in the backlog for a
        moment: wait for it to be accepted (up to ``timeout``)."""
        self.wait_connected(timeout)
        c = self._client
        if c is None:
            raise ConnectionError("no client connected")
        with self._send_lock:
            c.settimeout(timeout)
            c.sendall(data)

    def send(self, frame: bytes) -> None:
        self.send_raw(wire(frame))

    def send_frames(self, frames: Iterable[bytes]) -> None:
        self.send_raw(encode_frames(frames))

    def disconnect_client(self) -> None:
        """Drop the current client (qemu then listens again)."""
        c = self._client
        if c is not None:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the serving thread -----------------------------------------------------------
    def _run(self) -> None:
        ls = self._lsock
        assert ls is not None
        while not self._stop.is_set():
            try:
                r = _readable(ls, 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            if self.path is None:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                self._client = c
                self.accepted += 1
                self._cond.notify_all()
            if self.on_client is not None:
                peer = c.getpeername() if self.path is None else self.path
                self.on_client(peer if isinstance(peer, str) else f"{peer[0]}:{peer[1]}")
            try:
                self._serve(c)
            finally:
                with self._cond:
                    self._client = None
                    self._cond.notify_all()
                if self.on_client is not None:
                    self.on_client(None)
                try:
                    c.close()
                except OSError:
                    pass

    def _serve(self, c: socket.socket) -> None:
        buf = bytearray(1 << 20)
        mv = memoryview(buf)
        have = 0
        while not self._stop.is_set():
            if not self._reading.is_set():
                self._reading.wait(0.05)
                continue
            try:
                r = _readable(c, 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                n = c.recv_into(mv[have:])
            except OSError:
                return
            if n == 0:
                return
            have += n
            pos = 0
            count = 0
            nbytes = 0
            while have - pos >= 4:
                length = int.from_bytes(mv[pos : pos + 4], "big")
                if length > QEMU_MAX_FRAME:
                    with self._cond:
                        self.oversized += 1
                    return  # qemu: "oversized packet received", connection dropped
                if have - pos - 4 < length:
                    break
                if length == 0:
                    self.zero_frames += 1
                else:
                    f = mv[pos + 4 : pos + 4 + length]
                    if self.on_frame is not None:
                        self.on_frame(f)
                    if self.record:
                        self.frames.append(bytes(f))
                    count += 1
                    nbytes += length
                pos += 4 + length
            if count:
                with self._cond:
                    self.frame_count += count
                    self.byte_count += nbytes
                    self._cond.notify_all()
            if pos:
                mv[0 : have - pos] = mv[pos:have]
                have -= pos
