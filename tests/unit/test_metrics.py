"""Rendering /metrics apart from the loop: the forked renderer gives the same
exposition as rendering in-process, with the process figures of xcon itself
(not of the short-lived child), and without holding xcon's descriptors."""

from __future__ import annotations

import os
import socket

from prometheus_client.parser import text_string_to_metric_families

from xcon.control.metrics import Snapshot, render, render_apart


def _snap(n: int = 3) -> Snapshot:
    snap = Snapshot(health=(2 * n, 2 * n, 2 * n), engine="epoll")
    snap.impairs.append(("vr0/1--vr1/2", "a2b", "duplicate 1%"))
    snap.captures.append(("vr0/1--vr1/2", 1, 30, 2))
    for i in range(n):
        ends = [
            (
                f"vr{i}/1",
                10 + i,
                1000 + i,
                20 + i,
                2000 + i,
                {"zero_length": 1},
                {},
                True,
                1,
                3,
                {"duplicated": 2},
            ),
            (
                f"vr{i + 1}/2",
                20 + i,
                2000 + i,
                10 + i,
                1000 + i,
                {},
                {"port_down": 4},
                False,
                0,
                2,
                {},
            ),
        ]
        snap.links.append((f"vr{i}/1--vr{i + 1}/2", i != 1, ends))
    return snap


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text.decode())
        for s in fam.samples
    }


def test_forked_render_matches_in_process_render():
    snap = _snap()
    here, apart = _samples(render(snap)), _samples(render_apart(snap))
    assert here.keys() == apart.keys()
    for key, value in here.items():
        if not key[0].startswith("process_"):
            assert apart[key] == value, key
    assert (
        apart[
            (
                "xcon_link_transmit_drop_total",
                (("end", "vr1/2"), ("link", "vr0/1--vr1/2"), ("reason", "port_down")),
            )
        ]
        == 4
    )
    assert apart[("xcon_link_admin_up", (("link", "vr1/1--vr2/2"),))] == 0


def test_forked_render_reports_this_process():
    socks = [socket.socket() for _ in range(40)]  # make this process's fd count distinctive
    try:
        mine = len(os.listdir("/proc/self/fd"))
        samples = _samples(render_apart(_snap()))
        fds = samples[("process_open_fds", ())]
        # The child closed everything but its pipe; it would report about 4.
        assert abs(fds - mine) <= 3, (fds, mine)
        start = samples[("process_start_time_seconds", ())]
        assert start == _samples(render(_snap()))[("process_start_time_seconds", ())]
    finally:
        for s in socks:
            s.close()


def test_forked_render_holds_no_descriptor_of_the_parent(monkeypatch):
    # The child renders with a stand-in that answers with the descriptors it holds.
    import xcon.control.metrics as metrics

    monkeypatch.setattr(
        metrics, "render", lambda snap, pid=None: " ".join(os.listdir("/proc/self/fd")).encode()
    )
    socks = [socket.socket() for _ in range(10)]
    mine = {s.fileno() for s in socks}
    try:
        held = {int(fd) for fd in render_apart(_snap()).split()}
    finally:
        for s in socks:
            s.close()
    # stdin/stdout/stderr, the pipe's write end, and the directory being listed.
    assert len(held) <= 5, held
    assert not held & mine


def test_scrapes_during_a_render_share_it(monkeypatch, tmp_path):
    """Ten scrapes at once cost one render, and each gets the whole answer."""
    import xcon.control.metrics as metrics
    from xcon.app import Xcon
    from xcon.control.api import ControlAPI
    from xcon.control.server import Request
    from xcon.testing.loop import run_until

    renders = []

    def counted(snap):
        renders.append(snap)
        return render(snap)

    monkeypatch.setattr(metrics, "render_apart", counted)
    app = Xcon(health_path=str(tmp_path / "health"))
    api = ControlAPI(app, "epoll")
    try:
        answers = []
        for _ in range(10):
            pending = api(Request("GET", "/metrics", {}, {}, b""))
            pending._then(answers.append)
        run_until(app.engine, lambda: len(answers) == 10, "ten answers")
        assert len(renders) == 1
        assert all(a.status == 200 and a.body == answers[0].body for a in answers)
        assert b"xcon_links 0.0" in answers[0].body
        pending = api(Request("GET", "/metrics", {}, {}, b""))  # the next scrape renders again
        pending._then(answers.append)
        run_until(app.engine, lambda: len(answers) == 11, "one more")
        assert len(renders) == 2
    finally:
        api.close()
        app.close()
