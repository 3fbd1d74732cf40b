"""VXLAN ends against the kernel's own VXLAN devices, and the multi-host recipe.

Two "hosts" are two network namespaces joined by a veth (10.x.y.1 and .2).
Everything is made with a random suffix and removed afterwards, also on
failure.  The kernel's VXLAN device is the reference implementation: what it
sends, xcon must take, and what xcon sends, it must take, bit for bit.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from xcon.testing.frames import numbered, reserved_multicast_frames, tagged
from xcon.testing.netns import PacketSocket, requires_root, sh
from xcon.testing.qemu import Lab, QemuRouter, missing, netns_exec

pytestmark = requires_root

ETHERTYPE_TEST = b"\x88\xb5"


class Hosts(Lab):
    """Two namespaces ``a`` and ``b`` joined by a veth, and what runs in them."""

    def __init__(self, tmp: Path, engine: str) -> None:
        super().__init__(tmp, engine)
        self.a, self.b = self.netns("a"), self.netns("b")
        va, vb = f"xva{self.tag}", f"xvb{self.tag}"
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        sh("ip", "link", "set", va, "netns", self.a)
        sh("ip", "link", "set", vb, "netns", self.b)
        for ns, dev, n in ((self.a, va, 1), (self.b, vb, 2)):
            sh("ip", "-n", ns, "addr", "add", f"{self.subnet}.{n}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up", "mtu", "9000")
        self.ip_a, self.ip_b = f"{self.subnet}.1", f"{self.subnet}.2"


@pytest.fixture
def hosts(tmp_path, engine):
    with contextlib.closing(Hosts(tmp_path, engine)) as h:
        yield h


def vxlan_device(ns: str, name: str, vni: int, local: str, remote: str, port: int) -> None:
    sh(
        "ip", "-n", ns, "link", "add", name, "type", "vxlan", "id", str(vni),
        "local", local, "remote", remote, "dstport", str(port),
    )  # fmt: skip
    # No IPv6 on it: a new device's own MLD reports and router solicitations
    # would reach xcon too, at times of the kernel's choosing, and be counted.
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1")
    sh("ip", "-n", ns, "link", "set", name, "up", "mtu", "8000")


def ours(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[12:14] in (ETHERTYPE_TEST, b"\x81\x00") or f[0] == 0x01]


def counter(text: str, key: str) -> int:
    return sum(int(x) for x in re.findall(rf"\b{key}=(\d+)", text))


@pytest.mark.parametrize("port", [4789, 14789])
def test_xcon_and_a_kernel_vxlan_device_exchange_frames_bit_exact(hosts, port):
    vni = 5000 + port % 1000
    vxlan_device(hosts.b, "vx0", vni, hosts.ip_b, hosts.ip_a, port)
    vxlan_device(hosts.b, "vx1", vni + 1, hosts.ip_b, hosts.ip_a, port)  # another VNI
    tap = f"xt{hosts.tag}"
    end = f"vxlan:{hosts.ip_b}:{port}/{vni}" if port != 4789 else f"vxlan:{hosts.ip_b}/{vni}"
    xc = hosts.xcon("--p2p", f"tap:{tap}--{end}", netns=hosts.a)
    xc.wait_log("VXLAN VNI")
    sh("ip", "-n", hosts.a, "link", "set", tap, "up", "mtu", "8000")
    on_tap = PacketSocket(hosts.a, tap)
    on_vx = PacketSocket(hosts.b, "vx0")
    on_vx1 = PacketSocket(hosts.b, "vx1")
    try:
        frames = [numbered(i, n) for i, n in enumerate([60, 1514, 7000])]
        frames += reserved_multicast_frames() + [tagged(numbered(9, 200), 7)]
        for f in frames:  # xcon -> kernel
            on_tap.send(f)
        on_vx.wait(lambda fs: len(ours(fs)) >= len(frames))
        assert ours(on_vx.incoming) == frames
        for f in frames:  # kernel -> xcon
            on_vx.send(f)
        on_tap.wait(lambda fs: len(ours(fs)) >= len(frames))
        assert ours(on_tap.incoming) == frames
        xc.wait_health("0", contains="All 2 sockets connected")
        # the other VNI reaches xcon's port and is dropped there, counted
        for i in range(3):
            on_vx1.send(numbered(100 + i, 100))
        on_vx.send(numbered(200, 100))
        on_tap.wait(lambda fs: numbered(200, 100) in fs)
        assert not any(numbered(100 + i, 100) in on_tap.incoming for i in range(3))
        assert counter(xc.counters(), "bad_header") == 3
        assert xc.terminate() == 0
    finally:
        for s in (on_tap, on_vx, on_vx1):
            s.close()


# -- the multi-host recipe (README) ------------------------------------------------------

qemu_missing = missing()


def router(hosts: Hosts, host_ns: str, n: int, netdev: str | None = None) -> QemuRouter:
    """A qemu router running in ``host_ns`` (its NIC there), its inside in a namespace."""
    inside = hosts.netns(f"r{n}")
    r = QemuRouter(
        hosts.tmp,
        tap=f"xq{hosts.tag}{n}",
        host=f"127.0.0.{n}",
        netns=inside,
        address=f"192.168.{n}0.{n}/16",
        mac=f"02:59:{hosts.tag[:2]}:{hosts.tag[2:4]}:{hosts.tag[4:]}:{n:02x}",
        run_netns=host_ns,
        netdev=netdev,
    )
    hosts.routers.append(r)
    return r.start()


def ping_ok(ns: str, dst: str, timeout: float = 10) -> None:
    from xcon.testing.wait import wait_until

    wait_until(
        lambda: sh(*netns_exec(ns, "ping", "-c", "1", "-W", "1", dst), check=False).returncode == 0,
        timeout,
        f"a ping reply from {dst}",
    )


@pytest.mark.skipif(qemu_missing is not None, reason=str(qemu_missing))
def test_recipe_two_hosts_xcon_on_both_sides(hosts):
    ra, rb = router(hosts, hosts.a, 1), router(hosts, hosts.b, 2)
    xa = hosts.xcon("--p2p", f"{ra.endpoint}--vxlan:{hosts.ip_b}/100", netns=hosts.a)
    xb = hosts.xcon("--p2p", f"{rb.endpoint}--vxlan:{hosts.ip_a}/100", netns=hosts.b)
    ping_ok(ra.netns, rb.ip)
    xa.wait_health("0", contains="All 2 sockets connected")
    xb.wait_health("0", contains="All 2 sockets connected")
    assert xa.terminate() == 0 and xb.terminate() == 0


@pytest.mark.skipif(qemu_missing is not None, reason=str(qemu_missing))
def test_recipe_two_hosts_xcon_and_a_kernel_vxlan_bridged_to_a_tap(hosts):
    ra = router(hosts, hosts.a, 1)
    # host b: the router's NIC is a tap, bridged with a kernel VXLAN device
    nic = f"xn{hosts.tag}"
    rb = router(hosts, hosts.b, 2, netdev=f"tap,ifname={nic},script=no,downscript=no")
    vxlan_device(hosts.b, "vx0", 100, hosts.ip_b, hosts.ip_a, 4789)
    sh("ip", "-n", hosts.b, "link", "add", "br0", "type", "bridge")
    for dev in ("vx0", nic, "br0"):
        if dev != "br0":
            sh("ip", "-n", hosts.b, "link", "set", dev, "master", "br0")
        sh("ip", "-n", hosts.b, "link", "set", dev, "up")
    xa = hosts.xcon("--p2p", f"{ra.endpoint}--vxlan:{hosts.ip_b}/100", netns=hosts.a)
    ping_ok(ra.netns, rb.ip)
    xa.wait_health("0", contains="All 2 sockets connected")
    assert xa.terminate() == 0
