"""The control API and ``xcon ctl`` against a real xcon process between fake qemu
NICs, on both engines: links added, removed and pulled while others carry
numbered traffic, metrics, exit codes, ``--config`` and SIGHUP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xcon.control.client import Client, link_path
from xcon.testing.control import api, call, ctl, wait_api, write
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, numbered
from xcon.testing.promtool import PROMTOOL, requires_promtool
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until


def test_links_added_and_removed_live_leave_the_other_link_untouched(peers, xcon):
    a, b = peers(), peers()
    spare = [peers() for _ in range(6)]
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    stream = Stream(a, b)
    delays = []
    for _cycle in range(3):
        pairs = [(spare[i], spare[i + 1]) for i in range(0, 6, 2)]
        names = []
        for x, y in pairs:
            spec = f"{endpoint(x)}--{endpoint(y)}"
            status, doc = call(xc, "POST", "/links", {"spec": spec})
            assert status == 201, doc
            returned = time.monotonic()
            names.append(spec)
            x.clear()
            y.clear()
            # the new link forwards soon after the call returns
            deadline = returned + 5
            n = 0
            while not y.frame_count and time.monotonic() < deadline:
                if x.connected:
                    x.send(numbered(n, 100))
                    n += 1
                time.sleep(0.002)
            assert y.frame_count, f"{spec} did not forward"
            delays.append(time.monotonic() - returned)
        xc.wait_health("0", contains="All 8 sockets connected")
        for name in names:
            status, doc = call(xc, "DELETE", link_path(name))
            assert status == 200 and doc == {"removed": name}
        for x, _y in pairs:
            x.wait_disconnected()
        xc.wait_health("0", contains="All 2 sockets connected")
    stream.finish()
    assert a.accepted == 1 and b.accepted == 1, "the untouched link never reconnected"
    assert max(delays) <= 0.1, f"the added link forwarded after {max(delays) * 1000:.0f} ms"
    print(f"added link forwarding after {max(delays) * 1000:.0f} ms at most")
    status, links = call(xc, "GET", "/links")
    assert [link["name"] for link in links["links"]] == [f"{endpoint(a)}--{endpoint(b)}"]
    end = links["links"][0]["ends"][0]
    assert end["reconnects"] == 0 and end["rx_frames"] == stream.sent
    assert "p2p link" in xc.log() and "removed (api)" in xc.log()
    assert xc.terminate() == 0


def test_cable_pull_drops_both_ways_without_reconnecting(p2p):
    xc, a, b, name = p2p()
    r = ctl(xc, "down", name)
    assert r.returncode == 0, r.stderr
    assert "admin down" in r.stdout
    a.send_frames([numbered(i, 100) for i in range(10)])
    b.send_frames([numbered(i, 100) for i in range(7)])

    def dropped() -> dict:
        _s, doc = call(xc, "GET", link_path(name))
        return {e["name"]: e["rx_drops"] for e in doc["ends"]}

    wait_until(
        lambda: dropped() == {endpoint(a): {"admin_down": 10}, endpoint(b): {"admin_down": 7}},
        5,
        lambda: f"admin_down drops, have {dropped()}",
    )
    assert a.frame_count == 0 and b.frame_count == 0
    assert xc.health().startswith("0\n"), "a pulled cable is not a broken connection"
    assert ctl(xc, "up", name).returncode == 0
    a.send_frames([numbered(100, 100)])
    b.wait_frames(1)
    assert check_numbered(b.frames[0]) == 100
    assert a.accepted == 1 and b.accepted == 1
    assert "administratively down" in xc.log()


def test_metrics_parse_with_the_prometheus_parser(p2p):
    xc, a, b, name = p2p("--control-listen", "127.0.0.1:0")
    a.send_frames([numbered(i, 200) for i in range(5)])
    b.wait_frames(5)
    call(xc, "POST", link_path(name, "down"))
    a.send_frames([numbered(i, 200) for i in range(3)])
    wait_until(lambda: "admin_down" in call(xc, "GET", "/metrics")[1], 5, "admin_down in /metrics")
    status, text = call(xc, "GET", "/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for fam in (
        "xcon_link_receive_frames",
        "xcon_link_receive_bytes",
        "xcon_link_transmit_frames",
        "xcon_link_transmit_bytes",
        "xcon_link_receive_drop",
        "xcon_link_reconnects",
        "xcon_link_carrier_changes",
    ):
        assert fams[fam].type == "counter", fam

    def value(fam: str, **labels) -> float:
        for s in fams[fam].samples:
            if s.name == fam + "_total" and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no {fam} {labels}")

    assert value("xcon_link_receive_frames", link=name, end=endpoint(a)) == 5
    assert value("xcon_link_transmit_frames", link=name, end=endpoint(b)) == 5
    assert value("xcon_link_transmit_bytes", link=name, end=endpoint(b)) == 5 * 200
    assert value("xcon_link_receive_drop", link=name, end=endpoint(a), reason="admin_down") == 3
    up = {s.labels["end"]: s.value for s in fams["xcon_link_end_up"].samples}
    assert up == {endpoint(a): 1.0, endpoint(b): 1.0}
    assert fams["xcon_link_admin_up"].samples[0].value == 0.0
    assert fams["process_resident_memory_bytes"].samples[0].value > 1e6
    assert "process_open_fds" in fams
    # the same on the TCP listener
    tcp = [line for line in xc.log().splitlines() if "control API on http://" in line][0]
    url = tcp.split("control API on ")[1].split()[0]
    st, data, _ = Client(url=url).request("GET", "/metrics")
    assert st == 200 and b"xcon_link_receive_frames_total" in data


@requires_promtool
def test_metrics_pass_promtool_check(peers, xcon):
    a, b = peers(), peers()
    name = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", name, "--p2p", "127.0.0.1/77--127.0.0.1/78")
    wait_api(xc)
    a.send_frames([numbered(i, 200) for i in range(5)])
    call(xc, "POST", link_path(name, "down"))
    status, text = call(xc, "GET", "/metrics")
    assert status == 200 and "xcon_link_receive_frames_total" in text
    r = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ctl_exit_codes_and_json(p2p, tmp_path):
    xc, a, b, name = p2p()
    r = ctl(xc, "links")
    assert r.returncode == 0 and name in r.stdout and "LINK" in r.stdout
    r = ctl(xc, "--json", "links")
    assert json.loads(r.stdout)["links"][0]["name"] == name
    r = ctl(xc, "links", "--json")  # after the command too
    assert r.returncode == 0 and json.loads(r.stdout)["links"][0]["name"] == name
    r = ctl(xc, "link", "nope/1--nope/2")
    assert r.returncode == 1 and r.stderr == "xcon ctl: no link 'nope/1--nope/2'\n"
    r = ctl(xc, "link", f"{endpoint(b)}--{endpoint(a)}")  # either end first
    assert r.returncode == 0 and r.stdout.startswith(f"link {name} (p2p")
    r = ctl(xc, "remove", f"{endpoint(b)}--{a.host}/{a.nic + 1}")
    assert r.returncode == 1 and r.stderr.endswith(f"(closest: {name})\n"), r.stderr
    r = ctl(xc, "add", "a/1--")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = ctl(xc, "add", f"{endpoint(a)}--x/1")
    assert r.returncode == 1 and "already in link" in r.stderr
    r = ctl(xc, "bogus")
    assert r.returncode == 2
    r = ctl(xc, "health")
    assert r.returncode == 0 and r.stdout == "0\nAll 2 sockets connected\n"
    r = ctl(xc, "reset")
    assert r.returncode == 0
    r = ctl(xc, "reload")
    assert r.returncode == 1 and "not started with --config" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "ctl", "--control", str(tmp_path / "none.sock"), "links"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3 and "cannot reach xcon" in r.stderr
    b.stop()
    xc.wait_health("1")
    assert ctl(xc, "health").returncode == 1
    assert "Traceback" not in xc.log()


def test_http_errors_are_json_with_clean_codes(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    wait_api(xc)
    assert call(xc, "GET", "/nope")[0] == 404
    assert call(xc, "PUT", "/links")[0] == 405
    st, data, _ = api(xc).request("POST", "/links", None)
    assert st == 400
    status, doc = call(xc, "POST", "/links", {"spec": "x/1--y/1", "admin": "sideways"})
    assert status == 400 and "admin" in doc["error"]
    status, doc = call(xc, "POST", "/links", {"spec": "x/1--y/1", "monitors": {"z/1": "z:4000"}})
    assert status == 400 and "not an end of" in doc["error"]
    status, doc = call(xc, "GET", "/")
    assert status == 200 and doc["links"] == 1 and "GET /metrics" in doc["routes"]
    status, doc = call(xc, "GET", "/health")
    assert status == 200 and set(doc) >= {"code", "message", "connected", "total"}


def test_control_socket_options(peers, xcon, tmp_path):
    a, b = peers(), peers()
    link = f"{endpoint(a)}--{endpoint(b)}"
    off = xcon("--p2p", link, "--control", "none")
    off.wait_health("0", contains="All 2 sockets connected")
    assert not os.path.exists(os.path.join(off.workdir, "xcon.sock"))
    assert off.terminate() == 0
    c, d = peers(), peers()
    sock = str(tmp_path / "ctl.sock")
    one = xcon("--p2p", f"{endpoint(c)}--{endpoint(d)}", "--control", sock)
    wait_until(lambda: os.path.exists(sock), 10, "the socket")
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    assert sock in one.wait_log("control API on unix socket")
    # the same path again: in use, so that is an error (it was asked for)
    e, f = peers(), peers()
    two = xcon("--p2p", f"{endpoint(e)}--{endpoint(f)}", "--control", sock)
    assert two.proc.wait(10) == 1
    assert "cannot listen on control socket" in two.log() and "Traceback" not in two.log()
    assert one.terminate() == 0
    assert not os.path.exists(sock), "removed at exit"


def test_control_listen_refuses_a_non_loopback_address(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "--p2p", "a/1--b/1", "--control-listen", "0.0.0.0:9999"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "not a loopback address" in r.stderr and r.stderr.count("\n") == 1


def test_config_file_and_sighup_apply_only_the_difference(peers, configured):
    p = [peers() for _ in range(8)]
    l1 = f"{endpoint(p[0])}--{endpoint(p[1])}"
    l2 = f"{endpoint(p[2])}--{endpoint(p[3])}"
    l3 = f"{endpoint(p[4])}--{endpoint(p[5])}"
    l4 = f"{endpoint(p[6])}--{endpoint(p[7])}"
    xc, cfg = configured(f'links = ["{l1}", "{l2}"]\n', sockets=4)
    stream = Stream(p[0], p[1])
    # l2 goes, l3 comes (with a monitor option), l1 stays
    write(cfg, f'links = ["{l1}"]\n[[link]]\nspec = "{l3}"\nadmin = "down"\n')
    xc.proc.send_signal(signal.SIGHUP)
    xc.wait_log("1 added, 1 removed, 0 changed, 1 unchanged")
    p[2].wait_disconnected()
    xc.wait_health("0", contains="All 4 sockets connected")
    _s, doc = call(xc, "GET", link_path(l3))
    assert doc["admin"] == "down" and doc["source"] == "config"
    # a broken file changes nothing, and says why in one line
    write(cfg, f'links = ["{l1}", "{l4}", "{l4}"]\n')
    xc.proc.send_signal(signal.SIGHUP)
    log = xc.wait_log("reload failed, nothing changed")
    assert "is in two links" in log
    write(cfg, "links = [\n")
    status, doc = call(xc, "POST", "/reload")
    assert status == 400 and "not valid TOML" in doc["error"]
    _s, links = call(xc, "GET", "/links")
    assert [x["name"] for x in links["links"]] == [l1, l3]
    # the API's reload does the same as SIGHUP
    write(cfg, f'links = ["{l1}", "{l3}"]\n')
    status, doc = call(xc, "POST", "/reload")
    assert status == 200 and doc["changed"] == [l3] and doc["unchanged"] == 1
    _s, d3 = call(xc, "GET", link_path(l3))
    assert d3["admin"] == "up"
    stream.finish()
    assert p[0].accepted == 1 and p[1].accepted == 1
    assert xc.terminate() == 0, xc.log()
    assert "Traceback" not in xc.log()


@pytest.mark.parametrize(
    "text, says",
    [
        ('links = ["a/1--b/1"]\nlink = 3\n', "[[link]] entries are tables"),
        ('[[link]]\nspec = "a/1--b/1"\ncolour = "red"\n', "unknown key 'colour'"),
    ],
)
def test_config_errors_at_start_are_one_line(tmp_path, text, says):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_sighup_without_config_still_stops(peers, xcon):
    a, b = peers(), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}")
    xc.wait_health("0", contains="All 2 sockets connected")
    xc.proc.send_signal(signal.SIGHUP)
    assert xc.proc.wait(10) == 0
    assert "received SIGHUP, shutting down" in xc.log()


def test_hub_is_listed_but_cannot_be_removed(peers, xcon):
    a, b, c = peers(), peers(), peers()
    xc = xcon("--hub", endpoint(a), endpoint(b), endpoint(c))
    xc.wait_health("0", contains="All 3 sockets connected")
    wait_api(xc)
    _s, doc = call(xc, "GET", "/links")
    hub = doc["links"][0]
    assert hub["kind"] == "hub" and len(hub["ends"]) == 3
    status, err = call(xc, "DELETE", link_path(hub["name"]))
    assert status == 409 and "only p2p links" in err["error"]
