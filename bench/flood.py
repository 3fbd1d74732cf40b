"""``flood``: a listening port under a connection flood, and a p2p link beside it.

xcon plays a router NIC (``--tap-listen 1 --listen-address ADDR``, a tap of its
own; root).  500 clients connect to its port and never send a byte, and stay
connected; then the legitimate client connects and sends a frame.  Measured:
the time from its connect until xcon serves it (health "All 2 sockets
connected": a client counts only once it has sent a whole frame), and the
frame rate of a p2p link in another xcon process during the flood against the
same link without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time
import uuid
from pathlib import Path

from bench.harness import TMP, Relay
from bench.scenarios import Progress, Row, Settings, na_row, run_flow
from xcon.testing.process import XconProcess
from xcon.testing.wait import WaitTimeout

FLOOD = 500
ADDR = "127.203.0.1"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the listening mode creates a tap)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun missing"
    return None


def _open_flood(n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((ADDR, 10001))
        socks.append(s)
    return socks


def _served_after(xc: XconProcess, timeout: float) -> float:
    """Connect as the real client, send a frame; seconds until xcon serves it."""
    t0 = time.monotonic()
    real = socket.socket()
    real.settimeout(timeout)
    frame = b"\xff" * 6 + b"\x02" * 6 + b"\x88\xb5" + b"x" * 46
    try:
        real.connect((ADDR, 10001))
        real.sendall(struct.pack(">I", len(frame)) + frame)
        xc.wait_health("0", contains="All 2 sockets connected", timeout=timeout)
        return time.monotonic() - t0
    except (OSError, WaitTimeout):
        return float("inf")
    finally:
        real.close()


def run(s: Settings, progress: Progress) -> list[Row]:
    reason = _missing()
    if reason:
        return [na_row("flood", "flood", "xcon", reason)]
    tap = f"xf{uuid.uuid4().hex[:6]}"
    work = Path(TMP) / "flood"
    work.mkdir(parents=True, exist_ok=True)
    xc = XconProcess(
        ["--tap-listen", "1", "--tap-if", tap, "--listen-address", ADDR], cwd=str(work)
    )
    flood: list[socket.socket] = []
    try:
        xc.wait_health("0", contains="Ready", timeout=10)
        progress("flood: the real client alone")
        alone = _served_after(xc, 10)
        xc.wait_health("0", contains="Ready", timeout=10)

        def p2p_fps() -> float:
            row, _ = run_flow(Relay("xcon", "xcon"), s, size=1500)
            return float(row["fps"])

        progress("flood: p2p link without the flood")
        quiet = p2p_fps()
        progress(f"flood: {FLOOD} idle connections, then the real client")
        flood = _open_flood(FLOOD)
        time.sleep(0.5)
        busy = p2p_fps()
        served = _served_after(xc, 30)
        return [
            {
                "group": "flood",
                "scenario": "flood",
                "relay": "xcon",
                "status": "ok",
                "flood": FLOOD,
                "served_alone_s": alone,
                "served_s": served,
                "p2p_fps_quiet": quiet,
                "p2p_fps_flood": busy,
            }
        ]
    except (RuntimeError, OSError, WaitTimeout) as e:
        return [na_row("flood", "flood", "xcon", f"failed: {e}")]
    finally:
        for f in flood:
            f.close()
        xc.kill()
        shutil.rmtree(work, ignore_errors=True)
