"""The health file when it cannot be written: what it says, when it is tried
again, what is logged (a failing rename stands for a full filesystem; the
real one is in tests/adversarial/test_faults.py, as root)."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from xcon.health import RETRY_EVERY, HealthFile


class Timers:
    """``call_later`` that keeps the callbacks for the test to run."""

    def __init__(self) -> None:
        self.due: list[tuple[float, object]] = []

    def __call__(self, delay: float, fn):
        entry = (delay, fn)
        self.due.append(entry)

        class Handle:
            def cancel(_self) -> None:
                if entry in self.due:
                    self.due.remove(entry)

        return Handle()

    def run(self) -> None:
        due, self.due = self.due, []
        for _delay, fn in due:
            fn()  # type: ignore[operator]


@pytest.fixture
def full(monkeypatch):
    """``full[0] = True``: every rename fails as on a full filesystem."""
    state = [False]
    replace = os.replace

    def failing(src, dst):
        if state[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    return state


def read(path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def test_a_failed_write_is_retried_until_it_succeeds_and_logged_once(tmp_path, full, caplog):
    path = tmp_path / "health"
    timers = Timers()
    hf = HealthFile(str(path), timers)
    hf.update(2, 2)
    assert read(path) == "0\nAll 2 sockets connected\n" and hf.ok
    full[0] = True
    with caplog.at_level(logging.INFO, logger="xcon.health"):
        hf.update(1, 2)
        # it said healthy and cannot say otherwise: no file (unhealthy to the check)
        assert read(path) is None
        assert hf.error == f"cannot write {path}: No space left on device"
        assert hf.errors == 1 and not hf.ok
        assert [d for d, _ in timers.due] == [RETRY_EVERY]
        hf.update(1, 2)  # the same content: waits for the retry, no second timer
        assert len(timers.due) == 1
        timers.run()  # still full
        assert hf.errors == 2 and len(timers.due) == 1
        full[0] = False
        timers.run()
    assert read(path) == "1\nExpected 2 sockets but only 1 connected\n"
    assert hf.ok and hf.error is None and timers.due == []
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"health file: cannot write {path}: No space left on device; retrying every 1 s",
        f"removed health file {path} until it can be written (it must not say healthy)",
        messages[2],
    ]
    assert messages[2].startswith(f"health file {path} written again, after 2 failed writes in")
    assert sorted(os.listdir(tmp_path)) == ["health"]  # no temporary file left


def test_an_unhealthy_file_is_kept_while_healthy_cannot_be_written(tmp_path, full):
    path = tmp_path / "health"
    timers = Timers()
    hf = HealthFile(str(path), timers)
    hf.update(1, 2)
    full[0] = True
    hf.update(2, 2)
    assert read(path) == "1\nExpected 2 sockets but only 1 connected\n"  # errs unhealthy
    assert not hf.ok
    hf.update(1, 2)  # back to what the file says: right again, nothing to retry
    assert hf.ok and timers.due == []


def test_at_exit_a_file_that_cannot_say_not_running_is_removed(tmp_path, full, caplog):
    path = tmp_path / "health"
    timers = Timers()
    hf = HealthFile(str(path), timers)
    hf.update(1, 2)
    full[0] = True
    with caplog.at_level(logging.ERROR, logger="xcon.health"):
        hf.stopped("SIGTERM")
    assert read(path) is None and timers.due == []
    assert [r.getMessage() for r in caplog.records] == [
        f"health file: cannot write {path}: No space left on device",
        f"removed health file {path}: xcon could not write that it stopped",
    ]
    hf.update(2, 2)  # nothing is written after the end
    assert read(path) is None


def test_no_path_writes_nothing(tmp_path):
    hf = HealthFile(None)
    hf.update(1, 2)
    hf.stopped("SIGTERM")
    assert hf.ok and os.listdir(tmp_path) == []
