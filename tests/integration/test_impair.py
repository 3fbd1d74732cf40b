"""Impairment in a real xcon process between fake qemu NICs, on both engines:
--impair and --seed at start, changes through the API and ``xcon ctl`` that
take effect within 100 ms without reconnecting, --config reloads, errors,
metrics.  (The statistics themselves are checked exactly on a fake clock:
tests/unit/test_impair.py.)"""

from __future__ import annotations

import json
import signal
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from xcon.control.client import link_path
from xcon.testing.control import call, ctl, wait_api, write
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, numbered
from xcon.testing.wait import wait_until


class Arrivals:
    """When each numbered frame reached a fake NIC."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.lock = threading.Lock()

    def __call__(self, frame: memoryview) -> None:
        seq = check_numbered(bytes(frame))
        with self.lock:
            self.at.setdefault(seq, time.monotonic())

    def times(self) -> list[float]:
        with self.lock:
            return sorted(self.at.values())


def test_delay_at_start_one_direction_and_shown(peers, xcon):
    arr_b, arr_a = Arrivals(), Arrivals()
    a, b = peers(on_frame=arr_a), peers(on_frame=arr_b)
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", link, "--impair", f"{link}:a2b=delay 20ms", "--seed", "7")
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    sent = {}
    for i in range(40):
        sent[i] = time.monotonic()
        a.send_frames([numbered(i, 200)])
        b.send_frames([numbered(1000 + i, 200)])
        time.sleep(0.005)
    b.wait_frames(40)
    a.wait_frames(40)
    delays = [arr_b.at[i] - sent[i] for i in range(40)]
    # at least the delay; the upper bound is loose (a busy 2-core CI box)
    assert min(delays) >= 0.020, delays
    assert sorted(delays)[20] < 0.030, delays
    back = [arr_a.at[1000 + i] - sent[i] for i in range(40)]
    assert sorted(back)[20] < 0.010, back  # b2a is not impaired
    assert [check_numbered(f) for f in b.frames] == list(range(40))
    r = ctl(xc, "links")
    assert r.returncode == 0 and "delay 20ms" in r.stdout, r.stdout
    r = ctl(xc, "link", link)
    assert "impair a2b: delay 20ms" in r.stdout and "b2a" not in r.stdout.split("impair")[-1]
    # how late frames left the delay line: every delayed frame, by the engine's clock
    assert f"{endpoint(a)}->{endpoint(b)}: delay line: 40 frames released" in r.stdout, r.stdout
    status, data = call(xc, "GET", link_path(link))
    late = {d["name"]: d["late"] for d in data["directions"]}
    assert late[f"{endpoint(a)}->{endpoint(b)}"]["frames"] == 40
    assert late[f"{endpoint(b)}->{endpoint(a)}"] is None  # never impaired
    status, text = call(xc, "GET", "/metrics")
    counts = {
        s.labels["end"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "xcon_link_delay_lateness_seconds_count"
    }
    assert counts == {endpoint(b): 40}
    assert "impairment seed 7" in xc.log()
    assert xc.terminate() == 0, xc.log()


def test_live_change_takes_effect_within_100ms_without_reconnecting(peers, xcon):
    arr = Arrivals()
    a, b = peers(), peers(on_frame=arr)
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    stop = threading.Event()
    count = [0]

    def stream() -> None:
        while not stop.is_set():
            a.send_frames([numbered(count[0], 100)])
            count[0] += 1
            time.sleep(0.002)

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(arr.at) > 20, 5, "frames crossing")
        status, doc = call(xc, "PUT", link_path(link, "impair"), {"netem": "loss 100%"})
        done = time.monotonic()
        assert status == 200 and doc["impair"] == {"a2b": "loss 100%", "b2a": "loss 100%"}
        time.sleep(0.3)
        last = max(arr.times())
        assert last - done < 0.100  # nothing crossed 100 ms after the answer
        status, doc = call(xc, "DELETE", link_path(link, "impair"))
        cleared = time.monotonic()
        assert status == 200 and doc["impair"] == {"a2b": None, "b2a": None}
        wait_until(lambda: max(arr.times()) > cleared, 2, "frames crossing again")
        assert min(x for x in arr.times() if x > cleared) - cleared < 0.100
    finally:
        stop.set()
        t.join(5)
    _s, doc = call(xc, "GET", link_path(link))
    drops = doc["ends"][1]["tx_drops"]
    assert drops.get("impair_loss", 0) > 50
    assert a.accepted == 1 and b.accepted == 1  # never reconnected
    assert xc.terminate() == 0, xc.log()


def test_ctl_impair_words_flags_clear_and_errors(p2p):
    xc, a, b, link = p2p("--control-listen", "127.0.0.1:0")
    r = ctl(xc, "impair", link, "--direction", "b2a", "delay", "10ms", "2ms", "loss", "1%")
    assert r.returncode == 0, r.stderr
    assert "impair b2a: delay 10ms 2ms loss 1%" in r.stdout
    r = ctl(
        xc, "impair", link, "--direction", "a2b", "--delay", "5", "--loss", "2", "--rate", "1000"
    )
    assert r.returncode == 0, r.stderr
    assert "impair a2b: delay 5ms loss 2% rate 1mbit" in r.stdout
    r = ctl(xc, "--json", "link", link)
    doc = json.loads(r.stdout)
    assert doc["impair"] == {"a2b": "delay 5ms loss 2% rate 1mbit", "b2a": "delay 10ms 2ms loss 1%"}
    # metrics: the impairment and its drops
    status, text = call(xc, "GET", "/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    info = fams["xcon_link_impairment_info"].samples
    assert {(s.labels["direction"], s.labels["netem"]) for s in info} == {
        ("a2b", "delay 5ms loss 2% rate 1mbit"),
        ("b2a", "delay 10ms 2ms loss 1%"),
    }
    # bad input: one line, exit 2 (ctl) / 400 (API), nothing changed
    r = ctl(xc, "impair", link, "delay", "10parsecs")
    assert r.returncode == 2 and "bad time" in r.stderr and r.stderr.count("\n") == 1
    r = ctl(xc, "impair", link, "--clear", "loss", "1%")
    assert r.returncode == 2
    status, doc = call(xc, "PUT", link_path(link, "impair"), {"netem": "loss 200%"})
    assert status == 400 and "loss: 200% is outside 0..100%" in doc["error"]
    status, doc = call(
        xc, "PUT", link_path(link, "impair"), {"netem": "loss 1%", "direction": "up"}
    )
    assert status == 400 and "direction" in doc["error"]
    status, doc = call(xc, "PUT", link_path(link, "impair"), {"lag": "1ms"})
    assert status == 400 and "unknown field" in doc["error"]
    status, doc = call(xc, "PUT", link_path("x/1--y/1", "impair"), {"netem": "loss 1%"})
    assert status == 404
    status, doc = call(xc, "GET", link_path(link, "impair"))
    assert status == 405
    _s, doc = call(xc, "GET", link_path(link))
    assert doc["impair"]["a2b"] == "delay 5ms loss 2% rate 1mbit"
    r = ctl(xc, "impair", link, "--clear")
    assert r.returncode == 0, r.stderr
    _s, doc = call(xc, "GET", link_path(link))
    assert doc["impair"] == {"a2b": None, "b2a": None}
    assert xc.terminate() == 0, xc.log()
    assert "Traceback" not in xc.log()


def test_config_impairment_and_reload_apply_live(peers, configured):
    arr = Arrivals()
    a, b = peers(), peers(on_frame=arr)
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc, cfg = configured(f'seed = 5\n[[link]]\nspec = "{link}"\nimpair = {{ a2b = "loss 100%" }}\n')
    a.send_frames([numbered(i, 100) for i in range(20)])
    time.sleep(0.2)
    assert arr.at == {}
    assert "impairment seed 5" in xc.log()
    write(cfg, f'seed = 5\n[[link]]\nspec = "{link}"\nimpair = "delay 1ms"\n')
    xc.proc.send_signal(signal.SIGHUP)
    xc.wait_log("0 added, 0 removed, 1 changed")
    _s, doc = call(xc, "GET", link_path(link))
    assert doc["impair"] == {"a2b": "delay 1ms", "b2a": "delay 1ms"}
    a.send_frames([numbered(i, 100) for i in range(20, 40)])
    b.wait_frames(20)
    assert sorted(arr.at) == list(range(20, 40))
    write(cfg, f'[[link]]\nspec = "{link}"\nimpair = "loss 1xx"\n')
    status, doc = call(xc, "POST", "/reload")
    assert status == 400 and "bad percentage" in doc["error"]
    assert a.accepted == 1 and b.accepted == 1
    assert xc.terminate() == 0, xc.log()


def test_impair_errors_at_start_are_one_line(tmp_path):
    import subprocess
    import sys

    for args, says in (
        (["--p2p", "a/1--b/1", "--impair", "a/1--b/1=loss"], "missing"),
        (["--p2p", "a/1--b/1", "--impair", "nolink"], "LINK[:a2b|b2a]=NETEM"),
        (["--p2p", "a/1--b/1", "--impair", "c/1--d/1=loss 1%"], "no link"),
        (["--hub", "a/1", "b/1", "--impair", "a/1--b/1=loss 1%"], "p2p links only"),
        (["--p2p", "a/1--b/1", "--seed", "-1"], "--seed"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "xcon", *args, "--health-file", str(tmp_path / "h")],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert r.returncode == 2, (args, r.stderr)
        assert says in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)


def test_seed_logged_once_an_impairment_exists(p2p):
    xc, a, b, link = p2p("--seed", "11")
    assert f"p2p link {link}" in xc.log()  # the start-up lines are all written by now
    assert "impairment seed" not in xc.log()
    status, _doc = call(xc, "PUT", link_path(link, "impair"), {"netem": "delay 1ms"})
    assert status == 200
    xc.wait_log("impairment seed 11 (--seed 11 replays the random draws)")
    call(xc, "PUT", link_path(link, "impair"), {"netem": "delay 2ms"})
    xc.wait_log("delay 2ms")
    assert xc.log().count("impairment seed") == 1
