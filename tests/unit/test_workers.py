"""The supervisor's pure parts (xcon.workers): how many workers ``auto``
makes, how links are dealt, how a link is found, how the workers' metrics
become one exposition."""

from __future__ import annotations

import pytest

from xcon.workers import MAX_WORKERS, auto_workers, merge_metrics, owner_of, share


def test_auto_picks_from_cores_and_links_and_one_is_the_default(monkeypatch):
    from xcon.cli import build_parser, check

    monkeypatch.setattr("xcon.limits.usable_cpus", lambda: 4)

    def workers(*argv: str) -> int:
        return check(build_parser().parse_args(list(argv))).workers

    assert workers("--p2p", "a/1--b/1", "c/1--d/1", "e/1--f/1") == 1  # the default
    assert workers("--p2p", "a/1--b/1", "--workers", "auto") == 1
    assert workers("--p2p", "a/1--b/1", "c/1--d/1", "e/1--f/1", "--workers", "auto") == 3
    assert workers("--p2p", *[f"a/{i}--b/{i}" for i in range(1, 9)], "--workers", "auto") == 4
    assert workers("--hub", "a/1", "b/1", "c/1", "--workers", "auto") == 1


@pytest.mark.parametrize(
    ("units", "cpus", "want"),
    [
        (1, 16, 1),
        (0, 16, 1),
        (6, 1, 1),
        (2, 2, 2),
        (6, 16, 6),
        (100, 16, 16),
        (500, 256, MAX_WORKERS),
    ],
)
def test_auto_is_one_per_core_at_most_one_per_link(units, cpus, want):
    assert auto_workers(units, cpus) == want


def test_links_are_dealt_in_turn():
    assert share(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert share([], 3) == [[], [], []]


def test_vxlan_links_of_one_local_port_stay_in_one_worker():
    links = [
        "10.0.0.1/1--vxlan:192.0.2.1/100",
        "10.0.0.2/1--vxlan:192.0.2.1/200",
        "10.0.0.3/1--10.0.0.4/1",
        "10.0.0.5/1--vxlan:192.0.2.2/300@4790",
        "10.0.0.6/1--vxlan:192.0.2.1/400",
    ]
    shares = share(links, 3)
    assert shares == [[links[0], links[1], links[4]], [links[2]], [links[3]]]


def test_a_link_is_found_by_its_name_or_its_ends_in_either_order():
    shares = [["10.0.0.1/1--10.0.0.2/1"], ["10.0.0.3/1--10.0.0.4/1", "hubname"]]
    assert owner_of("10.0.0.3/1--10.0.0.4/1", shares) == 1
    assert owner_of("10.0.0.2/1--10.0.0.1/1", shares) == 0
    assert owner_of("hubname", shares) == 1
    assert owner_of("10.0.0.9/1--10.0.0.1/1", shares) is None
    assert owner_of("not a link", shares) is None


W0 = """# HELP xcon_frames_total Frames forwarded.
# TYPE xcon_frames_total counter
xcon_frames_total{link="a",direction="a2b"} 5
# HELP xcon_links Links.
# TYPE xcon_links gauge
xcon_links 1
# HELP xcon_latency_seconds A histogram.
# TYPE xcon_latency_seconds histogram
xcon_latency_seconds_bucket{le="0.1"} 2
xcon_latency_seconds_sum 0.05
xcon_latency_seconds_count 2
"""
W1 = W0.replace('link="a"', 'link="b"').replace(" 5\n", " 7\n")


def test_metrics_each_family_once_every_sample_labelled():
    text = merge_metrics([(0, W0), (1, W1)], [("xcon_workers", "gauge", "Workers.", [("", 2)])])
    lines = text.splitlines()
    assert lines.count("# TYPE xcon_frames_total counter") == 1
    assert lines.count("# HELP xcon_links Links.") == 1
    assert 'xcon_frames_total{link="a",direction="a2b",worker="0"} 5' in lines
    assert 'xcon_frames_total{link="b",direction="a2b",worker="1"} 7' in lines
    assert 'xcon_links{worker="0"} 1' in lines and 'xcon_links{worker="1"} 1' in lines
    assert 'xcon_latency_seconds_bucket{le="0.1",worker="1"} 2' in lines
    assert 'xcon_latency_seconds_sum{worker="0"} 0.05' in lines
    # a family's samples follow its own head, whichever worker they came from
    start = lines.index("# TYPE xcon_links gauge")
    assert lines[start + 1 : start + 3] == ['xcon_links{worker="0"} 1', 'xcon_links{worker="1"} 1']
    assert lines[-2:] == ["# TYPE xcon_workers gauge", "xcon_workers 2"]


def _parcel(
    links: dict[str, list[str]], base: int, control: int = 0, lock: bool = False
) -> tuple[dict, list[int]]:
    """A worker's parcel: made-up descriptors from ``base`` on."""
    fds: list[int] = []
    state: dict = {"version": 1, "pid": 1, "seed": 7, "links": {}, "control": [], "lock": None}
    for name, ends in links.items():
        ports = {}
        for end in ends:
            fds.append(base + len(fds))
            ports[end] = {"fd": len(fds) - 1, "pending": "", "end": end}
        state["links"][name] = {"ports": ports, "flows": {}}
    for _ in range(control):
        fds.append(base + len(fds))
        state["control"].append({"fd": len(fds) - 1, "address": "x", "unlink": None})
    if lock:
        fds.append(base + len(fds))
        state["lock"] = {"fd": len(fds) - 1, "path": "health.lock"}
    return state, fds


def _fd_of(state: dict, fds: list[int], link: str, end: str) -> int:
    return fds[state["links"][link]["ports"][end]["fd"]]


def test_parcels_merge_and_split_keep_each_end_with_its_descriptor():
    from xcon.handover import merge_parcels, split_parcel

    w0 = _parcel({"a--b": ["a", "b"]}, 100, control=1)
    w1 = _parcel({"c--d": ["c", "d"], "e--f": ["e", "f"]}, 200, control=1, lock=True)
    before = {
        (link, end): _fd_of(state, fds, link, end)
        for state, fds in (w0, w1)
        for link, saved in state["links"].items()
        for end in saved["ports"]
    }
    state, fds, left = merge_parcels([w0, w1])
    assert state["control"] == [] and state["lock"] is None
    assert sorted(left) == sorted([w0[1][2], w1[1][4], w1[1][5]])  # control sockets and the lock
    assert len(fds) == 6 and not set(fds) & set(left)
    for (link, end), fd in before.items():
        assert _fd_of(state, fds, link, end) == fd
    parts = split_parcel(state, fds, [["e--f"], ["a--b", "c--d", "gone"]])
    assert [sorted(p[0]["links"]) for p in parts] == [["e--f"], ["a--b", "c--d"]]
    for sub, sub_fds in parts:
        assert len(sub_fds) == 2 * len(sub["links"])
        for link, saved in sub["links"].items():
            for end in saved["ports"]:
                assert _fd_of(sub, sub_fds, link, end) == before[(link, end)]
    # splitting leaves the merged parcel as it was
    assert _fd_of(state, fds, "e--f", "e") == before[("e--f", "e")]
