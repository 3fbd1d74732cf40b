"""Any command line: exit 0, 1 or 2, at most one line on stderr, never a traceback.

In process through ``cli.main`` with the runtime parts patched out (the app
never runs, the mode builders and the host configuration only record), so
random input can neither create a tap nor bind a port, even as root.  A few
of the worst inputs also go through ``python -m xcon`` as raw bytes; they are
all refused before anything is created.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xcon
from xcon import app, cli, modes, netconf
from xcon.testing.strategies import examples

#: The xcon under test, also for the interpreters started here.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(xcon.__file__)))

FLAGS = [
    "--p2p", "--hub", "--tap-listen", "--raw-listen", "--tap-if", "--raw-if",
    "--ipv4-address", "--ipv4-route", "--ipv6-address", "--ipv6-route", "--vlan", "--mtu",
    "--debug", "--trace", "--health-file", "--engine", "--log-level", "--version", "--help",
    "-h", "--", "-", "--tap", "--p2",
]  # fmt: skip

any_char = st.characters(exclude_categories=())  # surrogates too (non-UTF-8 argv bytes)
host = st.one_of(
    st.sampled_from(["vr1", "VR1.", "a", "-b", "[::1]", "[0:0::1]", "[zz:zz]", "1.2.3.4",
                     "1.2.3.999", "bücher", "[fe80::1%eth0]", "", " a", "a\nb", "x" * 64]),
    st.from_regex(r"[a-z0-9._\-\[\]:%]{0,12}", fullmatch=True),
    st.text(any_char, max_size=6),
)  # fmt: skip
number = st.one_of(
    st.integers(-5, 70000).map(str),
    st.sampled_from(["0", "1", "4094", "4095", "55535", "55536", "9" * 400, "\u0661", "+1"]),
)
endpoint = st.builds(
    lambda h, n, v: f"{h}/{n}" + (f":{v}" if v is not None else ""),
    host,
    number,
    st.one_of(st.none(), number),
)
link = st.one_of(
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}", endpoint, st.sampled_from(["--", "---", "-"]), endpoint
    ),
    endpoint,
)
value = st.one_of(
    link,
    number,
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "nan", "1e-9", "1e300", "-1", "tap0", "tap%d", ".", "..", "a:b",
                     "10.0.0.2/24", "10.0.0.1", "2001:db8::2/64", "2001:db8::1", "uvloop",
                     "epoll", "debug", "demo", "", "health"]),
    st.text(any_char, max_size=20),
)  # fmt: skip
mode = st.one_of(
    st.builds(lambda links: ["--p2p", *links], st.lists(link, min_size=1, max_size=3)),
    st.builds(lambda ends: ["--hub", *ends], st.lists(endpoint, min_size=1, max_size=4)),
    st.builds(lambda f, n: [f, n], st.sampled_from(["--tap-listen", "--raw-listen"]), number),
)
option = st.builds(
    lambda flag, v: [flag] if v is None else [flag, v],
    st.sampled_from(FLAGS[:-4]),
    st.one_of(st.none(), value),
)
#: Mostly a mode and a few options (each mode's checks are reached), sometimes anything.
argv_strategy = st.one_of(
    st.builds(lambda m, opts: m + [a for o in opts for a in o], mode, st.lists(option, max_size=4)),
    st.lists(st.one_of(st.sampled_from(FLAGS), value), max_size=10),
)


@pytest.fixture
def inert(monkeypatch):
    """Nothing runs and nothing on the host is touched, whatever the argv."""
    calls: list[str] = []

    def record(name):
        def builder(*a, **k):
            calls.append(name)

        return builder

    for name in ("p2p", "hub", "tap_listen", "raw_listen"):
        monkeypatch.setattr(modes, name, record(name))
    monkeypatch.setattr(netconf, "apply", record("apply"))
    monkeypatch.setattr(app.Xcon, "run", lambda self: self.engine.close() or 0)
    monkeypatch.setattr("xcon.rlimit.ensure_nofile", lambda n: 1024)
    monkeypatch.setattr("xcon.demo.main", lambda argv: 0)
    monkeypatch.setattr(cli, "setup_logging", lambda level: None)
    monkeypatch.setattr(cli, "lock_health_file", lambda path: None)
    return calls


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=argv_strategy)
def test_any_argv_exits_cleanly(argv, inert, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # pragma: no cover - main returns its exit code
        raise AssertionError(f"main raised SystemExit({e.code}) for {argv!r}") from None
    captured = capsys.readouterr()
    assert rc in (0, 1, 2), (argv, rc)
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) <= 1, (argv, captured.err)
    if rc:
        assert lines and lines[0].startswith("xcon: error: "), (argv, captured.err)
    assert "apply" not in inert


@settings(max_examples=examples(200), deadline=None)
@given(text=st.text(any_char, max_size=30))
def test_link_parser_raises_only_spec_errors(text):
    from xcon.linkspec import SpecError, parse_endpoint, parse_link

    for parse in (parse_link, parse_endpoint):
        try:
            parse(text)
        except SpecError as e:
            assert "\n" not in str(e)


WORST = [
    [b"--tap-listen", b"1", b"--tap-if", b"\xff"],
    [b"--tap-listen", b"1", b"--tap-if", b"tap%d"],
    [b"--raw-listen", b"1", b"--raw-if", b"e\xfe\xff"],
    [b"--p2p", b"\xff/1--b/1"],
    [b"--p2p", b"a/1--b/1", b"--trace", b"inf"],
    [b"--p2p", b"a/1--b/1", b"--trace", b"1e300"],
    [b"--p2p", b"a/1--b/1", b"--trace", b"-1"],
    [b"--p2p", b"a/1--b/1", b"--trace", b"nan"],
    [b"--p2p", b"a/1--b/1", b"--trace", b"1e-9"],
    [b"--p2p", b"a/1---b/1"],
    [b"--p2p", b"a/1--b/1\n"],
    [b"--p2p", b"[zz:zz]/1--a/1"],
    [b"--p2p", b"[::1]/1--[0:0::1]/1"],
    [b"--tap-listen", b"1", b"--ipv4-route", b"10.0.0.1"],
    [b"--tap-listen", b"1", b"\xff\nx"],
    [b"--p2p", b"a/1--b/" + b"9" * 5000],
]


@pytest.mark.parametrize("argv", WORST, ids=lambda a: repr(b" ".join(a))[:60])
def test_worst_inputs_through_the_interpreter(argv, tmp_path):
    env = dict(os.environ, LC_ALL="C.UTF-8")
    env["PYTHONPATH"] = os.pathsep.join([SOURCE_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    p = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"xcon", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2, err
    assert b"Traceback" not in p.stderr
    assert len(err.splitlines()) == 1 and err.startswith("xcon: error: "), err
    assert list(tmp_path.iterdir()) == []  # not even a health file
