"""Link and endpoint syntax: every upstream form, and a clear message for each mistake."""

from __future__ import annotations

import pytest

from xcon.linkspec import Endpoint, SpecError, check_distinct, parse_endpoint, parse_link


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
    ],
)
def test_valid_links(text, left, right):
    spec = parse_link(text)
    assert (spec.left, spec.right) == (left, right)
    assert str(spec) == text


def test_nic_100_and_above_reachable():
    assert parse_endpoint("vr1/100").tcp_port == 10100
    assert parse_endpoint("vr1/1").tcp_port == 10001


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
    ],
)
def test_invalid_links(text, needle):
    with pytest.raises(SpecError) as e:
        parse_link(text)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


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
    ],
)
def test_a_nic_in_two_links_is_refused(texts, needle):
    with pytest.raises(SpecError) as e:
        check_distinct([parse_link(t) for t in texts])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)
