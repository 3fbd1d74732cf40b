"""Taps and interfaces as ends of any link (``tap:NAME``, ``raw:IFNAME``), in a
throw-away namespace: one link with a tap at one end and a veth at the other,
no listening side at all."""

from __future__ import annotations

from xcon.testing.frames import RESERVED, ether, numbered, reserved_multicast_frames, tagged
from xcon.testing.netns import PacketSocket, requires_root, sh, suffix

pytestmark = requires_root


def ours(frames: list[bytes]) -> list[bytes]:
    """The test's frames among what the kernel also sends (IPv6 router solicitations …)."""
    reserved = {d for d, _t in RESERVED.values()}
    return [
        f for f in frames if f[12:14] == b"\x88\xb5" or f[:6] in reserved or f[12:14] == b"\x81\x00"
    ]


def test_a_tap_linked_to_a_veth_both_ways(netns, nsxcon, closing):
    ns, s = netns(), suffix()
    tap, r0, r1 = f"xt{s}", f"xa{s}", f"xb{s}"
    sh("ip", "-n", ns, "link", "add", r0, "type", "veth", "peer", "name", r1)
    for dev in (r0, r1):
        sh("ip", "-n", ns, "link", "set", dev, "up", "mtu", "9000")
    xc = nsxcon(ns, "--p2p", f"tap:{tap}--raw:{r1}")
    xc.wait_health("0", contains="All 2 sockets connected")
    sh("ip", "-n", ns, "link", "set", tap, "up", "mtu", "9000")
    on_tap = closing(PacketSocket(ns, tap))  # the tap's kernel side
    on_wire = closing(PacketSocket(ns, r0))  # the veth's far end

    # wire -> raw end -> tap end -> the tap's kernel side
    sent = [numbered(i, n) for i, n in enumerate([60, 1514, 8000])]
    sent += reserved_multicast_frames() + [tagged(numbered(9, 100), 42)]
    for f in sent:
        on_wire.send(f)
    on_tap.wait(lambda fs: len(ours(fs)) >= len(sent))
    assert ours(on_tap.incoming) == sent

    # the tap's kernel side -> tap end -> raw end -> wire
    back = [ether(b"back" + bytes([i]) * n) for i, n in enumerate([46, 1500, 7000])]
    back += reserved_multicast_frames()
    for f in back:
        on_tap.send(f)
    on_wire.wait(lambda fs: len(ours(fs)) >= len(back))
    assert ours(on_wire.incoming) == back
    assert xc.terminate() == 0
