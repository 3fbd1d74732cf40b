"""The command line: upstream invocations parse; mistakes exit 2 with one clear line."""

from __future__ import annotations

import pytest

from xcon import cli
from xcon.health import health_text


@pytest.mark.parametrize(
    "argv",
    [
        ["--p2p", "vr1/1--vr2/1", "vr1/2--vr3/1"],
        ["--p2p", "vr1/1--vr2/1:123"],
        ["--p2p", "vr1/1:123--vr2/1"],
        ["--p2p", "r1/1--app/1"],
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
    ],
)
def test_seed_invocations_parse(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.p2p or args.hub or args.tap_listen or args.raw_listen


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
        (
            ["--p2p", "vr1/1--vr2/1", "vr1/2--vr3/1", "vr1/1--vr3/2"],
            "vr1/1 is in two links ('vr1/1--vr2/1' and 'vr1/1--vr3/2')",
        ),
        (["--p2p", "vr1/1--vr2/1", "vr3/1--vr2/1:7"], "vr2/1 is in two links"),
        (["--p2p", "[::1]/1:5--a/1", "b/1--[::1]/1"], "[::1]/1 is in two links"),
    ],
)
def test_bad_input_exits_2(argv, needle, capsys):
    rc, err = run_cli(argv, capsys)
    assert rc == 2
    assert needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [[], ["--p2p", "a/1--b/1", "--hub", "a/1", "b/1"], ["--tap-listen", "x"]],
)
def test_mode_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_version_names_backend(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("xcon ") and "fast path: " in out


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
