"""--tap-listen/--raw-listen argument checks: bad input exits 2 with one line,
before anything on the host is touched (no root needed)."""

from __future__ import annotations

import argparse

import pytest

from xcon import cli, netconf, tapmode
from xcon.errors import ModeError


def args_for(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


@pytest.fixture(autouse=True)
def nothing_opened(monkeypatch):
    """Any attempt to open a device or configure the host fails the test."""

    def forbidden(*a, **k):
        raise AssertionError("a device was opened or configured before validation finished")

    monkeypatch.setattr(tapmode.TapPort, "open", forbidden)
    monkeypatch.setattr(tapmode.RawPort, "open", forbidden)
    monkeypatch.setattr(netconf, "apply", forbidden)


class FakeApp:
    engine = None

    def update_health(self) -> None:
        pass

    def add_bridge(self, b) -> None:
        raise AssertionError("no bridge may be added")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--ipv4-address", "10.0.0.300/24"], "not an IPv4 ADDRESS/LEN"),
        (["--ipv4-address", "2001:db8::1/64"], "not an IPv4 address"),
        (["--ipv4-address", "10.0.0.0/24"], "network address"),
        (["--ipv4-address", "10.0.0.255/24"], "broadcast address"),
        (["--ipv4-address", "224.0.0.1/24"], "cannot be an interface address"),
        (["--ipv4-address", "10.0.0.2/33"], "not an IPv4 ADDRESS/LEN"),
        (["--ipv6-address", "10.0.0.2/24"], "not an IPv6 address"),
        (["--ipv6-address", "2001:db8::zz/64"], "not an IPv6 ADDRESS/LEN"),
        (["--ipv4-address", "10.0.0.2/24", "--ipv4-route", "10.0.1.1"], "outside the network"),
        (["--ipv4-address", "10.0.0.2/24", "--ipv4-route", "10.0.0.2"], "own address"),
        (["--ipv4-address", "10.0.0.2/24", "--ipv4-route", "10.0.0.255"], "not a host address"),
        (["--ipv4-address", "10.0.0.2/32", "--ipv4-route", "10.0.0.1"], "outside the network"),
        (["--ipv4-route", "fe80::1"], "not an IPv4 address"),
        (["--ipv4-route", "0.0.0.0"], "cannot be a next hop"),
        (
            ["--ipv6-address", "2001:db8::2/64", "--ipv6-route", "2001:db9::1"],
            "outside the network",
        ),
        (["--ipv6-route", "nonsense"], "not an IPv6 address"),
        (["--mtu", "67"], "outside 68..65521"),
        (["--mtu", "70000"], "outside 68..65521"),
        (["--tap-if", "a-very-long-interface-name"], "not a valid interface name"),
        (["--tap-if", "tap01234567", "--vlan", "4000"], "not a valid interface name"),
    ],
)
def test_bad_tap_arguments(argv, needle):
    args = args_for("--tap-listen", "1", *argv)
    with pytest.raises(ModeError) as e:
        tapmode.add_tap_listen(FakeApp(), args)  # type: ignore[arg-type]
    assert e.value.exit_code == 2
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--ipv4-address", "10.0.0.2/24"], "--ipv4-address applies to --tap-listen only"),
        (["--vlan", "10"], "--vlan applies to --tap-listen only"),
        (["--mtu", "9000"], "--mtu applies to --tap-listen only"),
        (["--raw-if", "bad/name"], "not a valid interface name"),
    ],
)
def test_bad_raw_arguments(argv, needle):
    args = args_for("--raw-listen", "1", *argv)
    with pytest.raises(ModeError) as e:
        tapmode.add_raw_listen(FakeApp(), args)  # type: ignore[arg-type]
    assert e.value.exit_code == 2
    assert needle in str(e.value)


def test_cli_reports_one_line_and_exit_2(capsys):
    rc = cli.main(
        ["--tap-listen", "1", "--ipv4-address", "10.0.0.2/24", "--ipv4-route", "10.1.0.1",
         "--health-file", ""]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [
        "xcon: error: --ipv4-route 10.1.0.1 is outside the network 10.0.0.0/24 "
        "of the interface address"
    ]


def test_good_plan():
    plan = netconf.plan_from_args(
        args_for(
            "--tap-listen", "1", "--mtu", "9000", "--vlan", "10",
            "--ipv4-address", "10.0.0.2/24", "--ipv4-route", "10.0.0.1",
            "--ipv6-address", "2003:1c08:161:1ff::42/64", "--ipv6-route", "2003:1c08:161:1ff::1",
        )
    )  # fmt: skip
    assert plan.mtu == 9000 and plan.vlan == 10
    assert [str(a) for a in plan.addresses] == ["10.0.0.2/24", "2003:1c08:161:1ff::42/64"]
    assert [str(r) for r in plan.routes] == ["10.0.0.1", "2003:1c08:161:1ff::1"]
    assert plan.wants_ipv6 and plan.needs_netlink
    bare = netconf.plan_from_args(args_for("--tap-listen", "1"))
    assert not bare.needs_netlink and bare.mtu is None
    assert str(netconf.parse_address("10.0.0.2", 4, "x")) == "10.0.0.2/32"
