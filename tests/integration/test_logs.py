"""What xcon says in its log: link state changes, --trace, the exit counters."""

from __future__ import annotations

import socket
import threading
import time

from xcon.ports.hostgate import (
    BACKOFF_CAP,
    BACKOFF_FIRST,
    BACKOFF_JITTER,
    RETRY_GRID,
    backoff_delay,
)
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import ether
from xcon.testing.loopback import new_host
from xcon.testing.wait import wait_until


def up(xc, n: int = 2) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected")


def port_counters(xc) -> dict[str, str]:
    """Each port's counters line (SIGUSR1), by port name: written by the loop, so
    everything xcon did before it asked is in the log by then."""
    lines = {}
    for line in xc.counters().splitlines():
        if " counters " in line and ": " in line:
            name, _, rest = line.split(" counters ", 1)[1].partition(": ")
            lines[name] = rest
    return lines


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
    xc.wait_log(f"{endpoint(b)}: link down (connection closed by peer); reconnecting")
    # b's port has tried again and waits for b to listen (its last error says so) ...
    wait_until(
        lambda: "last_error='not listening'" in port_counters(xc).get(endpoint(b), ""),
        10,
        lambda: f"{endpoint(b)} waiting for its listener:\n{xc.log()}",
    )
    b.start()
    up(xc)
    # ... and is back: everything from the link down to the reconnect is logged
    text = xc.log()
    after = text[text.index("link down") :]
    assert f"{endpoint(b)}: connected to" in after
    assert "not reachable" not in after and "not listening yet" not in after
    assert xc.terminate() == 0


def test_trace_is_quiet_while_nothing_moves(peers, xcon):
    a, b, c, d = peers(), peers(), peers(), peers()
    ab, cd = f"{endpoint(a)}->{endpoint(b)}", f"{endpoint(c)}->{endpoint(d)}"
    xc = xcon(
        "--p2p", f"{endpoint(a)}--{endpoint(b)}", f"{endpoint(c)}--{endpoint(d)}", "--trace", "0.1"
    )
    up(xc, 4)
    sent = 0

    def ticks(n: int) -> None:
        """n more trace intervals pass: each sees a frame c -> d and logs it."""
        nonlocal sent
        for _ in range(n):
            c.send(ether(b"c" * 46))
            sent += 1
            xc.wait_log(f"trace {cd}: frames={sent} ")

    ticks(3)
    assert f"trace {ab}" not in xc.log()  # the idle link logged nothing meanwhile
    a.send_frames([ether(b"t" * 46)] * 3)
    b.wait_frames(3)
    text = xc.wait_log(f"trace {ab}: frames=3 bytes=180")
    assert "frames/s" in text and "Mbit/s" in text
    ticks(3)
    lines = [ln for ln in xc.log().splitlines() if f" trace {ab}" in ln]
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
        wait_until(lambda: len(accepted) >= 9, 10, lambda: f"9 connects, have {accepted}")
        # Backoff grows to the 250 ms cap: the connects after the first few (20,
        # 40, 80, 160 ms apart) come a cap apart, less its jitter and grid (they
        # were 45/s when every connect reset the backoff).
        late = accepted[5:9]
        mean_gap = (late[-1] - late[0]) / (len(late) - 1)
        assert mean_gap >= (1 - BACKOFF_JITTER) * BACKOFF_CAP - RETRY_GRID, accepted
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
    host, other = new_host(), new_host()
    links = [f"{host}/{n}--{other}/{n}" for n in range(1, 9)]
    # one process: with workers, each worker probes a router one NIC at a time
    xc = xcon("--p2p", *links, "--log-level", "debug", "--workers", "1")
    xc.wait_log(f"{other}/8: not")  # started: every NIC has been tried once
    time.sleep(1.0)  # the routers stay down for a second
    # The loop answers after that second with every NIC down: what it tried
    # meanwhile is in the log.
    assert [name for name, line in port_counters(xc).items() if line.startswith("down ")] == [
        f"{h}/{n}" for n in range(1, 9) for h in (host, other)
    ]
    text = xc.log()
    failed = sum(1 for ln in text.splitlines() if "attempt failed" in ln and f"{host}/" in ln)
    # 8 NICs retrying every <= 250 ms on their own would be >= 48 in 1 s
    # (20, 40, 80, 160, 250, 250... ms apart), one at a time <= 8.
    assert failed <= 8, failed
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
