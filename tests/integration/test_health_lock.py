"""One xcon per health file: a second xcon started in the same directory (the
same ./health) refuses with one line naming the first one's pid, exit 1,
and leaves the first one's health file and control socket alone.  Xcons in
one directory with health files of their own all run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from xcon.testing.process import XconProcess
from xcon.testing.wait import wait_until

HEALTHY = "0\nAll 2 sockets connected\n"


def end(q) -> str:
    return f"{q.host}/{q.nic}"


def read(path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def xcon_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "xcon", *args, "--log-level", "warning"]


def refused(cwd, *args: str) -> tuple[int, str]:
    """Run xcon in ``cwd``; it must end within a few seconds (one that runs fails the test)."""
    proc = subprocess.Popen(
        xcon_command(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the second xcon ran beside the first one")
    assert out == ""
    return proc.returncode, err


@pytest.fixture
def first(peers, tmp_path):
    """An xcon in tmp_path with the defaults (./health, ./xcon.sock), healthy."""
    a, b = peers(), peers()
    xc = XconProcess(["--p2p", f"{end(a)}--{end(b)}"], cwd=str(tmp_path))
    try:
        xc.wait_health("0", contains="All 2 sockets connected")
        yield xc
    finally:
        xc.kill()


def test_a_second_xcon_in_the_same_directory_refuses_and_names_the_first(first, peers, tmp_path):
    c, d = peers(start=False), peers(start=False)  # addresses nobody listens on
    rc, err = refused(tmp_path, "--p2p", f"{end(c)}--{end(d)}")
    assert rc == 1, err
    assert err.splitlines() == [
        f"xcon: error: another xcon (pid {first.pid}) uses the health file {tmp_path}/health: "
        "run this one in another directory, or give it its own --health-file and --control"
    ]
    assert first.health() == HEALTHY
    assert first.proc.poll() is None
    ctl = subprocess.run(
        [sys.executable, "-m", "xcon", "ctl", "--control", str(tmp_path / "xcon.sock"), "health"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert ctl.returncode == 0, ctl.stderr  # the first one's socket still answers
    assert first.terminate() == 0
    assert first.health() == "1\nxcon is not running (SIGTERM)\n"
    assert not (tmp_path / "health.lock").exists(), "a clean exit removes the lock file"


def test_the_lock_ends_with_the_process_however_it_ends(first, peers, tmp_path):
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert (tmp_path / "health.lock").exists()  # left behind, held by nobody
    c, d = peers(), peers()
    lock = tmp_path / "health.lock"
    with XconProcess(["--p2p", f"{end(c)}--{end(d)}"], cwd=str(tmp_path)) as again:
        wait_until(lambda: read(lock) == f"{again.pid}\n", 15, lambda: f"{lock}: {read(lock)!r}")
        again.wait_log(f"p2p link {end(c)}--{end(d)}")
        assert again.terminate() == 0
        assert again.health() == "1\nxcon is not running (SIGTERM)\n"


def test_xcons_in_one_directory_with_their_own_health_files_all_run(first, peers, tmp_path):
    c, d = peers(), peers()
    other = tmp_path / "other-health"
    with open(tmp_path / "other.log", "wb") as log:
        proc = subprocess.Popen(
            xcon_command("--p2p", f"{end(c)}--{end(d)}", "--health-file", str(other)),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: read(other) == HEALTHY, 15, lambda: f"{other}: {read(other)!r}")
        assert first.health() == HEALTHY
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert read(other) == "1\nxcon is not running (SIGTERM)\n"
        assert first.health() == HEALTHY
        assert os.path.exists(tmp_path / "health.lock")  # still the first one's
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
