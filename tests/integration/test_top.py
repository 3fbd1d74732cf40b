"""``xcon ctl top`` in a real terminal: tmux runs it beside an xcon between
fake qemu NICs, one link carrying frames; what tmux's pane shows is read
back (``capture-pane``), keys are sent as a user types them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from xcon.testing.control import ctl, socket_path
from xcon.testing.fakeqemu import endpoint
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

TMUX = shutil.which("tmux")
need_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt install tmux)")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def three(peers, xcon):
    """xcon with three p2p links, all connected; frames flow on the second."""
    p = [peers() for _ in range(6)]
    links = [f"{endpoint(p[i])}--{endpoint(p[i + 1])}" for i in (0, 2, 4)]
    xc = xcon(*[arg for link in links for arg in ("--p2p", link)])
    xc.wait_health("0", contains="All 6 sockets connected")
    stream = Stream(p[2], p[3], size=500)
    yield xc, links, stream
    stream.stop()


@pytest.fixture
def tmux(tmp_path):
    """``tmux ARGS`` on a server of this test's own; killed after, whatever happened."""
    assert TMUX is not None
    name = f"xcon-test-{os.getpid()}-{tmp_path.name}"

    def run(*args: str) -> str:
        r = subprocess.run([TMUX, "-L", name, *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    yield run
    subprocess.run([TMUX, "-L", name, "kill-server"], capture_output=True, timeout=10)


def table(pane: str) -> list[list[str]]:
    """The rows under the LINK header, split into columns."""
    lines = pane.splitlines()
    start = next((i for i, x in enumerate(lines) if x.startswith("LINK ")), None)
    if start is None:
        return []
    return [x.split() for x in lines[start + 1 :] if x.strip()]


def rate(text: str) -> float:
    units = {"k": 1e3, "M": 1e6, "G": 1e9}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


@need_tmux
def test_top_in_tmux_shows_the_busy_link_first_sorts_resizes_and_quits(three, tmux, tmp_path):
    xc, links, _stream = three
    rc = tmp_path / "rc"
    command = (
        f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} -m xcon ctl --control "
        f"{socket_path(xc)} top --interval 0.3; echo $? > {rc}"
    )
    tmux("new-session", "-d", "-x", "160", "-y", "40", "-s", "top", command)

    def pane() -> str:
        return tmux("capture-pane", "-p", "-t", "top")

    def busy_first() -> bool:
        rows = table(pane())
        return len(rows) == 3 and rows[0][0] == links[1] and rate(rows[0][3]) > 0

    wait_until(busy_first, 15, lambda: f"the busy link first:\n{pane()}")
    shown = pane()
    assert shown.startswith("xcon ") and "3 links" in shown and "sorted by rate" in shown
    rows = table(shown)
    assert {r[0] for r in rows} == set(links)
    assert all(r[1] == "up" and r[2] == "up" for r in rows)
    assert all(rate(r[3]) == 0 and rate(r[5]) == 0 for r in rows[1:])
    assert rate(rows[0][4]) > rate(rows[0][3])  # bits/s: frames of 500 bytes
    # n: sorted by name
    tmux("send-keys", "-t", "top", "n")
    wait_until(lambda: "sorted by name" in pane(), 5, lambda: pane())
    assert [r[0] for r in table(pane())] == sorted(links)
    # too small a terminal: one line; back: the view again
    tmux("resize-window", "-t", "top", "-x", "30", "-y", "5")
    wait_until(lambda: "terminal too small (30x5)" in pane(), 5, lambda: pane())
    assert len([x for x in pane().splitlines() if x.strip()]) == 1
    tmux("resize-window", "-t", "top", "-x", "160", "-y", "40")
    wait_until(lambda: len(table(pane())) == 3, 5, lambda: pane())
    tmux("send-keys", "-t", "top", "q")
    wait_until(lambda: rc.exists() and rc.read_text() == "0\n", 5, lambda: f"exit code: {pane()}")


def test_top_once_prints_one_frame_and_unreachable_is_one_line(three, tmp_path):
    xc, links, stream = three

    def busy_first() -> bool:
        r = ctl(xc, "top", "--once")
        assert r.returncode == 0, r.stderr
        rows = table(r.stdout)
        return len(rows) == 3 and rows[0][0] == links[1] and rate(rows[0][3]) > 0

    wait_until(busy_first, 10, "the busy link first")
    stream.stop()
    assert xc.terminate() == 0
    r = ctl(xc, "top", "--once")
    assert r.returncode == 3 and r.stdout == ""
    assert (
        r.stderr.startswith("xcon ctl: cannot reach xcon at ") and len(r.stderr.splitlines()) == 1
    )
    r = ctl(xc, "top")  # no terminal here: said before xcon is asked
    assert r.returncode == 2 and r.stderr == (
        "xcon ctl: top draws on a terminal: run it in one, or use top --once\n"
    )
