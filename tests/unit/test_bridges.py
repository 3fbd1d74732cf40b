"""Every forwarding rule of the bridges, with fake ports: no sockets, no loop.

Runs on whichever fast path is loaded (``make test`` runs it on both)."""

from __future__ import annotations

import logging

import pytest

from xcon.app import Xcon
from xcon.bridges.hub import Hub
from xcon.bridges.p2p import P2PLink
from xcon.limits import MAX_FRAME
from xcon.testing.fakeport import FakeEngine, FakePort
from xcon.testing.frames import encode_frames, ether, numbered, split_frames, tagged


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def make_link(engine: FakeEngine, **kw) -> tuple[P2PLink, FakePort, FakePort]:
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b, **kw)
    link.start()
    return link, a, b


def frames_of(n: int, size: int = 100, first: int = 0) -> list[bytes]:
    return [numbered(first + i, size) for i in range(n)]


def flow(link: P2PLink, src: FakePort):
    return link.flows[src]


# -- p2p, no rewrite -------------------------------------------------------------------


def test_whole_frames_cross_both_ways_and_are_counted(engine):
    link, a, b = make_link(engine)
    fa, fb = frames_of(5, 200), frames_of(3, 1500, first=100)
    a.feed_frames(fa)
    b.feed_frames(fb)
    assert b.sent_frames() == fa
    assert a.sent_frames() == fb
    st = flow(link, a).stats
    assert (st.frames, st.bytes, dict(st.drops)) == (5, 1000, {})
    assert flow(link, b).stats.frames == 3


def test_zero_copy_one_send_per_batch(engine):
    _link, a, b = make_link(engine)
    a.feed_frames(frames_of(50, 64))
    assert b.offers == [50 * 68]  # the whole span in one call, headers included


def test_frames_split_over_reads_go_out_only_when_whole(engine):
    _link, a, b = make_link(engine)
    data = encode_frames(frames_of(3, 300))
    for i in range(0, len(data), 7):
        a.feed(data[i : i + 7])
        # Never anything but whole frames on the wire.
        split_frames(b.sent)
    assert b.sent_frames() == frames_of(3, 300)


def test_partial_send_holds_the_tail_and_pauses_the_source(engine):
    link, a, b = make_link(engine)
    frames = frames_of(4, 1000)
    b.capacity = 1500  # the peer takes 1.5 frames now
    a.feed_frames(frames)
    assert len(b.sent) == 1500
    assert not a.reading and b.writing  # backpressure on: a is not read
    assert flow(link, a).blocked
    assert flow(link, a).stats.frames == 0  # counted when the batch has gone
    b.drain(1000)  # still not everything
    assert len(b.sent) == 2500 and not a.reading
    b.drain()  # the peer reads the rest
    assert b.sent_frames() == frames
    assert a.reading and not b.writing  # backpressure off
    assert flow(link, a).stats.frames == 4
    a.feed_frames(frames_of(1, 60, first=9))  # reading goes on
    assert b.sent_frames()[-1] == numbered(9, 60)


def test_backpressure_does_not_touch_the_other_direction(engine):
    _link, a, b = make_link(engine)
    b.capacity = 0
    a.feed_frames(frames_of(2))
    assert not a.reading
    assert b.reading  # b -> a is independent
    b.feed_frames(frames_of(2, first=7))
    assert a.sent_frames() == frames_of(2, first=7)


def test_frames_toward_a_down_port_are_dropped_and_counted(engine):
    link, a, b = make_link(engine)
    b.set_down()
    a.feed_frames(frames_of(3))
    assert b.sent == b""
    st = flow(link, a).stats
    assert st.drops["port_down"] == 3 and st.frames == 0
    assert a.reading  # a down peer never stalls the source


def test_port_down_mid_batch_counts_delivered_and_lost_frames(engine):
    link, a, b = make_link(engine)
    frames = frames_of(4, 1000)  # 1004 bytes each on the wire
    b.capacity = 2 * 1004 + 500  # two whole frames and half of the third
    a.feed_frames(frames)
    b.set_down("reset")
    st = flow(link, a).stats
    assert st.frames == 2 and st.drops["port_down"] == 2
    assert a.reading and not flow(link, a).blocked
    # The new connection starts at a frame boundary: nothing of the old batch.
    b.sent.clear()
    b.capacity = None
    b.set_up()
    a.feed_frames(frames_of(1, 80, first=50))
    assert b.sent_frames() == [numbered(50, 80)]


def test_a_broken_send_takes_the_port_down_only_after_the_batch(engine):
    link, a, b = make_link(engine)
    seen = []
    real_down = link.port_down

    def port_down(port, reason):
        seen.append((port.name, reason, a.in_received))
        real_down(port, reason)

    link.port_down = port_down  # type: ignore[method-assign]
    b.break_next_send = "EPIPE"
    a.feed_frames(frames_of(3))
    assert seen == []  # nothing re-entered the bridge inside the push
    assert b.up
    engine.run_soon()  # the loop's next step
    assert seen == [("b", "EPIPE", False)]
    assert not b.up
    st = flow(link, a).stats
    assert st.drops["port_down"] == 3
    assert a.reading  # unblocked once the destination is gone


def test_whole_frames_from_a_source_that_goes_down_still_go_out(engine):
    link, a, b = make_link(engine)
    b.capacity = 0
    a.feed_frames(frames_of(2))
    a.set_down("peer left")
    assert not a.up
    b.drain()
    assert b.sent_frames() == frames_of(2)
    assert flow(link, a).stats.frames == 2


def test_partial_frame_of_a_source_that_goes_down_is_lost_alone(engine):
    _link, a, b = make_link(engine)
    data = encode_frames(frames_of(2, 500))
    a.feed(data[:-100])  # the second frame is cut
    a.set_down("reset")
    assert a.stats.partial_bytes == 404
    a.set_up()
    a.feed_frames(frames_of(1, 60, first=5))
    assert b.sent_frames() == [numbered(0, 500), numbered(5, 60)]


def test_zero_length_frames_are_dropped_and_counted(engine):
    link, a, b = make_link(engine)
    a.feed(b"\0\0\0\0" + encode_frames([ether(b"x")]) + b"\0\0\0\0")
    assert b.sent_frames() == [ether(b"x")]
    assert flow(link, a).stats.drops["zero_length"] == 2


def test_oversized_length_resets_the_source_after_forwarding_what_came_before(engine):
    link, a, b = make_link(engine)
    bad = (MAX_FRAME + 1).to_bytes(4, "big")
    a.feed(encode_frames(frames_of(2)) + bad + b"junk")
    assert b.sent_frames() == frames_of(2)
    engine.run_soon()
    assert not a.up and a.stats.protocol_errors == 1
    assert "exceeds 69632" in a.stats.last_error
    a.set_up()  # reconnected: starts aligned
    a.feed_frames(frames_of(1, first=3))
    assert b.sent_frames() == frames_of(2) + frames_of(1, first=3)


def test_largest_frame_passes(engine):
    _link, a, b = make_link(engine)
    big = ether(b"j" * (MAX_FRAME - 14))
    a.feed_frames([big])
    assert b.sent_frames() == [big]


def test_port_up_resumes_reading_unless_its_frames_still_wait(engine):
    link, a, b = make_link(engine)
    b.capacity = 0
    a.feed_frames(frames_of(1))
    assert not a.reading
    a.set_down()  # a reconnects while its earlier frame still waits for b
    a.set_up()
    assert not a.reading  # still paused: its frames have not gone yet
    b.drain()
    assert a.reading


def test_health_callback_on_every_state_change(engine):
    calls = []
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    P2PLink(a, b, on_state=lambda: calls.append((a.up, b.up))).start()
    b.set_down()
    b.set_up()
    assert calls == [(True, False), (True, True), (True, False), (True, True)]


# -- p2p with an access port --------------------------------------------------------------


def test_access_port_strips_its_vlan_and_drops_the_rest_by_reason(engine):
    trunk, access = FakePort(engine, "trunk"), FakePort(engine, "access")
    link = P2PLink(trunk, access, vlan=123, access=access)
    link.start()
    plain = ether(b"p" * 50)
    trunk.feed_frames(
        [
            tagged(plain, 123, pcp=5),
            plain,
            tagged(plain, 124),
            tagged(plain, 0),
            tagged(plain, 123, tpid=0x88A8),
            plain[:10],
            tagged(plain, 123)[:17],
        ]
    )
    assert access.sent_frames() == [plain]
    st = link.flows[trunk].stats
    assert st.frames == 1
    assert dict(st.drops) == {"untagged": 2, "other_vlan": 2, "runt": 2}


def test_access_port_frames_get_the_tag_toward_the_trunk(engine):
    trunk, access = FakePort(engine, "trunk"), FakePort(engine, "access")
    link = P2PLink(trunk, access, vlan=7, access=access)
    link.start()
    plain = ether(b"q" * 40)
    access.feed_frames([plain, tagged(plain, 99), b"short", ether(b"j" * (MAX_FRAME - 14))])
    assert trunk.sent_frames() == [tagged(plain, 7), tagged(tagged(plain, 99), 7)]
    assert dict(link.flows[access].stats.drops) == {"runt": 1, "too_big": 1}


def test_vlan_rewrite_keeps_backpressure_and_order(engine):
    trunk, access = FakePort(engine, "trunk"), FakePort(engine, "access")
    link = P2PLink(trunk, access, vlan=10, access=access)
    link.start()
    frames = [numbered(i, 1000) for i in range(300)]  # more than one out buffer
    trunk.capacity = 5000
    access.feed_frames(frames[:150])
    assert not access.reading and trunk.writing
    for _ in range(200):
        trunk.drain(7000)
        if access.reading:
            break
    trunk.drain()
    access.feed_frames(frames[150:])
    trunk.drain()
    assert trunk.sent_frames() == [tagged(f, 10) for f in frames]
    assert link.flows[access].stats.frames == 300


def test_vlan_frames_queued_for_a_port_that_goes_down_are_counted_lost(engine):
    trunk, access = FakePort(engine, "trunk"), FakePort(engine, "access")
    link = P2PLink(trunk, access, vlan=10, access=access)
    link.start()
    trunk.capacity = 0
    access.feed_frames(frames_of(3))
    trunk.set_down()
    st = link.flows[access].stats
    assert st.frames == 0 and st.drops["port_down"] == 3
    assert access.reading


# -- hub ------------------------------------------------------------------------------------


def make_hub(engine: FakeEngine, n: int = 3, **kw) -> tuple[Hub, list[FakePort]]:
    ports = [FakePort(engine, f"p{i}") for i in range(n)]
    hub = Hub(ports, **kw)  # type: ignore[arg-type]
    hub.start()
    return hub, ports


def test_hub_floods_to_every_other_port(engine):
    hub, (p0, p1, p2) = make_hub(engine)
    p0.feed_frames(frames_of(3))
    assert p1.sent_frames() == frames_of(3) == p2.sent_frames()
    assert p0.sent == b""
    assert hub.rx[p0].frames == 3 and hub.tx[p1].frames == 3


def test_hub_never_pauses_a_source_and_tail_drops_for_the_slow_port_only(engine):
    hub, (p0, p1, p2) = make_hub(engine, queue_bytes=64 * 1024)
    p2.capacity = 0  # p2 stopped reading
    frames = frames_of(100, 1000)
    for i in range(0, 100, 10):
        p0.feed_frames(frames[i : i + 10])
        assert p0.reading
    assert p1.sent_frames() == frames
    dropped = hub.tx[p2].drops["queue_full"]
    assert 0 < dropped < 100
    p2.drain()
    got = p2.sent_frames()
    assert got == frames[: len(got)]  # a prefix: whole frames, in order, tail dropped
    assert len(got) + dropped == 100


def test_hub_queues_keep_frames_of_different_sources_apart(engine):
    _hub, (p0, p1, p2) = make_hub(engine)
    p2.capacity = 1500  # cut in the middle of a frame
    p0.feed_frames(frames_of(2, 1000))
    p1.feed_frames(frames_of(2, 1000, first=10))
    p2.drain()
    assert p2.sent_frames() == frames_of(2, 1000) + frames_of(2, 1000, first=10)


def test_hub_drops_the_share_of_a_down_port(engine):
    hub, (p0, p1, p2) = make_hub(engine)
    p2.capacity = 0
    p1.feed_frames(frames_of(2))  # queued for p2
    p2.set_down()
    assert hub.tx[p2].drops["port_down"] == 2
    p0.feed_frames(frames_of(3))
    assert hub.tx[p2].drops["port_down"] == 5
    assert p1.sent_frames() == frames_of(3)


def test_hub_counts_zero_length_frames(engine):
    hub, (p0, p1, _p2) = make_hub(engine)
    p0.feed(b"\0\0\0\0" + encode_frames([ether(b"z")]))
    assert hub.rx[p0].drops["zero_length"] == 1
    assert p1.sent_frames() == [ether(b"z")]


# -- --debug and --trace ---------------------------------------------------------------------


def test_debug_logs_every_frame_with_its_verdict(engine, caplog):
    trunk, access = FakePort(engine, "trunk"), FakePort(engine, "access")
    link = P2PLink(trunk, access, vlan=5, access=access, debug=True)
    link.start()
    caplog.set_level(logging.DEBUG, logger="xcon.frames")
    payload = bytes(range(100))
    trunk.feed_frames([tagged(ether(payload), 5), ether(payload), tagged(ether(payload), 6)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "forwarded, vlan 5 -> untagged" in lines[0] and "vlan 5 pcp 0" in lines[0]
    assert "dropped: untagged" in lines[1]
    assert "dropped: other_vlan (vlan 6" in lines[2]
    # 64 bytes of hexdump: the whole IPv4 header region, not cut at 32.
    assert len(lines[1].split("| ")[-1].split()) == 64
    caplog.clear()
    access.feed_frames([ether(payload)])
    assert "forwarded, untagged -> vlan 5 (outer)" in caplog.records[0].getMessage()
    caplog.clear()
    trunk.set_down()
    caplog.clear()
    access.feed_frames([ether(payload)])
    assert "dropped: port_down" in caplog.records[0].getMessage()


def test_trace_logs_only_links_whose_counters_moved_with_rates(engine, caplog):
    app = Xcon(engine=engine, health_path=None, trace_interval=2.0)
    a, b, c, d = (FakePort(engine, n) for n in "abcd")
    for x, y in ((a, b), (c, d)):
        app.add_bridge(P2PLink(x, y, on_state=app.update_health))
    caplog.set_level(logging.INFO, logger="xcon")
    engine.call_soon(lambda: a.feed_frames(frames_of(10, 1000)))
    app.run()
    caplog.clear()
    app.trace()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1  # only a->b moved
    assert lines[0].startswith("trace a->b: frames=10 bytes=10000")
    assert "(5 frames/s 0.040 Mbit/s)" in lines[0]
    caplog.clear()
    app.trace()
    assert caplog.records == []  # quiet while nothing changes
