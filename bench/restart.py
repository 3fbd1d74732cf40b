"""``restart``: how long a link is dark when the cross-connect restarts
(docs/restart.md), and how long xcon takes from ``exec`` to forwarding.

Dark time: two fake qemu NICs on loopback joined by one link, numbered
frames both ways at 10 000 frames/s each (20 000 in all); each frame's
arrival is timed, and a round's dark time is the longest gap between two
arrivals around the restart.  Lost: frames sent and never received (a cold
restart loses what was in flight; a handover must lose none).  Ways:

* ``cold``: SIGTERM, then the same command started again (xcon, and socat
  restarted the same way: the floor of a relay that holds nothing);
* ``takeover``: ``xcon --takeover`` with the same links (the running one
  hands over and exits);
* ``in-place``: ``xcon ctl restart`` (``exec`` of the same command line).

Start-up: ``start-N``: N links between listening fake NICs; from ``exec``
of ``python -m xcon --control none --p2p ...`` to a frame sent on each
link's first end arriving at its second (median of the rounds).
"""

from __future__ import annotations

import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.harness import TMP, reap, spawn
from bench.scenarios import Progress, Row, Settings, na_row
from xcon.limits import QEMU_BASE_PORT
from xcon.testing.control import ctl, wait_api
from xcon.testing.fakeqemu import FakeQemu, endpoint
from xcon.testing.frames import check_numbered, numbered
from xcon.testing.loopback import new_host
from xcon.testing.process import XconProcess

FPS = 10_000


class Arrivals:
    """The arrival time of every frame a fake NIC receives, and its number."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.numbers: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, frame: memoryview) -> None:
        with self.lock:
            self.times.append(time.monotonic())
            self.numbers.append(check_numbered(bytes(frame)))

    def dark(self, since: float) -> float:
        """The longest gap between two arrivals after ``since`` (seconds)."""
        with self.lock:
            t = [x for x in self.times if x >= since - 0.05]
        return max((b - a for a, b in zip(t, t[1:], strict=False)), default=0.0)


class Sender:
    """Numbered frames from one fake NIC at :data:`FPS`, on a thread; a
    frame whose send fails (the relay restarting cold) is counted as not sent."""

    def __init__(self, src: FakeQemu, first: int = 0) -> None:
        self.src, self.first, self.sent = src, first, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start, batch = time.monotonic(), 10
        while not self._stop.is_set():
            wait = start + self.sent / FPS - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            frames = [numbered(self.first + self.sent + i, 100) for i in range(batch)]
            try:
                self.src.send_frames(frames)
            except OSError:
                time.sleep(0.001)
                start += 0.001  # not behind schedule for the frames never sent
                continue
            self.sent += batch

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _pair() -> tuple[FakeQemu, FakeQemu, Arrivals, Arrivals]:
    arr_a, arr_b = Arrivals(), Arrivals()
    a = FakeQemu(new_host(), 1, record=False, on_frame=arr_a).start()
    b = FakeQemu(new_host(), 1, record=False, on_frame=arr_b).start()
    return a, b, arr_a, arr_b


def _dark_rounds(way: str, relay: str, rounds: int, progress: Progress) -> Row:
    a, b, arr_a, arr_b = _pair()
    link = f"{endpoint(a)}--{endpoint(b)}"
    workdir = Path(TMP) / f"restart-{relay}-{way}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    procs: list[XconProcess] = []
    socat: list[subprocess.Popen[bytes]] = []

    def start_xcon(*extra: str) -> XconProcess:
        x = XconProcess(["--p2p", link, *extra], cwd=str(workdir), log_level="warning")
        procs.append(x)
        return x

    def start_socat() -> None:
        socat.append(spawn(["socat", f"TCP:{a.host}:{a.port}", f"TCP:{b.host}:{b.port}"]))

    darks: list[float] = []
    try:
        if relay == "socat":
            start_socat()
        else:
            wait_api(start_xcon())
        a.wait_connected(5)
        b.wait_connected(5)
        ab, ba = Sender(a), Sender(b, first=10**8)
        time.sleep(0.3)
        for i in range(rounds):
            progress(f"restart {relay} {way} {i + 1}/{rounds}")
            t0 = time.monotonic()
            if relay == "socat":
                socat[-1].terminate()
                reap(socat[-1])
                start_socat()
            elif way == "cold":
                procs[-1].terminate()
                wait_api(start_xcon())
            elif way == "takeover":
                old = procs[-1]
                new = start_xcon("--takeover")
                if old.proc.wait(15) != 0:
                    raise RuntimeError(f"the old xcon did not hand over: {old.log()[-300:]}")
                wait_api(new)
            else:
                r = ctl(procs[-1], "restart")
                if r.returncode != 0:
                    raise RuntimeError(r.stderr)
                time.sleep(0.05)
                wait_api(procs[-1])
            time.sleep(0.4)
            darks.append(max(arr_a.dark(t0), arr_b.dark(t0)))
        ab.stop()
        ba.stop()
        time.sleep(0.3)
        sent = ab.sent + ba.sent
        lost = sent - len(arr_a.numbers) - len(arr_b.numbers)
        reconnects = a.accepted + b.accepted - 2
    finally:
        for p in procs:
            p.kill()
        for s in socat:
            s.kill()
            reap(s)
        a.stop()
        b.stop()
    return {
        "group": "restart",
        "scenario": f"restart-{way}",
        "relay": relay,
        "status": "ok",
        "dark_ms_median": round(statistics.median(darks) * 1e3, 1),
        "dark_ms_max": round(max(darks) * 1e3, 1),
        "rounds": rounds,
        "frames_sent": sent,
        "frames_lost": lost,
        "reconnects": reconnects,
    }


def _start_rounds(n: int, rounds: int, progress: Progress) -> Row:
    """Exec to every one of ``n`` links forwarding (module docstring)."""
    host = new_host()
    listeners = []
    for i in range(1, 2 * n + 1):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, QEMU_BASE_PORT + i))
        ls.listen(8)
        listeners.append(ls)
    links = [f"{host}/{2 * i + 1}--{host}/{2 * i + 2}" for i in range(n)]
    frame = (
        struct.pack(">I", 60) + bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(46)
    )
    times = []
    workdir = Path(TMP) / f"start-{n}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for r in range(rounds):
            progress(f"start {n} links {r + 1}/{rounds}")
            t0 = time.monotonic()
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "xcon",
                    "--control",
                    "none",
                    "--health-file",
                    str(workdir / "health"),
                    "--p2p",
                    *links,
                ],
                stderr=subprocess.DEVNULL,
                cwd=workdir,
            )
            conns = [ls.accept()[0] for ls in listeners]
            waiting = {
                conns[2 * i + 1].fileno(): (conns[2 * i + 1], conns[2 * i]) for i in range(n)
            }
            poll = select.poll()  # select() takes no descriptor above 1023
            for fd in waiting:
                poll.register(fd, select.POLLIN)
            deadline = t0 + 30
            while waiting and time.monotonic() < deadline:
                for _dst, src in waiting.values():
                    src.sendall(frame)
                for fd, _ in poll.poll(1):
                    dst, _src = waiting.pop(fd)
                    dst.recv(65536)
                    poll.unregister(fd)
            if waiting:
                raise RuntimeError(f"{len(waiting)} of {n} links not forwarding after 30 s")
            times.append(time.monotonic() - t0)
            p.terminate()
            p.wait(10)
            for c in conns:
                c.close()
    finally:
        for ls in listeners:
            ls.close()
    return {
        "group": "restart",
        "scenario": f"start-{n}",
        "relay": "xcon",
        "status": "ok",
        "start_ms_median": round(statistics.median(times) * 1e3, 1),
        "start_ms": [round(t * 1e3, 1) for t in times],
    }


def run(s: Settings, progress: Progress) -> list[Row]:
    rounds = 3 if s.quick else 7
    rows: list[Row] = []
    plans = [("cold", "xcon"), ("cold", "socat"), ("takeover", "xcon"), ("in-place", "xcon")]
    for way, relay in plans:
        if relay == "socat" and shutil.which("socat") is None:
            rows.append(na_row("restart", f"restart-{way}", relay, "socat not installed"))
            continue
        try:
            rows.append(_dark_rounds(way, relay, rounds, progress))
        except (RuntimeError, OSError) as e:
            rows.append(na_row("restart", f"restart-{way}", relay, f"failed: {e}"))
    for n in (1, 100) if s.quick else (1, 100, 1000):
        try:
            rows.append(_start_rounds(n, 5 if n < 1000 else 3, progress))
        except (OSError, RuntimeError) as e:
            rows.append(na_row("restart", f"start-{n}", "xcon", f"failed: {e}"))
    return rows
