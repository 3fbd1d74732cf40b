"""--tap-listen/--raw-listen arguments: bad input exits 2 with one line before
anything on the host is touched (no root needed); good input reaches the mode
builders of xcon.modes as plain values."""

from __future__ import annotations

import pytest

from xcon import cli, netconf
from xcon.errors import ModeError


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--ipv4-address", "10.0.0.300/24"], "not an IPv4 ADDRESS/LEN"),
        (["--ipv4-address", "2001:db8::1/64"], "not an IPv4 address"),
        (["--ipv4-address", "10.0.0.0/24"], "network address"),
        (["--ipv4-address", "10.0.0.255/24"], "broadcast address"),
        (["--ipv4-address", "224.0.0.1/24"], "cannot be an interface address"),
        (["--ipv4-address", "10.0.0.2/33"], "not an IPv4 ADDRESS/LEN"),
        (["--ipv4-address", " 10.0.0.2/24"], "not an IPv4 ADDRESS/LEN"),
        (["--ipv6-address", "10.0.0.2/24"], "not an IPv6 address"),
        (["--ipv6-address", "2001:db8::zz/64"], "not an IPv6 ADDRESS/LEN"),
        (["--ipv6-address", "fe80::2%eth0/64"], "not an IPv6 ADDRESS/LEN"),
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
        # a route without the address would create the tap, then fail (exit 1)
        (["--ipv4-route", "10.0.0.1"], "--ipv4-route needs --ipv4-address"),
        (["--ipv6-route", "2001:db8::1"], "--ipv6-route needs --ipv6-address"),
        (
            ["--ipv6-address", "2001:db8::2/64", "--ipv4-route", "10.0.0.1"],
            "--ipv4-route needs --ipv4-address",
        ),
        (["--mtu", "67"], "outside 68..65521"),
        (["--mtu", "70000"], "outside 68..65521"),
        (["--mtu", "-1"], "not a whole number (68..65521)"),
        (["--mtu", "1e3"], "not a whole number"),
        (["--mtu", "9" * 5000], "outside 68..65521"),
        (["--vlan", "0"], "outside 1..4094"),
        (["--vlan", "4095"], "outside 1..4094"),
        (["--vlan", "\u0661\u0660"], "not a whole number"),
        # interface names the kernel would refuse or rename
        (["--tap-if", "a-very-long-interface-name"], "1 to 15 bytes"),
        (["--tap-if", "\u00e4" * 8], "1 to 15 bytes"),
        (["--tap-if", ""], "1 to 15 bytes"),
        (["--tap-if", "tap01234567", "--vlan", "4000"], "not a valid interface name"),
        (["--tap-if", "tap%d"], "'tap%d' is not a valid interface name"),
        (["--tap-if", "."], "not '.' or '..'"),
        (["--tap-if", ".."], "not '.' or '..'"),
        (["--tap-if", "a:b"], "no '/', ':', '%', whitespace"),
        (["--tap-if", "a/b"], "no '/', ':', '%', whitespace"),
        (["--tap-if", "a b"], "no '/', ':', '%', whitespace"),
        (["--tap-if", "tap\n0"], "'tap\\n0' is not a valid interface name"),
        (["--tap-if", "tap\x010"], "control characters"),
        (["--tap-if", "tap\udcff"], "not UTF-8"),
        (["--tap-listen", "0"], "outside 1..55535"),
    ],
)
def test_bad_tap_arguments(argv, needle, usage_error):
    line = usage_error(["--tap-listen", "1", *argv])
    assert needle in line


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--ipv4-address", "10.0.0.2/24"], "--ipv4-address applies to --tap-listen only"),
        (["--vlan", "10"], "--vlan applies to --tap-listen only"),
        (["--mtu", "9000"], "--mtu applies to --tap-listen only"),
        (["--tap-if", "tap1"], "--tap-if applies to --tap-listen only"),
        (["--raw-if", "bad/name"], "not a valid interface name"),
        (["--raw-if", "eth%d"], "not a valid interface name"),
        (["--raw-if", ".."], "not a valid interface name"),
        (["--raw-if", "e\udcff"], "not UTF-8"),
    ],
)
def test_bad_raw_arguments(argv, needle, usage_error):
    assert needle in usage_error(["--raw-listen", "1", *argv])


@pytest.mark.parametrize("mode", [["--p2p", "a/1--b/1"], ["--hub", "a/1", "b/1"]])
@pytest.mark.parametrize(
    "flag",
    [
        ["--tap-if", "tap1"],
        ["--ipv4-address", "10.0.0.2/24"],
        ["--ipv4-route", "10.0.0.1"],
        ["--ipv6-address", "2001:db8::2/64"],
        ["--ipv6-route", "2001:db8::1"],
        ["--vlan", "10"],
        ["--mtu", "9000"],
        ["--raw-if", "eth1"],
    ],
)
def test_device_flags_refused_with_p2p_and_hub(mode, flag, usage_error):
    line = usage_error([*mode, *flag])
    owner = "--raw-listen" if flag[0] == "--raw-if" else "--tap-listen"
    assert f"{flag[0]} applies to {owner} only (not {mode[0]})" in line


def test_raw_if_refused_with_tap_listen(usage_error):
    line = usage_error(["--tap-listen", "1", "--raw-if", "eth1"])
    assert "--raw-if applies to --raw-listen only" in line


def test_cli_reports_one_line_and_exit_2(capsys, nothing_created):
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
    plan = netconf.make_plan(
        "tap1", mtu=9000, vlan=10,
        ipv4_address="10.0.0.2/24", ipv4_route="10.0.0.1",
        ipv6_address="2003:1c08:161:1ff::42/64", ipv6_route="2003:1c08:161:1ff::1",
    )  # fmt: skip
    assert plan.mtu == 9000 and plan.vlan == 10
    assert [str(a) for a in plan.addresses] == ["10.0.0.2/24", "2003:1c08:161:1ff::42/64"]
    assert [str(r) for r in plan.routes] == ["10.0.0.1", "2003:1c08:161:1ff::1"]
    assert plan.wants_ipv6 and plan.needs_netlink
    bare = netconf.make_plan("tap0")
    assert not bare.needs_netlink and bare.mtu is None
    assert str(netconf.parse_address("10.0.0.2", 4, "x")) == "10.0.0.2/32"


def test_make_plan_checks_the_name():
    with pytest.raises(ModeError) as e:
        netconf.make_plan("tap%d")
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    "name", ["tap0", "eth1", "tap1.100", "x" * 15, "\u00e4" * 7, "br-lan_0", "veth@x", "..."]
)
def test_good_interface_names(name):
    netconf.check_ifname(name, "--tap-if")


def test_netconf_limits_are_the_shared_ones():
    from xcon import limits

    assert (netconf.MTU_MIN, netconf.MTU_MAX, netconf.IFNAMSIZ) == (
        limits.MTU_MIN,
        limits.MTU_MAX,
        limits.IFNAMSIZ,
    )


def test_tap_listen_gets_plain_values(built, capsys):
    argv = ["--tap-listen", "7", "--tap-if", "tap9", "--mtu", "9000", "--ipv4-address",
            "10.0.0.2/24", "--ipv4-route", "10.0.0.1", "--health-file", "", "--debug"]  # fmt: skip
    assert cli.main(argv) == 0
    [(name, args, kw)] = built
    assert name == "tap_listen" and kw == {"debug": True, "listen_host": "::"}
    nic, ifname, plan = args
    assert (nic, ifname) == (7, "tap9")
    assert isinstance(plan, netconf.NetPlan) and plan.mtu == 9000
    assert [str(r) for r in plan.routes] == ["10.0.0.1"]
    assert capsys.readouterr().err == ""


def test_defaults_of_the_device_names(built):
    assert cli.main(["--tap-listen", "1", "--health-file", ""]) == 0
    assert cli.main(["--raw-listen", "2", "--health-file", ""]) == 0
    assert [(n, a[:2]) for n, a, _ in built] == [
        ("tap_listen", (1, "tap0")),
        ("raw_listen", (2, "eth1")),
    ]
    assert built[1][2] == {"debug": False, "listen_host": "::"}


def test_listen_address_is_passed_on_and_checked(built, capsys):
    assert cli.main(["--raw-listen", "2", "--listen-address", "::1", "--health-file", ""]) == 0
    assert built[-1][2]["listen_host"] == "::1"
    assert (
        cli.main(["--tap-listen", "2", "--listen-address", "127.0.0.1", "--health-file", ""]) == 0
    )
    assert built[-1][2]["listen_host"] == "127.0.0.1"
    capsys.readouterr()
    for bad, needle in [
        (["--tap-listen", "1", "--listen-address", "lab.example"], "not an IPv4 or IPv6"),
        (["--tap-listen", "1", "--listen-address", "[::1]"], "not an IPv4 or IPv6"),
        (["--tap-listen", "1", "--listen-address", "224.0.0.1"], "multicast"),
        (["--p2p", "a/1--b/1", "--listen-address", "::1"], "applies to --tap-listen"),
    ]:
        n = len(built)
        assert cli.main(bad) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
        assert len(built) == n
