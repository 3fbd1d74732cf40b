"""``down``: what a lab that is still booting costs: 1000 links, every router down.

Four shapes of the same 2000 NIC endpoints (1000 p2p links), nothing listening:

* ``ip``: 2000 routers on distinct loopback addresses (one NIC each);
* ``lab``: 250 routers of 8 NICs on loopback addresses (a vrnetlab lab);
* ``names``: the ``ip`` shape by name, from a private ``/etc/hosts`` (xcon runs
  in its own mount namespace with that file bound over ``/etc/hosts``; root);
* ``unresolvable``: 2000 names that do not resolve (``rN.invalid``).

For each, xcon's CPU share over a window after start-up, and then how soon a
link is back once its router listens: one router of the shape starts
listening (a fake qemu NIC) and the time until xcon is connected to it.

``XCON_BENCH_BASELINE=/other/venv/bin/python`` runs every shape a second time
with the xcon installed for that interpreter (an older checkout, say), side by
side in the same run (relay ``baseline``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.harness import TMP
from bench.scenarios import Progress, Row, Settings, na_row
from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.process import XconProcess
from xcon.testing.wait import WaitTimeout

LINKS = 1000
LAB_NICS = 8
SHAPES = ("ip", "lab", "names", "unresolvable")


def _addr(i: int) -> str:
    """Router ``i``'s loopback address (127.201.0.0/16 and up, away from the others)."""
    return f"127.{201 + i // 65000}.{(i % 65000) // 250}.{1 + i % 250}"


def _endpoints(shape: str) -> tuple[list[str], list[tuple[str, str, int]]]:
    """The link specs, and per endpoint (name in the spec, address, NIC)."""
    ends: list[tuple[str, str, int]] = []
    if shape == "lab":
        for i in range(2 * LINKS):
            r, nic = divmod(i, LAB_NICS)
            ends.append((_addr(r), _addr(r), nic + 1))
    else:
        for i in range(2 * LINKS):
            name = {
                "ip": _addr(i),
                "names": f"router{i}.lab.test",
                "unresolvable": f"router{i}.invalid",
            }[shape]
            ends.append((name, _addr(i), 1))
    specs = [
        f"{ends[2 * k][0]}/{ends[2 * k][2]}--{ends[2 * k + 1][0]}/{ends[2 * k + 1][2]}"
        for k in range(LINKS)
    ]
    return specs, ends


def _missing(shape: str) -> str | None:
    if shape == "names":
        if os.geteuid() != 0:
            return "needs root (a private /etc/hosts in a mount namespace)"
        if shutil.which("unshare") is None:
            return "unshare not found (Debian package util-linux)"
    return None


def _one(shape: str, window: float, progress: Progress, python: str, relay: str) -> Row:
    specs, ends = _endpoints(shape)
    work = Path(TMP) / f"down-{shape}"
    work.mkdir(parents=True, exist_ok=True)
    prefix: list[str] = []
    if shape == "names":
        hosts = work / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a, _ in ends))
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                  f'mount --bind "{hosts}" /etc/hosts && exec "$@"', "sh"]  # fmt: skip
    xc = XconProcess(
        ["--p2p", *specs], cwd=str(work), prefix=prefix, log_level="warning", python=python
    )
    try:
        time.sleep(3.0)  # start-up, first attempts, backoff to its cap
        if xc.proc.poll() is not None:
            raise RuntimeError(f"xcon exited {xc.proc.returncode}: {xc.log()[-500:]}")
        progress(f"down-{shape}: CPU of {relay} over {window:.0f} s with {2 * LINKS} NICs down")
        c0, t0 = xc.cpu_seconds(), time.monotonic()
        time.sleep(window)
        cpu = 100 * (xc.cpu_seconds() - c0) / (time.monotonic() - t0)
        rss = xc.rss_kib() / 1024
        back: list[float] = []
        if shape != "unresolvable":
            # A few routers come up, one at a time, each at a random phase of the
            # retry cycle: how soon is xcon connected to it?
            for k in range(5):
                _name, addr, nic = ends[2 * k * 37 + 1]
                time.sleep(0.137 * (k + 1))
                q = FakeQemu(addr, nic, record=False).start()
                t = time.monotonic()
                try:
                    q.wait_connected(5)
                    back.append((time.monotonic() - t) * 1000)
                except WaitTimeout:
                    back.append(float("inf"))
                finally:
                    q.stop()
        row: Row = {
            "group": "down",
            "scenario": f"down-{shape}",
            "relay": relay,
            "status": "ok",
            "links": LINKS,
            "endpoints": 2 * LINKS,
            "cpu_pct": cpu,
            "rss_mib": rss,
            "window_s": window,
        }
        if back:
            row.update(back_ms=statistics.median(back), back_max_ms=max(back), back_all_ms=back)
        return row
    finally:
        xc.kill()
        shutil.rmtree(work, ignore_errors=True)


def run(s: Settings, progress: Progress) -> list[Row]:
    rows: list[Row] = []
    window = 5.0 if s.quick else 30.0
    relays = [("xcon", sys.executable)]
    baseline = os.environ.get("XCON_BENCH_BASELINE")
    if baseline:
        relays.append(("baseline", baseline))
    for shape in SHAPES:
        for relay, python in relays:
            reason = _missing(shape)
            if reason:
                rows.append(na_row("down", f"down-{shape}", relay, reason))
                continue
            try:
                rows.append(_one(shape, window, progress, python, relay))
            except (RuntimeError, OSError) as e:
                rows.append(na_row("down", f"down-{shape}", relay, f"failed: {e}"))
    return rows
