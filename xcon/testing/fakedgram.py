"""The far end of a datagram link for tests: a qemu ``-netdev dgram`` NIC (one
frame per UDP datagram) or a VXLAN tunnel endpoint (8-byte header first).

It records every frame it receives (the VXLAN header checked and removed) and
sends frames as datagrams to xcon's end.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterable

from xcon.limits import VXLAN_HEADER
from xcon.testing.wait import wait_until


def vxlan_header(vni: int, flags: int = 0x08) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


class FakeDgram:
    """A UDP peer bound to ``host:port`` that talks to ``xcon_addr``."""

    def __init__(
        self,
        host: str,
        port: int,
        vni: int | None = None,
        record: bool = True,
        on_frame: Callable[[bytes], None] | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.vni = vni
        self.record = record
        self.on_frame = on_frame
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.xcon_addr: tuple[str, int] | None = None
        self.frames: list[bytes] = []
        #: Datagrams whose VXLAN header was not the expected one.
        self.bad = 0
        self.senders: set[tuple[str, int]] = set()
        self._cond = threading.Condition()
        self._reading = threading.Event()
        self._reading.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._reading.wait(0.05):
                continue
            try:
                r, _w, _x = select.select([self.sock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data, addr = self.sock.recvfrom(70000)
            except OSError:
                continue
            with self._cond:
                self.senders.add(addr[:2])
                if self.vni is not None:
                    if data[:VXLAN_HEADER] != vxlan_header(self.vni):
                        self.bad += 1
                        continue
                    data = data[VXLAN_HEADER:]
                if self.record:
                    self.frames.append(data)
                self._cond.notify_all()
            if self.on_frame is not None:
                self.on_frame(data)

    def send(self, frame: bytes, header: bytes | None = None) -> None:
        assert self.xcon_addr is not None
        if header is None:
            header = vxlan_header(self.vni) if self.vni is not None else b""
        self.sock.sendto(header + frame, self.xcon_addr)

    def send_frames(self, frames: Iterable[bytes]) -> None:
        for f in frames:
            self.send(f)

    def wait_frames(self, n: int, timeout: float = 5.0) -> None:
        wait_until(
            lambda: len(self.frames) >= n,
            timeout,
            lambda: f"{n} datagrams at {self.host}:{self.port} (have {len(self.frames)})",
            self._cond,
        )

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def clear(self) -> None:
        with self._cond:
            self.frames.clear()

    def close(self) -> None:
        self._stop.set()
        self._reading.set()
        self._thread.join(5)
        self.sock.close()
