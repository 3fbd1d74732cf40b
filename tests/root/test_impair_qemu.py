"""Impairment seen by real qemu "routers" (see test_qemu_e2e.py for the lab):
ping's own statistics show a 20 ms ± 5 ms delay set on both directions (rtt
about 2 × 20 ms), and TCP (iperf3) through a link losing 1 % of its frames
retransmits."""

from __future__ import annotations

import shutil
import statistics

import pytest

from xcon.control.client import link_path
from xcon.testing.control import call
from xcon.testing.netns import iperf3
from xcon.testing.ping import ping, wait_ping
from xcon.testing.qemu import qemu_marks, report

pytestmark = qemu_marks()


def impaired(lab, impair: str, seed: str):
    """Routers a and b joined by xcon, the link impaired by ``--impair LINK``
    followed by ``impair`` (``=WORDS`` or ``:DIRECTION=WORDS``), pinging each
    other; returns ``(a, b, link, xcon)``."""
    ra, rb = lab.router("a"), lab.router("b")
    link = f"{ra.endpoint}--{rb.endpoint}"
    x = lab.xcon("--p2p", link, "--impair", f"{link}{impair}", "--seed", seed)
    x.wait_health("0", contains="All 2 sockets connected", timeout=10)
    wait_ping(ra.netns, rb.ip, timeout=10)
    return ra, rb, link, x


def test_ping_shows_the_delay_in_both_directions(lab, record_property):
    ra, rb, link, x = impaired(lab, "=delay 20ms 5ms", "1")
    p = ping(ra.netns, rb.ip, count=40, interval=0.05, wait=2)
    report(record_property, lab, "impaired_ping_20ms_5ms_each_way", p.figures())
    assert p.received >= 40, p.output
    assert p.rtt is not None
    # Each direction adds 20 ms +- 5 ms (uniform): an echo and its reply add
    # 30 to 50 ms, 40 on average; the routers and xcon add a few ms at most.
    assert 30.0 <= p.rtt[0] and p.rtt[2] <= 60.0, p.figures()
    assert 36.0 <= statistics.mean(p.times) <= 46.0, p.figures()
    # and without the impairment (cleared live) the rtt is back under 10 ms
    status, _doc = call(x, "DELETE", link_path(link, "impair"))
    assert status == 200
    q = ping(ra.netns, rb.ip, count=10, interval=0.05, wait=2)
    assert q.rtt is not None and q.rtt[1] < 10.0, q.figures()


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 not installed")
def test_tcp_retransmits_through_one_percent_loss(lab, record_property):
    ra, rb, link, x = impaired(lab, ":a2b=loss 1%", "3")
    rep = iperf3(ra.netns, rb.netns, rb.ip, seconds=3)
    assert "error" not in rep, rep.get("error")
    sent = rep["end"]["sum_sent"]
    report(
        record_property,
        lab,
        "iperf3_loss_1pct",
        f"{sent['bits_per_second'] / 1e6:.1f} Mbit/s, {sent['retransmits']} retransmits",
    )
    assert sent["retransmits"] > 0
    assert sent["bytes"] > 0
