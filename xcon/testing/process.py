"""Run xcon as a separate process, the way users do, and observe it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from xcon.testing.wait import WaitTimeout, wait_until


def run_xcon(*args: str, cwd: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """``python -m xcon ARGS`` in ``cwd``, run to its end (xcon refusing its
    arguments, say); its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "xcon", *args], capture_output=True, text=True, timeout=30, cwd=cwd
    )


class XconProcess:
    """``python -m xcon ARGS`` with its log in a file and its health file known."""

    def __init__(
        self,
        args: Sequence[str],
        health_file: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        log_level: str = "info",
        preexec: Callable[[], None] | None = None,
        prefix: Sequence[str] = (),
        python: str = sys.executable,
    ) -> None:
        """``preexec`` runs in the child before xcon starts (to set resource limits);
        ``prefix`` comes before the command (``ip netns exec NS``, ``setpriv ...``);
        ``python`` is the interpreter (another one runs the xcon installed there)."""
        self.workdir = cwd or tempfile.mkdtemp(prefix="xcon-")
        os.makedirs(self.workdir, exist_ok=True)
        self.health_file = health_file or os.path.join(self.workdir, "health")
        self.log_path = os.path.join(self.workdir, "xcon.log")
        n = 1
        while os.path.exists(self.log_path):  # another xcon of this directory (a takeover)
            n += 1
            self.log_path = os.path.join(self.workdir, f"xcon.{n}.log")
        cmd = [*prefix, python, "-m", "xcon", *args, "--health-file", self.health_file]
        if "--log-level" not in args:
            cmd += ["--log-level", log_level]
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=full_env,
            preexec_fn=preexec,
        )
        self.pid = self.proc.pid

    # -- observation ----------------------------------------------------------------
    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def health(self) -> str | None:
        try:
            with open(self.health_file) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def wait_health(self, first_line: str, timeout: float = 10.0, contains: str = "") -> str:
        """Wait for the health file to start with ``first_line`` and contain ``contains``;
        returns its text.  Raises WaitTimeout (with the log) if it does not in time
        or xcon exits first."""
        seen: list[str | None] = [None]

        def ok() -> bool:
            text = seen[0] = self.health()
            if text and text.splitlines()[0] == first_line and contains in text:
                return True
            if self.proc.poll() is not None:
                raise WaitTimeout(f"xcon exited ({self.proc.returncode}):\n{self.log()}")
            return False

        def what() -> str:
            return f"health {first_line!r}/{contains!r}, have {seen[0]!r}\n{self.log()}"

        wait_until(ok, timeout, what)
        return seen[0] or ""

    def wait_log(self, needle: str, timeout: float = 5.0) -> str:
        """Wait for ``needle`` in the log; returns the whole log.  Raises WaitTimeout."""
        wait_until(
            lambda: needle in self.log(), timeout, lambda: f"{needle!r} in the log:\n{self.log()}"
        )
        return self.log()

    def counters(self, timeout: float = 5.0) -> str:
        """Ask for the counters (SIGUSR1) and return the lines logged in answer."""
        before = len(self.log())
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()[before:]
            if "counters" in text:
                time.sleep(0.1)  # let the whole block be written
                return self.log()[before:]
            time.sleep(0.02)
        raise AssertionError("no counters logged after SIGUSR1")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    # -- ending ---------------------------------------------------------------------
    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> XconProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


#: A reply line of ``xcon fake-router --ping``: the source, icmp_seq and round trip (ms).
REPLY = re.compile(r"^64 bytes from ([\d.]+): icmp_seq=(\d+) ttl=64 time=([\d.]+) ms$", re.M)


class FakeRouterProcess:
    """``python -m xcon fake-router ARGS`` (after ``prefix``: ``ip netns exec NS``)
    with its output in a file in ``workdir``."""

    def __init__(self, workdir: str, *args: str, prefix: Sequence[str] = ()) -> None:
        fd, self.path = tempfile.mkstemp(prefix="router-", suffix=".out", dir=workdir)
        self._out = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "xcon", "fake-router", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        with open(self.path, errors="replace") as f:
            return f.read()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 10) -> str:
        """Wait until ``pattern`` (a regex) matched ``count`` lines; returns the
        output.  Raises WaitTimeout (with the output), or at once if the router exited."""

        def seen() -> bool:
            if self.proc.poll() is not None:
                raise WaitTimeout(f"the fake router exited:\n{self.output()}")
            return len(re.findall(pattern, self.output(), re.M)) >= count

        wait_until(seen, timeout, lambda: f"{count} x {pattern!r} in:\n{self.output()}")
        return self.output()

    def replies(self) -> dict[int, float]:
        """The ping replies printed so far: icmp_seq -> round trip (ms)."""
        return {int(seq): float(ms) for _src, seq, ms in REPLY.findall(self.output())}

    def stop(self) -> int:
        """SIGTERM, and its exit code (killed after 10 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
