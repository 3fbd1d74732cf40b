"""The table of end kinds: the parser, the help, the ports and the README's
table of ends all come from its rows; the ports of one engine share its services."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcon.cli import build_parser
from xcon.errors import ModeError
from xcon.linkspec import (
    KIND_TABLE,
    KINDS,
    SpecError,
    kind_of,
    make_port,
    open_ports,
    parse_end,
)
from xcon.ports.dgram import DatagramPort
from xcon.ports.qemu import QemuPort
from xcon.ports.services import PortServices
from xcon.testing.fakeport import FakeEngine, FakePort

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("kind", KIND_TABLE, ids=lambda k: k.name)
def test_each_kind_syntax_is_in_the_readme(kind):
    """The README's table of ends writes each kind's syntax as the help does."""
    assert f"`{kind.syntax}`" in README.read_text()


def test_the_prefix_words_are_the_kinds_in_table_order():
    assert KINDS == ("tcp", "unix", "udp", "vxlan", "tap", "raw", "listen")
    with pytest.raises(SpecError, match=r"known: tcp, unix, udp, vxlan, tap, raw, listen, or"):
        parse_end("bogus:1")


@pytest.mark.parametrize("kind", KIND_TABLE, ids=lambda k: k.name)
def test_each_kind_syntax_starts_with_its_prefix(kind):
    if kind.prefix:
        assert kind.syntax.startswith(kind.prefix + ":")
    else:
        assert parse_end("vr1/1").kind == kind.name  # the form without KIND:


@pytest.mark.parametrize(
    "text",
    [
        "vr1/1:5",
        "tcp:vr1:4001",
        "unix:/run/a.sock",
        "udp:127.0.0.1:4001@4002",
        "vxlan:192.0.2.7/1004",
        "tap:lab0",
        "raw:eth1",
        "listen:4001",
        "listen:unix:/run/b.sock",
    ],
)
def test_a_parsed_end_belongs_to_the_row_of_its_kind(text):
    end = parse_end(text)
    kind = kind_of(end)
    assert kind.name == end.kind and isinstance(end, kind.end)
    rest = text[len(kind.prefix) + 1 :] if kind.prefix else text
    assert kind.parse(rest, text) == end


def test_the_help_lists_every_kind_with_its_help_line():
    text = " ".join(build_parser().format_help().split())
    for kind in KIND_TABLE:
        assert f"{kind.syntax} ({kind.help})" in text


@pytest.mark.parametrize("kind", KIND_TABLE, ids=lambda k: k.name)
def test_each_kind_names_the_function_that_makes_its_port(kind):
    make = kind.factory()
    assert callable(make) and make.__module__ == kind.port.partition(":")[0]


def test_the_ports_of_one_engine_share_a_gate_per_host():
    services = PortServices(FakeEngine())
    ports = [make_port(services, parse_end(t)) for t in ("vr1/1", "VR1./2", "tcp:vr1:4001")]
    gate = services.host_gate("vr1")
    assert all(isinstance(p, QemuPort) and p.gate is gate for p in ports)
    other = make_port(services, parse_end("vr2/1"))
    assert isinstance(other, QemuPort) and other.gate is not gate
    unix = make_port(services, parse_end("unix:/run/a.sock"))
    assert isinstance(unix, QemuPort) and unix.gate is not gate and unix.gate.live == 0


def test_two_engines_share_nothing():
    one, two = PortServices(FakeEngine()), PortServices(FakeEngine())
    assert one.host_gate("vr1") is not two.host_gate("vr1")
    assert one.listeners is not two.listeners and one.local is not two.local
    assert one.vxlan is not two.vxlan
    a = make_port(one, parse_end("vxlan:192.0.2.7/1004"))
    b = make_port(two, parse_end("vxlan:192.0.2.7/1005"))
    assert isinstance(a, DatagramPort) and isinstance(b, DatagramPort)
    assert a.groups is one.vxlan and b.groups is two.vxlan
    udp = make_port(one, parse_end("udp:127.0.0.1:4001@4002"))
    assert isinstance(udp, DatagramPort) and udp.groups is None


class Opened(FakePort):
    def prepare(self) -> None:
        self.prepared = True


class Refused(FakePort):
    def prepare(self) -> None:
        raise ModeError(f"{self.name}: cannot open")


def test_open_ports_closes_every_port_when_one_cannot_open():
    engine = FakeEngine()
    ports = [Opened(engine, "a"), Refused(engine, "b"), Opened(engine, "c")]
    with pytest.raises(ModeError, match="b: cannot open"):
        open_ports(ports)
    assert getattr(ports[0], "prepared", False) and not hasattr(ports[2], "prepared")
    assert all(p._closed for p in ports)


def test_open_ports_opens_each_port_once():
    engine = FakeEngine()
    ports = [Opened(engine, "a"), Opened(engine, "b")]
    open_ports(ports)
    assert all(p.prepared and not p._closed for p in ports)
