"""``xcon extcap``'s own parts: interface values, the arguments Wireshark
passes, the sentences it reads, where the launcher goes and what it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcon import extcap
from xcon.control import DEFAULT_SOCKET
from xcon.testing.errors import one_line_error
from xcon.testing.pcaptools import TSHARK

NO_NUL = st.text(st.characters(blacklist_characters="\0"), min_size=1, max_size=120)


@given(where=NO_NUL, link=NO_NUL)
def test_an_interface_value_reads_back_and_is_made_of_safe_characters(where, link):
    value = extcap.interface_value(where, link)
    assert re.fullmatch(r"xcon-[a-z2-7]+", value)
    assert extcap.parse_interface(value) == (where, link)


def test_an_interface_value_is_stable_and_unique():
    v = extcap.interface_value
    assert v("/run/lab/xcon.sock", "r1/1--r2/1") == v("/run/lab/xcon.sock", "r1/1--r2/1")
    assert len({v("/a", "r1/1--r2/1"), v("/b", "r1/1--r2/1"), v("/a", "r1/1--r3/1")}) == 3


def _b32(raw: bytes) -> str:
    import base64

    return "xcon-" + base64.b32encode(raw).decode().rstrip("=").lower()


@pytest.mark.parametrize(
    "value",
    [
        "eth0",
        "xcon-",
        "xcon-MFRGG",  # upper case: not what xcon writes
        "xcon-mfrgg1",  # 1 is not base32
        "xcon-mfrgg===",
        _b32(b"/run/xcon.sock"),  # no link
        _b32(b"\0r1/1--r2/1"),  # no socket
        _b32(b"/s\0"),
        _b32(b"\xff\xfe\0x"),  # not UTF-8
    ],
)
def test_a_value_xcon_did_not_write_is_one_clear_line(value):
    message = one_line_error(ValueError, extcap.parse_interface, value)
    assert message == (
        f"--extcap-interface {value}: not an xcon link (xcon extcap --extcap-interfaces lists them)"
    )


# -- the arguments Wireshark passes --------------------------------------------------------
V = extcap.interface_value("/run/lab/xcon.sock", "r1/1--r2/1")


@pytest.mark.parametrize(
    "argv",
    [
        ["--extcap-interfaces", "--extcap-version=4.0"],
        ["--extcap-interfaces", "--extcap-version", "4.0"],
        ["--extcap-dlts", "--extcap-interface", V],
        ["--extcap-config", "--extcap-interface", V],
        ["--capture", "--extcap-interface", V, "--fifo", "/tmp/f", "--snaplen", "0"],
        ["--capture", "--extcap-interface", V, "--fifo", "/tmp/f", "--no-drops"],
        ["--capture", "--extcap-interface", V, "--extcap-capture-filter", "icmp", "--fifo", "f"],
        ["--extcap-interface", V, "--extcap-capture-filter", "icmp"],  # a filter checked
        # options of later Wiresharks, and their values, are left alone
        ["--extcap-interfaces", "--extcap-log-level", "message", "--extcap-log-file", "/l"],
        ["--extcap-interfaces", "--debug"],
    ],
)
def test_wiresharks_calls_are_accepted(argv):
    args = extcap.parse_protocol(argv)
    assert args.extcap_interface in (None, V)


@pytest.mark.parametrize(
    "argv, says",
    [
        ([], "give --extcap-interfaces, or --extcap-interface VALUE with"),
        (["--extcap-interfaces", "--bogus"], "unrecognized arguments: --bogus"),
        (["--extcap-interfaces", "stray"], "unrecognized arguments: stray"),
        (["--extcap-dlts"], "need --extcap-interface"),
        (["--capture", "--extcap-interface", V], "--capture needs --fifo PATH"),
        (["--extcap-interfaces", "--extcap-config", "--extcap-interface", V], "give one of"),
        (["--extcap-dlts", "--extcap-interface", "eth0"], "--extcap-interface eth0: not an"),
        (["--capture", "--extcap-interface", V, "--fifo", "f", "--snaplen", "-1"], "-1 is"),
        (["install", "--system", "--dir", "/tmp"], "not allowed with argument"),
        (["uninstall", "--control", "x.sock"], "unrecognized arguments: --control"),
        (["install", "--control", "http://"], "--control http://: expected http://HOST:PORT"),
    ],
)
def test_a_bad_call_is_one_line_and_exit_2(argv, says, capsys):
    assert extcap.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xcon extcap") and says in lines[0], lines


def test_the_sentences_wireshark_reads():
    sentence = re.compile(r"(extcap|interface|dlt|arg) (\{[a-z]+=[^{}\n]*\})+")
    text = extcap.interfaces_text([("/a/xcon.sock", "r1/1--r2/1")]) + extcap.DLTS + extcap.CONFIG
    assert all(sentence.fullmatch(line) for line in text.splitlines()), text
    assert "{call=--snaplen}" in extcap.CONFIG and "{range=0,262144}" in extcap.CONFIG
    assert "{call=--no-drops}{display=Leave out the frames xcon drops}{type=boolflag}" in (
        extcap.CONFIG
    )
    assert extcap.DLTS == "dlt {number=1}{name=EN10MB}{display=Ethernet}\n"


def test_a_link_is_named_after_its_xcon_only_when_several_answer():
    one = extcap.interfaces_text([("/a.sock", "r1/1--r2/1"), ("/a.sock", "hub")])
    assert one.splitlines()[1:] == [
        f"interface {{value={extcap.interface_value('/a.sock', 'r1/1--r2/1')}}}"
        "{display=xcon: r1/1--r2/1}",
        f"interface {{value={extcap.interface_value('/a.sock', 'hub')}}}{{display=xcon: hub}}",
    ]
    two = extcap.interfaces_text([("/a.sock", "r1/1--r2/1"), ("http://h:1", "r1/1--r2/1")])
    assert [line.split("{display=")[1] for line in two.splitlines()[1:]] == [
        "xcon: r1/1--r2/1 (/a.sock)}",
        "xcon: r1/1--r2/1 (http://h:1)}",
    ]
    assert extcap.interfaces_text([]).splitlines() == [f"extcap {{version={extcap.__version__}}}"]
    # a unix end's path may hold what ends a field or a line
    odd = extcap.interfaces_text([("/a.sock", "unix:/run/{lab}\n/r1--r2/1")])
    assert odd.splitlines()[1].endswith("{display=xcon: unix:/run/(lab)\\n/r1--r2/1}")


def test_where_it_looks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {
        "XCON_EXTCAP_CONTROLS": " /run/a.sock,http://127.0.0.1:9810/ b.sock\n/run/a.sock",
        "XCON_CONTROL": "/run/c.sock",
    }
    assert extcap.control_entries(["/run/lab.sock", "http://127.0.0.1:9810"], env) == [
        "/run/lab.sock",
        "http://127.0.0.1:9810",
        "/run/a.sock",
        str(tmp_path / "b.sock"),
        "/run/c.sock",
        str(tmp_path / DEFAULT_SOCKET),
    ]
    assert extcap.control_entries([], {}) == [str(tmp_path / DEFAULT_SOCKET)]


# -- install, uninstall -------------------------------------------------------------------
def test_the_launcher_runs_this_xcon_and_uninstall_removes_it(tmp_path, capsys):
    folder = tmp_path / "extcap"
    assert extcap.main(["install", "--dir", str(folder), "--control", "lab.sock"]) == 0
    launcher = folder / "xcon"
    assert (
        capsys.readouterr().out == f"installed {launcher}: restart Wireshark to see xcon's links\n"
    )
    assert os.access(launcher, os.X_OK)
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\n" + extcap.MARKER + "\n")
    assert f"--control {os.path.abspath('lab.sock')}" in text
    # Wireshark runs it as a program: it answers as xcon extcap does
    out = subprocess.run(
        [str(launcher), "--extcap-dlts", "--extcap-interface", V],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, extcap.DLTS, "")
    assert extcap.main(["install", "--dir", str(folder)]) == 0  # replaced
    assert "--control" not in launcher.read_text()
    capsys.readouterr()
    assert extcap.main(["uninstall", "--dir", str(folder)]) == 0
    assert capsys.readouterr().out == f"removed {launcher}\n"
    assert not launcher.exists()
    assert extcap.main(["uninstall", "--dir", str(folder)]) == 1
    assert capsys.readouterr().err == f"xcon extcap: no launcher at {launcher}\n"


def test_a_file_xcon_did_not_write_is_left_alone(tmp_path, capsys):
    other = tmp_path / "xcon"
    other.write_text("#!/bin/sh\necho someone else's\n")
    for command in ("install", "uninstall"):
        assert extcap.main([command, "--dir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err == f"xcon extcap: {other} exists and is not xcon's launcher: left as it is\n"
    assert other.read_text() == "#!/bin/sh\necho someone else's\n"


def test_an_unwritable_folder_is_one_line_and_exit_1(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert extcap.main(["install", "--dir", str(blocker / "extcap")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"xcon extcap: {blocker / 'extcap' / 'xcon'}: Not a directory"]


@pytest.mark.parametrize(
    "env, dirs, expect",
    [
        ({"WIRESHARK_CONFIG_DIR": "/w"}, [], "/w/extcap"),
        ({}, [".wireshark"], "{home}/.wireshark/extcap"),
        ({"XDG_CONFIG_HOME": "/xdg"}, [], "/xdg/wireshark/extcap"),
        ({}, [], "{home}/.config/wireshark/extcap"),
    ],
)
def test_the_personal_folder_as_wireshark_4_0_finds_it(tmp_path, env, dirs, expect):
    for d in dirs:
        (tmp_path / d).mkdir()
    env = {"PATH": "", "HOME": str(tmp_path), **env}  # no tshark to ask
    assert extcap.extcap_folder(False, env) == expect.format(home=tmp_path)


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian tshark)")
def test_the_folders_are_where_tshark_says(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "conf")}
    env.pop("WIRESHARK_CONFIG_DIR", None)
    folders = extcap.tshark_folders(env)
    personal = folders.get("Personal Extcap path") or os.path.join(
        folders["Personal configuration"], "extcap"
    )
    assert personal.startswith(str(tmp_path))
    assert extcap.extcap_folder(False, env) == personal
    # the global one: where Debian's tshark keeps its own extcap programs
    assert os.path.exists(os.path.join(extcap.extcap_folder(True, env), "udpdump"))


def test_the_help_names_the_calls():
    out = subprocess.run(
        [sys.executable, "-m", "xcon", "extcap", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stderr == ""
    for option in ("--extcap-interfaces", "--capture", "--fifo", "--extcap-capture-filter"):
        assert option in out.stdout
