"""Cable pull with real qemu routers and their HMP monitors.

Two qemu routers (``xcon.testing.qemu``) with a monitor each, as vrnetlab
starts them (``-monitor tcp:...,server,nowait``), joined by xcon.  ``xcon ctl
down LINK --monitor ...`` pulls the cable in xcon *and* its routers' carrier
follows: xcon sends ``set_link s0 off`` to each router: qemu then drops what its NIC would send, so xcon sees
nothing at all from either router while the namespaces ping (no frame
reaches xcon to be dropped there), and ping stops.  ``up`` brings both back
and ping resumes.  Without a monitor only xcon's side goes down: the routers
keep sending and xcon drops and counts it (``admin_down``).
"""

from __future__ import annotations

import json
import time

from xcon.monitor import hmp
from xcon.testing.control import ctl
from xcon.testing.ping import ping, wait_ping
from xcon.testing.qemu import qemu_marks

pytestmark = qemu_marks()


def ends(xc, link: str) -> dict[str, dict]:
    r = ctl(xc, "--json", "link", link)
    assert r.returncode == 0, r.stderr
    return {e["name"]: e for e in json.loads(r.stdout)["ends"]}


def test_cable_pull_takes_the_routers_nics_down_and_back(lab):
    ra = lab.router("ra", monitor=14001)
    rb = lab.router("rb", monitor=14002)
    link = f"{ra.endpoint}--{rb.endpoint}"
    xc = lab.xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(ra.netns, rb.ip, timeout=10)
    assert "Error" not in hmp(ra.host, ra.monitor, "info network")

    r = ctl(
        xc,
        "down",
        link,
        "--monitor",
        f"{ra.endpoint}={ra.monitor_address}",
        "--monitor",
        f"{rb.endpoint}={rb.monitor_address}",
    )
    assert r.returncode == 0, r.stderr
    before = ends(xc, link)
    p = ping(ra.netns, rb.ip, count=5, interval=0.2, wait=0.5)
    assert p.received == 0, p.output
    after = ends(xc, link)
    for name in (ra.endpoint, rb.endpoint):
        # the routers' NICs are down: nothing even reaches xcon to be dropped
        # (a frame sent in the milliseconds between the pull in xcon and the
        # monitor's reply may have been, before the reply to "down")
        assert after[name]["rx_drops"] == before[name]["rx_drops"], after[name]
        assert after[name]["rx_frames"] == before[name]["rx_frames"]
        assert after[name]["state"] == "up", "the TCP connection stays"
    assert f"{ra.endpoint}'s NIC carrier off (the link is down (pulled))" in xc.log()

    r = ctl(xc, "up", link)  # the monitors given with "down" are remembered
    assert r.returncode == 0, r.stderr
    took = wait_ping(ra.netns, rb.ip, timeout=10)
    p = ping(ra.netns, rb.ip, count=5, interval=0.1)
    assert p.received >= 5, p.output
    assert f"{rb.endpoint}'s NIC carrier on ({ra.endpoint} is connected)" in xc.log()
    print(f"ping back {took:.2f} s after 'xcon ctl up'")
    assert ends(xc, link)[ra.endpoint]["reconnects"] == 0


def test_cable_pull_without_a_monitor_drops_in_xcon(lab):
    ra, rb = lab.router("ra"), lab.router("rb")
    link = f"{ra.endpoint}--{rb.endpoint}"
    xc = lab.xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(ra.netns, rb.ip, timeout=10)
    assert ctl(xc, "down", link).returncode == 0
    p = ping(ra.netns, rb.ip, count=5, interval=0.2, wait=0.5)
    assert p.received == 0
    deadline = time.monotonic() + 5
    while not ends(xc, link)[ra.endpoint]["rx_drops"].get("admin_down"):
        assert time.monotonic() < deadline, "the router kept sending: xcon drops it"
        time.sleep(0.1)
    assert ctl(xc, "up", link).returncode == 0
    wait_ping(ra.netns, rb.ip, timeout=10)


def test_a_monitor_that_fails_is_reported_and_xcon_still_pulls(lab):
    ra, rb = lab.router("ra", monitor=14003), lab.router("rb")
    link = f"{ra.endpoint}--{rb.endpoint}"
    xc = lab.xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    r = ctl(
        xc,
        "down",
        link,
        "--monitor",
        f"{ra.endpoint}={ra.host}:{ra.monitor},nosuchnetdev",
        "--monitor",
        f"{rb.endpoint}={rb.host}:1",
    )
    assert r.returncode == 1
    assert "is down in xcon, but" in r.stderr and "Device 'nosuchnetdev' not found" in r.stderr
    assert r.stderr.count("\n") == 1
    r = ctl(xc, "--json", "link", link)
    assert json.loads(r.stdout)["admin"] == "down"
    assert "Traceback" not in xc.log()
