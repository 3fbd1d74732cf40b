"""``xcon --takeover`` and the restart in place (``xcon ctl restart``,
SIGUSR2): the connections go on in the new xcon, frames flowing both ways
all along: none lost, none twice, no reconnect seen by the routers
(docs/restart.md)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from xcon.testing.control import ctl, wait_api
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, numbered
from xcon.testing.process import XconProcess
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until


def link_json(xc, link: str) -> dict:
    r = ctl(xc, "--json", "link", link)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def takeover(xc: XconProcess, *args: str) -> XconProcess:
    """The same command again with --takeover, in the same directory."""
    new = XconProcess([*args, "--takeover"], cwd=xc.workdir, health_file=xc.health_file)
    assert xc.proc.wait(15) == 0, xc.log()
    wait_api(new)
    return new


def test_takeover_loses_no_frame_and_no_connection(peers, xcon, engine):
    a, b = peers(), peers()
    link = f"{endpoint(a)}--{endpoint(b)}"
    old = xcon("--p2p", link, "--impair", f"{link}:a2b=delay 5ms")
    old.wait_health("0", contains="All 2 sockets connected")
    wait_api(old)
    ab = Stream(a, b, fps=4000, batch=8)
    ba = Stream(b, a, fps=4000, batch=8, first=10**6)
    time.sleep(0.3)
    new = takeover(old, "--p2p", link, "--impair", f"{link}:a2b=delay 5ms", "--engine", engine)
    try:
        time.sleep(0.3)
        ab.finish()
        ba.finish()
        assert a.accepted == 1 and b.accepted == 1, "a router saw its connection go"
        assert "handed over to the new xcon: exiting" in old.log()
        assert "taken over, connected to" in new.log()
        doc = link_json(new, link)
        ends = {e["name"]: e for e in doc["ends"]}
        assert ends[endpoint(a)]["reconnects"] == 0 and ends[endpoint(a)]["connects"] == 1
        assert doc["impair"]["a2b"] == "delay 5ms" or "delay 5ms" in json.dumps(doc)
        assert new.health().startswith("0\n")
        assert os.path.exists(os.path.join(new.workdir, "xcon.sock"))
    finally:
        new.kill()


def test_restart_in_place_keeps_the_pid_and_every_frame(peers, xcon):
    a, b = peers(), peers()
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    ab = Stream(a, b, fps=4000, batch=8)
    ba = Stream(b, a, fps=4000, batch=8, first=10**6)
    time.sleep(0.2)
    r = ctl(xc, "restart")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: xc.log().count("taken over, connected to") == 2, 10, xc.log)
    os.kill(xc.pid, signal.SIGUSR2)
    wait_until(lambda: xc.log().count("taken over, connected to") == 4, 10, xc.log)
    wait_api(xc)
    time.sleep(0.2)
    ab.finish()
    ba.finish()
    assert xc.proc.poll() is None, "the same process runs on"
    assert a.accepted == 1 and b.accepted == 1
    assert link_json(xc, link)["ends"][0]["reconnects"] == 0


def test_a_udp_end_is_handed_over_with_its_port(peers, xcon, engine, udp_peer):
    """A UDP end's socket (bound to its local port) moves too: the peer keeps
    sending to the same port and nothing is lost, a frame from the router
    reaches the UDP peer after the takeover."""
    a = peers()
    d, udp = udp_peer()
    link = f"{endpoint(a)}--{udp}"
    old = xcon("--p2p", link)
    old.wait_health("0", contains="Ready: 1 of 2 sockets connected")
    wait_api(old)
    d.send_frames([numbered(i, 200) for i in range(50)])
    a.wait_frames(50)
    new = takeover(old, "--p2p", link, "--engine", engine)
    try:
        assert "UDP" in new.log() and "taken over" in new.log(), new.log()
        d.send_frames([numbered(i, 200) for i in range(50, 100)])
        a.wait_frames(100)
        assert [check_numbered(f) for f in a.frames] == list(range(100))
        a.send_frames([numbered(7, 300)])
        d.wait_frames(1)
        assert a.accepted == 1
        new.wait_health("0", contains="All 2 sockets connected")  # it had heard the peer
    finally:
        new.kill()


def test_takeover_without_a_running_xcon_is_one_line(peers, xcon, tmp_path):
    a, b = peers(), peers()
    xc = XconProcess(["--p2p", f"{endpoint(a)}--{endpoint(b)}", "--takeover"], cwd=str(tmp_path))
    assert xc.proc.wait(15) == 1
    lines = [ln for ln in xc.log().splitlines() if "error" in ln]
    assert len(lines) == 1 and "--takeover: no xcon to take over" in lines[0], xc.log()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--p2p", "127.0.0.1/1--vxlan:127.0.0.1/42"], "vxlan end"),
        (["--p2p", "127.0.0.1/1--127.0.0.1/2", "--control", "none"], "not 'none'"),
    ],
)
def test_takeover_refuses_what_cannot_be_handed(tmp_path, args, says):
    xc = XconProcess([*args, "--takeover"], cwd=str(tmp_path))
    assert xc.proc.wait(15) == 2
    assert says in xc.log() and xc.log().count("\n") == 1, xc.log()
