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
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

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
def proc_cpu(pid: int, waited: bool = False) -> float:
    """User+system CPU seconds of a process (all its threads); ``waited``: and of the
    children it has reaped (cutime+cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if waited:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The children of ``pid``, from /proc/PID/task/*/children."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue  # that thread ended
    return out


def _ppid_children() -> dict[int, list[int]]:
    """Every process's children, from the parent field of every /proc/PID/stat (for a
    kernel without /proc/PID/task/*/children: CONFIG_PROC_CHILDREN off)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and of every process below them (a relay's worker
    processes): those still running and those their parents already reaped."""
    table = None if _CHILDREN_FILES else _ppid_children()
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        try:
            total += proc_cpu(pid, waited=True)
        except OSError:
            continue  # it ended meanwhile
        todo += _children(pid) if table is None else table.get(pid, [])
    return total


def tree_runtime(pids: list[int]) -> float | None:
    """:func:`proc_runtime` of processes and of every process below them
    running now (an xcon's workers); None where the kernel does not show it."""
    table = None if _CHILDREN_FILES else _ppid_children()
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        t = proc_runtime(pid)
        if t is None:
            if os.path.exists(f"/proc/{pid}"):
                return None  # not shown by this kernel
            continue  # it ended meanwhile
        total += t
        todo += _children(pid) if table is None else table.get(pid, [])
    return total


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
        return self.snap_read(self.snap_ask(), timeout)

    def snap_ask(self) -> int:
        """Ask for a snap; returns the mark :meth:`snap_read` reads it after."""
        with self._cv:
            mark = len(self.lines)
        self.proc.send_signal(signal.SIGUSR1)
        return mark

    def snap_read(self, mark: int, timeout: float = 5.0) -> Snap:
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


class Peers:
    """Peer processes of one side read as one: a process per link (one endpoint each)."""

    def __init__(self, endpoints: list[str], **kw: Any) -> None:
        self.peers: list[Peer] = []
        try:
            for ep in endpoints:
                self.peers.append(Peer([ep], **kw))
        except BaseException:
            self.stop()
            raise

    def wait(self, kind: str, timeout: float) -> list[str]:
        """Each peer's first ``kind`` line; returns the last peer's."""
        return [p.wait(kind, timeout) for p in self.peers][-1]

    def wait_up(self, n: int, timeout: float) -> None:
        for p in self.peers:
            p.wait_up(n // len(self.peers), timeout)

    def snap(self, timeout: float = 5.0) -> Snap:
        """Every peer's counters summed; the time is their mean (asked for all at once)."""
        marks = [p.snap_ask() for p in self.peers]
        snaps = [astuple(p.snap_read(m, timeout)) for p, m in zip(self.peers, marks, strict=True)]
        cols = list(zip(*snaps, strict=True))
        return Snap(sum(cols[0]) // len(snaps), *(sum(c) for c in cols[1:]))

    def delays(self) -> np.ndarray:
        return np.concatenate([p.delays() for p in self.peers] or [np.zeros(0, dtype=np.int64)])

    def stop(self) -> None:
        for p in self.peers:
            p.stop()


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
    #: Options put before xcon's others (``--workers 1``).
    xargs: list[str] = field(default_factory=list)
    #: An xcon process per p2p link (socat and the splice relay always run one per link).
    per_link: bool = False

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
            if mode != "p2p" or any(":" in a.split("--")[1] for a in args):
                raise NotAvailable(f"{self.kind} only relays bytes of untagged p2p links")
            for link in args:
                (h1, n1), (h2, n2) = (s.split("/") for s in link.split("--"))
                p1, p2 = 10000 + int(n1), 10000 + int(n2)
                if self.kind == "splice":
                    cmd = [str(build("splice_relay")), h1, str(p1), h2, str(p2)]
                else:
                    cmd = ["socat", f"TCP:{h1}:{p1}", f"TCP:{h2}:{p2}"]
                if netns:
                    cmd = ["ip", "netns", "exec", netns, *cmd]
                self.procs.append(spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return
        if self.per_link and mode == "p2p":
            for link in args:
                self.start_xcon([*self.xargs, "--p2p", link], netns)
            return
        self.start_xcon(
            [*self.xargs, *([f"--{mode}", *args] if mode in ("p2p", "hub") else args)], netns
        )

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
        proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir))
        self.procs.append(proc)
        log.close()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                text = self.log()
                self.procs.remove(proc)
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
        """CPU seconds of the relay's processes and of every process they started."""
        return tree_cpu([p.pid for p in self.procs if p.poll() is None])

    def runtime(self) -> float | None:
        """:func:`proc_runtime` of the relay's processes and of every process
        they started that runs now (None where not shown)."""
        return tree_runtime([p.pid for p in self.procs if p.poll() is None])

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
