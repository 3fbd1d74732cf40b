"""``scale-lowrate``: what a frame costs at lab rates (control-plane chatter:
BFD, OSPF, LLDP), where every frame is a wake-up of its own.

* ``scale-lowrate-30x40``: 30 p2p links, 1 200 frames/s of 100 B in all (40
  frames/s per link, the sending peer's paced mode taking the links in turn,
  so one frame per wake-up), through xcon (native fast path, epoll engine),
  xcon on uvloop, 30 socats (one per link) and 30 splice relays (one per
  link);
* ``scale-lowrate-1000x10``: 1 000 links at 10 frames/s each (10 000
  frames/s in all), through xcon and 1 000 socats.

CPU: the time the relay's processes ran (not the peers'), over the
measurement window (10 s, 4 s with ``--quick``), divided by the frames the
receiving peer got in it: µs per frame forwarded, and % of one core.  Two
readings of the same processes: user + system time from ``/proc/PID/stat``
(``stat_*`` in the row), and the scheduler's run time of their threads in
ns (``/proc/PID/task/TID/schedstat``), which the row's ``cpu_pct`` and
``us_per_frame`` (and the targets) use.  Both agree on one busy process
(xcon); but ``/proc/PID/stat`` counts 10 ms ticks, and 30 or 1000 byte
relays that each run a few ms in a window, all alike, read mostly 0 or all 1
tick: their sum is off by up to one tick per process.
Rounds interleaved across the relays (A B C D A B C D ...), medians.
``XCON_BENCH_BASELINE=/other/python`` adds, in both shapes, the xcon that
interpreter runs (another checkout: relay ``xcon-baseline``), interleaved
with the others.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from bench.harness import NotAvailable, Peer, Relay, hosts
from bench.metrics import median
from bench.scenarios import Progress, Row, Settings, na_row

SIZE = 100
#: (links, frames/s per link, relays)
SHAPES = (
    (30, 40, ("xcon", "xcon-auto", "xcon-uvloop", "socat", "splice")),
    (1000, 10, ("xcon", "xcon-auto", "socat")),
)


def _relay(name: str) -> Relay:
    if name == "xcon-baseline":
        return Relay(name, "xcon", python=os.environ["XCON_BENCH_BASELINE"])
    return {
        "xcon": Relay("xcon", "xcon"),  # the default: one process
        "xcon-auto": Relay("xcon-auto", "xcon", xargs=["--workers", "auto"]),
        "xcon-uvloop": Relay("xcon-uvloop", "xcon", engine="uvloop"),
        "socat": Relay("socat", "socat"),
        "splice": Relay("splice", "splice"),
    }[name]


def _once(name: str, nlinks: int, per_link: int, window: float, warmup: float) -> dict[str, Any]:
    """One measurement: paced peers, the relay, CPU and frames over ``window``."""
    sh, rh = hosts()
    relay = _relay(name)
    rx = tx = None
    try:
        rx = Peer([f"L:{rh}:10001:{nlinks}:r"], size=SIZE, buf_kib=64)
        rx.wait("ready", 10)
        tx = Peer([f"L:{sh}:10001:{nlinks}:s"], size=SIZE, rate=nlinks * per_link, buf_kib=64)
        tx.wait("ready", 10)
        links = [f"{sh}/{k}--{rh}/{k}" for k in range(1, nlinks + 1)]
        if relay.kind == "xcon":
            relay.start("p2p", links)
        else:  # byte relays: one process per link
            for link in links:
                relay.start("p2p", [link])
        tx.wait_up(nlinks, 60)
        rx.wait_up(nlinks, 60)
        time.sleep(warmup)
        c0, r0 = relay.cpu(), relay.runtime()
        a = rx.snap()
        time.sleep(window)
        b = rx.snap()
        c1, r1 = relay.cpu(), relay.runtime()
        if not relay.alive():
            raise RuntimeError(f"{name} exited during the window")
        frames = b.frames - a.frames
        secs = (b.t_ns - a.t_ns) / 1e9
        stat = c1 - c0
        run = r1 - r0 if r0 is not None and r1 is not None else stat
        return {
            "fps": frames / secs,
            "cpu_pct": 100 * run / secs,
            "us_per_frame": 1e6 * run / frames if frames else None,
            "stat_cpu_pct": 100 * stat / secs,
            "stat_us_per_frame": 1e6 * stat / frames if frames else None,
            "lost": b.lost - a.lost,
            "active_links": b.active,
        }
    finally:
        relay.stop()
        for p in (tx, rx):
            if p is not None:
                p.stop()


def _why_not(name: str) -> str | None:
    if name == "socat" and shutil.which("socat") is None:
        return "socat not installed (apt-get install socat)"
    return None


def _shape(
    nlinks: int, per_link: int, names: tuple[str, ...], s: Settings, progress: Progress
) -> list[Row]:
    label = f"scale-lowrate-{nlinks}x{per_link}"
    if os.environ.get("XCON_BENCH_BASELINE"):
        names = (names[0], "xcon-baseline", *names[1:])
    rounds = 2 if s.quick else 3
    window, warmup = (4.0, 1.0) if s.quick else (10.0, 1.5)
    runs: dict[str, list[dict[str, Any]]] = {}
    na: dict[str, str] = {}
    for name in names:
        reason = _why_not(name)
        if reason:
            na[name] = reason
        else:
            runs[name] = []
    for i in range(rounds):
        for name in list(runs):
            progress(f"{label}: {name}, round {i + 1}/{rounds}")
            try:
                runs[name].append(_once(name, nlinks, per_link, window, warmup))
            except NotAvailable as e:
                na[name] = str(e)
                del runs[name]
            except (RuntimeError, OSError) as e:
                na[name] = f"failed: {e}"
                del runs[name]
    rows: list[Row] = []
    for name in names:
        common = {"links": nlinks, "per_link_fps": per_link, "size": SIZE}
        if name in na:
            rows.append(na_row("lowrate", label, name, na[name], **common))
            continue
        rr = runs[name]
        rows.append(
            {
                "group": "lowrate",
                "scenario": label,
                "relay": name,
                "status": "ok",
                **common,
                "offered_fps": nlinks * per_link,
                "window_s": window,
                "fps": median([r["fps"] for r in rr]),
                "cpu_pct": median([r["cpu_pct"] for r in rr]),
                "us_per_frame": median([r["us_per_frame"] for r in rr]),
                "stat_cpu_pct": median([r["stat_cpu_pct"] for r in rr]),
                "stat_us_per_frame": median([r["stat_us_per_frame"] for r in rr]),
                "lost": sum(r["lost"] for r in rr),
                "active_links": min(r["active_links"] for r in rr),
                "runs": rr,
            }
        )
    return rows


def run(s: Settings, progress: Progress) -> list[Row]:
    rows: list[Row] = []
    for nlinks, per_link, names in SHAPES:
        rows += _shape(nlinks, per_link, names, s, progress)
    return rows
