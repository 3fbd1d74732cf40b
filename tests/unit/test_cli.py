"""The command line: upstream invocations parse; mistakes exit 2 with one clear line."""

from __future__ import annotations

import logging

import pytest

from xcon import app, cli
from xcon.health import health_text
from xcon.limits import TRACE_MAX, TRACE_MIN


@pytest.mark.parametrize(
    "argv",
    [
        ["--p2p", "vr1/1--vr2/1", "vr1/2--vr3/1"],
        ["--p2p", "vr1/1--vr2/1:123"],
        ["--p2p", "vr1/1:123--vr2/1"],
        ["--p2p", "r1/1--app/1"],
        ["--p2p", "vr1/1--unix:/run/vr2.sock", "tcp:vr3:4001--listen:10002"],
        ["--p2p", "vr1/1--udp:127.0.0.1:40000@40001", "vr1/2--vxlan:192.0.2.1/10"],
        ["--hub", "vr1/1", "tap:hub0", "raw:eth1", "listen:unix:/tmp/h.sock"],
        ["--p2p", "vr1/1--vr2/1", "--debug"],
        ["--debug", "--p2p", "vr1/1--vr2/1"],
        ["--trace", "--p2p", "vr1/1--vr2/1"],
        [
            "--tap-listen",
            "1",
            "--ipv6-address",
            "2003:1c08:161:1ff::42/64",
            "--ipv6-route",
            "2003:1c08:161:1ff::1",
        ],
        [
            "--tap-listen",
            "1",
            "--tap-if",
            "tap1",
            "--ipv4-address",
            "10.0.0.2/24",
            "--ipv4-route",
            "10.0.0.1",
            "--vlan",
            "10",
        ],
        ["--hub", "vr1/1", "vr2/1", "vr3/1"],
        ["--raw-listen", "1", "--raw-if", "eth1"],
        ["--p2p", "vr1/1--vr2/1", "--p2p", "vr1/2--vr3/1"],
    ],
)
def test_seed_invocations_parse(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.p2p or args.hub or args.tap_listen or args.raw_listen
    cli.check(args)


def run_cli(argv, capsys):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--p2p", "vr1/1vr2/1"], "missing '--'"),
        (["--p2p", "vr1/1--vr2/1", "vr--x/1--vr2/2"], "cannot appear in a name"),
        (["--p2p", "vr1/0--vr2/1"], "outside 1..55535"),
        (["--p2p", "vr1/1--vr2/1:5000"], "outside 1..4094"),
        (["--p2p", "vr1/1:1--vr2/1:2"], "both sides"),
        (["--hub", "vr1/1:10", "vr2/1"], "only allowed on --p2p"),
        (["--tap-listen", "0"], "outside 1..55535"),
        (["--tap-listen", "1", "--vlan", "4095"], "outside 1..4094"),
        (["--p2p", "vr1/1--vr2/1", "--engine", "nope"], "unknown engine"),
        (["--p2p", "vr1/1--VR1/1"], "both ends are the same NIC"),
        (["--p2p", "vr1/1--vxlan:10.0.0.2/99999999"], "VNI '99999999' is not a number"),
        (["--p2p", "vr1/1--udp:10.0.0.2:5"], "local port to receive on is required"),
        (["--p2p", "vr1/1--tap:a/b"], "not a valid interface name"),
        (["--p2p", "vr1/1--bogus:x"], "unknown kind 'bogus'"),
        (["--hub", "tap:h0", "raw:h0"], "the same end twice"),
        (
            ["--p2p", "vr1/1--vr2/1", "vr1/2--vr3/1", "vr1/1--vr3/2"],
            "vr1/1 is in two links ('vr1/1--vr2/1' and 'vr1/1--vr3/2')",
        ),
        (["--p2p", "vr1/1--vr2/1", "vr3/1--vr2/1:7"], "vr2/1 is in two links"),
        (["--p2p", "[::1]/1:5--a/1", "b/1--[::1]/1"], "[::1]/1 is in two links"),
        # a repeated --p2p is checked as a whole
        (["--p2p", "a/1--b/1", "--p2p", "c/1--A/1"], "A/1 is in two links"),
        (["--p2p", "a/1--b/1", "--p2p", "c/1--d/1:0"], "outside 1..4094"),
        # the same NIC written two ways
        (["--p2p", "[::1]/1--[0:0::1]/1"], "both ends are the same NIC"),
        (["--p2p", "vr1./1--VR1/1"], "both ends are the same NIC"),
        (["--hub", "[::1]/1", "[0::1]/1"], "the same NIC twice"),
        (["--hub", "a/1", "b/1", "a/1"], "lists 'a/1' twice"),
        (["--hub", "a/1"], "at least two ports"),
        (["--hub", "a/1", "--hub", "a/1"], "lists 'a/1' twice"),
        # names and literals that ran before
        (["--p2p", "a/1---b/1"], "'-b' is not a valid host name"),
        (["--p2p", " a/1--b/1"], "' a' is not a valid host name"),
        (["--p2p", "a\nb/1--c/1"], "not a valid host name"),
        (["--p2p", "a/1--b/1\n"], "expected HOST/N"),
        (["--p2p", "[zz:zz]/1--a/1"], "[zz:zz] is not a valid IPv6 address"),
        (["--hub", "[zz:zz]/1", "a/1"], "[zz:zz] is not a valid IPv6 address"),
        (["--p2p", "1.2.3.999/1--a/1"], "not a valid IPv4 address"),
        (["--p2p", "a/1--b/" + "9" * 5000], "outside 1..55535"),
        (["--raw-listen", "55536"], "outside 1..55535"),
        (["--raw-listen", "+1"], "not a whole number"),
        (["--tap-listen", "\u0661"], "not a whole number"),
        (["--tap-listen", "9" * 5000], "outside 1..55535"),
    ],
)
def test_bad_input_exits_2(argv, needle, usage_error):
    line = usage_error(argv)
    assert needle in line


@pytest.mark.parametrize(
    "argv,needle",
    [
        ([], "one of the arguments --p2p --hub --tap-listen --raw-listen is required"),
        (["--p2p", "a/1--b/1", "--hub", "a/1", "b/1"], "not allowed with argument"),
        (["--tap-listen", "x"], "argument --tap-listen: 'x' is not a whole number"),
        (["--p2p"], "expected at least one argument"),
        (["--p2p", "a/1--b/1", "--bogus"], "unrecognized arguments: --bogus"),
        (["--p2p", "a/1--b/1", "--log-level", "loud"], "invalid choice"),
        (["--tap-listen", "1", "x\ny"], "unrecognized arguments: x\\ny"),
        (["--tap-listen", "1", "\udcff"], "unrecognized arguments: \\udcff"),
    ],
)
def test_usage_errors_are_one_line(argv, needle, usage_error):
    """No 7-line usage block before the message: one line, exit 2 (returned)."""
    line = usage_error(argv)
    assert needle in line


@pytest.mark.parametrize(
    "value",
    ["inf", "-inf", "1e300", "-1", "nan", "NaN", "1e-9", "0", "0.09", str(TRACE_MAX + 1), "x", ""],
)
def test_trace_is_bounded(value, usage_error):
    line = usage_error(["--p2p", "a/1--b/1", f"--trace={value}"])
    assert line.startswith("xcon: error: argument --trace: ")


@pytest.mark.parametrize(
    "argv,interval",
    [
        (["--trace"], 1.0),
        (["--trace", str(TRACE_MIN)], TRACE_MIN),
        (["--trace", "86400"], TRACE_MAX),
        (["--trace", "2.5"], 2.5),
        ([], None),
    ],
)
def test_trace_within_bounds_runs(argv, interval, built, monkeypatch):
    seen = []
    real = app.Xcon.__init__

    def init(self, **kw):
        seen.append(kw["trace_interval"])
        real(self, **kw)

    monkeypatch.setattr(app.Xcon, "__init__", init)
    assert cli.main([*argv, "--p2p", "a/1--b/1", "--health-file", ""]) == 0
    assert seen == [interval]


def test_help_states_the_trace_bounds(capsys):
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{TRACE_MIN:g} to {TRACE_MAX:g}" in out
    assert "may be repeated" in out


def test_repeated_p2p_takes_every_link(built, caplog):
    caplog.set_level(logging.INFO, logger="xcon")
    argv = ["--p2p", "a/1--b/1", "e/1--f/1", "--debug", "--p2p", "c/1--d/1:7",
            "--health-file", "", "--workers", "1"]  # fmt: skip
    assert cli.main(argv) == 0
    [(name, (links,), kw)] = built
    assert name == "p2p" and kw == {"debug": True}
    assert [str(link) for link in links] == ["a/1--b/1", "e/1--f/1", "c/1--d/1:7"]
    logged = [r.getMessage() for r in caplog.records if r.name == "xcon"]
    assert any("3 p2p link(s)" in m for m in logged)
    for link in ("a/1--b/1", "e/1--f/1", "c/1--d/1:7"):
        assert f"p2p link {link}" in logged


def test_repeated_hub_takes_every_port(built):
    assert cli.main(["--hub", "a/1", "b/1", "--hub", "c/1", "--health-file", ""]) == 0
    [(name, (ports,), _)] = built
    assert name == "hub" and [str(p) for p in ports] == ["a/1", "b/1", "c/1"]


def test_version_names_backend(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("xcon ") and "fast path: " in out


def test_one_line_escapes_line_breaks():
    assert cli.one_line("a\nb\r\x00\udcff") == "a\\nb\\r\\x00\\udcff"
    assert cli.one_line("plain text") == "plain text"


def test_health_text():
    assert health_text(4, 4) == "0\nAll 4 sockets connected\n"
    assert health_text(3, 4) == "1\nExpected 4 sockets but only 3 connected\n"


def test_uvloop_engine_missing_is_a_clear_error(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    rc, err = run_cli(["--p2p", "127.0.0.1/1--127.0.0.1/2", "--engine", "uvloop"], capsys)
    assert rc == 2
    assert "uvloop" in err and "pip install" in err
    assert "Traceback" not in err
