"""``--workers N``: the links over N worker processes, one xcon to its users
(docs/workers.md): one control socket, /metrics, health file and log; a
worker killed is started again and the other workers' links lose nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from xcon.testing.control import Follower, call, ctl, ctl_argv, wait_api, write
from xcon.testing.fakeqemu import FakeQemu, endpoint
from xcon.testing.frames import ether
from xcon.testing.process import XconProcess, run_xcon
from xcon.testing.promtool import PROMTOOL, requires_promtool
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until


def workers_of(xc: XconProcess) -> list[int]:
    """The PIDs of the supervisor's workers (its children running xcon)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(xc.pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(x) for x in out.split()]


def lab(
    peers, xcon, n_links: int, *args: str
) -> tuple[XconProcess, list[tuple[FakeQemu, FakeQemu, str]]]:
    links = []
    for _ in range(n_links):
        a, b = peers(), peers()
        links.append((a, b, f"{endpoint(a)}--{endpoint(b)}"))
    argv = [x for _a, _b, link in links for x in ("--p2p", link)]
    xc = xcon(*argv, *args)
    xc.wait_health("0", contains=f"All {2 * n_links} sockets connected", timeout=20)
    wait_api(xc)
    return xc, links


def passes(a: FakeQemu, b: FakeQemu, tag: int) -> None:
    frame = ether(payload=bytes([tag]) * 60)
    b.clear()
    a.send(frame)
    b.wait_frames(1)
    assert b.frames[-1] == frame


def test_links_spread_over_workers_answer_as_one_xcon(peers, xcon, engine):
    xc, links = lab(peers, xcon, 4, "--workers", "2")
    assert len(workers_of(xc)) == 2
    for i, (a, b, _link) in enumerate(links):
        passes(a, b, i)
        passes(b, a, i + 100)
    r = ctl(xc, "--json", "links")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["links"]
    assert sorted(x["name"] for x in listed) == sorted(link for _a, _b, link in links)
    assert sorted(x["worker"] for x in listed) == [0, 0, 1, 1]
    table = ctl(xc, "links")
    assert table.stdout.splitlines()[0].endswith("WORKER") and " w1" in table.stdout, table.stdout
    # one link's routes reach the worker that has it, by any spelling
    a, b, link = links[3]
    r = ctl(xc, "down", f"{endpoint(b)}--{endpoint(a)}")
    assert r.returncode == 0, r.stderr
    status, doc = call(xc, "GET", "/links/" + link.replace("/", "%2F"))
    assert status == 200 and doc["admin"] == "down" and doc["worker"] in (0, 1), doc
    assert ctl(xc, "up", link).returncode == 0
    passes(a, b, 7)
    # health: the workers' sockets summed, in the one health file
    assert xc.health() == "0\nAll 8 sockets connected\n"
    status, health = call(xc, "GET", "/health")
    assert status == 200 and health["total"] == 8 and len(health["workers"]) == 2
    # one log: the workers' lines are tagged
    assert " w0 " in xc.log() and " w1 " in xc.log()
    # an unknown link is one clear line
    r = ctl(xc, "link", "nosuch/1--other/2")
    assert r.returncode == 1 and "no link" in r.stderr and len(r.stderr.splitlines()) == 1


@requires_promtool
def test_events_status_and_reset_cover_every_worker(peers, xcon, engine):
    xc, links = lab(peers, xcon, 2, "--workers", "2")
    follower = Follower(xc, "?type=admin.changed")
    try:
        for _a, _b, link in links:
            assert ctl(xc, "down", link).returncode == 0
        events = follower.wait(lambda ev: len(ev) >= 2, what="both links' admin events")
        assert sorted(e["link"] for e in events) == sorted(link for _a, _b, link in links)
    finally:
        follower.close()
    status, doc = call(xc, "GET", "/events?type=nosuch")
    assert status == 400 and "nosuch" in doc["error"], doc
    status, doc = call(xc, "GET", "/")
    assert status == 200 and doc["links"] == 2 and [w["worker"] for w in doc["workers"]] == [0, 1]
    for a, b, link in links:
        assert ctl(xc, "up", link).returncode == 0
        passes(a, b, 9)
    r = ctl(xc, "--json", "reset")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)["reset"]) == sorted(link for _a, _b, link in links)
    listed = json.loads(ctl(xc, "--json", "links").stdout)["links"]
    assert all(end["rx_frames"] == 0 for x in listed for end in x["ends"])


def test_metrics_are_one_exposition_labelled_by_worker(peers, xcon, engine):
    assert PROMTOOL is not None
    xc, links = lab(peers, xcon, 3, "--workers", "2")
    for i, (a, b, _link) in enumerate(links):
        passes(a, b, i)
    status, text = call(xc, "GET", "/metrics")
    assert status == 200 and isinstance(text, str)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    helps = [line for line in text.splitlines() if line.startswith("# HELP xcon_frames")]
    assert len(helps) == len(set(helps))
    for _a, _b, link in links:
        assert any(f'link="{link}"' in line and 'worker="' in line for line in text.splitlines())
    assert 'xcon_worker_restarts_total{worker="0"} 0' in text
    assert "xcon_workers 2" in text


def test_a_killed_worker_comes_back_and_the_others_lose_nothing(peers, xcon, engine):
    xc, links = lab(peers, xcon, 2, "--workers", "2")
    listed = {
        x["name"]: x["worker"] for x in json.loads(ctl(xc, "--json", "links").stdout)["links"]
    }
    (a0, b0, l0), (a1, b1, l1) = links
    victim, spared = (links[0], links[1]) if listed[l0] == 0 else (links[1], links[0])
    status, health = call(xc, "GET", "/health")
    pids = {w["worker"]: w["pid"] for w in health["workers"]}
    victim_pid = pids[listed[victim[2]]]
    sa, sb, _ = spared
    stream = Stream(sa, sb, fps=2000, batch=4)
    seen: set[str] = set()
    watching = threading.Event()

    def watch() -> None:  # what the health file says meanwhile
        while not watching.is_set():
            seen.add(xc.health() or "")
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.2)
    os.kill(victim_pid, signal.SIGKILL)
    wait_until(lambda: "killed by SIGKILL" in xc.log(), timeout=5, what="the death logged")
    xc.wait_health("0", contains="All 4 sockets connected", timeout=20)
    watching.set()
    watcher.join()
    down = f"1\nExpected 4 sockets but only 2 connected (w{listed[victim[2]]} starting)\n"
    assert down in seen, seen
    time.sleep(0.2)
    stream.finish()  # every frame of the other worker's link, in order, once
    assert sa.accepted == 1 and sb.accepted == 1, "the other worker's routers saw a reconnect"
    va, vb, _ = victim
    wait_until(
        lambda: va.accepted == 2 and vb.accepted == 2, timeout=10, what="the victim's links back"
    )
    passes(va, vb, 1)
    status, text = call(xc, "GET", "/metrics")
    assert f'xcon_worker_restarts_total{{worker="{listed[victim[2]]}"}} 1' in text
    status, health = call(xc, "GET", "/health")
    assert victim_pid not in [w["pid"] for w in health["workers"]]


def test_links_added_live_go_to_the_least_loaded_worker(peers, xcon, engine):
    xc, links = lab(peers, xcon, 3, "--workers", "2")
    a, b = peers(), peers()
    new = f"{endpoint(a)}--{endpoint(b)}"
    r = ctl(xc, "--json", "add", new)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["worker"] == 1  # w0 has 2 links, w1 has 1
    a.wait_connected()
    b.wait_connected()
    passes(a, b, 3)
    # it comes back when its worker is killed
    status, health = call(xc, "GET", "/health")
    os.kill(health["workers"][1]["pid"], signal.SIGKILL)
    wait_until(lambda: a.accepted == 2 and b.accepted == 2, timeout=15, what="the live link back")
    passes(a, b, 4)
    assert ctl(xc, "remove", new).returncode == 0
    wait_until(lambda: not a.connected, timeout=5, what="the removed link closed")
    names = [x["name"] for x in json.loads(ctl(xc, "--json", "links").stdout)["links"]]
    assert new not in names and len(names) == 3


def test_capture_and_impairment_through_the_supervisor(peers, xcon, engine, tmp_path):
    xc, links = lab(peers, xcon, 2, "--workers", "2")
    a, b, link = links[1]
    r = ctl(xc, "impair", link, "--direction", "a2b", "delay", "30ms")
    assert r.returncode == 0, r.stderr
    b.clear()
    t0 = time.monotonic()
    a.send(ether(payload=b"x" * 60))
    b.wait_frames(1)
    assert time.monotonic() - t0 >= 0.025
    assert ctl(xc, "impair", link, "--clear").returncode == 0
    out = tmp_path / "cap.pcapng"
    with open(out, "wb") as f:
        cap = subprocess.Popen([*ctl_argv(xc, "capture", link, "-w", "-")], stdout=f)
        try:
            wait_until(lambda: out.stat().st_size > 0, timeout=10, what="the pcapng header")
            for i in range(3):
                passes(b, a, 50 + i)
            wait_until(
                lambda: len(tshark_lines(out)) == 3, timeout=10, what="3 frames in the capture"
            )
        finally:
            cap.send_signal(signal.SIGINT)
            cap.wait(10)
    status, doc = call(xc, "GET", "/links/" + link.replace("/", "%2F"))
    assert doc["captures"] == [] or all(c["state"] != "running" for c in doc["captures"])


def tshark_lines(path) -> list[str]:
    r = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True, check=False)
    return r.stdout.splitlines()


def test_reload_deals_new_links_and_sighup_applies_them(peers, xcon, engine, tmp_path):
    ps = [peers() for _ in range(6)]
    names = [f"{endpoint(ps[i])}--{endpoint(ps[i + 1])}" for i in (0, 2, 4)]
    cfg = tmp_path / "xcon.toml"
    write(cfg, "".join(f'[[link]]\nspec = "{n}"\n' for n in names[:2]))
    xc = xcon("--config", str(cfg), "--workers", "2")
    xc.wait_health("0", contains="All 4 sockets connected", timeout=20)
    wait_api(xc)
    write(cfg, "".join(f'[[link]]\nspec = "{n}"\n' for n in names[1:]))
    r = ctl(xc, "--json", "reload")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["added"] == [names[2]] and doc["removed"] == [names[0]], doc
    xc.wait_health("0", contains="All 4 sockets connected", timeout=10)
    listed = {
        x["name"]: x["worker"] for x in json.loads(ctl(xc, "--json", "links").stdout)["links"]
    }
    assert sorted(listed) == sorted(names[1:]) and sorted(listed.values()) == [0, 1]
    write(cfg, "".join(f'[[link]]\nspec = "{n}"\n' for n in names))
    os.kill(xc.pid, signal.SIGHUP)
    xc.wait_health("0", contains="All 6 sockets connected", timeout=10)
    write(cfg, "[[link]]\nspec = 12\n")
    r = ctl(xc, "reload")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert len(json.loads(ctl(xc, "--json", "links").stdout)["links"]) == 3


def test_sigterm_stops_every_worker_and_says_so(peers, xcon, engine):
    xc, _links = lab(peers, xcon, 2, "--workers", "2")
    pids = workers_of(xc)
    assert xc.terminate() == 0
    for pid in pids:
        wait_until(
            lambda pid=pid: not os.path.exists(f"/proc/{pid}"), timeout=5, what="worker gone"
        )
    assert xc.health().startswith("1\n")


def test_no_worker_outlives_a_killed_supervisor(peers, xcon, engine):
    xc, links = lab(peers, xcon, 2, "--workers", "2")
    pids = workers_of(xc)
    xc.proc.kill()
    xc.proc.wait()
    for pid in pids:
        wait_until(
            lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid),
            timeout=10,
            what=f"worker {pid} gone",
        )
    for a, _b, _link in links:
        wait_until(lambda a=a: not a.connected, timeout=5, what="the routers' connections closed")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_restart_in_place_restarts_each_worker_keeping_the_connections(peers, xcon, engine):
    xc, links = lab(peers, xcon, 2, "--workers", "2")
    pids = sorted(workers_of(xc))
    a, b, _ = links[0]
    stream = Stream(a, b, fps=1000, batch=4)
    r = ctl(xc, "restart")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: xc.log().count("took over") >= 2, timeout=15, what="both workers restarted")
    stream.finish()
    assert a.accepted == 1 and b.accepted == 1
    assert sorted(workers_of(xc)) == pids


@pytest.mark.parametrize(("before", "after"), [("2", "2"), ("1", "2"), ("2", "1")])
def test_takeover_between_any_worker_counts_loses_nothing(peers, xcon, engine, before, after):
    xc, links = lab(peers, xcon, 2, "--workers", before)
    streams = [Stream(a, b, fps=2000, batch=4) for a, b, _ in links]
    streams += [Stream(b, a, fps=2000, batch=4, first=10**6) for a, b, _ in links]
    time.sleep(0.3)
    argv = [x for _a, _b, link in links for x in ("--p2p", link)]
    new = XconProcess(
        [*argv, "--workers", after, "--engine", engine, "--takeover"],
        cwd=xc.workdir,
        health_file=xc.health_file,
    )
    try:
        assert xc.proc.wait(15) == 0, xc.log()
        wait_api(new)
        time.sleep(0.3)
        for stream in streams:
            stream.finish()  # every frame, once, in order
        for a, b, _ in links:
            assert a.accepted == 1 and b.accepted == 1, "a router saw its connection go"
        assert "handed over to the new xcon: exiting" in xc.log()
        new.wait_health("0", contains="All 4 sockets connected")
        listed = json.loads(ctl(new, "--json", "links").stdout)["links"]
        assert len(listed) == 2
        assert all(end["reconnects"] == 0 for x in listed for end in x["ends"])
        if after == "2":
            assert sorted(x["worker"] for x in listed) == [0, 1]
            assert len(workers_of(new)) == 2
        for a, b, _ in links:
            passes(a, b, 5)
        assert os.path.exists(os.path.join(new.workdir, "xcon.sock"))
    finally:
        new.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers '0': expected a number from 1 to 64, or auto"),
        (["--workers", "many"], "--workers 'many': expected a number from 1 to 64, or auto"),
    ],
)
def test_bad_workers_is_one_line(tmp_path, args, message):
    r = run_xcon("--p2p", "127.0.0.1/1--127.0.0.1/2", *args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_a_worker_that_cannot_start_stops_xcon_with_its_error(peers, xcon, engine, udp_peer):
    a, b = peers(), peers()
    c = peers()
    _dgram, udp_end = udp_peer()
    host, port = udp_end.rsplit("@", 1)[1].rsplit(":", 1)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind((host, int(port)))  # the UDP end's local port, taken
    try:
        xc = xcon(
            "--p2p",
            f"{endpoint(a)}--{endpoint(b)}",
            "--p2p",
            f"{endpoint(c)}--{udp_end}",
            "--workers",
            "2",
        )
        assert xc.proc.wait(20) == 1, xc.log()
    finally:
        taken.close()
    errors = [line for line in xc.log().splitlines() if line.startswith("xcon: error:")]
    assert len(errors) == 1 and f"{host}:{port}" in errors[0], xc.log()
    assert "worker w1 could not start (exit code 1): stopping" in xc.log()
    assert xc.health().startswith("1\n")


def test_workers_on_a_hub_is_refused(tmp_path):
    r = run_xcon("--hub", "127.0.0.1/1", "127.0.0.1/2", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 2 and "--workers applies to --p2p" in r.stderr, r.stderr
