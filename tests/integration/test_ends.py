"""Every kind of link end in a real xcon process, joined to a classic ``HOST/N``.

The peers are the test's own: fake qemu NICs on TCP or unix sockets, qemu-
style clients of xcon's listening ends, and UDP sockets speaking qemu's
``dgram`` format or VXLAN.  Taps and raw interfaces need root: tests/root.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest

from xcon.testing.fakeqemu import FakeQemu, endpoint
from xcon.testing.frames import (
    RESERVED,
    encode_frames,
    ether,
    numbered,
    reserved_multicast_frames,
    take_frames,
)
from xcon.testing.loopback import free_udp_port, new_host
from xcon.testing.wait import wait_until


def both_ways(a, b, n: int = 30, size: int = 200) -> None:
    """Numbered frames a→b and b→a arrive exact and in order."""
    fa = [numbered(i, size + i) for i in range(n)]
    fb = [numbered(1000 + i, size) for i in range(n)]
    a.send_frames(fa)
    b.send_frames(fb)
    b.wait_frames(n)
    a.wait_frames(n)
    assert b.frames == fa
    assert a.frames == fb


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (a path has at most 107 bytes)."""
    d = tempfile.mkdtemp(prefix="xcon-ends-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def unix_peers(peers, sockdir):
    """Factory of fake qemu NICs on unix sockets ``NAME`` in sockdir; all stopped after."""

    def make(name: str, start: bool = True) -> FakeQemu:
        return peers(path=os.path.join(sockdir, name), start=start)

    return make


def test_unix_stream_router_linked_to_a_tcp_router_and_restarted(peers, xcon, unix_peers):
    a, b = peers(), unix_peers("vr2-nic1.sock")
    xc = xcon("--p2p", f"{endpoint(a)}--unix:{b.path}")
    xc.wait_health("0", contains="All 2 sockets connected")
    both_ways(a, b)
    b.stop()  # the stream router exits (qemu removes its socket)
    xc.wait_health("1", contains="only 1 connected")
    b.clear()
    a.clear()
    b.start()
    xc.wait_health("0", contains="All 2 sockets connected")
    both_ways(a, b, n=200, size=1500)
    assert xc.terminate() == 0


def test_tcp_end_on_any_port(peers, xcon):
    a = peers()
    b = peers(port=23456)
    xc = xcon("--p2p", f"{endpoint(a)}--tcp:{b.host}:23456")
    xc.wait_health("0", contains="All 2 sockets connected")
    both_ways(a, b)
    assert xc.terminate() == 0


class Client:
    """A qemu NIC with ``connect=``: a client of one of xcon's listening ends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(5)
        self.buf = bytearray()
        self.frames: list[bytes] = []

    def send_frames(self, frames) -> None:
        self.sock.sendall(encode_frames(frames))

    def wait_frames(self, n: int) -> None:
        def more() -> bool:
            self.sock.settimeout(0.05)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                return len(self.frames) >= n
            self.buf += data
            got, rest = take_frames(self.buf)
            self.frames += got
            self.buf = bytearray(rest)
            return len(self.frames) >= n

        wait_until(more, 5, f"{n} frames at the client")


def test_listen_ends_tcp_and_unix(peers, xcon, sockdir):
    a, b = peers(), peers()
    host = new_host()
    path = os.path.join(sockdir, "x.sock")
    xc = xcon("--p2p", f"{endpoint(a)}--listen:{host}:24001", f"{endpoint(b)}--listen:unix:{path}")
    xc.wait_health("0", contains="Ready: 2 of 4 sockets connected")
    c1 = Client(socket.create_connection((host, 24001), timeout=5))
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.connect(path)
    c2 = Client(u)
    # frames toward an end that has no client yet are dropped (a pulled cable)
    wait_until(lambda: xc.log().count("client connected from") == 2, 5, "both clients attached")
    both_ways(a, c1)
    both_ways(b, c2)
    xc.wait_health("0", contains="All 4 sockets connected")
    c1.sock.close()
    c2.sock.close()
    assert xc.terminate() == 0
    assert not os.path.exists(path), "the listening socket's file is removed at exit"


def test_reserved_multicast_crosses_stream_ends_bit_exact(peers, xcon, unix_peers):
    a, b = peers(), unix_peers("r.sock")
    xc = xcon("--p2p", f"{endpoint(a)}--unix:{b.path}")
    xc.wait_health("0", contains="All 2 sockets connected")
    frames = reserved_multicast_frames()
    a.send_frames(frames)
    b.send_frames(frames[::-1])
    b.wait_frames(len(frames))
    a.wait_frames(len(frames))
    assert b.frames == frames and a.frames == frames[::-1]
    assert [f[:6].hex() for f in frames] == [d.hex() for d, _t in RESERVED.values()]
    assert xc.terminate() == 0


def test_unknown_unix_path_waits_and_comes_up(peers, xcon, unix_peers):
    a, b = peers(), unix_peers("later.sock", start=False)
    xc = xcon("--p2p", f"{endpoint(a)}--unix:{b.path}")
    xc.wait_log("unix:" + b.path)
    xc.wait_health("1", contains="only 1 connected")
    b.start()
    xc.wait_health("0", contains="All 2 sockets connected")
    a.send(ether(b"late"))
    b.wait_frames(1)
    assert b.frames == [ether(b"late")]
    assert xc.terminate() == 0


def test_udp_end_linked_to_a_tcp_router_and_health(peers, xcon, udp_peer):
    a = peers()
    d, udp = udp_peer()
    xc = xcon("--p2p", f"{endpoint(a)}--{udp}")
    # bound, nothing heard yet: ready, not connected
    xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    both_ways(a, d, n=50, size=1400)
    xc.wait_health("0", contains="All 2 sockets connected")
    assert xc.terminate() == 0


def test_two_xcons_joined_by_vxlan_carry_a_link(peers, xcon):
    """Two routers, each with its own xcon, one VXLAN tunnel between the xcons."""
    a, b = peers(), peers()
    ha, hb = new_host(), new_host()
    pa, pb = free_udp_port(ha), free_udp_port(hb)
    # each xcon sends from its own address (a VTEP keeps what comes from its remote)
    xa = xcon("--p2p", f"{endpoint(a)}--vxlan:{hb}:{pb}/77@{ha}:{pa}")
    xb = xcon("--p2p", f"{endpoint(b)}--vxlan:{ha}:{pa}/77@{hb}:{pb}")
    xa.wait_health("0")
    xb.wait_health("0")
    both_ways(a, b, n=100, size=1500)
    jumbo = [numbered(i, 9000) for i in range(5)]
    a.clear()
    b.clear()
    a.send_frames(jumbo)
    b.wait_frames(5)
    assert b.frames == jumbo
    xa.wait_health("0", contains="All 2 sockets connected")
    assert xa.terminate() == 0 and xb.terminate() == 0


def test_hub_of_mixed_ends(peers, xcon, sockdir, udp_peer):
    a = peers()
    path = os.path.join(sockdir, "h.sock")
    u = FakeQemu(path=path).start()
    d, udp = udp_peer()
    try:
        xc = xcon("--hub", endpoint(a), f"unix:{path}", udp)
        xc.wait_health("0", contains="Ready: 2 of 3 sockets connected")
        f1, f2, f3 = ether(b"from-a" * 10), ether(b"from-u" * 10), ether(b"from-d" * 10)
        a.send(f1)
        u.wait_frames(1)
        d.wait_frames(1)
        u.send(f2)
        d.send(f3)
        a.wait_frames(2)
        u.wait_frames(2)
        assert u.frames == [f1, f3]
        assert sorted(a.frames) == sorted([f2, f3])
        d.wait_frames(2)
        assert d.frames == [f1, f2]
        assert xc.terminate() == 0
    finally:
        u.stop()


def test_vxlan_links_share_one_local_port_steered_by_vni(peers, xcon):
    """Three links between two xcons over one port pair, one VNI each."""
    ha, hb = new_host(), new_host()
    pa, pb = free_udp_port(ha), free_udp_port(hb)
    left = [peers() for _ in range(3)]
    right = [peers() for _ in range(3)]
    xa = xcon(
        "--p2p",
        *[f"{endpoint(q)}--vxlan:{hb}:{pb}/{100 + i}@{ha}:{pa}" for i, q in enumerate(left)],
    )
    xb = xcon(
        "--p2p",
        *[f"{endpoint(q)}--vxlan:{ha}:{pa}/{100 + i}@{hb}:{pb}" for i, q in enumerate(right)],
    )
    xa.wait_health("0")
    xb.wait_health("0")
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        a.send_frames([numbered(10 * i + k, 300) for k in range(10)])
        b.send_frames([numbered(500 + 10 * i + k, 300) for k in range(10)])
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        b.wait_frames(10)
        a.wait_frames(10)
        assert b.frames == [numbered(10 * i + k, 300) for k in range(10)]
        assert a.frames == [numbered(500 + 10 * i + k, 300) for k in range(10)]
    # a VNI no link has: dropped by whichever link got it, counted
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((hb, 0))
        s.sendto(bytes([8, 0, 0, 0]) + (999).to_bytes(3, "big") + b"\0" + numbered(1, 60), (ha, pa))
    wait_until(lambda: "bad_header=1" in xa.counters(), 5, "the stray VNI to be counted")
    assert xa.terminate() == 0 and xb.terminate() == 0
