"""--hub: flood whole frames, never interleave, tail-drop for a stalled port only."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from xcon.testing import pcapng
from xcon.testing.control import ctl
from xcon.testing.fakeqemu import FakeQemu, endpoint
from xcon.testing.frames import check_numbered, ether, numbered
from xcon.testing.pcaptools import TSHARK, tshark_fields
from xcon.testing.wait import wait_until

need_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian tshark)")


def up(xc, n: int) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected")


def test_each_frame_goes_to_every_other_port(peers, xcon):
    a, b, c = peers(), peers(), peers()
    xc = xcon("--hub", endpoint(a), endpoint(b), endpoint(c))
    up(xc, 3)
    due: dict[FakeQemu, list[bytes]] = {a: [], b: [], c: []}
    for sender, text in ((a, b"from a"), (b, b"from b"), (c, b"from c"), (a, b"a again")):
        sender.send(ether(text))
        for port, frames in due.items():
            if port is not sender:
                frames.append(ether(text))
                port.wait_frames(len(frames))
    # Each port's frames arrive in the order the hub forwarded them: a frame the
    # hub wrongly sent back to its sender (or sent twice) would come before the
    # later ones awaited here.
    assert a.frames == [ether(b"from b"), ether(b"from c")]
    assert b.frames == [ether(b"from a"), ether(b"from c"), ether(b"a again")]
    assert c.frames == [ether(b"from a"), ether(b"from b"), ether(b"a again")]
    assert xc.terminate() == 0


def test_concurrent_senders_never_interleave(peers, xcon):
    a, b, c = peers(), peers(), peers()
    xc = xcon("--hub", endpoint(a), endpoint(b), endpoint(c))
    up(xc, 3)
    n = 300

    def blast(peer, base):
        for i in range(0, n, 10):
            peer.send_frames(numbered(base + i + k, 9018) for k in range(10))

    ta = threading.Thread(target=blast, args=(a, 0))
    tb = threading.Thread(target=blast, args=(b, 100000))
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    # Two senders at full speed may overrun c's 1 MiB queue: the hub then drops
    # whole frames for c and counts them.  Every frame must be either delivered
    # whole and in order or counted; none may be cut, merged or lost unseen.
    deadline = time.monotonic() + 20
    while True:
        m = re.search(rf"hub->{re.escape(endpoint(c))}: .*?queue_full=(\d+)", xc.counters())
        dropped = int(m.group(1)) if m else 0
        if len(c.frames) + dropped >= 2 * n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(c.frames) + dropped == 2 * n, (len(c.frames), dropped)
    seqs = [check_numbered(f) for f in c.frames]  # raises on any corrupt frame
    from_a = [s for s in seqs if s < 100000]
    from_b = [s - 100000 for s in seqs if s >= 100000]
    assert from_a == sorted(set(from_a)) and from_b == sorted(set(from_b)), "order kept"
    assert from_a and from_b
    assert c.oversized == 0
    assert xc.terminate() == 0


def test_stalled_port_drops_only_its_share(peers, xcon):
    a, b, c = peers(), peers(), peers(record=False)
    xc = xcon("--hub", endpoint(a), endpoint(b), endpoint(c))
    up(xc, 3)
    c.pause_reading()
    n = 20000  # 30 MB: more than the kernel's socket buffers and the port's queue
    for i in range(0, n, 50):
        a.send_frames(numbered(i + k, 1514) for k in range(50))
        time.sleep(0.003)  # ~25 MB/s: a pace the healthy (Python) peer always keeps up with
    b.wait_frames(n, timeout=20)  # the healthy port gets everything
    assert [check_numbered(f) for f in b.frames] == list(range(n))
    text = xc.counters()
    m = re.search(rf"hub->{re.escape(endpoint(c))}: .*queue_full=(\d+)", text)
    assert m and int(m.group(1)) > 0, text
    c.resume_reading()
    a.send(numbered(n, 100))
    b.wait_frames(n + 1)
    assert xc.terminate() == 0


def test_port_down_drops_its_share_and_reconnects(peers, xcon):
    a, b, c = peers(), peers(), peers()
    xc = xcon("--hub", endpoint(a), endpoint(b), endpoint(c))
    up(xc, 3)
    c.stop()
    xc.wait_health("1", contains="only 2 connected")
    a.send(ether(b"while c is down"))
    b.wait_frames(1)
    c.start()
    up(xc, 3)
    a.send(ether(b"after"))
    c.wait_frames(1)
    b.wait_frames(2)
    assert c.frames == [ether(b"after")]
    text = xc.counters()
    assert re.search(rf"hub->{re.escape(endpoint(c))}: .*port_down=1", text), text
    assert xc.terminate() == 0


def test_hub_needs_two_distinct_ports(xcon):
    xc = xcon("--hub", "127.0.0.1/1")
    assert xc.proc.wait(10) == 2
    assert "at least two ports" in xc.log()
    xc2 = xcon("--hub", "127.0.0.1/1", "127.0.0.1/1")
    assert xc2.proc.wait(10) == 2
    assert "twice" in xc2.log()


@need_tshark
def test_a_hub_is_captured_where_frames_leave_it_and_impaired_per_end(peers, xcon, tmp_path):
    a, b, c = peers(), peers(), peers()
    xc = xcon("--hub", endpoint(a), endpoint(b), endpoint(c), "--capture-dir", str(tmp_path))
    up(xc, 3)
    out = ctl(xc, "capture", "hub", "-w", "hub.pcapng")
    assert out.returncode == 0, out.stderr
    # c hears nothing the hub sends it; a and b are untouched
    out = ctl(xc, "impair", "hub", "--end", endpoint(c), "--direction", "b2a", "loss", "100%")
    assert out.returncode == 0, out.stderr
    a.send_frames(numbered(i, 200) for i in range(3))
    b.wait_frames(3)
    b.send_frames([numbered(9, 200)])
    a.wait_frames(1)
    doc = json.loads(ctl(xc, "link", "hub", "--json").stdout)
    assert doc["impair"][f"{endpoint(c)}:b2a"] == "loss 100%"
    out = ctl(xc, "capture", "hub", "--stop")
    assert out.returncode == 0, out.stderr
    assert c.frames == []
    path = str(tmp_path / "hub.pcapng")
    wait_until(lambda: len(pcapng.read_file(path).statistics) == 3, 5, "the file's statistics")
    rows = [
        (name, int(flags, 0) & 3)
        for name, flags in tshark_fields(path, "frame.interface_name", "frame.packet_flags")
    ]
    # sent (outbound, 2) to b: a's three; to a: b's one; to c nothing, and what
    # the impairment dropped on the way to c is recorded on c (inbound, 1)
    assert sorted(rows) == sorted(
        [(endpoint(b), 2)] * 3 + [(endpoint(a), 2)] + [(endpoint(c), 1)] * 4
    )
    assert xc.terminate() == 0
