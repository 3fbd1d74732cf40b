"""/metrics: the exposition of a snapshot, and scrapes sharing one render."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from xcon.control.metrics import Snapshot, render
from xcon.stats import Lateness


def _snap(n: int = 3) -> Snapshot:
    snap = Snapshot(health=(2 * n, 2 * n, 2 * n), engine="epoll")
    snap.impairs.append(("vr0/1--vr1/2", "a2b", "duplicate 1%"))
    snap.captures.append(("vr0/1--vr1/2", 1, 30, 2))
    late = Lateness()
    late.observe(0.0, 10)
    late.observe(300e-6, 5)
    snap.lates.append(("vr0/1--vr1/2", "vr1/2", late.cumulative(), late.sum))
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


def test_render_of_a_snapshot():
    samples = _samples(render(_snap()))
    drops = (
        "xcon_link_transmit_drop_total",
        (("end", "vr1/2"), ("link", "vr0/1--vr1/2"), ("reason", "port_down")),
    )
    assert samples[drops] == 4
    assert samples[("xcon_link_admin_up", (("link", "vr1/1--vr2/2"),))] == 0
    assert samples[("xcon_link_admin_up", (("link", "vr0/1--vr1/2"),))] == 1
    dup = (
        "xcon_link_transmit_impaired_total",
        (("end", "vr0/1"), ("event", "duplicated"), ("link", "vr0/1--vr1/2")),
    )
    assert samples[dup] == 2
    assert samples[("xcon_capture_drops_total", (("link", "vr0/1--vr1/2"),))] == 2
    assert samples[("process_open_fds", ())] >= 3
    ls = (("end", "vr1/2"), ("link", "vr0/1--vr1/2"))
    bucket = "xcon_link_delay_lateness_seconds_bucket"
    assert samples[(bucket, (*ls[:1], ("le", "1e-05"), *ls[1:]))] == 10
    assert samples[(bucket, (*ls[:1], ("le", "0.0002"), *ls[1:]))] == 10
    assert samples[(bucket, (*ls[:1], ("le", "0.0005"), *ls[1:]))] == 15
    assert samples[(bucket, (*ls[:1], ("le", "+Inf"), *ls[1:]))] == 15
    assert samples[("xcon_link_delay_lateness_seconds_count", ls)] == 15
    assert abs(samples[("xcon_link_delay_lateness_seconds_sum", ls)] - 1.5e-3) < 1e-12


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

    monkeypatch.setattr(metrics, "render", counted)
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
