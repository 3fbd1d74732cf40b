"""--raw-listen: xcon in namespace A bridges its end of a veth pair; the far end is
in namespace B, where the test sends and watches frames with its own packet socket."""

from __future__ import annotations

import random
import re
import socket
import time
from dataclasses import dataclass

import pytest

from xcon import native
from xcon.testing import packets as pk
from xcon.testing.frames import ether, numbered, tagged, take_frames
from xcon.testing.frames import wire as wire_of
from xcon.testing.netns import (
    FrameRelay,
    PacketSocket,
    StreamClient,
    address,
    check_wire_frame,
    in_netns,
    ip_json,
    iperf3,
    received_bytes,
    requires_root,
    requires_tool,
    sh,
    suffix,
    tx_offloads,
    veth_into,
)
from xcon.testing.process import XconProcess

pytestmark = requires_root

PORT = 10001
MTU = 65500
UDP_SEGMENT = 103  # linux/udp.h
# linux/if_packet.h
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15


@pytest.fixture
def wire(netns):
    """Namespaces A and B joined by a veth pair (MTU 65500); returns (nsA, ifA, nsB, ifB)."""
    a, b = netns(), netns()
    ifa, ifb = f"xra{suffix()}", f"xrb{suffix()}"
    for ns in (a, b):  # no IPv6 chatter (MLD, RS) from either stack on the wire
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", a, "link", "add", ifa, "type", "veth", "peer", "name", ifb, "netns", b)
    for ns, ifname in ((a, ifa), (b, ifb)):
        sh("ip", "-n", ns, "link", "set", ifname, "mtu", str(MTU), "up")
    return a, ifa, b, ifb


def bridged(wire, nsxcon, closing) -> tuple[XconProcess, PacketSocket, StreamClient]:
    """xcon ``--raw-listen 1`` on A's end of the wire, with a socket watching B's end
    and a client being served; returns ``(xcon, watcher, client)``."""
    a, ifa, b, ifb = wire
    xc = nsxcon(a, "--raw-listen", "1", "--raw-if", ifa)
    obs = closing(PacketSocket(b, ifb))
    client = closing(StreamClient(a, PORT))
    xc.wait_log("client connected from")
    return xc, obs, client


def frames_with_tags() -> list[bytes]:
    return [
        ether(b"untagged" * 8),
        tagged(ether(b"vlan 100" * 8), 100, pcp=5),
        tagged(tagged(ether(b"q-in-q" * 10), 20), 300, tpid=0x88A8),
        tagged(ether(b"priority tag" * 5), 0, pcp=3),
        tagged(numbered(1, 9018), 4094),
        numbered(2, 1514),
        numbered(3, MTU + 14),
    ]


def test_both_ways_tags_restored_jumbo(wire, nsxcon, closing):
    xc, obs, client = bridged(wire, nsxcon, closing)
    frames = frames_with_tags()

    # wire -> router: the kernel moved each outer tag into PACKET_AUXDATA; xcon puts it back.
    for f in frames:
        obs.send(f)
    client.wait_frames(lambda fs: len(fs) >= len(frames))
    assert client.frames == frames

    # router -> wire: frames leave the interface as the router sent them.
    client.send_frames(frames)
    obs.wait(lambda fs: len(fs) >= len(frames))
    assert obs.incoming == frames
    assert xc.terminate() == 0


@requires_tool("ping", "iputils-ping")
def test_outgoing_frames_of_the_host_are_not_forwarded(wire, nsxcon, closing):
    a, ifa, _b, _ifb = wire
    xc, obs, client = bridged(wire, nsxcon, closing)
    # Another program on host A sends out of the interface (PACKET_OUTGOING for xcon) ...
    host_a = closing(PacketSocket(a, ifa))
    mine = ether(b"sent by host A's own stack" * 3)
    host_a.send(mine)
    # ... and so does host A's IP stack (ARP requests for a neighbour).
    sh("ip", "-n", a, "addr", "add", "10.79.0.1/24", "dev", ifa)
    sh("ip", "netns", "exec", a, "ping", "-c", "1", "-W", "1", "10.79.0.2", check=False)
    obs.wait(lambda fs: mine in fs)  # the frame left through the wire
    obs.wait(lambda fs: any(f[12:14] == b"\x08\x06" for f in fs))
    # A frame arriving on the wire afterwards does reach the router ...
    marker = ether(b"from the wire")
    obs.send(marker)
    client.wait_frames(lambda fs: marker in fs)
    # ... but none of host A's outgoing frames did.
    assert mine not in client.frames
    assert not any(f[12:14] == b"\x08\x06" and f[6:12] != marker[6:12] for f in client.frames)
    assert xc.terminate() == 0


def promiscuity(ns: str, ifname: str) -> int:
    return int(ip_json(ns, "-d", "link", "show", ifname)[0]["promiscuity"])


def test_promiscuous_while_running_and_idle_cpu(wire, nsxcon, closing):
    a, ifa, _b, _ifb = wire
    assert promiscuity(a, ifa) == 0
    xc = nsxcon(a, "--raw-listen", "1", "--raw-if", ifa)
    xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    assert promiscuity(a, ifa) == 1
    closing(StreamClient(a, PORT))
    xc.wait_log("client connected from")
    time.sleep(0.3)
    t0 = xc.cpu_seconds()
    time.sleep(2)
    assert xc.cpu_seconds() - t0 < 0.1
    assert xc.terminate() == 0
    assert promiscuity(a, ifa) == 0


@pytest.mark.parametrize(
    "extra,rc,needle",
    [
        (["--raw-if", "nosuchif0"], 1, "no interface named nosuchif0"),
        (["--raw-if", "lo", "--ipv4-address", "10.0.0.1/24"], 2, "--tap-listen only"),
    ],
)
def test_start_errors(netns, nsxcon, extra, rc, needle):
    xc = nsxcon(netns(), "--raw-listen", "1", *extra)
    assert xc.proc.wait(10) == rc
    log = xc.log()
    assert needle in log
    assert "Traceback" not in log


# -- offloads: partial checksums and TSO/GSO super-frames from a veth -------------------
#
# Namespace A and B each hold one end of a veth pair (a0 10.N.0.1, b0 10.N.0.2) with
# every offload left as the kernel sets it (checksum offload and TSO on).  The other
# ends, a1 and b1, are in namespace X, where one xcon runs --raw-listen 1 on a1 and
# another --raw-listen 2 on b1.  The two listening ports are joined either by a third
# xcon (--p2p, in X) or by the test's own relay, which checks every frame crossing:
# TCP between A and B then goes a0 -> a1 -> xcon -> join -> xcon -> b1 -> b0 and back,
# and what xcon reads from a1 and b1 is what the stacks of A and B left for the
# (missing) hardware to finish.


@dataclass
class OffloadLab:
    a: str
    b: str
    x: str
    net: int
    xcons: list

    def addr(self, host: int, v6: bool = False) -> str:
        return f"fd00:{self.net}::{host}" if v6 else f"10.{self.net}.0.{host}"


@pytest.fixture
def offload_lab(netns, nsxcon):
    """A and B behind their xcon --raw-listen ends in X (see above), not joined yet."""
    a, b, x = netns(), netns(), netns()
    sfx = suffix()
    a0, a1, b0, b1 = f"xoa{sfx}", f"xoA{sfx}", f"xob{sfx}", f"xoB{sfx}"
    net = random.randrange(100, 250)
    veth_into(a, a0, x, a1)
    veth_into(b, b0, x, b1)
    address(a, a0, f"10.{net}.0.1/24", f"fd00:{net}::1/64")
    address(b, b0, f"10.{net}.0.2/24", f"fd00:{net}::2/64")
    sh("ip", "netns", "exec", x, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    for ifname in (a1, b1):
        sh("ip", "-n", x, "link", "set", ifname, "up")
    assert tx_offloads(a, a0) == tx_offloads(b, b0) == (True, True)  # left on
    xa = nsxcon(x, "--raw-listen", "1", "--raw-if", a1)
    xb = nsxcon(x, "--raw-listen", "2", "--raw-if", b1)
    for xc in (xa, xb):
        xc.wait_health("0", contains="listening for a client")
    return OffloadLab(a, b, x, net, [xa, xb])


def ping(lab: OffloadLab, v6: bool = False) -> None:
    r = sh(
        "ip", "netns", "exec", lab.a, "ping", "-c", "3", "-i", "0.2", "-W", "3",
        lab.addr(2, v6), check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def counters_of(xc) -> dict[str, int]:
    """The raw port's counters, from the block logged on SIGUSR1."""
    text = xc.counters()
    line = next(ln for ln in text.splitlines() if "raw:" in ln and "gso_split=" in ln)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@requires_tool("iperf3", "iperf3")
@requires_tool("ping", "iputils-ping")
@pytest.mark.parametrize("join", ["relay", "xcon"])
def test_tcp_through_raw_ends_with_offloads_on(offload_lab, nsxcon, closing, join):
    lab = offload_lab
    if join == "relay":
        relay = closing(FrameRelay((lab.x, PORT), (lab.x, PORT + 1), check_wire_frame))
    else:
        nsxcon(lab.x, "--p2p", "127.0.0.1/1--127.0.0.1/2")
    for xc in lab.xcons:
        xc.wait_log("client connected from")
    ping(lab)
    ping(lab, v6=True)
    results = {}
    for v6 in (False, True):
        report = iperf3(lab.a, lab.b, lab.addr(2, v6), seconds=2)
        results[v6] = received_bytes(report)
        assert results[v6] >= 5_000_000, report.get("error", report.get("end"))
    back = received_bytes(iperf3(lab.a, lab.b, lab.addr(2), seconds=2, reverse=True))
    assert back >= 5_000_000
    print(
        f"\niperf3 through the raw ends ({join}): IPv4 {results[False] * 8 / 2e9:.2f} Gbit/s, "
        f"IPv6 {results[True] * 8 / 2e9:.2f} Gbit/s, reverse {back * 8 / 2e9:.2f} Gbit/s"
    )
    # The stacks did hand over super-frames and partial checksums, and xcon finished them.
    seen = [counters_of(xc) for xc in lab.xcons]
    assert all(c["gso_split"] > 0 for c in seen), seen
    assert all(c["gso_dropped"] == c["malformed"] == c["truncated"] == 0 for c in seen), seen
    if join == "relay":
        assert relay.problems == [[], []]
        assert min(relay.frames) > 1000
        assert max(relay.largest) <= 1514
    for xc in lab.xcons:
        assert xc.terminate() == 0


def test_udp_segmentation_offload_through_raw_ends(offload_lab, closing):
    lab = offload_lab
    relay = closing(FrameRelay((lab.x, PORT), (lab.x, PORT + 1), check_wire_frame))
    for xc in lab.xcons:
        xc.wait_log("client connected from")

    def receiver() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((lab.addr(2), 7000))
        s.settimeout(5)
        return s

    rx = closing(in_netns(lab.b, receiver))
    tx = closing(in_netns(lab.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)))
    tx.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 1000)
    data = random.randbytes(7500)
    deadline = time.monotonic() + 10
    got: list[bytes] = []
    while len(got) < 8:  # the first send may wait for ARP: send again until all arrive
        assert time.monotonic() < deadline, f"{len(got)} datagrams of 8 arrived"
        got = []
        tx.sendto(data, (lab.addr(2), 7000))
        try:
            while len(got) < 8:
                got.append(rx.recv(2000))
        except TimeoutError:
            continue
    assert got == [data[i : i + 1000] for i in range(0, 7500, 1000)]
    assert counters_of(lab.xcons[0])["gso_split"] >= 1
    assert relay.problems == [[], []]


@pytest.mark.parametrize("backend", ["python", "native"])
def test_read_packets_finishes_offloads_from_a_veth(wire, closing, backend):
    """read_packets on a real packet socket: namespace B hands the veth super-frames
    and partial checksums the way a stack with offloads does (a packet socket with
    PACKET_VNET_HDR describes them to the kernel); A's end reads them finished."""
    if backend == "native":
        try:
            be = native.load_backend("native")
        except ImportError as e:
            pytest.skip(f"native backend not built ({e})")
    else:
        be = native.load_backend("python")
    a, ifa, b, ifb = wire

    def reader() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.bind((ifa, ETH_P_ALL))  # no PACKET_IGNORE_OUTGOING: outgoing frames seen and counted
        s.setblocking(False)
        return s

    def offloading_sender() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.bind((ifb, 0))
        return s

    rx = closing(in_netns(a, reader))
    tx = closing(in_netns(b, offloading_sender))
    host_a = closing(in_netns(a, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)))
    host_a.bind((ifa, 0))
    payload = random.randbytes(30000)
    tag = tagged(b"\0" * 12, 100, pcp=3)[12:16]
    tcp4 = pk.tcp_packet(4, payload[:20000], flags=pk.ACK | pk.PSH | pk.FIN)
    tcp6 = pk.tcp_packet(6, payload[:9000], tags=tag)  # the tag goes to PACKET_AUXDATA
    tcp6_untagged = pk.tcp_packet(6, payload[:9000])
    udp = pk.udp_packet(4, payload[:700])
    uso = pk.udp_packet(6, payload[:5000])
    sent = [
        (tcp4.gso(1448), tcp4.partial()),
        (tcp6.gso(1000), tcp6.partial()),
        (udp.needs_csum(), udp.partial()),
        (uso.gso(1200), uso.partial()),
        (pk.vnet_hdr(), ether(b"plain" * 20)),
    ]
    for vnet, frame in sent:
        tx.send(vnet + frame)
    host_a.send(ether(b"host A's own, outgoing" * 3))
    expect = []
    for vnet, frame, tpid, tci in [
        (tcp4.gso(1448), tcp4.partial(), 0, 0),
        (tcp6_untagged.gso(1000), tcp6_untagged.partial(), 0x8100, (3 << 13) | 100),
        (udp.needs_csum(), udp.partial(), 0, 0),
        (uso.gso(1200), uso.partial(), 0, 0),
        (pk.vnet_hdr(), ether(b"plain" * 20), 0, 0),
    ]:
        out = bytearray(200_000)
        written, _n, _verdict = be.offload_frame(vnet, frame, out, 0, len(out), tpid, tci)
        expect += take_frames(bytes(out[:written]))[0]
    buf = bytearray(1 << 20)
    got: list[bytes] = []
    totals = [0] * 7
    deadline = time.monotonic() + 5
    while len(got) < len(expect) or totals[1] < 1:
        assert time.monotonic() < deadline, (len(got), totals)
        pos, _n, err, counters = be.read_packets(rx.fileno(), buf, 0, len(buf))
        assert err == 0
        got += take_frames(bytes(buf[:pos]))[0]
        totals = [t + c for t, c in zip(totals, counters, strict=True)]
        time.sleep(0.01)
    assert got == expect
    assert len(got) == 14 + 9 + 1 + 5 + 1
    for f in got:
        assert pk.check_frame(f) == []
        assert len(f) <= 1448 + 66 + 4
    truncated, outgoing, csum, split, gso_dropped, malformed, bad = totals
    assert (truncated, csum, split, gso_dropped, malformed, bad) == (0, 1, 3, 0, 0, 0)
    assert outgoing >= 1


def test_kernel_without_vnet_hdr_frames_pass_as_before(wire, closing, monkeypatch, caplog):
    """Where PACKET_VNET_HDR is refused (an option number no kernel has stands in
    for an old kernel), the port says so once and works as before: frames read
    and written as they are, no header either way."""
    from xcon.ports import raw as raw_module
    from xcon.testing.fakeport import FakeEngine

    a, ifa, b, ifb = wire
    monkeypatch.setattr(raw_module, "PACKET_VNET_HDR", 0x7FFF)
    port = raw_module.RawPort(FakeEngine(), ifa)
    caplog.set_level("WARNING", logger="xcon.port")
    in_netns(a, port.open)
    closing(port.sock)
    assert not port.vnet_hdr
    assert caplog.text.count("no PACKET_VNET_HDR") == 1
    obs = closing(PacketSocket(b, ifb))
    frame = ether(b"as it is" * 20)
    obs.send(frame)
    buf = bytearray(256 * 1024)
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while frame not in got:
        assert time.monotonic() < deadline, got
        n = port._read_into(memoryview(buf))
        got += take_frames(bytes(buf[: max(n, 0)]))[0]
        time.sleep(0.01)
    back = ether(b"and back" * 20)
    assert port.send(memoryview(wire_of(back))) == 4 + len(back)
    obs.wait(lambda fs: back in fs)
    port._close_fd()
