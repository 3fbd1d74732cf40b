"""Links changed while xcon runs, with fake ports: cable pull (admin down/up) on a
p2p link, and links added and removed in the app without touching the others."""

from __future__ import annotations

import pytest

from xcon.app import Xcon
from xcon.bridges.p2p import P2PLink
from xcon.errors import BadRequest, Conflict, NotFound
from xcon.linkspec import End
from xcon.monitor import Monitor
from xcon.testing.fakeport import FakeEngine, FakePort
from xcon.testing.frames import ether, numbered, tagged


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def frames(n: int, first: int = 0, size: int = 100) -> list[bytes]:
    return [numbered(first + i, size) for i in range(n)]


def make_link(engine: FakeEngine, **kw) -> tuple[P2PLink, FakePort, FakePort]:
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b, **kw)
    link.start()
    return link, a, b


# -- admin down / up on a p2p link -----------------------------------------------------------


@pytest.mark.parametrize("vlan", [None, 123])
def test_admin_down_drops_both_ways_keeps_reading_and_counts(engine, vlan):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b, vlan=vlan, access=b if vlan else None)
    link.start()
    to_b = [tagged(f, vlan) for f in frames(3)] if vlan else frames(3)
    assert link.set_admin(False) is True
    assert link.set_admin(False) is False  # already down
    assert not link.admin_up
    a.feed_frames(to_b)
    b.feed_frames(frames(4, first=100))
    assert a.sent == b"" and b.sent == b""
    assert a.reading and b.reading, "sources are still read while the cable is pulled"
    assert link.flows[a].stats.drops["admin_down"] == 3
    assert link.flows[b].stats.drops["admin_down"] == 4
    assert link.flows[a].stats.frames == 0
    assert link.set_admin(True) is True
    a.feed_frames(to_b)
    assert len(b.sent_frames()) == 3
    assert link.admin_changes == 2


def test_admin_down_finishes_a_batch_already_being_sent(engine):
    """A send cut short when the cable is pulled is finished (a frame is never
    cut, the stream stays aligned); what arrives after it is dropped."""
    link, a, b = make_link(engine)
    b.capacity = 150
    a.feed_frames(frames(3))  # 312 bytes on the wire, 150 go now
    assert link.flows[a].blocked and not a.reading
    link.set_admin(False)
    b.drain()  # the peer reads: the rest of the batch goes
    assert len(b.sent_frames()) == 3
    assert a.reading
    a.feed_frames(frames(2, first=3))
    assert len(b.sent_frames()) == 3
    assert link.flows[a].stats.drops["admin_down"] == 2


def test_admin_down_with_the_destination_down_is_still_admin_down(engine):
    link, a, b = make_link(engine)
    b.set_down()
    link.set_admin(False)
    a.feed_frames(frames(2))
    assert link.flows[a].stats.drops == {"admin_down": 2}


# -- the app's links ---------------------------------------------------------------------------


class FakeApp:
    """An :class:`Xcon` on a fake engine whose new links get fake ports."""

    def __init__(self, engine: FakeEngine, tmp_path) -> None:
        self.health = tmp_path / "health"
        self.app = Xcon(engine=engine, health_path=str(self.health))  # type: ignore[arg-type]
        self.ports: dict[str, FakePort] = {}
        self.opened: list[list[str]] = []

        def make_port(services, end: End) -> FakePort:
            name = str(end).rsplit(":", 1)[0] if end.vid is not None else str(end)
            p = FakePort(engine, name)  # as make_port names them: no VLAN id
            self.ports[name] = p
            return p

        def open_ports(ports) -> None:
            self.opened.append([p.name for p in ports])

        self.app.make_port = make_port  # type: ignore[assignment]
        self.app.open_ports = open_ports
        self.app.running = True  # as inside run(): links start when added

    def health_text(self) -> str:
        return self.health.read_text()


@pytest.fixture
def lab(engine, tmp_path) -> FakeApp:
    return FakeApp(engine, tmp_path)


def test_add_link_starts_it_and_updates_health(lab):
    link = lab.app.add_link("vr1/1--vr2/1")
    assert link.name == "vr1/1--vr2/1" and link.source == "api"
    assert lab.opened == [["vr1/1", "vr2/1"]]
    assert lab.health_text() == "0\nAll 2 sockets connected\n"
    lab.app.add_link("vr1/2--vr3/1:123")
    assert list(lab.app.links) == ["vr1/1--vr2/1", "vr1/2--vr3/1:123"]
    assert lab.health_text() == "0\nAll 4 sockets connected\n"
    lab.ports["vr1/2"].feed_frames([tagged(ether(b"x" * 50), 123)])
    assert lab.ports["vr3/1"].sent_frames() == [ether(b"x" * 50)]


def test_remove_link_closes_only_its_ports_and_health_never_dips(lab):
    lab.app.add_link("vr1/1--vr2/1")
    lab.app.add_link("vr1/2--vr3/1")
    writes: list[str] = []
    real = lab.app.health._write
    lab.app.health._write = lambda text: (writes.append(text), real(text))  # type: ignore[method-assign]
    lab.app.remove_link("vr1/2--vr3/1")
    assert list(lab.app.links) == ["vr1/1--vr2/1"]
    assert not lab.ports["vr1/2"].up and not lab.ports["vr3/1"].up
    assert lab.ports["vr1/1"].up and lab.ports["vr2/1"].up
    assert writes == ["0\nAll 2 sockets connected\n"], "no unhealthy moment while removing"
    # the untouched link still forwards
    lab.ports["vr1/1"].feed_frames(frames(2))
    assert len(lab.ports["vr2/1"].sent_frames()) == 2


def test_link_names_are_found_in_any_spelling(lab):
    lab.app.add_link("VR1/1--vr2/1:7")
    assert lab.app.find("VR1/1--vr2/1:7").name == "VR1/1--vr2/1:7"
    with pytest.raises(NotFound, match="no link 'vr9/1--vr2/1'"):
        lab.app.find("vr9/1--vr2/1")


def test_a_link_is_found_by_its_ends_in_either_order_vlan_id_optional(lab):
    plain = lab.app.add_link("vr1/1--vr2/1")
    vlan = lab.app.add_link("vr1/2--vr3/1:123")
    assert lab.app.find("vr2/1--vr1/1") is plain
    assert lab.app.find("vr3/1:123--vr1/2") is vlan
    assert lab.app.find("vr1/2--vr3/1") is vlan
    assert lab.app.find("vr3/1--vr1/2") is vlan
    # a VLAN id given must be the link's, on the same end
    for wrong in ("vr1/2--vr3/1:124", "vr1/2:123--vr3/1", "vr1/1--vr2/1:7"):
        with pytest.raises(NotFound, match=f"no link '{wrong}'"):
            lab.app.find(wrong)
    with pytest.raises(NotFound, match="no link 'vr1/1--vr3/1'"):
        lab.app.find("vr1/1--vr3/1")  # one end of each link is not a link


def test_a_name_that_matches_nothing_lists_the_closest(lab):
    lab.app.add_link("vr1/1--vr2/1")
    lab.app.add_link("vr1/2--vr3/1:123")
    lab.app.add_link("tcp:127.0.0.1:9--unix:/run/lab/x")
    with pytest.raises(NotFound) as e:
        lab.app.find("vr1/1--vr2/9")
    assert str(e.value).startswith("no link 'vr1/1--vr2/9' (closest: vr1/1--vr2/1")  # best first
    assert "tcp:" not in str(e.value)
    with pytest.raises(NotFound) as e:
        lab.app.find("vr3/1--vr1/3")  # reversed: compared in both orders
    assert "(closest: vr1/2--vr3/1:123, vr1/1--vr2/1)" in str(e.value)  # it shares vr3/1
    with pytest.raises(NotFound) as e:
        lab.app.find("hub0")  # not a link spec: only its spelling is compared
    assert str(e.value) == "no link 'hub0'"


@pytest.mark.parametrize(
    "spec, err, match",
    [
        ("vr1/1vr2/1", BadRequest, "missing '--'"),
        ("vr1/1--vr1/1", BadRequest, "both ends are the same"),
        ("vr1/1--vr2/1", Conflict, "link vr1/1--vr2/1 exists"),
        ("vr1/1--vr3/1", Conflict, r"vr1/1 is already in link 'vr1/1--vr2/1'"),
        ("tcp:vr2:10001--vr4/1", Conflict, r"already in link 'vr1/1--vr2/1' \(as vr2/1\)"),
    ],
)
def test_add_link_refusals_change_nothing(lab, spec, err, match):
    lab.app.add_link("vr1/1--vr2/1")
    before = dict(lab.app.links)
    with pytest.raises(err, match=match):
        lab.app.add_link(spec)
    assert lab.app.links == before
    assert len(lab.opened) == 1


def test_a_removed_links_nics_can_be_linked_again(lab):
    lab.app.add_link("vr1/1--vr2/1")
    lab.app.remove_link("vr1/1--vr2/1")
    lab.app.add_link("vr1/1--vr3/1")
    assert list(lab.app.links) == ["vr1/1--vr3/1"]


def test_only_p2p_links_can_be_removed_or_pulled(lab, engine):
    from xcon.bridges.hub import Hub

    hub = Hub([FakePort(engine, "h1"), FakePort(engine, "h2")])
    lab.app.add_bridge(hub)
    with pytest.raises(Conflict, match="only p2p links can be removed"):
        lab.app.remove_link(hub.name)
    with pytest.raises(Conflict, match="only p2p links"):
        lab.app.set_admin(hub.name, False)


def test_a_hubs_ends_are_impaired_by_name_and_shown_per_end(lab, engine):
    from xcon.bridges.hub import Hub
    from xcon.control.api import impair_json
    from xcon.impair.spec import parse_netem
    from xcon.linkspec import parse_end

    ends = tuple(parse_end(e) for e in ("h1/1", "h2/1"))
    hub = Hub([FakePort(engine, "h1/1"), FakePort(engine, "h2/1")])
    link = lab.app.add_bridge(hub, name="hub", ends=ends)
    with pytest.raises(BadRequest, match=r"hub is a hub: name one of its ends \(h1/1, h2/1\)"):
        lab.app.set_impair("hub", "a2b", parse_netem("delay 1ms"))
    with pytest.raises(BadRequest, match="hub has no end 'h3/1': one of h1/1, h2/1"):
        lab.app.set_impair("hub", "a2b", parse_netem("delay 1ms"), end="h3/1")
    lab.app.set_impair("hub", "b2a", parse_netem("delay 1ms"), end="h2/1")
    assert impair_json(link) == {
        "h1/1:a2b": None,
        "h1/1:b2a": None,
        "h2/1:a2b": None,
        "h2/1:b2a": "delay 1ms",
    }
    lab.app.add_link("vr1/1--vr2/1")
    with pytest.raises(BadRequest, match="is a p2p link: its directions are a2b and b2a"):
        lab.app.set_impair("vr1/1--vr2/1", "a2b", parse_netem("delay 1ms"), end="vr1/1")


def test_set_admin_and_reset_counters(lab):
    lab.app.add_link("vr1/1--vr2/1")
    link, changed = lab.app.set_admin("vr1/1--vr2/1", False)
    assert changed and link.p2p is not None and not link.p2p.admin_up
    lab.ports["vr1/1"].feed_frames(frames(3))
    assert link.p2p.flows[lab.ports["vr1/1"]].stats.drops["admin_down"] == 3
    lab.app.reset_counters()
    assert link.p2p.flows[lab.ports["vr1/1"]].stats.dropped == 0
    assert lab.ports["vr1/1"].stats.connects == 0


def test_monitors_are_keyed_by_end(lab):
    mon = Monitor("vr1", 4000, "p01")
    link = lab.app.add_link("vr1/1--vr2/1:5", monitors={"vr1/1": mon, "vr2/1": mon})
    assert link.monitors == {"vr1/1": mon, "vr2/1": mon}
    with pytest.raises(BadRequest, match="not an end of"):
        lab.app.add_link("vr1/2--vr2/2", monitors={"vr9/1": mon})
