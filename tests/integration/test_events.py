"""GET /events and ``xcon ctl events`` against an xcon process between fake
qemu NICs: every change of a link's state, in order, as it happens; a client
that does not read is dropped and counted, never slowing a link or another
client."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from xcon.control.transport import link_path
from xcon.events import QUEUE
from xcon.testing.control import Follower, api, call, ctl, ctl_argv, write
from xcon.testing.fakemonitor import FakeMonitor
from xcon.testing.fakeqemu import endpoint
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def follow():
    """Factory of :class:`Follower` clients; all closed after."""
    made: list[Follower] = []

    def make(xc, query: str = "") -> Follower:
        f = Follower(xc, query)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def monitor():
    m = FakeMonitor()
    yield m
    m.close()


def one(events: list[dict], kind: str, link: str) -> dict:
    [ev] = [e for e in events if e["type"] == kind and e["link"] == link]
    return ev


def test_a_subscriber_sees_every_change_in_order(peers, configured, follow, monitor, tmp_path):
    a, b, c, d = peers(), peers(), peers(), peers()
    l1 = f"{endpoint(a)}--{endpoint(b)}"
    l2 = f"{endpoint(c)}--{endpoint(d)}"
    xc, cfg = configured(f'links = ["{l1}"]\n')
    f = follow(xc)
    # added through the API, with a monitor for c: both ends connect, c's carrier goes on
    status, _doc = call(
        xc, "POST", "/links", {"spec": l2, "monitors": {endpoint(c): monitor.address}}
    )
    assert status == 201
    f.wait(lambda ev: len([e for e in ev if e["type"] == "link.up"]) == 2)
    monitor.wait_link(True)
    # d's router stops: d is down, c's carrier goes off
    d.stop()
    f.wait(lambda ev: any(e["type"] == "carrier.changed" and e["carrier"] == "off" for e in ev))
    assert ctl(xc, "down", l1, "--direction", "a2b").returncode == 0
    assert ctl(xc, "up", l1, "--direction", "a2b").returncode == 0
    assert ctl(xc, "impair", l1, "delay", "10ms", "--direction", "b2a").returncode == 0
    assert ctl(xc, "impair", l1, "--clear").returncode == 0
    assert ctl(xc, "capture", l1, "-w", "l1.pcapng").returncode == 0
    assert ctl(xc, "capture", l1, "--stop").returncode == 0
    write(cfg, f'[[link]]\nspec = "{l1}"\nadmin = "down"\n')
    assert ctl(xc, "reload").returncode == 0
    assert ctl(xc, "remove", l2).returncode == 0
    events = f.wait(lambda ev: ev[-1]["type"] == "link.removed")
    assert [(e["type"], e["link"]) for e in events if e["type"] != "carrier.changed"] == [
        ("link.added", l2),
        ("link.up", l2),
        ("link.up", l2),
        ("link.down", l2),
        ("admin.changed", l1),
        ("admin.changed", l1),
        ("impair.set", l1),
        ("impair.cleared", l1),
        ("capture.started", l1),
        ("capture.stopped", l1),
        ("admin.changed", l1),
        ("config.reloaded", None),
        ("link.removed", l2),
    ]
    for e in events:
        assert TIME.match(e["time"]), e
        assert set(e) >= {"time", "type", "link", "end", "reason"}
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert one(events, "link.added", l2)["reason"] == "api"
    ups = [e for e in events if e["type"] == "link.up"]
    assert {e["end"] for e in ups} == {endpoint(c), endpoint(d)}
    assert all(e["reason"] == e["peer"] and e["peer"].startswith("127.") for e in ups)
    down = one(events, "link.down", l2)
    assert down["end"] == endpoint(d) and down["reason"]  # why it went: the peer closed
    carrier = [(e["end"], e["carrier"]) for e in events if e["type"] == "carrier.changed"]
    assert carrier == [(endpoint(c), "on"), (endpoint(c), "off")]
    off = [e for e in events if e["type"] == "carrier.changed"][1]
    assert off["reason"] == f"{endpoint(d)} is not connected"
    admin = [e for e in events if e["type"] == "admin.changed"]
    assert [(e["admin"], e["direction"]) for e in admin] == [
        ("down a2b", "a2b"),
        ("up", "a2b"),
        ("down", "both"),
    ]
    impair = [e for e in events if e["type"].startswith("impair.")]
    assert (impair[0]["direction"], impair[0]["netem"]) == ("b2a", "delay 10ms")
    assert [e["direction"] for e in impair[1:]] == ["both"]
    started = one(events, "capture.started", l1)
    assert started["file"].endswith("/captures/l1.pcapng") and started["capture"] == 1
    assert one(events, "capture.stopped", l1)["reason"] == "capture 1 stopped"
    reloaded = one(events, "config.reloaded", None)
    assert reloaded["changed"] == [l1] and "0 added, 0 removed, 1 changed" in reloaded["reason"]
    assert one(events, "link.removed", l2)["reason"] == "api"
    assert xc.terminate() == 0
    # xcon stopping ends the stream as HTTP ends it
    f.wait(lambda _ev: f.ended)
    assert f.live.complete


def test_filters_by_link_and_type(p2p, peers, follow):
    xc, _a, _b, l1 = p2p()
    downs = follow(xc, "?type=admin.changed,flap")
    mine = follow(xc, "?link=" + l1.split("--")[1] + "--" + l1.split("--")[0])  # either order
    c, d = peers(), peers()
    l2 = f"{endpoint(c)}--{endpoint(d)}"
    assert call(xc, "POST", "/links", {"spec": l2, "admin": "down"})[0] == 201
    assert call(xc, "POST", link_path(l2, "up"))[0] == 200
    assert call(xc, "POST", link_path(l1, "down"))[0] == 200
    assert call(xc, "POST", link_path(l1, "flap"), {"down": "1s", "up": "1s"})[0] == 200
    assert call(xc, "DELETE", link_path(l1, "flap"))[0] == 200
    downs.wait(lambda ev: len(ev) == 5)
    assert [(e["type"], e["link"], e.get("admin")) for e in downs.events] == [
        ("admin.changed", l2, "up"),
        ("admin.changed", l1, "down"),
        ("flap.started", l1, None),
        ("admin.changed", l1, "up"),  # a flap starts by plugging the cable in
        ("flap.stopped", l1, None),
    ]
    mine.wait(lambda ev: ev and ev[-1]["type"] == "flap.stopped")
    assert mine.types() == ["admin.changed", "flap.started", "admin.changed", "flap.stopped"]
    assert {e["link"] for e in mine.events} == {l1}
    status, doc = call(xc, "GET", "/events?type=link.sideways")
    assert status == 400 and "unknown event type 'link.sideways'" in doc["error"]
    status, doc = call(xc, "GET", "/events?colour=red")
    assert status == 400 and "unknown query 'colour'" in doc["error"]


def test_ctl_events_follows_until_interrupted_and_says_when_xcon_goes(p2p):
    xc, _a, _b, link = p2p()
    raw = subprocess.Popen(
        ctl_argv(xc, "events", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    human = subprocess.Popen(
        ctl_argv(xc, "events", "--link", link, "--type", "admin"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: "xcon_events_subscribers 2.0" in ctl(xc, "metrics").stdout,
            10,
            "both ctl events subscribed",
        )
        assert ctl(xc, "down", link).returncode == 0
        assert ctl(xc, "impair", link, "loss", "1%").returncode == 0
        assert raw.stdout is not None and human.stdout is not None
        first = json.loads(raw.stdout.readline())
        second = json.loads(raw.stdout.readline())
        assert (first["type"], first["link"], first["admin"]) == ("admin.changed", link, "down")
        assert (second["type"], second["netem"]) == ("impair.set", "loss 1%")
        line = human.stdout.readline().rstrip("\n")
        stamp, rest = line.split(" ", 1)
        assert TIME.match(stamp) and rest == f"admin.changed {link} down", line
        raw.send_signal(signal.SIGINT)
        assert raw.wait(10) == 0
        assert raw.stderr is not None and raw.stderr.read() == ""
        # xcon goes away: one line, exit 3
        assert xc.terminate() == 0
        assert human.wait(10) == 3
        assert human.stdout.read() == ""  # the impairment was not asked for
        assert human.stderr is not None
        err = human.stderr.read().splitlines()
        assert len(err) == 1 and err[0].startswith("xcon ctl: xcon at ") and "went away" in err[0]
    finally:
        for p in (raw, human):
            p.kill()
            p.wait()
    r = ctl(xc, "events")
    assert r.returncode == 3 and len(r.stderr.splitlines()) == 1, r
    assert r.stderr.startswith("xcon ctl: cannot reach xcon at ")


def test_a_client_that_does_not_read_is_dropped_and_counted_alone(p2p, peers, follow):
    xc, a, b, _link = p2p()
    stream = Stream(a, b, size=200)
    sleeper = api(xc).stream("GET", "/events")  # never reads until the end
    reader = follow(xc)
    # links to nowhere, flapping fast: thousands of events within seconds
    flappers = []
    for _ in range(6):
        far, near = peers(start=False), peers(start=False)
        name = f"{endpoint(far)}--{endpoint(near)}"
        assert call(xc, "POST", "/links", {"spec": name})[0] == 201
        flappers.append(name)
    for name in flappers:
        status, _doc = call(
            xc, "POST", link_path(name, "flap"), {"down": "10ms", "up": "10ms", "count": 250}
        )
        assert status == 200
    reader.wait(lambda ev: len([e for e in ev if e["type"] == "flap.stopped"]) == 6, 60)
    assert len(reader.events) > 3 * QUEUE
    xc.wait_log("events: a client fell 1000 events behind and was dropped (1 so far)")
    metrics = ctl(xc, "metrics").stdout
    assert "xcon_events_dropped_clients_total 1.0" in metrics
    assert "xcon_events_subscribers 1.0" in metrics  # the reader
    # the reader goes on hearing what happens
    assert call(xc, "POST", link_path(flappers[0], "down"))[0] == 200
    assert call(xc, "POST", link_path(flappers[0], "up"))[0] == 200
    reader.wait(lambda ev: ev[-1]["type"] == "admin.changed" and ev[-1]["admin"] == "up")
    # the one that slept gets what it had, a last line, and the end
    body = b""
    while sleeper.receive():
        body += b"".join(sleeper.take())
    body += b"".join(sleeper.take())
    sleeper.close()
    got = [json.loads(x) for x in body.splitlines()]
    assert sleeper.complete and got[-1]["type"] == "events.overflow"
    assert "fell 1000 events behind: dropped" in got[-1]["reason"]
    assert got[:-1] == reader.events[: len(got) - 1]  # the same events, up to the drop
    assert len(got) - 1 < len(reader.events)
    # and the link forwarded every frame, in order, all along
    stream.finish()
    assert xc.terminate() == 0
    assert "Traceback" not in xc.log()
