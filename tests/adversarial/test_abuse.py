"""The adversarial run, kept: what a broken or hostile peer, a restarting lab
and a booting lab do to xcon.  Marked ``adversarial`` (``pytest -m
adversarial`` runs only these; ``make test`` runs them with the rest).

Each test checks xcon against an independent model: the fake qemu NIC applies
qemu's own rules to what it receives, and numbered self-checking frames show
loss, corruption, duplication and reordering."""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time

import pytest

from xcon.testing.fakeqemu import QEMU_MAX_FRAME, endpoint
from xcon.testing.frames import check_numbered, numbered, wire
from xcon.testing.loopback import new_host

pytestmark = pytest.mark.adversarial


def up(xc, n: int = 2, timeout: float = 10.0) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected", timeout=timeout)


def qemu_accepts(stream: bytes) -> tuple[list[bytes], bool]:
    """What a qemu NIC makes of ``stream``: the frames it takes, and whether it
    drops the connection (a length above its limit).  Zero lengths are skipped;
    an incomplete tail is simply never completed."""
    frames, pos = [], 0
    while len(stream) - pos >= 4:
        (n,) = struct.unpack_from(">I", stream, pos)
        if n > QEMU_MAX_FRAME:
            return frames, True
        if len(stream) - pos - 4 < n:
            break
        if n:
            frames.append(stream[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return frames, False


def random_stream(rng: random.Random) -> bytes:
    """Frames of awkward lengths, zero lengths, and sometimes an oversized header
    or a truncated tail: what a broken peer might send."""
    parts = []
    for _ in range(rng.randrange(1, 40)):
        r = rng.random()
        if r < 0.1:
            parts.append(b"\0\0\0\0")
        elif r < 0.13:
            parts.append(struct.pack(">I", rng.choice([QEMU_MAX_FRAME + 1, 2**31, 2**32 - 1])))
        else:
            n = rng.choice(
                [1, 13, 14, 59, 60, 1514, 9018, 65535, QEMU_MAX_FRAME, rng.randrange(1, 3000)]
            )
            parts.append(wire(rng.randbytes(n)))
    data = b"".join(parts)
    if rng.random() < 0.2:
        data = data[: rng.randrange(len(data) + 1)]
    return data


def test_frame_parser_fuzz_against_qemu_rules_while_another_link_is_clean(peers, xcon):
    """Random streams on one link: the far NIC gets exactly what qemu's rules
    allow, never a partial or oversized frame.  Another link in the same
    process carries numbered frames meanwhile and loses nothing."""
    rng = random.Random(1234)
    a, b = peers(), peers()
    c, d = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}", f"{endpoint(c)}--{endpoint(d)}")
    up(xc, 4)
    stop = threading.Event()
    sent = [0]

    def clean_traffic() -> None:
        while not stop.is_set():
            c.send_frames([numbered(sent[0] + i, 300) for i in range(20)])
            sent[0] += 20
            time.sleep(0.002)

    t = threading.Thread(target=clean_traffic, daemon=True)
    t.start()
    try:
        for session in range(40):
            data = random_stream(rng)
            expect, resets = qemu_accepts(data)
            b.clear()
            accepted = a.accepted
            a.send_raw(data)
            if expect:
                b.wait_frames(len(expect), timeout=5)
            if resets:
                a.wait_connected(5)  # xcon dropped that connection and reconnected
                deadline = time.monotonic() + 5
                while a.accepted == accepted and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert a.accepted > accepted, f"session {session}: no reset"
            else:
                # A truncated tail stays in xcon's buffer: end the connection so the
                # next session starts aligned (only that partial frame is lost).
                a.disconnect_client()
                deadline = time.monotonic() + 5
                while a.accepted == accepted and time.monotonic() < deadline:
                    time.sleep(0.01)
                a.wait_connected(5)
            time.sleep(0.05)
            assert b.frames == expect, f"session {session}"
            assert b.oversized == 0
    finally:
        stop.set()
        t.join()
    d.wait_frames(sent[0], timeout=10)
    assert [check_numbered(f) for f in d.frames] == list(range(sent[0]))
    assert xc.terminate() == 0


@pytest.mark.parametrize("length", [1, 13, 14, 60, 1514, 9018, 65535, QEMU_MAX_FRAME])
def test_edge_lengths_cross_bit_exact(peers, xcon, length):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    up(xc)
    frames = [random.Random(length + i).randbytes(length) for i in range(3)]
    a.send_frames(frames)
    b.send_frames(frames[::-1])
    b.wait_frames(3)
    a.wait_frames(3)
    assert b.frames == frames and a.frames == frames[::-1]
    assert xc.terminate() == 0


def test_100_restarts_of_the_receiver_never_corrupt_or_reorder(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    up(xc)
    stop = threading.Event()
    seq = [0]

    def sender() -> None:
        while not stop.is_set():
            try:
                a.send_frames([numbered(seq[0] + i, 1000) for i in range(8)])
            except OSError:
                time.sleep(0.005)
                continue
            seq[0] += 8

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got: list[int] = []
    try:
        for _ in range(100):
            b.wait_frames(1, timeout=5)
            b.stop()
            got += [check_numbered(f) for f in b.frames]  # raises on corruption
            b.clear()
            b.start()
        b.wait_frames(1, timeout=5)
    finally:
        stop.set()
        t.join()
    got += [check_numbered(f) for f in b.frames]
    assert got == sorted(set(got)), "a frame was duplicated or reordered"
    assert b.oversized == 0
    text = xc.counters()
    assert "protocol_errors=0" in text
    assert xc.terminate() == 0


def test_a_stalled_hub_port_costs_the_others_nothing_and_memory_stays_flat(peers, xcon):
    p = [peers() for _ in range(3)]
    xc = xcon("--hub", *map(endpoint, p))
    up(xc, 3)
    p[2].pause_reading()
    rss0 = xc.rss_kib()
    total = 0
    for _ in range(40):
        p[0].send_frames([numbered(total + k, 1400) for k in range(100)])
        total += 100
    p[1].wait_frames(total, timeout=20)
    assert [check_numbered(f) for f in p[1].frames] == list(range(total))
    assert xc.rss_kib() - rss0 < 8 * 1024, "queues are bounded"
    text = xc.counters()
    m = re.search(rf"hub->{re.escape(endpoint(p[2]))}: .*?queue_full=(\d+)", text)
    assert m and int(m.group(1)) > 0
    p[2].resume_reading()
    assert xc.terminate() == 0


def test_500_links_with_half_the_peers_killed_and_brought_back(peers, xcon):
    """500 links (1000 ports): kill one side of half of them, bring it back;
    every link forwards again and the health file follows."""
    n = 500
    pairs = [(peers(nic=1), peers(nic=1)) for _ in range(n)]
    xc = xcon("--p2p", *[f"{endpoint(x)}--{endpoint(y)}" for x, y in pairs])
    up(xc, 2 * n, timeout=30)
    victims = [y for _x, y in pairs[::2]]
    for y in victims:
        y.stop()
    xc.wait_health("1", contains=f"only {2 * n - len(victims)} connected", timeout=15)
    for y in victims:
        y.start()
    up(xc, 2 * n, timeout=30)
    for i, (x, _y) in enumerate(pairs):
        x.send(numbered(i, 64))
    for i, (_x, y) in enumerate(pairs):
        y.wait_frames(1, timeout=10)
        assert check_numbered(y.frames[-1]) == i
    assert xc.terminate() == 0


def test_a_flood_of_connections_to_a_listening_port_does_not_lock_out_the_client(xcon):
    """--raw-listen needs root; the squatting rules are the same for every
    listening port, so they are checked in-process in test_listen.py and here
    against a real process through a tap when root is available."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to create a tap (the rule itself is tested in test_listen.py)")
    host = new_host()
    tap = f"xa{random.randrange(16**6):06x}"
    xc = xcon("--tap-listen", "1", "--tap-if", tap, "--listen-address", host)
    xc.wait_health("0", contains="Ready", timeout=10)
    flood = []
    for _ in range(100):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, 10001))
        flood.append(s)
    time.sleep(0.5)
    for s in flood:
        s.close()
    t0 = time.monotonic()
    real = socket.create_connection((host, 10001), timeout=5)
    real.sendall(wire(b"\x02" * 60))
    xc.wait_health("0", contains="All 2 sockets connected", timeout=10)
    assert time.monotonic() - t0 < 5
    real.close()
    assert xc.terminate() == 0
