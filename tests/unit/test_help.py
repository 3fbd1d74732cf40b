"""Help text a newcomer reads first: the usage line names every subcommand,
and each entry point runs them from the same table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import xcon
from xcon import cli, commands
from xcon import main as entry

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(xcon.__file__)))


def test_the_usage_lists_the_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    usage = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert usage[0].startswith("usage: xcon [-h] [--p2p LINK")
    tail = [line.split()[:2] for line in usage if line.startswith("       xcon ")]
    assert tail == [["xcon", name] for name in commands.SUBCOMMANDS]


@pytest.mark.parametrize("run", [cli.main, entry.main], ids=["xcon.cli", "xcon.main"])
def test_both_entry_points_run_a_subcommand(run, monkeypatch):
    seen = []
    monkeypatch.setattr("xcon.demo.main", lambda argv: seen.append(argv) or 7)
    monkeypatch.setattr("xcon.control.client.main", lambda argv: seen.append(argv) or 8)
    assert run(["demo", "--seconds", "2"]) == 7
    assert run(["ctl", "links", "--json"]) == 8
    assert seen == [["--seconds", "2"], ["links", "--json"]]


def test_demo_help_is_plain_text():
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": SOURCE_ROOT},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: xcon demo ")
    assert "``" not in r.stdout and ":mod:" not in r.stdout
    assert "fake qemu routers on loopback" in r.stdout
