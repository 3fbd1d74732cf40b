"""Every signal that would end xcon ends it cleanly, and the health file never
outlives the process as healthy."""

from __future__ import annotations

import signal

import pytest

from xcon.testing.fakeqemu import endpoint

STOPPING = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGXCPU", "SIGPWR"]


@pytest.mark.parametrize("name", STOPPING)
def test_stop_signal_exits_0_and_leaves_health_unhealthy(peers, xcon, name):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    xc.wait_health("0", contains="All 2 sockets connected")
    xc.proc.send_signal(getattr(signal, name))
    assert xc.proc.wait(10) == 0
    health = xc.health()
    assert health is not None
    assert health.splitlines() == ["1", "xcon is not running (" + name + ")"]
    log = xc.log()
    assert f"received {name}, shutting down" in log
    assert "Traceback" not in log


def test_sigusr2_restarts_in_place_and_keeps_running(peers, xcon):
    """SIGUSR2 is the restart in place (docs/restart.md), not a stop."""
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    xc.wait_health("0", contains="All 2 sockets connected")
    xc.proc.send_signal(signal.SIGUSR2)
    xc.wait_log(f"{endpoint(b)}: taken over, connected to", timeout=10)
    assert xc.proc.poll() is None
    assert a.accepted == 1 and b.accepted == 1
    xc.wait_health("0", contains="All 2 sockets connected")
    assert xc.terminate() == 0


def test_sigusr1_logs_counters_and_keeps_running(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    xc.wait_health("0", contains="All 2 sockets connected")
    assert f"counters {endpoint(a)}: up" in xc.counters()
    assert xc.proc.poll() is None
    assert xc.health().startswith("0\n")
    assert xc.terminate() == 0
