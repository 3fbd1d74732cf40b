"""Micro benchmarks of the frame functions (xcon.native), both backends.

Each case runs one call over a 256 KiB batch of frames of one size, as the
bridge does per receive. The summary at the end prints frames/s and the
native/python speedup. Compare against the committed baseline:

    pytest bench/micro --benchmark-storage=file://bench/micro/baseline \
        --benchmark-compare --benchmark-compare-fail=median:50%
"""

from __future__ import annotations

import os
import random
import socket
import struct
from collections.abc import Iterator

import pytest

from xcon import native
from xcon.native import DGRAM_BATCH, NEED_DATA, Backend

BATCH_BYTES = 256 * 1024
VID = 100
SIZES = [64, 1500]
_fill = random.Random(1).randbytes(2048)


def _backend(name: str) -> Backend:
    try:
        return native.load_backend(name)
    except ImportError as e:
        msg = f"native backend not built ({e}); run `python native/build_native.py`"
        if os.environ.get("XCON_NATIVE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(params=["native", "python"])
def be(request: pytest.FixtureRequest) -> Backend:
    return _backend(request.param)


def batch(frame_len: int, tagged: bool) -> tuple[bytearray, int]:
    """A 256 KiB-ish buffer of equal frames; returns it and the frame count."""
    head = bytes.fromhex("020000000002020000000001")
    head += (b"\x81\x00" + struct.pack(">H", VID) if tagged else b"") + b"\x08\x00"
    frame = (head + _fill)[:frame_len]
    one = struct.pack(">I", frame_len) + frame
    n = BATCH_BYTES // len(one)
    return bytearray(one * n), n


def record(benchmark, op: str, size: int, be: Backend, frames: int) -> None:
    benchmark.group = f"{op} {size}B"
    benchmark.extra_info.update(op=op, size=size, backend=be.name, frames=frames)


@pytest.mark.parametrize("size", SIZES)
def test_scan(benchmark, be: Backend, size: int) -> None:
    buf, n = batch(size, tagged=False)
    record(benchmark, "scan", size, be, n)
    res = benchmark(be.scan, buf, 0, len(buf))
    assert res == (len(buf), n, NEED_DATA)


@pytest.mark.parametrize("size", SIZES)
def test_vlan_strip(benchmark, be: Backend, size: int) -> None:
    src, n = batch(size, tagged=True)
    dst = bytearray(len(src))
    record(benchmark, "vlan_strip", size, be, n)
    res = benchmark(be.vlan_strip, src, 0, len(src), VID, dst, 0, len(dst))
    assert res == (len(src), len(src) - 4 * n, n, (0, 0, 0))


@pytest.mark.parametrize("size", SIZES)
def test_vlan_insert(benchmark, be: Backend, size: int) -> None:
    src, n = batch(size, tagged=False)
    dst = bytearray(len(src) + 4 * n)
    record(benchmark, "vlan_insert", size, be, n)
    res = benchmark(be.vlan_insert, src, 0, len(src), VID, dst, 0, len(dst))
    assert res == (len(src), len(dst), n, (0, 0))


def test_scan_call_overhead(benchmark, be: Backend) -> None:
    """One 64-byte frame: the fixed cost of a call, paid once per batch."""
    buf, _ = batch(64, tagged=False)
    end = 4 + 64
    record(benchmark, "scan", 64, be, 1)
    benchmark.group = "scan 1 frame (call overhead)"
    assert benchmark(be.scan, buf, 0, end) == (end, 1, NEED_DATA)


@pytest.fixture
def udp_link() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(rx, tx): loopback UDP sockets connected to each other, buffers for a batch."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (rx, tx):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.bind(("127.0.0.1", 0))
    rx.connect(tx.getsockname())
    tx.connect(rx.getsockname())
    yield rx, tx
    rx.close()
    tx.close()


@pytest.mark.parametrize("size", SIZES)
def test_datagrams(benchmark, be: Backend, size: int, udp_link) -> None:
    """A batch of DGRAM_BATCH frames over loopback UDP: one send_datagrams,
    then one recv_datagrams into a port's 256 KiB buffer (room for 4 slots
    of a largest datagram at a time, so several recvmmsg calls)."""
    rx, tx = udp_link
    head = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    one = struct.pack(">I", size) + (head + _fill)[:size]
    src = one * DGRAM_BATCH
    dst = bytearray(BATCH_BYTES)
    record(benchmark, "datagrams", size, be, DGRAM_BATCH)

    def round_trip() -> tuple[int, int]:
        sent = be.send_datagrams(tx.fileno(), src, 0, len(src))
        got = be.recv_datagrams(rx.fileno(), dst, 0, len(dst), 1024)
        return sent[1], got[1]

    assert benchmark(round_trip) == (DGRAM_BATCH, DGRAM_BATCH)
    assert dst[: len(src)] == src
