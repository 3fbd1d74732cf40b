"""What xcon says in its log: link state changes, --trace, the exit counters."""

from __future__ import annotations

import time

from xcon.ports.qemu import BACKOFF_CAP, BACKOFF_FIRST, RETRY_GRID, backoff_delay
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import ether


def up(xc, n: int = 2) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected")


def test_retry_delays_double_and_never_exceed_the_cap():
    for attempt in range(40):
        for _ in range(50):
            d = backoff_delay(attempt)
            nominal = min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt)
            assert 0.9 * nominal - RETRY_GRID <= d <= nominal <= BACKOFF_CAP


def test_an_established_link_that_closes_is_reported_as_down_not_unreachable(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    up(xc)
    b.send(ether(b"x" * 50))  # the link has carried traffic
    a.wait_frames(1)
    b.stop()
    text = xc.wait_log(f"{endpoint(b)}: link down (connection closed by peer); reconnecting")
    time.sleep(0.6)  # several failed reconnects
    text = xc.log()
    after = text[text.index("link down") :]
    assert "not reachable" not in after
    b.start()
    up(xc)
    assert xc.terminate() == 0


def test_trace_is_quiet_while_nothing_moves(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}", "--trace", "0.1")
    up(xc)
    time.sleep(0.5)
    assert "trace " not in xc.log()  # idle links log nothing
    a.send_frames([ether(b"t" * 46)] * 3)
    b.wait_frames(3)
    text = xc.wait_log(f"trace {endpoint(a)}->{endpoint(b)}: frames=3 bytes=180")
    assert "frames/s" in text and "Mbit/s" in text
    time.sleep(0.5)
    lines = [ln for ln in xc.log().splitlines() if " trace " in ln]
    assert len(lines) == 1, lines  # one line for the change, none after
    assert xc.terminate() == 0


def test_counters_at_exit_show_the_state_of_the_run(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    up(xc)
    assert xc.terminate() == 0
    text = xc.log()
    exit_block = text[text.index("shutting down") :]
    assert f"counters {endpoint(a)}: up " in exit_block
    assert f"counters {endpoint(b)}: up " in exit_block


def test_a_peer_that_accepts_and_closes_gets_backoff_not_a_storm(peers, xcon):
    import socket
    import threading

    from xcon.testing.loopback import new_host

    host = new_host()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, 10001))
    ls.listen(16)
    accepted = []
    stop = threading.Event()

    def serve() -> None:
        ls.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            accepted.append(time.monotonic())
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        b = peers()
        xc = xcon("--p2p", f"{host}/1--{endpoint(b)}")
        time.sleep(3.0)
        n = len(accepted)
        # Backoff grows to the 250 ms cap: at most ~4 connects/s after the first few
        # (it was 45/s when every connect reset the backoff).
        assert 3 <= n <= 20, n
        log = xc.log()
        assert log.count("right after connecting") == 1, log
        assert log.count(f"connected to {host}:10001") == 1
        assert xc.terminate() == 0
    finally:
        stop.set()
        t.join()
        ls.close()


def test_ports_of_a_host_that_is_down_probe_one_at_a_time(xcon):
    """A booting lab: the NICs of a router that is not up cost one connection
    attempt per retry interval for the whole router, not one per NIC."""
    import socket
    import threading

    from xcon.testing.loopback import new_host

    host, other = new_host(), new_host()
    links = [f"{host}/{n}--{other}/{n}" for n in range(1, 9)]
    xc = xcon("--p2p", *links, "--log-level", "debug")
    time.sleep(2.0)
    text = xc.log()
    failed = sum(1 for ln in text.splitlines() if "attempt failed" in ln and f"{host}/" in ln)
    # 8 NICs retrying every <= 250 ms on their own would be >= 60 in 2 s.
    assert failed <= 14, failed
    # The router comes up: every NIC is back within one retry interval.
    listeners = []
    for n in range(1, 9):
        for h in (host, other):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((h, 10000 + n))
            s.listen(1)
            listeners.append(s)
    t0 = time.monotonic()
    accepted = []

    def accept_all() -> None:
        for s in listeners:
            s.settimeout(3)
            try:
                accepted.append(s.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept_all)
    t.start()
    xc.wait_health("0", contains="All 16 sockets connected", timeout=3)
    assert time.monotonic() - t0 < 1.0
    t.join()
    for s in listeners + accepted:
        s.close()
    assert xc.terminate() == 0
