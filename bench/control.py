"""The control plane's cost and speed (``--only control``).

* ``control-500``: 500 links forwarding (512 B, paced), then ``GET /metrics``
  and ``GET /links`` timed in-process over the unix socket, and ``xcon ctl
  links`` timed as a command (process start included).  Targets: /metrics
  ≤ 50 ms, ``xcon ctl links`` ≤ 200 ms.
* ``control-cost``: one saturated link (1500 B) with ``--control none``, with
  the control socket idle (the default), and with ``/metrics`` scraped every
  second; paired runs, order rotated each round, the median of the per-round
  ratios against ``--control none``.  Targets: idle ≥ 0.98×, scraped ≥ 0.95×.
* ``control-abuse``: one saturated link (1500 B) alone (``--control none``) and
  while the control plane is attacked at a steady pace: 20 slowloris clients
  and 2 requests/s nested 30000 deep on the unix socket, 100 refused changes/s
  (a capture aimed at /etc) and 20 garbage connections/s on the TCP listener,
  a 4 KB capture filter that takes libpcap seconds to compile every 3 s, and a
  SIGHUP with a config file that is not UTF-8 every 2 s.  Paired runs, order
  swapped each round; the median of the per-round ratios.  Target: ≥ 0.9×,
  nothing lost.
* ``control-churn``: a link carrying a paced stream (20k frames/s, sequence
  numbers checked by the receiving peer) while another link is added and
  removed 100 times through the API; after each add, the time until that link
  carries a frame.  Targets: add-to-forwarding p99 ≤ 100 ms; 0 frames lost
  and 0 reconnects on the untouched link.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import Peer, Relay, hosts
from bench.metrics import median
from bench.scenarios import Progress, Row, Settings
from xcon.control.client import Client, link_path
from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.frames import numbered


def _pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


def _wait_socket(relay: Relay, timeout: float = 15.0) -> Path:
    assert relay.workdir is not None
    path = relay.workdir / "xcon.sock"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or not relay.alive():
            raise RuntimeError(f"no control socket: {relay.log()[-500:]}")
        time.sleep(0.02)
    return path


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def many_links(s: Settings, progress: Progress, n: int = 500) -> Row:
    sh, rh = hosts()
    label = f"control-{n}"
    rx = Peer([f"L:{rh}:10001:{n}:r"], size=512, buf_kib=64)
    tx = Peer([f"L:{sh}:10001:{n}:s"], size=512, rate=50000, buf_kib=64)
    relay = Relay("xcon", "xcon")
    try:
        rx.wait("ready", 5)
        tx.wait("ready", 5)
        relay.start("p2p", [f"{sh}/{k + 1}--{rh}/{k + 1}" for k in range(n)])
        progress(f"{label}: {n} links connecting")
        tx.wait_up(n, 60)
        rx.wait_up(n, 60)
        rx.wait("first", 10)
        sock = _wait_socket(relay)
        client = Client(path=str(sock))
        time.sleep(1.5)  # rates have two snapshots
        progress(f"{label}: timing GET /metrics, GET /links, xcon ctl links")
        sizes: dict[str, int] = {}

        def get(path: str) -> None:
            st, data, _ = client.request("GET", path)
            assert st == 200
            sizes[path] = len(data)

        metrics = _timed(lambda: get("/metrics"), 30 if not s.quick else 10)
        links = _timed(lambda: get("/links"), 30 if not s.quick else 10)

        def ctl() -> None:
            r = subprocess.run(
                [sys.executable, "-m", "xcon", "ctl", "--control", str(sock), "links"],
                capture_output=True,
                timeout=30,
            )
            assert r.returncode == 0, r.stderr
            sizes["ctl"] = r.stdout.count(b"\n")

        ctl_ms = _timed(ctl, 10 if not s.quick else 3)
        s0 = rx.snap()
        time.sleep(1.0)
        s1 = rx.snap()
        return {
            "group": "control",
            "scenario": label,
            "relay": "xcon",
            "status": "ok",
            "links": n,
            "active_links": s1.active,
            "fps": (s1.frames - s0.frames) / ((s1.t_ns - s0.t_ns) / 1e9),
            "metrics_ms": {
                "median": median(metrics),
                "p95": _pct(metrics, 0.95),
                "max": max(metrics),
            },
            "links_ms": {"median": median(links), "p95": _pct(links, 0.95), "max": max(links)},
            "ctl_links_ms": {"median": median(ctl_ms), "max": max(ctl_ms)},
            "metrics_bytes": sizes.get("/metrics"),
            "links_bytes": sizes.get("/links"),
            "ctl_lines": sizes.get("ctl"),
        }
    finally:
        relay.stop()
        tx.stop()
        rx.stop()


def _saturated(variant: str, s: Settings, size: int) -> float:
    """frames/s of one saturated link through xcon in ``variant``: none, idle, scraped."""
    sh, rh = hosts()
    rx = Peer([f"l:{rh}:10001:r"], size=size)
    tx = Peer([f"l:{sh}:10001:s"], size=size)
    relay = Relay("xcon", "xcon")
    stop = threading.Event()
    scraper = None
    try:
        rx.wait("ready", 5)
        tx.wait("ready", 5)
        extra = ["--control", "none"] if variant == "none" else []
        relay.start("p2p", [f"{sh}/1--{rh}/1", *extra])
        tx.wait_up(1, 10)
        rx.wait_up(1, 10)
        rx.wait("first", 5)
        if variant == "scraped":
            client = Client(path=str(_wait_socket(relay)))

            def scrape() -> None:
                while not stop.wait(1.0):
                    client.request("GET", "/metrics")

            scraper = threading.Thread(target=scrape, daemon=True)
            scraper.start()
        time.sleep(s.warmup)
        s0 = rx.snap()
        time.sleep(s.duration * 1.5)
        s1 = rx.snap()
        return (s1.frames - s0.frames) / ((s1.t_ns - s0.t_ns) / 1e9)
    finally:
        stop.set()
        if scraper is not None:
            scraper.join(5)
        relay.stop()
        tx.stop()
        rx.stop()


SLOW_FILTER = " or ".join(f"port {i}" for i in range(1, 351))


class _Attacks:
    """The attacks of ``control-abuse``, paced, on threads of this process."""

    def __init__(self, sock: Path, tcp: str, config: Path, pid: int, link: str) -> None:
        import os
        import signal
        import socket

        self.stop = threading.Event()
        self.requests = 0
        host, port = tcp.rsplit(":", 1)
        addr = (host, int(port))

        def unix() -> socket.socket:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(2)
            c.connect(str(sock))
            return c

        def every(period: float, fn: Any) -> None:
            while not self.stop.wait(period):
                try:
                    fn()
                    self.requests += 1
                except OSError:
                    pass

        def slowloris() -> None:
            conns = [unix() for _ in range(20)]
            head = b"GET /links HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
            i = 0
            while not self.stop.wait(0.1):
                for k, c in enumerate(conns):
                    try:
                        c.sendall(head[i : i + 1])
                    except OSError:
                        conns[k] = unix()
                i += 1
            for c in conns:
                c.close()

        def refused() -> None:
            body = b'{"file": "/etc/xcon-attack"}'
            with socket.create_connection(addr, timeout=2) as c:
                c.sendall(
                    b"POST /links/a%2F1--b%2F1/capture HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                c.recv(4096)

        def garbage() -> None:
            with socket.create_connection(addr, timeout=2) as c:
                c.sendall(os.urandom(512))

        def deep() -> None:
            body = b"[" * 30000 + b"]" * 30000
            with unix() as c:
                c.sendall(
                    b"POST /links HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                c.recv(4096)

        def slow_filter() -> None:
            from urllib.parse import quote

            Client(path=str(sock), timeout=10).request(
                "GET", link_path(link, "capture") + "?filter=" + quote(SLOW_FILTER)
            )

        def bad_config() -> None:
            config.write_bytes(b"# caf\xe9\nlinks = []\n")
            os.kill(pid, signal.SIGHUP)

        self.threads = [
            threading.Thread(target=fn, daemon=True)
            for fn in (
                slowloris,
                lambda: every(0.01, refused),
                lambda: every(0.05, garbage),
                lambda: every(0.5, deep),
                lambda: every(3.0, slow_filter),
                lambda: every(2.0, bad_config),
            )
        ]
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attacked(variant: str, s: Settings, size: int) -> tuple[float, int]:
    """(frames/s, frames lost) of one saturated link: alone, or attacked."""
    import tempfile

    sh, rh = hosts()
    rx = Peer([f"l:{rh}:10001:r"], size=size)
    tx = Peer([f"l:{sh}:10001:s"], size=size)
    relay = Relay("xcon", "xcon")
    attacks = None
    config = Path(tempfile.mkdtemp(prefix="xcon-abuse-")) / "lab.toml"
    config.write_text(f'links = ["{sh}/1--{rh}/1"]\n')
    try:
        rx.wait("ready", 5)
        tx.wait("ready", 5)
        tcp = f"127.0.0.1:{_free_port()}"
        if variant == "none":
            relay.start("p2p", [f"{sh}/1--{rh}/1", "--control", "none"])
        else:
            relay.start_xcon(["--config", str(config), "--control-listen", tcp])
        tx.wait_up(1, 10)
        rx.wait_up(1, 10)
        rx.wait("first", 5)
        if variant == "attacked":
            sock = _wait_socket(relay)
            pid = relay.pid
            assert pid is not None
            attacks = _Attacks(sock, tcp, config, pid, f"{sh}/1--{rh}/1")
        time.sleep(s.warmup)
        s0 = rx.snap()
        time.sleep(s.duration * 1.5)
        s1 = rx.snap()
        if not relay.alive():
            raise RuntimeError(f"xcon died under attack: {relay.log()[-500:]}")
        return (s1.frames - s0.frames) / ((s1.t_ns - s0.t_ns) / 1e9), s1.lost
    finally:
        if attacks is not None:
            attacks.close()
        relay.stop()
        tx.stop()
        rx.stop()


def abuse(s: Settings, progress: Progress, size: int = 1500) -> Row:
    rounds = 3 if s.quick else 7
    fps: dict[str, list[float]] = {"none": [], "attacked": []}
    lost: dict[str, list[int]] = {"none": [], "attacked": []}
    ratios = []
    for i in range(rounds):
        order = ["none", "attacked"] if i % 2 == 0 else ["attacked", "none"]
        got = {}
        for v in order:
            progress(f"control-abuse: {v}, round {i + 1}/{rounds}")
            got[v], n = _attacked(v, s, size)
            fps[v].append(got[v])
            lost[v].append(n)
        ratios.append(got["attacked"] / got["none"])
    return {
        "group": "control",
        "scenario": "control-abuse",
        "relay": "xcon",
        "status": "ok",
        "size": size,
        "variant_fps": {v: median(x) for v, x in fps.items()},
        "lost": lost,
        "ratio_attacked": median(ratios),
        "ratio_rounds": ratios,
    }


def cost(s: Settings, progress: Progress, size: int = 1500) -> Row:
    rounds = 3 if s.quick else 9
    variants = ["none", "idle", "scraped"]
    fps: dict[str, list[float]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {"idle": [], "scraped": []}
    for i in range(rounds):
        order = variants[i % 3 :] + variants[: i % 3]
        got = {}
        for v in order:
            progress(f"control-cost: {v}, round {i + 1}/{rounds}")
            got[v] = _saturated(v, s, size)
            fps[v].append(got[v])
        for v in ("idle", "scraped"):
            ratios[v].append(got[v] / got["none"])
    return {
        "group": "control",
        "scenario": "control-cost",
        "relay": "xcon",
        "status": "ok",
        "size": size,
        "variant_fps": {v: median(x) for v, x in fps.items()},
        "ratio_idle": median(ratios["idle"]),
        "ratio_scraped": median(ratios["scraped"]),
        "ratio_rounds": ratios,
    }


def churn(s: Settings, progress: Progress, cycles: int = 100) -> Row:
    sh, rh = hosts()
    rx = Peer([f"l:{rh}:10001:r"], size=256)
    tx = Peer([f"l:{sh}:10001:s"], size=256, rate=20000)
    x, y = FakeQemu(sh, 2, record=False).start(), FakeQemu(rh, 2, record=False).start()
    relay = Relay("xcon", "xcon")
    delays: list[float] = []
    try:
        rx.wait("ready", 5)
        tx.wait("ready", 5)
        relay.start("p2p", [f"{sh}/1--{rh}/1"])
        tx.wait_up(1, 10)
        rx.wait_up(1, 10)
        rx.wait("first", 5)
        client = Client(path=str(_wait_socket(relay)))
        time.sleep(0.5)
        s0 = rx.snap()
        spec = f"{sh}/2--{rh}/2"
        for i in range(cycles):
            if i % 10 == 0:
                progress(f"control-churn: add/remove cycle {i + 1}/{cycles}")
            y.clear()
            st, data, _ = client.request("POST", "/links", {"spec": spec})
            assert st == 201, data
            t0 = time.monotonic()
            seq = 0
            while not y.frame_count:
                if time.monotonic() - t0 > 5:
                    raise RuntimeError(f"cycle {i}: the added link did not forward in 5 s")
                if x.connected:
                    try:
                        x.send(numbered(seq, 64))
                        seq += 1
                    except OSError:
                        pass
                time.sleep(0.0005)
            delays.append((time.monotonic() - t0) * 1000)
            st, data, _ = client.request("DELETE", link_path(spec))
            assert st == 200, data
            x.wait_disconnected()
            y.wait_disconnected()
        time.sleep(0.5)
        s1 = rx.snap()
        st, data, _ = client.request("GET", link_path(f"{sh}/1--{rh}/1"))
        import json

        ends = json.loads(data)["ends"]
        return {
            "group": "control",
            "scenario": "control-churn",
            "relay": "xcon",
            "status": "ok",
            "cycles": cycles,
            "add_to_forwarding_ms": {
                "median": median(delays),
                "p99": _pct(delays, 0.99),
                "max": max(delays),
            },
            "untouched_frames": s1.frames - s0.frames,
            "untouched_lost": s1.lost - s0.lost,
            "untouched_reorder": s1.reorder - s0.reorder,
            "untouched_reconnects": sum(e["reconnects"] for e in ends),
        }
    finally:
        relay.stop()
        x.stop()
        y.stop()
        tx.stop()
        rx.stop()


def run_abuse(s: Settings, progress: Progress) -> list[Row]:
    """``--only abuse``: the link's rate while the control plane is attacked."""
    try:
        return [abuse(s, progress)]
    except Exception as e:  # noqa: BLE001 - a failed part is an n/a row
        return [
            {
                "group": "control",
                "scenario": "control-abuse",
                "relay": "xcon",
                "status": "n/a",
                "reason": str(e),
            }
        ]


def run(s: Settings, progress: Progress) -> list[Row]:
    rows = []
    for fn in (
        lambda: many_links(s, progress),
        lambda: churn(s, progress),
        lambda: cost(s, progress),
    ):
        try:
            rows.append(fn())
        except Exception as e:  # noqa: BLE001 - a failed part is an n/a row
            rows.append(
                {
                    "group": "control",
                    "scenario": "control",
                    "relay": "xcon",
                    "status": "n/a",
                    "reason": str(e),
                }
            )
    return rows
