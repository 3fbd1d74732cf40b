"""Carrier follows the link, against an xcon process between fake qemu NICs
whose monitors (xcon.testing.fakemonitor) speak HMP as qemu's do: the near
router's NIC goes off when the far router stops, on when it is back, off
when the link is pulled, flapped or removed, and when xcon stops."""

from __future__ import annotations

import json
import time

from xcon.testing.control import ctl
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import numbered
from xcon.testing.wait import wait_until


def lab(peers, xcon, monitors, *extra: str):
    a, b = peers(), peers()
    ma, mb = monitors(), monitors()
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon(
        "--p2p",
        link,
        "--monitor",
        f"{endpoint(a)}={ma.address}",
        "--monitor",
        f"{endpoint(b)}={mb.address}",
        *extra,
    )
    xc.wait_health("0", contains="All 2 sockets connected")
    ma.wait_link(True)
    mb.wait_link(True)
    return a, b, ma, mb, link, xc


def test_the_far_router_stopping_takes_the_near_nic_down_and_back(peers, xcon, monitors):
    a, b, ma, mb, link, xc = lab(peers, xcon, monitors)
    b.stop()
    went = time.monotonic()
    off = ma.wait_link(False)
    print(f"far end gone -> near NIC off: {(off - went) * 1000:.1f} ms")
    assert mb.link() is True  # b's own monitor: its qemu is gone, nothing to tell
    b.start()
    b.wait_connected()
    ma.wait_link(True)
    mb.wait_link(True)  # told again: a new qemu starts with its link on
    a.send(numbered(1, 100))
    b.wait_frames(1)
    assert "NIC carrier off (" + endpoint(b) + " is not connected)" in xc.log()
    doc = json.loads(ctl(xc, "--json", "link", link).stdout)
    carrier = {e["name"]: e["carrier"] for e in doc["ends"]}
    assert carrier[endpoint(a)]["carrier"] == "on" and carrier[endpoint(a)]["changes"] == 3
    shown = ctl(xc, "link", link).stdout  # the table: one carrier line per monitored end
    assert "carrier on since " in shown and f"({endpoint(b)} is connected); set 3 times" in shown
    metrics = ctl(xc, "metrics").stdout
    assert f'xcon_link_end_carrier{{end="{endpoint(a)}",link="{link}"}} 1.0' in metrics
    assert xc.terminate() == 0
    # xcon stops: both NICs off (--on-exit down, the default)
    assert ma.link() is False and mb.link() is False


def test_pull_one_way_flap_and_remove(peers, xcon, monitors):
    a, b, ma, mb, link, xc = lab(peers, xcon, monitors)
    r = ctl(xc, "down", link, "--direction", "a2b")
    assert r.returncode == 0, r.stderr
    assert ma.link() is True and mb.link() is True  # one way: carrier untouched
    a.send(numbered(1, 100))
    b.send(numbered(2, 100))
    a.wait_frames(1)  # b2a still carries
    assert ctl(xc, "up", link, "--direction", "a2b").returncode == 0
    assert ctl(xc, "down", link).returncode == 0
    # `down` answers once the routers were told
    assert ma.link() is False and mb.link() is False
    assert ctl(xc, "up", link).returncode == 0
    assert ma.link() is True and mb.link() is True
    r = ctl(xc, "flap", link, "--down", "200ms", "--up", "300ms", "--count", "2")
    assert r.returncode == 0, r.stderr
    assert "flap: down 0.2s, up 0.3s, pulls 1 of 2" in r.stdout  # the answer shows it
    wait_until(lambda: len(ma.changes) >= 7, 5, lambda: f"two flaps: {ma.changes} {xc.log()}")
    assert [on for _t, _n, on in ma.changes[-4:]] == [False, True, False, True]
    wait_until(lambda: "flap schedule done" in xc.log(), 5, "the schedule's end")
    assert ctl(xc, "remove", link).returncode == 0
    ma.wait_link(False)
    mb.wait_link(False)
    assert xc.terminate() == 0


def test_a_monitor_that_fails_is_counted_and_retried_never_fatal(peers, xcon, monitors):
    a, b = peers(), peers()
    ma = monitors(answers={"set_link p01 off": "Error: Device 'p01' not found"})
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", link, "--monitor", f"{endpoint(a)}={ma.address}", "--on-exit", "keep")
    xc.wait_health("0", contains="All 2 sockets connected")
    ma.wait_link(True)
    r = ctl(xc, "down", link)
    assert r.returncode == 1 and "is down in xcon, but" in r.stderr, r
    assert "Device 'p01' not found" in r.stderr
    wait_until(lambda: ma.commands.count("set_link p01 off") >= 3, 5, "retries")
    doc = json.loads(ctl(xc, "--json", "link", link).stdout)
    end = next(e for e in doc["ends"] if e["name"] == endpoint(a))
    assert end["carrier"]["errors"] >= 3 and "not found" in end["carrier"]["error"]
    assert doc["admin"] == "down"
    assert xc.terminate() == 0  # --on-exit keep: not told at exit
    assert xc.log().count("cannot set") == 1  # one line per distinct error
    assert ma.commands.count("set_link p01 off") >= 3 and "Traceback" not in xc.log()


def test_vrnetlab_monitors_and_a_unix_monitor(peers, xcon, monitors, tmp_path):
    a, b = peers(), peers()
    mb = monitors(path=str(tmp_path / "b.mon"))
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon(
        "--p2p", link, "--monitors", "vrnetlab", "--monitor", f"{endpoint(b)}={mb.address},p01"
    )
    xc.wait_health("0", contains="All 2 sockets connected")
    mb.wait_link(True)
    doc = json.loads(ctl(xc, "--json", "link", link).stdout)
    mons = {e["name"]: e["monitor"] for e in doc["ends"]}
    host = endpoint(a).split("/")[0]
    assert mons == {endpoint(a): f"{host}:4000,p01", endpoint(b): f"{mb.address},p01"}
    # nothing listens on a's HOST:4000: counted, logged once, never fatal
    wait_until(lambda: "cannot set" in xc.log(), 5, "the unreachable monitor reported")
    assert xc.terminate() == 0


def test_a_link_added_down_tells_its_routers_and_vrnetlab_monitors_by_api(peers, xcon, monitors):
    from xcon.testing.control import call

    a, b = peers(), peers()
    ma = monitors()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}", "--monitor", f"{endpoint(a)}={ma.address}")
    xc.wait_health("0", contains="All 2 sockets connected")
    ma.wait_link(True)
    c, d = peers(), peers()
    mc, md = monitors(), monitors()
    spec = f"{endpoint(c)}--{endpoint(d)}"
    r = ctl(
        xc,
        "add",
        spec,
        "--down",
        "--monitor",
        f"{endpoint(c)}={mc.address}",
        "--monitor",
        f"{endpoint(d)}={md.address}",
    )
    assert r.returncode == 0, r.stderr
    mc.wait_link(False)  # `add --down` tells the routers
    md.wait_link(False)
    assert ma.commands == ["set_link p01 on"]  # the other link's router: untouched
    status, doc = call(
        xc, "POST", "/links", {"spec": "127.0.0.9/3--127.0.0.9/4", "monitors": "vrnetlab"}
    )
    assert status == 201, doc
    mons = {e["name"]: e["monitor"] for e in doc["ends"]}
    assert mons == {"127.0.0.9/3": "127.0.0.9:4000,p03", "127.0.0.9/4": "127.0.0.9:4000,p04"}
    assert xc.terminate() == 0
