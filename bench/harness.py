"""Processes of one measurement: C load-generator peers, the relay under test, /proc readings."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.build import build

TMP = Path(tempfile.mkdtemp(prefix="xcon-bench-"))
_LIVE: set[subprocess.Popen[bytes]] = set()


def kill_all() -> None:
    """Kill every process this benchmark started and still runs (atexit/finally)."""
    for p in list(_LIVE):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _LIVE.discard(p)


def spawn(cmd: list[str], **kw: object) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]
    _LIVE.add(p)
    return p


def reap(p: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _LIVE.discard(p)
    return p.returncode


def hosts() -> tuple[str, str]:
    """Two loopback addresses of our own (sender side, receiver side) for this run."""
    pid = os.getpid()
    a, b = 100 + pid % 150, (pid // 150) % 250
    return f"127.{a}.{b}.1", f"127.{a}.{b}.2"


class NotAvailable(Exception):
    """A scenario the program under test does not support (yet)."""


# -- /proc ------------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_runtime(pid: int) -> float | None:
    """CPU seconds of ``pid``'s live threads to the nanosecond (the scheduler's
    ``sum_exec_runtime``, ``/proc/PID/task/TID/schedstat``), or None where the
    kernel does not show it.  :func:`proc_cpu` counts clock ticks (10 ms): summed
    over many processes that each run a few ms, its truncations add up."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                continue  # the thread ended
    except FileNotFoundError:
        return None
    return total / 1e9


def proc_mem(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


# -- load generator -----------------------------------------------------------------------
@dataclass
class Snap:
    t_ns: int
    frames: int
    bytes: int
    lost: int
    reorder: int
    bad: int
    tagged: int
    ndelays: int
    active: int
    sockdrops: int


class Peer:
    """One bench/peer.c process; its stdout lines are collected by a thread."""

    def __init__(
        self,
        endpoints: list[str],
        size: int = 1500,
        rate: float = 0.0,
        vid: int | None = None,
        stream0: int = 0,
        record: bool = False,
        buf_kib: int | None = None,
        netns: str | None = None,
    ) -> None:
        exe = str(build("peer"))
        self.delays_path = TMP / f"delays-{id(self)}.bin"
        cmd = [exe, "-s", str(size), "-i", str(stream0)]
        if rate:
            cmd += ["-r", str(rate)]
        if vid is not None:
            cmd += ["-v", str(vid)]
        if record:
            cmd += ["-o", str(self.delays_path)]
        if buf_kib:
            cmd += ["-b", str(buf_kib)]
        cmd += endpoints
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.err_path = TMP / f"peer-{id(self)}.err"
        self._err = open(self.err_path, "wb")
        self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=self._err)
        self.lines: list[list[str]] = []
        self.up = 0
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            parts = raw.decode().split()
            with self._cv:
                if parts and parts[0] in ("up", "down"):
                    self.up = int(parts[1])
                self.lines.append(parts)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def errors(self) -> str:
        try:
            return self.err_path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def wait(self, kind: str, timeout: float, after: int = 0) -> list[str]:
        """The first line starting with ``kind`` at index >= ``after``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for parts in self.lines[after:]:
                    if parts and parts[0] == kind:
                        return parts
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"peer: no {kind!r} line ({self.errors() or 'timeout'})")
                self._cv.wait(min(left, 0.1))

    def wait_up(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.up < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"peer: {self.up}/{n} connections up ({self.errors() or 'timeout'})"
                    )
                self._cv.wait(min(left, 0.1))

    def snap(self, timeout: float = 5.0) -> Snap:
        with self._cv:
            mark = len(self.lines)
        self.proc.send_signal(signal.SIGUSR1)
        parts = self.wait("snap", timeout, after=mark)
        return Snap(*(int(x) for x in parts[1:11]))

    def delays(self) -> np.ndarray:
        try:
            return np.fromfile(self.delays_path, dtype=np.int64)
        except (OSError, ValueError):
            return np.zeros(0, dtype=np.int64)

    def stop(self) -> None:
        reap(self.proc)
        self._t.join(2)
        self._err.close()
        self.delays_path.unlink(missing_ok=True)


# -- relays ---------------------------------------------------------------------------------
@dataclass
class Relay:
    """What forwards between the sender and the receiver peers."""

    name: str
    kind: str  # direct | splice | socat | xcon
    native: bool = True
    engine: str = "epoll"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workdir: Path | None = None
    #: The interpreter that runs xcon (another one runs another build of it).
    python: str = sys.executable

    @property
    def pid(self) -> int | None:
        return self.procs[0].pid if self.procs else None

    def available(self) -> str | None:
        """None if usable here, else why not."""
        if self.kind == "socat" and shutil.which("socat") is None:
            return "socat not installed (apt-get install socat)"
        return None

    def start(self, mode: str, args: list[str], netns: str | None = None) -> None:
        """mode p2p: ``args`` are xcon link specs; hub: xcon endpoints; tap: xcon args;
        socat: socat's whole argument list (its own addresses, datagram links).
        ``netns``: run the relay inside that network namespace."""
        if self.kind == "direct":
            return
        if self.kind == "socat" and mode == "socat":
            cmd = ["socat", *args]
            if netns:
                cmd = ["ip", "netns", "exec", netns, *cmd]
            self.procs.append(spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return
        if self.kind in ("splice", "socat"):
            if mode != "p2p" or len(args) != 1 or ":" in args[0].split("--")[1]:
                raise NotAvailable(f"{self.kind} only relays bytes of one untagged p2p link")
            (h1, n1), (h2, n2) = (s.split("/") for s in args[0].split("--"))
            p1, p2 = 10000 + int(n1), 10000 + int(n2)
            if self.kind == "splice":
                cmd = [str(build("splice_relay")), h1, str(p1), h2, str(p2)]
            else:
                cmd = ["socat", f"TCP:{h1}:{p1}", f"TCP:{h2}:{p2}"]
            if netns:
                cmd = ["ip", "netns", "exec", netns, *cmd]
            self.procs.append(spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return
        self.start_xcon([f"--{mode}", *args] if mode in ("p2p", "hub") else args, netns)

    def start_xcon(self, args: list[str], netns: str | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="xcon-", dir=TMP))
        env = dict(os.environ, XCON_NATIVE="1" if self.native else "0")
        cmd = [self.python, "-m", "xcon", *args]
        cmd += ["--engine", self.engine, "--log-level", "warning"]
        cmd += ["--health-file", str(self.workdir / "health")]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        log = open(self.workdir / "xcon.log", "wb")
        # In its own directory: its control socket (xcon.sock) is made there.
        self.procs.append(
            spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir))
        )
        log.close()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            rc = self.procs[0].poll()
            if rc is not None:
                text = self.log()
                self.procs.clear()
                low = text.lower()
                if rc == 2 and (
                    "not implemented" in low or "unknown engine" in low or "invalid choice" in low
                ):
                    last = text.strip().splitlines()[-1] if text.strip() else f"exit {rc}"
                    raise NotAvailable(f"not implemented: {last}")
                raise RuntimeError(f"xcon exited {rc}: {text[-2000:]}")
            if (self.workdir / "health").exists():
                return
            time.sleep(0.02)

    def log(self) -> str:
        if self.workdir is None:
            return ""
        try:
            return (self.workdir / "xcon.log").read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def cpu(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.procs if p.poll() is None)

    def runtime(self) -> float | None:
        """:func:`proc_runtime` of the relay's processes (None where not shown)."""
        total = 0.0
        for p in self.procs:
            if p.poll() is None:
                t = proc_runtime(p.pid)
                if t is None:
                    return None
                total += t
        return total

    def mem(self) -> tuple[int, int]:
        rss = hwm = 0
        for p in self.procs:
            if p.poll() is None:
                r, h = proc_mem(p.pid)
                rss, hwm = rss + r, hwm + h
        return rss, hwm

    def stop(self) -> None:
        for p in self.procs:
            reap(p)
        self.procs.clear()
