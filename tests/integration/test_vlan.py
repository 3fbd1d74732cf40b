"""VLAN access-port emulation on p2p links, as the vr-xcon README documents it."""

from __future__ import annotations

import os
import re

import pytest

from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import ether, tagged


def up(xc, n: int = 2) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected")


def drops(text: str, direction: str) -> dict[str, int]:
    m = re.search(rf"{re.escape(direction)}: frames=\d+ bytes=\d+ drops=(\S+)", text)
    assert m, text
    if m.group(1) == "0":
        return {}
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split(","))}


@pytest.mark.parametrize("access_side", ["right", "left"])
def test_access_port_semantics(peers, xcon, access_side):
    trunk, access = peers(), peers()
    if access_side == "right":
        spec = f"{endpoint(trunk)}--{endpoint(access)}:123"
    else:
        spec = f"{endpoint(access)}:123--{endpoint(trunk)}"
    xc = xcon("--p2p", spec)
    up(xc)
    plain = ether(os.urandom(100), ethertype=0x0800)
    inner = tagged(ether(os.urandom(60), ethertype=0x0800), 7, pcp=3)
    # trunk -> access: only VLAN 123 passes, untagged; PCP is discarded with the tag.
    trunk.send_frames(
        [
            tagged(plain, 123, pcp=5),  # passes, stripped
            plain,  # untagged: dropped
            tagged(plain, 124),  # other VLAN: dropped
            tagged(plain, 0),  # priority-tagged (VID 0): other VLAN, dropped
            tagged(plain, 123, tpid=0x88A8),  # 802.1ad outer tag: not 0x8100, dropped as untagged
            tagged(inner, 123),  # QinQ: outer 123 stripped, inner tag 7 kept
            plain[:12] + b"\x81\x00\x00",  # runt: a tag header cut short
            plain[:10],  # runt: not even two MAC addresses
            tagged(plain, 123),
        ]
    )
    access.wait_frames(3)
    # access -> trunk: every frame gets tag 123 (TPID 0x8100, PCP 0), even tagged ones.
    access.send_frames([plain, inner])
    trunk.wait_frames(2)
    assert access.frames == [plain, inner, plain]
    assert trunk.frames == [tagged(plain, 123), tagged(inner, 123)]
    t2a = f"{endpoint(trunk)}->{endpoint(access)}"
    a2t = f"{endpoint(access)}->{endpoint(trunk)}"
    text = xc.counters()
    assert drops(text, t2a) == {"untagged": 2, "other_vlan": 2, "runt": 2}
    assert drops(text, a2t) == {}
    assert xc.terminate() == 0


@pytest.mark.parametrize("size", [60, 1514, 9018])
def test_tagging_is_bit_exact_for_jumbo_frames(peers, xcon, size):
    trunk, access = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(trunk)}--{endpoint(access)}:4094")
    up(xc)
    frames = [os.urandom(size) for _ in range(50)]
    access.send_frames(frames)
    trunk.send_frames([tagged(f, 4094) for f in frames])
    trunk.wait_frames(50)
    access.wait_frames(50)
    assert trunk.frames == [tagged(f, 4094) for f in frames]
    assert access.frames == frames
    assert xc.terminate() == 0


def test_frame_too_big_after_tagging_is_dropped(peers, xcon):
    trunk, access = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(trunk)}--{endpoint(access)}:10")
    up(xc)
    biggest = os.urandom(69632 - 4)  # fits with its tag
    too_big = os.urandom(69632 - 3)  # would be 69633 bytes tagged: qemu would drop the link
    access.send_frames([too_big, biggest])
    trunk.wait_frames(1)
    assert trunk.frames == [tagged(biggest, 10)]
    assert trunk.oversized == 0
    text = xc.counters()
    assert drops(text, f"{endpoint(access)}->{endpoint(trunk)}") == {"too_big": 1}
    assert xc.terminate() == 0
