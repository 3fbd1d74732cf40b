"""--raw-listen: xcon in namespace A bridges its end of a veth pair; the far end is
in namespace B, where the test sends and watches frames with its own packet socket."""

from __future__ import annotations

import time

import pytest

from tests.root.nsutil import (
    PacketSocket,
    StreamClient,
    ip_json,
    requires_root,
    requires_tool,
    sh,
    suffix,
)
from xcon.testing.frames import ether, numbered, tagged

pytestmark = requires_root

PORT = 10001
MTU = 65500


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
    a, ifa, b, ifb = wire
    xc = nsxcon(a, "--raw-listen", "1", "--raw-if", ifa)
    obs = closing(PacketSocket(b, ifb))
    client = closing(StreamClient(a, PORT))
    xc.wait_log("client connected from")
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
    a, ifa, b, ifb = wire
    xc = nsxcon(a, "--raw-listen", "1", "--raw-if", ifa)
    obs = closing(PacketSocket(b, ifb))
    client = closing(StreamClient(a, PORT))
    xc.wait_log("client connected from")
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
