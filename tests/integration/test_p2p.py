"""p2p through a real xcon process between fake qemu NICs on loopback."""

from __future__ import annotations

import os
import re
import struct
import threading
import time

import pytest

from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, ether, numbered


def up(xc, n: int = 2) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected")


def counter(text: str, key: str) -> int:
    m = re.findall(rf"\b{key}=(\d+)", text)
    return sum(int(x) for x in m)


@pytest.mark.parametrize("size", [60, 1514, 9018, 65535])
def test_bit_exact_both_directions(p2p, size):
    xc, a, b, _link = p2p()
    fa = [os.urandom(size) for _ in range(20)]
    fb = [os.urandom(size) for _ in range(20)]
    a.send_frames(fa)
    b.send_frames(fb)
    b.wait_frames(20)
    a.wait_frames(20)
    assert b.frames == fa
    assert a.frames == fb
    assert xc.terminate() == 0


def test_many_links_in_one_process(peers, xcon):
    pairs = [(peers(nic=i), peers(nic=i + 10)) for i in range(1, 6)]
    xc = xcon("--p2p", *[f"{endpoint(a)}--{endpoint(b)}" for a, b in pairs])
    up(xc, 10)
    for i, (a, _b) in enumerate(pairs):
        a.send(ether(bytes([i]) * 50))
    for i, (a, b) in enumerate(pairs):
        b.wait_frames(1)
        assert b.frames == [ether(bytes([i]) * 50)]
        assert a.frames == []
    assert xc.terminate() == 0


def test_peer_not_up_at_start(peers, xcon):
    a = peers()
    b = peers(start=False)
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    xc.wait_health("1", contains="Expected 2 sockets but only 1 connected")
    time.sleep(0.5)
    assert xc.proc.poll() is None, "a router that is not up yet is not an error"
    b.start()
    up(xc)
    a.send(ether(b"late"))
    b.wait_frames(1)
    assert b.frames == [ether(b"late")]
    assert xc.terminate() == 0


def stream(peer, stop: threading.Event, size: int, sent: list[int]) -> None:
    """Send numbered frames until told to stop; records how many were handed over."""
    seq = 0
    while not stop.is_set():
        batch = [numbered(seq + i, size) for i in range(16)]
        try:
            peer.send_frames(batch)
        except OSError:
            time.sleep(0.01)
            continue
        seq += 16
        sent.append(seq)


def test_receiver_restart_mid_stream(peers, xcon):
    a, b = peers(), peers(record=True)
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    up(xc)
    stop, sent = threading.Event(), []
    t = threading.Thread(target=stream, args=(a, stop, 9018, sent), daemon=True)
    t.start()
    try:
        b.wait_frames(200)
        b.stop()
        time.sleep(0.3)
        before = len(b.frames)
        b.start()
        back = time.monotonic()
        b.wait_frames(before + 1, timeout=3)
        assert time.monotonic() - back < 1.0, "link must forward within 1 s of the peer listening"
        b.wait_frames(before + 200, timeout=3)
    finally:
        stop.set()
        t.join()
    # Every frame that arrived is whole and uncorrupted (check_numbered raises otherwise),
    # and after the restart they are in order.
    seqs = [check_numbered(f) for f in b.frames]
    after = seqs[before:]
    assert after == sorted(after)
    assert b.oversized == 0
    assert xc.terminate() == 0


def test_sender_dies_mid_frame(p2p):
    """A partial frame from a dying peer is never forwarded; the next connection starts aligned."""
    xc, a, b, _link = p2p()
    whole = numbered(1, 9018)
    partial = struct.pack(">I", 9018) + numbered(2, 9018)[:4000]
    a.send_raw(struct.pack(">I", len(whole)) + whole + partial)
    b.wait_frames(1)
    a.stop()
    xc.wait_health("1")
    a.start()
    up(xc)
    a.send(numbered(3, 1500))
    b.wait_frames(2)
    assert [check_numbered(f) for f in b.frames] == [1, 3]
    assert b.oversized == 0
    text = xc.counters()
    assert counter(text, "partial_bytes") == 4004
    assert xc.terminate() == 0


def test_zero_length_dropped_and_counted(p2p):
    xc, a, b, _link = p2p()
    a.send_raw(b"\0\0\0\0" + struct.pack(">I", 60) + ether(b"z" * 46))
    b.wait_frames(1)
    assert b.frames == [ether(b"z" * 46)]
    assert b.zero_frames == 0
    text = xc.counters()
    assert counter(text, "zero_length") == 1
    assert a.accepted == 1, "a zero length does not reset the connection"
    assert xc.terminate() == 0


@pytest.mark.parametrize("length", [69633, 2**32 - 1])
def test_oversized_length_resets_that_connection_only(peers, xcon, length):
    a, b = peers(), peers()
    c, d = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}", f"{endpoint(c)}--{endpoint(d)}")
    up(xc, 4)
    a.send_raw(struct.pack(">I", 60) + ether(b"g" * 46) + struct.pack(">I", length) + b"garbage")
    a.wait_disconnected(3)
    a.wait_connected(3)  # xcon reconnects after resetting a broken peer
    assert a.accepted == 2
    c.send(ether(b"other link"))
    d.wait_frames(1)
    assert d.frames == [ether(b"other link")]
    a.send(ether(b"after"))
    b.wait_frames(2)
    assert b.frames == [ether(b"g" * 46), ether(b"after")]
    assert b.oversized == 0, "nothing qemu would reject was forwarded"
    text = xc.counters()
    assert counter(text, "protocol_errors") == 1
    assert xc.terminate() == 0


def test_stalled_receiver_bounded_memory_and_lossless(p2p):
    xc, a, b, _link = p2p()
    b.pause_reading()
    total = 0
    rss_peak = 0
    deadline = time.monotonic() + 20
    # Push until the whole path (sockets and relay) is full: a send that does
    # not complete within its timeout means backpressure reached the sender.
    seq = 0
    with pytest.raises(TimeoutError):
        while time.monotonic() < deadline:
            a.send_raw(
                b"".join(struct.pack(">I", 1514) + numbered(seq + i, 1514) for i in range(64)),
                timeout=1.0,
            )
            seq += 64
            total += 64
            rss_peak = max(rss_peak, xc.rss_kib())
    assert total > 100, "some data must have gone through before the stall"
    rss_peak = max(rss_peak, xc.rss_kib())
    assert rss_peak < 60 * 1024, f"relay RSS grew to {rss_peak} KiB while the receiver stalled"
    b.resume_reading()
    # The last send timed out part-way, so between seq and seq+64 frames were handed over.
    b.wait_frames(seq, timeout=20)
    got = [check_numbered(f) for f in b.frames]
    assert got[:seq] == list(range(seq))
    assert xc.terminate() == 0


def test_sigterm_exits_0_and_health_transitions(peers, xcon):
    a, b = peers(), peers(start=False)
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    assert xc.wait_health("1", contains="Expected 2 sockets but only 1 connected")
    b.start()
    assert xc.wait_health("0") == "0\nAll 2 sockets connected\n"
    a.stop()
    assert xc.wait_health("1") == "1\nExpected 2 sockets but only 1 connected\n"
    a.start()
    assert xc.wait_health("0") == "0\nAll 2 sockets connected\n"
    assert xc.terminate() == 0
    assert "received SIGTERM" in xc.log()


def test_debug_logs_each_frame(p2p):
    xc, a, b, _link = p2p("--debug")
    a.send(ether(b"\x01" * 46, ethertype=0x0800))
    b.wait_frames(1)
    text = xc.wait_log("type 0x0800 len 60")
    assert "52:54:00:00:00:01 > 52:54:00:00:00:02" in text
    assert xc.terminate() == 0


def test_trace_logs_counters(p2p):
    xc, a, b, _link = p2p("--trace", "0.2")
    a.send_frames([ether(b"t" * 46)] * 3)
    b.wait_frames(3)
    xc.wait_log(f"trace {endpoint(a)}->{endpoint(b)}: frames=3 bytes=180")
    assert xc.terminate() == 0


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_names_and_ipv6_endpoints(xcon):
    """A name is resolved at connect time; a bracketed IPv6 address works."""
    import random

    from xcon.testing.fakeqemu import FakeQemu

    # TCP ports 12000..22000: below the ephemeral range, tried until both are free.
    for _ in range(50):
        nic = random.randrange(2000, 12000)
        a, b = FakeQemu("127.0.0.1", nic), FakeQemu("::1", nic + 1)
        try:
            a.start()
            b.start()
            break
        except OSError:
            a.stop()
            b.stop()
    with a, b:
        xc = xcon("--p2p", f"localhost/{nic}--[::1]/{nic + 1}")
        up(xc)
        a.send(ether(b"v4 to v6"))
        b.send(ether(b"v6 to v4"))
        b.wait_frames(1)
        a.wait_frames(1)
        assert b.frames == [ether(b"v4 to v6")] and a.frames == [ether(b"v6 to v4")]
        assert xc.terminate() == 0


def test_unresolvable_name_keeps_retrying(peers, xcon):
    a = peers()
    xc = xcon("--p2p", f"{endpoint(a)}--no-such-router.invalid/1")
    xc.wait_health("1", contains="only 1 connected")
    xc.wait_log("cannot resolve 'no-such-router.invalid'", timeout=30)
    time.sleep(0.5)
    assert xc.proc.poll() is None
    assert xc.terminate() == 0
