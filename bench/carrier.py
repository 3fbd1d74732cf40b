"""``carrier``: how soon a router's NIC follows its link (docs/carrier.md).

p2p links between fake qemu NICs (loopback addresses 127.211.x.y), the near
end of each with a monitor that speaks HMP as qemu's does
(``xcon.testing.fakemonitor``, timestamps taken as each ``set_link``
arrives).  Round i: the far router of link i stops (its qemu closes the
socket) and the time until the near router's monitor is told ``set_link
off`` (``off_ms``); it listens again and the time from the first frame
crossing the link again to ``set_link on`` (``on_ms``, 0 when carrier came
back before the first frame did).  One link per round: a router restarting
once is not a flapping one (xcon damps those).  Then a pull (``xcon ctl
down``): frames the far router sends meanwhile must not reach the near one,
whose carrier is off (``leaked``).  The last link is never touched: its
monitors must see no change (``other_changes``).

With ``XCON_BENCH_BASELINE=/other/python`` the same is run on that build
(relay ``baseline``): one without carrier following shows no ``off`` at all.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bench.harness import TMP
from bench.scenarios import Progress, Row, Settings, na_row
from xcon.testing.control import ctl
from xcon.testing.fakemonitor import FakeMonitor
from xcon.testing.fakeqemu import FakeQemu, endpoint
from xcon.testing.frames import numbered
from xcon.testing.process import XconProcess
from xcon.testing.wait import WaitTimeout

#: How long a round waits for a carrier change before it counts as "never".
NEVER = 2.0


def _forwarded_at(src: FakeQemu, dst: FakeQemu, seq: int, timeout: float = 5.0) -> float:
    """Send numbered frames from ``src`` until one reaches ``dst``; when it arrived."""
    deadline = time.monotonic() + timeout
    n = len(dst.frames)
    while time.monotonic() < deadline:
        src.send(numbered(seq, 100))
        t = time.monotonic()
        while time.monotonic() - t < 0.005:
            if len(dst.frames) > n:
                return time.monotonic()
            time.sleep(0.0002)
    raise WaitTimeout("the link did not forward again")


def _host(i: int) -> str:
    return f"127.211.{i // 250}.{1 + i % 250}"


def _one(python: str, relay: str, rounds: int, progress: Progress) -> Row:
    # One link per round (a router that restarts once is not a flapping one:
    # xcon damps those), plus one link never touched.
    n = rounds + 1
    peers = [FakeQemu(_host(i), 1).start() for i in range(2 * n)]
    mons = [FakeMonitor() for _ in range(n + 1)]  # the near end of each link, + the last far end
    links = [f"{endpoint(peers[2 * i])}--{endpoint(peers[2 * i + 1])}" for i in range(n)]
    work = TMP / f"carrier-{relay}"
    work.mkdir(parents=True, exist_ok=True)
    argv = ["--p2p", *links]
    for i in range(n):
        argv += ["--monitor", f"{endpoint(peers[2 * i])}={mons[i].address}"]
    argv += ["--monitor", f"{endpoint(peers[2 * n - 1])}={mons[n].address}"]
    xc = XconProcess(argv, cwd=str(work), python=python)
    off_ms: list[float] = []
    on_ms: list[float] = []
    listen_ms: list[float] = []  # from listening again to carrier on
    leaked = 0
    try:
        xc.wait_health("0", contains=f"All {2 * n} sockets connected")
        for i in range(rounds):
            progress(f"carrier ({relay}): round {i + 1}/{rounds}")
            a, b, mon = peers[2 * i], peers[2 * i + 1], mons[i]
            _forwarded_at(a, b, i)
            b.stop()
            gone = time.monotonic()
            try:
                off_ms.append((mon.wait_link(False, timeout=NEVER) - gone) * 1000)
            except AssertionError:
                off_ms.append(float("inf"))
            b.start()
            listening = time.monotonic()
            forwards = _forwarded_at(a, b, 1000 + i)
            try:
                on = mon.wait_link(True, timeout=NEVER)
                on_ms.append(max(0.0, on - forwards) * 1000)
                listen_ms.append((on - listening) * 1000)
            except AssertionError:
                on_ms.append(float("inf"))
        # a pull: what the far router sends must not reach the near one
        a, b = peers[0], peers[1]
        if ctl(xc, "down", links[0]).returncode == 0:
            before = len(a.frames)
            b.send_frames(numbered(5000 + k, 100) for k in range(50))
            time.sleep(0.2)
            leaked = len(a.frames) - before
            ctl(xc, "up", links[0])
        other = len(mons[n - 1].changes) + len(mons[n].changes) - 2  # each told "on" at start
    finally:
        xc.terminate()
        for p in peers:
            p.stop()
        for m in mons:
            m.close()
    finite_off = [x for x in off_ms if x != float("inf")]
    finite_on = [x for x in on_ms if x != float("inf")]
    return {
        "group": "carrier",
        "scenario": "carrier",
        "relay": relay,
        "status": "ok",
        "rounds": rounds,
        "off_ms": statistics.median(finite_off) if finite_off else None,
        "off_max_ms": max(finite_off) if finite_off else None,
        "off_never": len(off_ms) - len(finite_off),
        "on_ms": statistics.median(finite_on) if finite_on else None,
        "on_max_ms": max(finite_on) if finite_on else None,
        "on_never": len(on_ms) - len(finite_on),
        "on_after_listen_ms": statistics.median(listen_ms) if listen_ms else None,
        "leaked": leaked,
        "other_changes": other,
    }


def _guests(rounds: int, progress: Progress) -> Row:
    """The same seen from inside real Linux guests (``xcon.testing.guest``):
    the far guest's qemu killed -> the near guest reads carrier 0 (polled on
    its serial console); the far qemu started again (it listens at once, the
    guest boots behind it) -> the near guest reads 1 (``on_after_start_ms``:
    from the far guest's boot to the near guest reading 1, one console poll
    when carrier came back during the boot)."""
    from xcon.testing.guest import Guest

    a = Guest("127.212.0.1", "10.212.0.1/24", "52:54:00:21:20:01").start()
    b = Guest("127.212.0.2", "10.212.0.2/24", "52:54:00:21:20:02").start()
    work = TMP / "carrier-guests"
    work.mkdir(parents=True, exist_ok=True)
    xc = XconProcess(
        ["--p2p", f"{a.endpoint}--{b.endpoint}", "--monitors", "vrnetlab"], cwd=str(work)
    )
    off_ms: list[float] = []
    on_ms: list[float] = []
    try:
        xc.wait_health("0", contains="All 2 sockets connected")
        a.wait_carrier(1)
        for i in range(rounds):
            progress(f"carrier (guests, {a.accel}): round {i + 1}/{rounds}")
            b.stop()
            gone = time.monotonic()
            off_ms.append((a.wait_carrier(0) - gone) * 1000)
            b.start()  # qemu listens before its guest boots: xcon reconnects meanwhile
            booted = time.monotonic()
            on_ms.append((a.wait_carrier(1, timeout=60) - booted) * 1000)
    finally:
        xc.terminate()
        a.close()
        b.close()
    return {
        "group": "carrier",
        "scenario": "carrier-guest",
        "relay": "xcon",
        "status": "ok",
        "accel": a.accel,
        "rounds": rounds,
        "off_ms": statistics.median(off_ms),
        "off_max_ms": max(off_ms),
        "on_after_start_ms": statistics.median(on_ms),
    }


def run(s: Settings, progress: Progress) -> list[Row]:
    rounds = 5 if s.quick else 20
    relays = [("xcon", sys.executable)]
    baseline = os.environ.get("XCON_BENCH_BASELINE")
    if baseline:
        relays.append(("baseline", baseline))
    rows: list[Row] = []
    for relay, python in relays:
        try:
            rows.append(_one(python, relay, rounds, progress))
        except (RuntimeError, OSError, WaitTimeout) as e:
            rows.append(na_row("carrier", "carrier", relay, f"failed: {e}"))
    from xcon.testing.guest import missing

    why = missing()
    if why is not None:
        rows.append(na_row("carrier", "carrier-guest", "xcon", why))
    else:
        try:
            rows.append(_guests(3 if s.quick else 5, progress))
        except (RuntimeError, OSError, TimeoutError, WaitTimeout) as e:
            rows.append(na_row("carrier", "carrier-guest", "xcon", f"failed: {e}"))
    return rows
