"""What xcon says in its log: link state changes, --trace, the exit counters."""

from __future__ import annotations

import time

from tests.conftest import endpoint
from xcon.ports.qemu import BACKOFF_CAP, BACKOFF_FIRST, backoff_delay
from xcon.testing.frames import ether


def up(xc, n: int = 2) -> None:
    xc.wait_health("0", contains=f"All {n} sockets connected")


def test_retry_delays_double_and_never_exceed_the_cap():
    for attempt in range(40):
        for _ in range(50):
            d = backoff_delay(attempt)
            nominal = min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt)
            assert 0.9 * nominal <= d <= nominal <= BACKOFF_CAP


def test_an_established_link_that_closes_is_reported_as_down_not_unreachable(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    up(xc)
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
