"""``xcon demo``: the main job on its embedded default, and its error paths."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest


def demo(
    *args: str, timeout: float = 60, tmp: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TMPDIR=tmp) if tmp else None
    return subprocess.run(
        [sys.executable, "-m", "xcon", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_demo_runs_and_checks_every_frame(tmp_path):
    r = demo("--seconds", "2", "--size", "512", tmp=str(tmp_path))
    assert list(tmp_path.iterdir()) == [], "the demo leaves nothing behind in $TMPDIR"
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "linked by: xcon --p2p 127.0.77.1/1--127.0.77.2/1" in out
    assert "health file: All 2 sockets connected" in out
    assert "full speed" in out and "frames/s" in out
    summary = out[out.index("summary") :]
    assert "lost 0, corrupt 0, out of order 0" in summary
    m = re.search(r"frames sent ([\d,]+), received ([\d,]+)", summary)
    assert m, summary
    sent, received = (int(g.replace(",", "")) for g in m.groups())
    assert sent == received > 1000
    assert "xcon exited with 0 after SIGTERM" in summary
    assert "log" not in summary, "no path to a log that was removed"
    assert summary.rstrip().endswith("OK")


def test_demo_address_in_use_is_a_clear_error():
    s = socket.socket()
    try:
        s.bind(("127.0.77.1", 10001))
        s.listen()
        r = demo("--seconds", "1")
    finally:
        s.close()
    assert r.returncode == 1
    assert "cannot listen on 127.0.77.1/2:10001" in r.stdout
    assert "another demo running?" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seconds", "0"], "outside 1..3600"),
        (["--seconds", "soon"], "not a number in 1..3600"),
        (["--size", "63"], "outside 64..65535"),
        (["--size", "65536"], "outside 64..65535"),
        (["--size", "1k"], "not a whole number"),
    ],
)
def test_demo_bad_arguments_exit_2(args, message):
    r = demo(*args, timeout=20)
    assert r.returncode == 2
    assert r.stderr.startswith("xcon demo: error: ")
    assert message in r.stderr
    assert r.stderr.count("\n") == 1, "one line, no usage block"
    assert "Traceback" not in r.stderr
