"""The events hub (xcon.events): lines as the API sends them, filters, and
each subscriber's bound: one that falls behind is dropped with a last line,
counted, and the others go on."""

from __future__ import annotations

import json

from xcon.events import Events, event_line, rfc3339


def lines(data: bytes | None) -> list[dict]:
    return [json.loads(x) for x in (data or b"").splitlines()]


def test_nobody_listening_makes_nothing():
    calls = []
    hub = Events(clock=lambda: calls.append(1) or 0.0)
    hub.emit("link.added", "a/1--b/1", reason="api")
    assert calls == []  # not even the time is read


def test_a_line_has_the_time_type_link_end_and_reason():
    hub = Events(clock=lambda: 1796457600.1239)
    sub = hub.subscribe()
    woken = []
    sub.set_wakeup(lambda: woken.append(1))
    hub.emit("link.down", "r1/1--r2/1", "r1/1", "connection reset")
    [doc] = lines(sub.pull())
    assert doc == {
        "time": "2026-12-05T08:00:00.123Z",
        "type": "link.down",
        "link": "r1/1--r2/1",
        "end": "r1/1",
        "reason": "connection reset",
    }
    assert woken == [1]
    assert event_line(doc) == "2026-12-05T08:00:00.123Z link.down r1/1--r2/1 r1/1: connection reset"
    assert sub.pull() is None


def test_rfc3339_rounds_down_to_the_millisecond_in_utc():
    assert rfc3339(0.9999) == "1970-01-01T00:00:00.999Z"
    assert rfc3339(86400.0) == "1970-01-02T00:00:00.000Z"


def test_filters_by_link_and_by_type_or_family():
    hub = Events()
    only_l1 = hub.subscribe(links=["l1"])
    downs = hub.subscribe(types=["link.down"])
    captures = hub.subscribe(types=["capture"])
    hub.emit("link.down", "l1", "e", "gone")
    hub.emit("link.down", "l2", "e", "gone")
    hub.emit("capture.started", "l2", reason="capture 1 to stream")
    hub.emit("config.reloaded", reason="x")
    assert [(d["type"], d["link"]) for d in lines(only_l1.pull())] == [("link.down", "l1")]
    assert [d["link"] for d in lines(downs.pull())] == ["l1", "l2"]
    assert [d["type"] for d in lines(captures.pull())] == ["capture.started"]


def test_a_subscriber_that_falls_behind_is_dropped_counted_and_told():
    hub = Events()
    slow = hub.subscribe(limit=5)
    fast = hub.subscribe(limit=5)
    for i in range(5):
        hub.emit("admin.changed", "l", reason=str(i))
        assert len(lines(fast.pull())) == 1
    assert not slow.ended
    hub.emit("admin.changed", "l", reason="5")  # the sixth: one too many for slow
    assert slow.ended and slow.overflowed
    assert hub.dropped_clients == 1
    assert hub.subscribers == [fast]
    got = lines(slow.pull())
    assert [d["reason"] for d in got[:5]] == ["0", "1", "2", "3", "4"]
    assert got[5]["type"] == "events.overflow" and "5 events behind" in got[5]["reason"]
    assert len(got) == 6 and slow.pull() is None
    # it hears nothing more; the other one goes on
    hub.emit("admin.changed", "l", reason="6")
    assert slow.pull() is None
    assert [d["reason"] for d in lines(fast.pull())] == ["5", "6"]
    assert hub.dropped_clients == 1


def test_a_pull_takes_whole_lines_up_to_its_size():
    hub = Events()
    sub = hub.subscribe(limit=3000)
    for _ in range(2000):
        hub.emit("impair.set", "l", reason="x" * 100)
    first = sub.pull()
    assert first is not None and 60_000 < len(first) <= 64 * 1024 and first.endswith(b"\n")
    rest = b""
    while (piece := sub.pull()) is not None:
        rest += piece
    assert len(lines(first)) + len(lines(rest)) == 2000


def test_gone_and_close_forget_the_subscribers():
    hub = Events()
    a, b = hub.subscribe(), hub.subscribe()
    hub.emit("link.added", "l")
    a.gone()
    assert hub.subscribers == [b] and a.pull() is None
    hub.close()
    assert b.ended and hub.subscribers == []
    assert len(lines(b.pull())) == 1  # what it held is still sent before the end
    assert hub.dropped_clients == 0
