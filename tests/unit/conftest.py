"""Fixtures of the command-line tests: ``xcon`` run in-process, with the mode
builders and the host configuration replaced by stand-ins."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xcon import app, cli, modes, netconf

#: The builders of xcon.modes, one per mode.
BUILDERS = ("p2p", "hub", "tap_listen", "raw_listen")


def _forbidden(*a, **k):
    raise AssertionError("something was created before validation finished")


@pytest.fixture
def nothing_created(monkeypatch):
    """Creating the app, building a mode or configuring the host fails the test."""
    monkeypatch.setattr(app, "Xcon", _forbidden)
    for name in BUILDERS:
        monkeypatch.setattr(modes, name, _forbidden)
    monkeypatch.setattr(netconf, "apply", _forbidden)


@pytest.fixture
def built(monkeypatch) -> list[tuple]:
    """The builders record their calls, ``(mode, args after the app, keywords)``;
    the app is created but never runs, and the host is never configured."""
    calls: list[tuple] = []
    for name in BUILDERS:
        monkeypatch.setattr(modes, name, lambda *a, _n=name, **k: calls.append((_n, a[1:], k)))
    monkeypatch.setattr(netconf, "apply", _forbidden)
    monkeypatch.setattr(app.Xcon, "run", lambda self: self.engine.close() or 0)
    monkeypatch.setattr("xcon.rlimit.ensure_nofile", lambda n: 1024)
    monkeypatch.setattr(cli, "setup_logging", lambda level: None)
    return calls


@pytest.fixture
def usage_error(capsys, nothing_created) -> Callable[[list[str]], str]:
    """``usage_error(argv)``: xcon given ``argv`` exits 2 with one line on stderr,
    ``xcon: error: ...``, before creating anything; returns that line."""

    def check(argv: list[str]) -> str:
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("xcon: error: "), err
        return lines[0]

    return check
