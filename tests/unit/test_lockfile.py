"""The health file's lock: one holder at a time, the holder's pid for the
others, nothing left once released, and a file no process holds locks nothing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from xcon import cli
from xcon.errors import ModeError
from xcon.lockfile import LockFile, LockHeld


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    path = str(tmp_path / "health.lock")
    first = LockFile.acquire(path)
    try:
        assert (tmp_path / "health.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockHeld) as e:
            LockFile.acquire(path)  # another open file: refused even in this process
        assert e.value.pid == os.getpid()
    finally:
        first.release()
    assert not (tmp_path / "health.lock").exists()
    LockFile.acquire(path).release()  # free again


def test_another_process_holding_it_is_named(tmp_path):
    path = str(tmp_path / "health.lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from xcon.lockfile import LockFile; LockFile.acquire(sys.argv[1]); "
            "print('held', flush=True); sys.stdin.read()",
            path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(LockHeld) as e:
            LockFile.acquire(path)
        assert e.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The kernel let go with the process; its file stays behind and locks nothing.
    assert (tmp_path / "health.lock").exists()
    lock = LockFile.acquire(path)
    assert (tmp_path / "health.lock").read_text() == f"{os.getpid()}\n"
    lock.release()


def test_release_leaves_a_file_it_no_longer_holds(tmp_path):
    path = tmp_path / "health.lock"
    lock = LockFile.acquire(str(path))
    path.unlink()
    path.write_text("someone else's\n")
    lock.release()
    assert path.read_text() == "someone else's\n"
    lock.release()  # twice: nothing more


def test_the_cli_names_the_holder_in_one_line_exit_1(tmp_path):
    health = tmp_path / "health"
    held = LockFile.acquire(f"{health}.lock")
    try:
        with pytest.raises(ModeError) as e:
            cli.lock_health_file(str(health))
    finally:
        held.release()
    assert e.value.exit_code == 1
    assert str(e.value) == (
        f"another xcon (pid {os.getpid()}) uses the health file {health}: run this one in "
        "another directory, or give it its own --health-file and --control"
    )


def test_a_lock_file_that_cannot_be_made_is_logged_and_xcon_runs_without(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="xcon")
    health = tmp_path / "missing-dir" / "health"
    assert cli.lock_health_file(str(health)) is None
    [record] = [r for r in caplog.records if r.name == "xcon"]
    assert record.getMessage() == (
        f"cannot lock the health file ({health}.lock: No such file or directory): "
        "another xcon could share it"
    )
