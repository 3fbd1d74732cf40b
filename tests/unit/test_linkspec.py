"""Link and endpoint syntax: every upstream form, and a clear message for each mistake."""

from __future__ import annotations

import pytest

from xcon.limits import qemu_tcp_port
from xcon.linkspec import (
    Endpoint,
    LinkSpec,
    ListenEnd,
    ListenUnixEnd,
    RawEnd,
    SpecError,
    TapEnd,
    TcpEnd,
    UdpEnd,
    UnixEnd,
    VxlanEnd,
    check_distinct,
    check_hub,
    host_key,
    parse_end,
    parse_endpoint,
    parse_link,
)
from xcon.testing.errors import one_line_error


@pytest.mark.parametrize(
    "text,left,right",
    [
        ("vr1/1--vr2/1", Endpoint("vr1", 1), Endpoint("vr2", 1)),
        ("vr1/2--vr3/1", Endpoint("vr1", 2), Endpoint("vr3", 1)),
        ("vr1/1--vr2/1:123", Endpoint("vr1", 1), Endpoint("vr2", 1, 123)),
        ("vr1/1:123--vr2/1", Endpoint("vr1", 1, 123), Endpoint("vr2", 1)),
        ("r1/1--app/1", Endpoint("r1", 1), Endpoint("app", 1)),
        ("10.0.0.1/100--10.0.0.2/55535", Endpoint("10.0.0.1", 100), Endpoint("10.0.0.2", 55535)),
        ("[::1]/1--[2001:db8::2]/3:4094", Endpoint("::1", 1), Endpoint("2001:db8::2", 3, 4094)),
        ("my-router.lab/7--x_y/8", Endpoint("my-router.lab", 7), Endpoint("x_y", 8)),
        ("vr1./1--VR-2/2", Endpoint("vr1.", 1), Endpoint("VR-2", 2)),
        ("xn--bcher-kva/1", None, None),
        ("bücher.example/1--a/1", Endpoint("bücher.example", 1), Endpoint("a", 1)),
        ("[fe80::1%eth0]/1--[::ffff:10.0.0.1]/2", Endpoint("fe80::1%eth0", 1), None),
        ("a1/0001--b/1", Endpoint("a1", 1), Endpoint("b", 1)),
        ("3com/1--a.b.c-d.e1/1", Endpoint("3com", 1), Endpoint("a.b.c-d.e1", 1)),
        ("x" * 63 + "/1--" + ".".join(["y" * 63] * 3) + "/1", None, None),
    ],
)
def test_valid_links(text, left, right):
    if "--" not in text or text.startswith("xn--"):
        end = parse_endpoint(text)
        assert end.host == text.split("/")[0]
        return
    spec = parse_link(text)
    if left is not None:
        assert spec.left == left
    if right is not None:
        assert spec.right == right
    if not text.startswith("a1/0"):
        assert str(spec) == text


def test_nic_100_and_above_reachable():
    assert qemu_tcp_port(parse_endpoint("vr1/100").nic) == 10100
    assert qemu_tcp_port(parse_endpoint("vr1/1").nic) == 10001


@pytest.mark.parametrize(
    "text,needle",
    [
        ("vr1/1vr2/1", "missing '--'"),
        ("vr1/1", "missing '--'"),
        ("vr--1/1--vr2/1", "cannot appear in a name"),
        ("vr1/0--vr2/1", "outside 1..55535"),
        ("vr1/55536--vr2/1", "outside 1..55535"),
        ("vr1/1--vr2/1:0", "outside 1..4094"),
        ("vr1/1--vr2/1:4095", "outside 1..4094"),
        ("vr1/1:10--vr2/1:20", "both sides"),
        ("vr1--vr2/1", "expected HOST/N"),
        ("vr1/x--vr2/1", "expected HOST/N"),
        ("/1--vr2/1", "expected HOST/N"),
        ("[vr1]/1--vr2/1", "IPv6"),
        ("::1/1--vr2/1", "in brackets"),
        # a third '-' makes the second host start with '-'
        ("a/1---b/1", "'-b' is not a valid host name (a label cannot start or end with '-')"),
        ("a-/1--b/1", "cannot start or end with '-'"),
        # whitespace and line breaks are not part of a name
        (" a/1--b/1", "' a' is not a valid host name"),
        ("a/1--b /1", "'b ' is not a valid host name"),
        ("a/1--b/1 ", "expected HOST/N"),
        ("a/1--b/1\n", "expected HOST/N"),
        ("a\nb/1--c/1", "not a valid host name"),
        ("a/1--b\t/1", "not a valid host name"),
        ("a*b/1--c/1", "letters, digits, '-', '_' and '.' only"),
        ("a..b/1--c/1", "empty label"),
        (".a/1--c/1", "empty label"),
        ("a../1--c/1", "empty label"),
        ("x" * 64 + "/1--c/1", "a label has at most 63 characters"),
        (".".join(["y" * 63] * 4) + "/1--c/1", "at most 253 characters"),
        # IP literals are checked, not handed to the resolver
        ("[zz:zz]/1--a/1", "[zz:zz] is not a valid IPv6 address"),
        ("[1::2::3]/1--a/1", "not a valid IPv6 address"),
        ("[::1%]/1--a/1", "IPv6 zone"),
        ("[fe80::1%a b]/1--a/1", "IPv6 zone"),
        ("[fe80::1%a\nb]/1--a/1", "IPv6 zone"),
        ("1.2.3.999/1--a/1", "'1.2.3.999' is not a valid IPv4 address"),
        ("010.0.0.1/1--a/1", "not a valid IPv4 address"),
        ("10/1--a/1", "'10' is not a valid IPv4 address"),
        ("1.2.3.4./1--a/1", "not a valid IPv4 address"),
        ("a.123/1--b/1", "not a valid IPv4 address"),
        # numbers: ASCII digits, bounded, never converted at any length
        ("a/" + "9" * 5000 + "--b/1", "outside 1..55535"),
        ("a/1--b/1:" + "9" * 5000, "outside 1..4094"),
        ("a/\u0661--b/1", "expected HOST/N"),
        # internationalised names must convert with IDNA
        ("\udcff/1--b/1", "IDNA"),
        ("\u05d0a/1--c/1", "IDNA"),
        ("a\u00a0b/1--c/1", "not a valid host name"),
    ],
)
def test_invalid_links(text, needle):
    assert needle in one_line_error(SpecError, parse_link, text)


def refusal(texts: list[str]) -> str:
    """Why check_distinct refuses the links ``texts`` (one line)."""
    return one_line_error(SpecError, lambda: check_distinct([parse_link(t) for t in texts]))


def test_distinct_nics_pass():
    # the seed README's topology: one router, several NICs, each in one link
    check_distinct([parse_link(t) for t in ("vr1/1--vr2/1", "vr1/2--vr3/1", "vr2/2--vr3/2")])


@pytest.mark.parametrize(
    "texts,needle",
    [
        (["a/1--a/1"], "both ends are the same NIC"),
        (["a/1--b/1", "c/1--A/1"], "is in two links ('a/1--b/1' and 'c/1--A/1')"),
        (["a/1--b/1:10", "b/1--c/1"], "b/1 is in two links"),
        (["[2001:db8::1]/3--b/1", "c/1--[2001:DB8::1]/3:9"], "[2001:DB8::1]/3 is in two links"),
        # the same NIC written two ways
        (["[::1]/1--[0:0::1]/1"], "both ends are the same NIC"),
        (["[::1]/1--[0000::0001]/1:5"], "both ends are the same NIC"),
        (["vr1./1--VR1/1"], "both ends are the same NIC"),
        (["[::ffff:127.0.0.1]/1--127.0.0.1/1"], "both ends are the same NIC"),
        (["Bücher/1--a/1", "b/1--bücher./1"], "bücher./1 is in two links"),
    ],
)
def test_a_nic_in_two_links_is_refused(texts, needle):
    assert needle in refusal(texts)


def test_host_key_normalises():
    assert host_key("[::1]"[1:-1]) == host_key("0:0::1") == "::1"
    assert host_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert host_key("VR1.") == host_key("vr1") == "vr1"
    assert host_key("Bücher") == host_key("xn--bcher-kva") == "xn--bcher-kva"
    assert parse_endpoint("[0:0::1]/3").key == parse_endpoint("[::1]/3").key == ("::1", 3)


def test_hub_ports_checked():
    check_hub([parse_endpoint(t, allow_vid=False) for t in ("a/1", "a/2", "b/1")])
    for texts, needle in (
        (["a/1"], "at least two ports"),
        (["a/1", "b/1", "a/1"], "lists 'a/1' twice"),
        (["[::1]/1", "[0::1]/1"], "the same NIC twice ('[::1]/1' and '[0::1]/1')"),
        (["A./4", "a/4"], "the same NIC twice"),
    ):
        with pytest.raises(SpecError) as e:
            check_hub([parse_endpoint(t, allow_vid=False) for t in texts])
        assert needle in str(e.value)


def test_idna_name_and_its_ascii_form_are_one_nic():
    a, b = parse_endpoint("Bücher/1"), parse_endpoint("XN--BCHER-KVA/1")
    assert a.key == b.key
    with pytest.raises(SpecError, match="is in two links"):
        check_distinct([LinkSpec(a, parse_endpoint("c/1")), LinkSpec(parse_endpoint("d/1"), b)])


# -- other kinds of end ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,end",
    [
        ("tcp:vr1:10001", TcpEnd("vr1", 10001)),
        ("tcp:[::1]:4000", TcpEnd("::1", 4000)),
        ("tcp:10.0.0.1:1", TcpEnd("10.0.0.1", 1)),
        ("unix:/run/lab/vr1-nic1.sock", UnixEnd("/run/lab/vr1-nic1.sock")),
        ("unix:relative.sock", UnixEnd("relative.sock")),
        ("udp:127.0.0.1:40001@40002", UdpEnd("127.0.0.1", 40001, 40002)),
        ("udp:vr1:40001@0.0.0.0:40002", UdpEnd("vr1", 40001, 40002, "0.0.0.0")),
        ("udp:[::1]:5@[::1]:6", UdpEnd("::1", 5, 6, "::1")),
        ("vxlan:192.0.2.7/100", VxlanEnd("192.0.2.7", 100)),
        ("vxlan:hostb:14789/100", VxlanEnd("hostb", 100, 14789, 14789)),
        ("vxlan:[2001:db8::7]:4789/16777215@4790", VxlanEnd("2001:db8::7", 16777215, 4789, 4790)),
        ("vxlan:[2001:db8::7]/0", VxlanEnd("2001:db8::7", 0)),
        ("vxlan:10.0.0.2/5@10.0.0.1:4790", VxlanEnd("10.0.0.2", 5, 4789, 4790, "10.0.0.1")),
        ("tap:lab0", TapEnd("lab0")),
        ("raw:eth1", RawEnd("eth1")),
        ("listen:10001", ListenEnd(10001)),
        ("listen:127.0.0.1:10001", ListenEnd(10001, "127.0.0.1")),
        ("listen:[::1]:10001", ListenEnd(10001, "::1")),
        ("listen:unix:/tmp/x.sock", ListenUnixEnd("/tmp/x.sock")),
    ],
)
def test_other_kinds_parse_and_print_back(text, end):
    assert parse_end(text) == end
    assert parse_end(str(end)) == end
    spec = parse_link(f"vr1/1--{text}")
    assert spec.right == end and spec.left == Endpoint("vr1", 1)
    assert parse_link(f"{text}--vr1/1:7").vid == 7


@pytest.mark.parametrize(
    "text,needle",
    [
        ("foo:bar", "unknown kind 'foo'"),
        ("tcp:vr1", "expected tcp:HOST:PORT"),
        ("tcp:vr1:0", "not a number in 1..65535"),
        ("tcp:vr1:65536", "not a number in 1..65535"),
        ("tcp:::1:5", "expected tcp:HOST:PORT"),
        ("tcp:[vr1]:5", "brackets are for IPv6"),
        ("tcp:a_b!:5", "not a valid host name"),
        ("unix:", "empty unix socket path"),
        ("unix:" + "x" * 108, "at most 107 bytes"),
        ("unix:a\tb", "no control characters"),
        ("udp:1.2.3.4:5", "local port to receive on is required"),
        ("udp:1.2.3.4:5@", "not a number in 1..65535"),
        ("udp:1.2.3.4:5@vr1:6", "a local address is an IP address"),
        ("udp:1.2.3.4@6", "expected udp:REMOTEHOST:PORT"),
        ("vxlan:1.2.3.4", "expected vxlan:REMOTE[:PORT]/VNI"),
        ("vxlan:1.2.3.4/16777216", "VNI '16777216' is not a number in 0..16777215"),
        ("vxlan:1.2.3.4/-1", "is not a number"),
        ("vxlan:1.2.3.4:0/5", "not a number in 1..65535"),
        ("vxlan:1.2.3.4/5@x", "not a number in 1..65535"),
        ("tap:", "not a valid interface name"),
        ("tap:" + "x" * 16, "not a valid interface name (1 to 15 bytes)"),
        ("raw:a%d", "not a valid interface name"),
        ("raw:..", "not a valid interface name"),
        ("listen:", "not a number in 1..65535"),
        ("listen:vr1:5", "a local address is an IP address"),
        ("listen:unix:", "empty unix socket path"),
        ("tap:lab0:100", "not a valid interface name"),
    ],
)
def test_malformed_ends_are_one_line_errors(text, needle):
    assert needle in one_line_error(SpecError, parse_link, f"vr1/1--{text}")


@pytest.mark.parametrize(
    "texts,needle",
    [
        (["vr1/1--tcp:vr1:10001"], "both ends are the same NIC"),
        (["vr1/1--a/1", "tcp:VR1.:10001--b/1"], "is in two links"),
        (["unix:/tmp/a.sock--a/1", "b/1--listen:unix:/tmp/a.sock"], "is in two links"),
        (["udp:1.2.3.4:5@6000--a/1", "b/1--udp:1.2.3.5:6000@6000"], "local UDP port 6000"),
        (["vxlan:1.2.3.4/7--a/1", "b/1--vxlan:1.2.3.5/7"], "VNI 7 can be used once"),
        (["tap:x--a/1", "b/1--raw:x"], "an interface can be one end only"),
        (["listen:7--a/1", "b/1--listen:127.0.0.1:7"], "a listening end can be bound once"),
        (["tap:x--tap:x"], "both ends are the same end"),
    ],
)
def test_a_resource_in_two_places_is_refused(texts, needle):
    assert needle in refusal(texts)


def test_vxlan_ends_share_a_local_port_with_distinct_vnis():
    check_distinct([parse_link(t) for t in ("a/1--vxlan:h/1", "a/2--vxlan:h/2", "a/3--vxlan:g/3")])


def test_hub_takes_any_kind_once():
    check_hub([parse_end(t, allow_vid=False) for t in ("a/1", "tap:h0", "udp:1.2.3.4:5@6")])
    with pytest.raises(SpecError, match="the same end twice"):
        check_hub([parse_end(t) for t in ("tap:h0", "a/1", "raw:h0")])
