"""--tap-listen: xcon runs inside a throw-away namespace, creates its tap there, and a
qemu-like client connects to its listening port from inside the same namespace."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time

import pytest

from xcon.testing.frames import check_numbered, ether, numbered
from xcon.testing.netns import (
    FrameRelay,
    PacketSocket,
    StreamClient,
    address,
    check_wire_frame,
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
from xcon.testing.wait import WaitTimeout

pytestmark = requires_root

PORT = 10001
PEER_MAC = bytes.fromhex("020000000002")


def tap_name() -> str:
    return f"xt{suffix()}"


def tap_ready(netns, nsxcon, *args: str) -> tuple[str, str, XconProcess]:
    """xcon ``--tap-listen 1`` (``ARGS`` after) in a new namespace, its tap made
    (the health file says so); returns ``(namespace, tap, xcon)``."""
    ns, tap = netns(), tap_name()
    xc = nsxcon(ns, "--tap-listen", "1", "--tap-if", tap, *args)
    xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    return ns, tap, xc


def up(xc, nth: int = 1) -> None:
    """The nth client is being served.  (The health file counts a client as
    connected only once it has sent a whole frame.)"""
    deadline = time.monotonic() + 10
    while xc.log().count("client connected from") < nth:
        assert time.monotonic() < deadline, xc.log()
        assert xc.proc.poll() is None, xc.log()
        time.sleep(0.01)


def test_frames_both_ways_and_jumbo(netns, nsxcon, closing):
    ns, tap, xc = tap_ready(netns, nsxcon, "--mtu", "9000")
    obs = closing(PacketSocket(ns, tap))
    client = closing(StreamClient(ns, PORT))
    up(xc)
    assert ip_json(ns, "link", "show", tap)[0]["mtu"] == 9000

    # client -> tap: the namespace's kernel receives them whole.
    sent = [numbered(i, size) for i, size in enumerate([60, 1514, 9014, 100])]
    client.send_frames(sent)
    obs.wait(lambda fs: sum(f[12:14] == b"\x88\xb5" for f in fs) >= 4)
    assert [f for f in obs.incoming if f[12:14] == b"\x88\xb5"] == sent

    # tap -> client: frames the kernel sends out of the tap reach the client.
    back = [ether(b"from-ns" + bytes([i]) * size) for i, size in enumerate([50, 1500, 8990])]
    for f in back:
        obs.send(f)
    client.wait_frames(lambda fs: all(f in fs for f in back))
    assert xc.terminate() == 0
    # The tap lives as long as xcon holds it.
    assert tap not in [link["ifname"] for link in ip_json(ns, "link", "show")]


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def arp_icmp_responder(ip: str):
    """Answers ARP requests for ``ip`` and ICMP echo requests to it, like a router would."""
    me = socket.inet_aton(ip)

    def answer(f: bytes) -> bytes | None:
        if len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == me:
            sha, spa = f[22:28], f[28:32]
            arp = b"\x00\x01\x08\x00\x06\x04\x00\x02" + PEER_MAC + me + sha + spa
            return sha + PEER_MAC + b"\x08\x06" + arp
        if len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 1 and f[30:34] == me:
            ihl = (f[14] & 0x0F) * 4
            (total,) = struct.unpack_from(">H", f, 16)
            hdr, icmp = f[14 : 14 + ihl], f[14 + ihl : 14 + total]
            if icmp[0] != 8:
                return None
            hdr = hdr[:12] + hdr[16:20] + hdr[12:16] + hdr[20:]
            body = b"\x00\x00\x00\x00" + icmp[4:]
            body = body[:2] + struct.pack(">H", inet_checksum(body)) + body[4:]
            return f[6:12] + PEER_MAC + b"\x08\x00" + hdr + body
        return None

    return answer


@requires_tool("ping", "iputils-ping")
def test_ping_a_router_behind_the_tap(netns, nsxcon, closing):
    ns, tap = netns(), tap_name()
    xc = nsxcon(ns, "--tap-listen", "1", "--tap-if", tap, "--ipv4-address", "10.77.0.1/24")
    client = closing(StreamClient(ns, PORT, responder=arp_icmp_responder("10.77.0.2")))
    up(xc)
    r = sh(
        "ip",
        "netns",
        "exec",
        ns,
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "3",
        "10.77.0.2",
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr + xc.log()
    assert "3 received" in r.stdout
    # The requests went through xcon to the client, the replies back into the namespace.
    assert sum(f[12:14] == b"\x08\x00" for f in client.frames) >= 3
    assert xc.terminate() == 0


def test_burst_of_10000_frames_nothing_lost(netns, nsxcon, closing):
    ns, tap, xc = tap_ready(netns, nsxcon)
    obs = closing(PacketSocket(ns, tap))
    client = closing(StreamClient(ns, PORT))
    up(xc)
    total = 10_000
    for start in range(0, total, 1000):
        client.send_frames([numbered(i, 200) for i in range(start, start + 1000)])

    def ours(fs):
        return [f for f in fs if f[12:14] == b"\x88\xb5"]

    obs.wait(lambda fs: len(ours(fs)) >= total, timeout=30)
    seqs = [check_numbered(f) for f in ours(obs.incoming)]
    assert seqs == list(range(total))
    assert xc.terminate() == 0


def test_addresses_and_default_routes(netns, nsxcon):
    ns, tap = netns(), tap_name()
    # A default route already exists (v4 and v6) through another interface.
    other = f"xo{suffix()}"
    sh("ip", "-n", ns, "link", "add", other, "type", "veth", "peer", "name", other + "p")
    sh("ip", "-n", ns, "link", "set", other, "up")
    sh("ip", "-n", ns, "addr", "add", "10.200.0.1/24", "dev", other)
    sh("ip", "-n", ns, "-6", "addr", "add", "2001:db8:ff::1/64", "dev", other, "nodad")
    sh("ip", "-n", ns, "route", "add", "default", "via", "10.200.0.254")
    sh("ip", "-n", ns, "-6", "route", "add", "default", "via", "2001:db8:ff::fe", "dev", other)
    # New interfaces start with IPv6 disabled (as in many containers): xcon must enable it.
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    xc = nsxcon(
        ns,
        "--tap-listen", "1", "--tap-if", tap,
        "--ipv4-address", "10.77.0.1/24", "--ipv4-route", "10.77.0.254",
        "--ipv6-address", "2001:db8:77::1/64", "--ipv6-route", "2001:db8:77::fe",
    )  # fmt: skip
    xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    link = ip_json(ns, "addr", "show", tap)[0]
    assert "UP" in link["flags"]
    addrs = {(a["local"], a["prefixlen"]) for a in link["addr_info"]}
    assert ("10.77.0.1", 24) in addrs
    assert ("2001:db8:77::1", 64) in addrs
    v4 = ip_json(ns, "route", "show", "default")
    assert [(r["gateway"], r["dev"]) for r in v4] == [("10.77.0.254", tap)]
    v6 = ip_json(ns, "-6", "route", "show", "default")
    assert [(r["gateway"], r["dev"]) for r in v6] == [("2001:db8:77::fe", tap)]
    assert xc.terminate() == 0


def test_one_client_at_a_time_and_reconnect(netns, nsxcon, closing):
    ns, tap, xc = tap_ready(netns, nsxcon)
    obs = closing(PacketSocket(ns, tap))
    c1 = StreamClient(ns, PORT)
    up(xc)
    c2 = closing(StreamClient(ns, PORT, host="::1"))  # waits in the backlog
    obs.send(ether(b"to-c1"))
    c1.wait_frames(lambda fs: ether(b"to-c1") in fs)
    # A frame sent after the second client connected goes to the first one:
    # once it has arrived there, the second one has been passed over.
    obs.send(ether(b"to-c1-again"))
    c1.wait_frames(lambda fs: ether(b"to-c1-again") in fs)
    assert c2.frames == [], "a second client is not served while the first one is"
    c1.send_frames([ether(b"c1-partial")])
    c1.sock.sendall(struct.pack(">I", 500) + b"x" * 100)  # leaves mid-frame
    c1.close()
    # The waiting client is served next: both directions work, and the first
    # client's partial frame never reached the tap.
    deadline = time.monotonic() + 10
    while ether(b"to-c2") not in c2.frames and time.monotonic() < deadline:
        obs.send(ether(b"to-c2"))
        with contextlib.suppress(WaitTimeout):  # not yet served: send again
            c2.wait_frames(lambda fs: ether(b"to-c2") in fs, timeout=0.2)
    assert ether(b"to-c2") in c2.frames
    c2.send_frames([ether(b"from-c2")])
    obs.wait(lambda fs: ether(b"from-c2") in fs)
    assert ether(b"c1-partial") in obs.incoming
    assert not any(len(f) == 500 for f in obs.incoming)
    up(xc, 2)
    c2.close()
    xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    c3 = closing(StreamClient(ns, PORT))
    up(xc, 3)
    c3.send_frames([ether(b"from-c3")])
    obs.wait(lambda fs: ether(b"from-c3") in fs)
    text = xc.counters()
    assert "partial_bytes=104" in text
    assert xc.terminate() == 0


def test_idle_uses_no_cpu(netns, nsxcon, closing):
    ns, tap, xc = tap_ready(netns, nsxcon)
    time.sleep(0.3)  # start-up work done
    t0 = xc.cpu_seconds()
    time.sleep(2)
    assert xc.cpu_seconds() - t0 < 0.1, "idle with no client"

    # A client that resets the connection, then a new idle client while the tap
    # is down (no carrier): still nothing to do.
    c1 = StreamClient(ns, PORT)
    up(xc)
    c1.send_frames([ether(b"x" * 100)] * 10)
    c1.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c1.close()
    xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    closing(StreamClient(ns, PORT))
    up(xc, 2)
    sh("ip", "-n", ns, "link", "set", tap, "down")
    time.sleep(0.3)
    t0 = xc.cpu_seconds()
    time.sleep(2)
    assert xc.cpu_seconds() - t0 < 0.1, "idle after a reset, tap down"
    assert xc.proc.poll() is None
    assert xc.terminate() == 0


def test_vlan_needs_8021q(netns, nsxcon):
    ns, tap = netns(), tap_name()
    xc = nsxcon(
        ns, "--tap-listen", "1", "--tap-if", tap, "--vlan", "10", "--ipv4-address", "10.78.0.1/24"
    )
    try:
        rc = xc.proc.wait(10)
    except Exception:
        rc = None
    if rc is None:
        # A kernel with 802.1Q support: the addresses are on the sub-interface.
        xc.wait_health("0", contains="Ready: 1 of 2 sockets connected")
        sub = ip_json(ns, "addr", "show", f"{tap}.10")[0]
        assert ("10.78.0.1", 24) in {(a["local"], a["prefixlen"]) for a in sub["addr_info"]}
        assert xc.terminate() == 0
        return
    log = xc.log()
    assert rc == 1, log
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith("xcon: error:")]
    assert len(errors) == 1, log
    assert "8021q" in errors[0] and "802.1Q" in errors[0] and f"{tap}.10" in errors[0]


@requires_tool("setpriv", "util-linux")
def test_not_root_is_a_clear_error(netns, nsxcon):
    ns = netns()
    xc = nsxcon(ns, "--tap-listen", "1", "--tap-if", tap_name(), user="65534")
    rc = xc.proc.wait(10)
    log = xc.log()
    assert rc == 1, log
    assert "needs root or CAP_NET_ADMIN" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--ipv4-address", "10.0.0.2/24", "--ipv4-route", "10.0.1.1"], "outside the network"),
        (
            ["--ipv6-address", "2001:db8::2/64", "--ipv6-route", "2001:db9::1"],
            "outside the network",
        ),
    ],
)
def test_bad_next_hop_changes_nothing(netns, nsxcon, extra, needle):
    ns, tap = netns(), tap_name()
    xc = nsxcon(ns, "--tap-listen", "1", "--tap-if", tap, *extra)
    rc = xc.proc.wait(10)
    assert rc == 2
    assert needle in xc.log()
    assert tap not in [link["ifname"] for link in ip_json(ns, "link", "show")]


def test_listen_address_restricts_who_can_connect(netns, nsxcon, closing):
    ns, tap, xc = tap_ready(netns, nsxcon, "--listen-address", "127.0.0.1")
    assert "listening on 127.0.0.1:10001" in xc.log()
    with pytest.raises(OSError):
        StreamClient(ns, PORT, host="::1", timeout=2)  # not bound there
    client = closing(StreamClient(ns, PORT, host="127.0.0.1"))
    up(xc)
    client.send_frames([ether(b"hello" * 10)])
    xc.wait_health("0", contains="All 2 sockets connected")
    assert xc.terminate() == 0


@requires_tool("iperf3", "iperf3")
def test_tap_hands_over_finished_frames_under_tcp(netns, nsxcon, closing):
    """A tap opened as xcon opens it (IFF_TAP | IFF_NO_PI, no IFF_VNET_HDR, no
    TUNSETOFFLOAD) offers the kernel no checksum offload and no TSO, so the stack
    finishes every frame before the tap hands it over: under bulk TCP out of the
    tap (iperf3 -R, the server behind the tap sending) every frame xcon reads is at
    most MTU-sized with right checksums.  The far end is a veth read by xcon
    --raw-listen (offloads on, finished there); the test's relay joins the two
    listening ports and checks each frame crossing."""
    a, x, t = netns(), netns(), netns()
    sfx = suffix()
    a0, a1, tap = f"xoa{sfx}", f"xoA{sfx}", tap_name()
    net = random.randrange(100, 250)
    veth_into(a, a0, x, a1)
    address(a, a0, f"10.{net}.0.1/24")
    sh("ip", "-n", x, "link", "set", a1, "up")
    raw = nsxcon(x, "--raw-listen", "1", "--raw-if", a1)
    tapx = nsxcon(t, "--tap-listen", "2", "--tap-if", tap, "--ipv4-address", f"10.{net}.0.2/24")
    for xc in (raw, tapx):
        xc.wait_health("0", contains="listening for a client")
    # The kernel's view: the tap offers no offloads, the veth both.
    assert tx_offloads(t, tap) == (False, False)
    assert tx_offloads(a, a0) == (True, True)
    relay = closing(FrameRelay((x, PORT), (t, PORT + 1), check_wire_frame))
    for xc in (raw, tapx):
        xc.wait_log("client connected from")
    for reverse in (True, False):
        report = iperf3(a, t, f"10.{net}.0.2", seconds=2, reverse=reverse)
        assert received_bytes(report) >= 5_000_000, report.get("error", report.get("end"))
    tap_frames, tap_problems, tap_largest = relay.frames[1], relay.problems[1], relay.largest[1]
    assert tap_frames > 3000
    assert tap_problems == []
    assert tap_largest <= 1514
    assert relay.problems[0] == []
    assert tapx.terminate() == 0
    assert raw.terminate() == 0
