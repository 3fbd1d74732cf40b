"""xcon ctl top's view (xcon.control.top) from the API's link list: each
link's rates both ways, drops, carrier, and the sort keys."""

from __future__ import annotations

from xcon.control.top import SORTS, frame, row


def end(name: str, rx: float = 0.0, tx: float = 0.0, **kw) -> dict:
    return {
        "name": name,
        "rx_frames_per_s": rx,
        "rx_bits_per_s": rx * 8000,
        "tx_frames_per_s": tx,
        "tx_bits_per_s": tx * 8000,
        "rx_drops": kw.get("rx_drops", {}),
        "tx_drops": kw.get("tx_drops", {}),
        "carrier": kw.get("carrier"),
    }


def link(name: str, *ends: dict, kind: str = "p2p", state: str = "up", **kw) -> dict:
    return {
        "name": name,
        "kind": kind,
        "state": state,
        "admin": kw.get("admin", "up"),
        "ends": list(ends),
        "impair": kw.get("impair", {}),
        "captures": [],
    }


def test_a_p2p_link_shows_what_each_end_sends_and_a_hub_what_goes_in_and_out():
    p2p = row(
        link(
            "a/1--b/1",
            end("a/1", rx=10, tx=3, rx_drops={"admin_down": 2}, carrier={"carrier": "on"}),
            end("b/1", rx=3, tx=10, tx_drops={"port_down": 5}, carrier={"carrier": "off"}),
            impair={"a2b": "delay 10ms", "b2a": None},
        )
    )
    assert p2p["a2b"] == (10, 80000) and p2p["b2a"] == (3, 24000)
    assert (p2p["fps"], p2p["drops"], p2p["carrier"]) == (13, 7, "on/off")
    assert p2p["impair"] == "a2b delay 10ms"
    hub = row(
        link(
            "hub",
            end("a/1", rx=1, tx=4),
            end("b/1", rx=2, tx=3),
            end("c/1", rx=0, tx=3),
            kind="hub",
        )
    )
    assert hub["a2b"][0] == 3 and hub["b2a"][0] == 10 and hub["carrier"] == "-"


def test_rows_sorted_busiest_first_and_by_each_key():
    links = [
        link("c/1--d/1", end("c/1"), end("d/1"), state="down"),
        link("a/1--b/1", end("a/1", rx=5), end("b/1", tx=5, rx_drops={"other_vlan": 9})),
        link("e/1--f/1", end("e/1", rx=50), end("f/1", rx=50)),
    ]
    status = {"xcon": "9.9", "uptime_s": 90061}

    def names(sort: str) -> list[str]:
        lines = frame(status, links, sort)
        assert lines[2].startswith("LINK ")
        return [x.split()[0] for x in lines[3:]]

    head = frame(status, links)[0]
    assert head.startswith("xcon 9.9  up 1d 01:01:01  3 links  105 frames/s  sorted by rate")
    assert names("r") == ["e/1--f/1", "a/1--b/1", "c/1--d/1"]
    assert names("d") == ["a/1--b/1", "c/1--d/1", "e/1--f/1"]
    assert names("n") == ["a/1--b/1", "c/1--d/1", "e/1--f/1"]
    assert names("s")[0] == "c/1--d/1"
    assert set(SORTS) == {"r", "b", "d", "n", "s"}
    assert frame(status, [])[-1] == "no links"
