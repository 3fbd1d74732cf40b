"""Bad input through each front end loses nothing.

A config file that cannot be used (not UTF-8, an integer of 5000 digits,
arrays 5000 deep, numbers out of range or not finite, too large, a directory,
a FIFO with no writer): on SIGHUP one log line and nothing changes, while a
link goes on forwarding and the API answering; at start one line on stderr
and exit 2.  The API refuses deep nesting and numbers out of range with a
400 naming the field and its range, and the command line refuses what the
API refuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from xcon import cli
from xcon.testing.control import api, wait_api
from xcon.testing.fakeqemu import endpoint
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

pytestmark = pytest.mark.adversarial

FAILED = "reload failed, nothing changed"


def capture(options: str) -> str:
    return f'capture = {{ file = "x.pcapng", {options} }}'


#: name: (the file's text after its links, or bytes for the whole file; what the error says)
BAD_FILES: dict[str, tuple[str | bytes, str]] = {
    "latin-1 comment": (b"# caf\xe9 au lait\nlinks = [LINK]\n", "not UTF-8 (byte 0xe9 on line 1)"),
    "5000 digits": ("seed = " + "9" * 5000, "not valid TOML (an integer too long)"),
    "5000 deep": ("x = " + "[" * 5000 + "]" * 5000, "not valid TOML (nested too deeply)"),
    "limit ²": ('impair = "limit ²"', "limit: '²' is not a whole number in 1..4294967295"),
    "rate 1e400bit": ('impair = "rate 1e400bit"', "rate: 1e400bit is outside 1bit..1tbit"),
    "snaplen inf": (capture("snaplen = inf"), "snaplen: inf is not a whole number in 0..262144"),
    "size_mb inf": (capture("size_mb = inf"), "size_mb: inf is not a number in 0..1000000 MB"),
    "seconds 1e10": (capture("seconds = 1e10"), "seconds: 10000000000.0 is outside 0..31622400"),
    "files 1e300": (capture("size_mb = 1, files = 1e300"), "files: 1e+300 is outside 0..1000000"),
    "NUL in a name": ('capture = "a\\u0000b"', "capture: file 'a\\x00b' holds a NUL character"),
    "2 MiB": ("#" * (2 << 20), "larger than 1048576"),
}


def config_text(link: str, bad: str | bytes = "") -> bytes:
    """The config holding ``link`` (and ``bad`` in its table)."""
    if isinstance(bad, bytes):
        return bad.replace(b"LINK", json.dumps(link).encode())
    return f'[[link]]\nspec = "{link}"\n{bad}\n'.encode()


def put(path, data: bytes) -> None:
    """Replace ``path`` (whatever it is now) by a file holding ``data``."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    if os.path.isdir(path):
        os.rmdir(path)
    os.replace(tmp, path)


@pytest.mark.timeout(120)
def test_sighup_with_a_bad_file_changes_nothing_and_loses_nothing(peers, xcon, tmp_path):
    a, b = peers(), peers(record=True)
    link = f"{endpoint(a)}--{endpoint(b)}"
    cfg = tmp_path / "xcon.toml"
    put(cfg, config_text(link))
    xc = xcon("--config", str(cfg))
    xc.wait_health("0", contains="All 2 sockets connected")
    client = api(xc, timeout=1.0)
    wait_api(xc)
    stream = Stream(a, b, size=200, batch=10, pause=0.005)

    def refused(n: int, says: str) -> None:
        wait_until(lambda: xc.log().count(FAILED) >= n, 10, lambda: f"{says!r}\n{xc.log()}")
        last = [line for line in xc.log().splitlines() if FAILED in line][n - 1]
        assert says in last, last

    n = 0
    for bad, says in BAD_FILES.values():
        put(cfg, config_text(link, bad))
        xc.proc.send_signal(signal.SIGHUP)
        n += 1
        refused(n, says)
    # the API's reload: a 400 and the same line
    put(cfg, config_text(link, BAD_FILES["limit ²"][0]))
    status, data, _ctype = client.request("POST", "/reload")
    assert status == 400 and "limit: '²'" in json.loads(data)["error"]
    n += 1
    refused(n, "limit: '²'")
    # a directory, and a FIFO nobody writes to: refused at once, the API answers
    os.remove(cfg)
    os.mkdir(cfg)
    xc.proc.send_signal(signal.SIGHUP)
    n += 1
    refused(n, "not a regular file (a directory)")
    os.rmdir(cfg)
    os.mkfifo(cfg)
    xc.proc.send_signal(signal.SIGHUP)
    n += 1
    refused(n, "not a regular file (a FIFO)")
    t0 = time.monotonic()
    status, data, _ctype = client.request("GET", "/health")
    assert status == 200 and time.monotonic() - t0 < 1.0
    os.remove(cfg)
    # the good file again: nothing to do, the link was never touched
    put(cfg, config_text(link))
    xc.proc.send_signal(signal.SIGHUP)
    xc.wait_log("0 added, 0 removed, 0 changed, 1 unchanged")
    stream.finish()
    assert a.accepted == 1 and b.accepted == 1
    log = xc.log()
    assert "Traceback" not in log
    assert xc.terminate() == 0, log


@pytest.mark.parametrize("name", [*BAD_FILES, "directory", "FIFO", "missing"])
def test_a_bad_file_at_start_is_one_line_and_exit_2(name, tmp_path, monkeypatch, capsys):
    def started(*_a, **_k):
        raise AssertionError("xcon started with a bad config file")

    monkeypatch.setattr(cli, "run", started)
    cfg = tmp_path / "xcon.toml"
    if name == "directory":
        cfg.mkdir()
        says = "not a regular file (a directory)"
    elif name == "FIFO":
        os.mkfifo(cfg)
        says = "not a regular file (a FIFO)"
    elif name == "missing":
        says = "No such file or directory"
    else:
        bad, says = BAD_FILES[name]
        cfg.write_bytes(config_text("127.0.0.1/1--127.0.0.2/1", bad))
    rc = cli.main(["--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"xcon: error: {cfg}: ") and says in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_file_at_start_in_a_real_process(tmp_path):
    cfg = tmp_path / "xcon.toml"
    cfg.write_bytes(config_text("127.0.0.1/1--127.0.0.2/1", BAD_FILES["latin-1 comment"][0]))
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "--config", str(cfg), "--control", "none"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "not UTF-8" in r.stderr


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--impair", "LINK=limit ²"], "limit: '²' is not a whole number in 1..4294967295"),
        (["--impair", "LINK=gap ٣ reorder 1% delay 1ms"], "gap: '٣' is not a whole number"),
        (["--impair", "LINK=rate 1e400bit"], "rate: 1e400bit is outside 1bit..1tbit"),
        (["--seed", "-1"], "argument --seed: -1 is outside 0..18446744073709551615"),
        (
            ["--seed", "1e3"],
            "argument --seed: 1e3 is not a whole number in 0..18446744073709551615",
        ),
        (
            ["--capture", "LINK=x", "--capture-seconds", "31622401"],
            "argument --capture-seconds: 31622401 is outside 0..31622400 s",
        ),
        (
            ["--capture", "LINK=x", "--capture-size", "inf"],
            "argument --capture-size: 'inf' is not a number in 0..1000000 MB",
        ),
        (["--capture", "LINK=x", "--snaplen", "9" * 5000], "argument --snaplen: 999"),
    ],
)
def test_command_line_refuses_in_one_line(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    link = "127.0.0.1/1--127.0.0.2/1"
    args = ["--p2p", link, *(a.replace("LINK", link) for a in argv)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


# -- the API in process (tests/adversarial/conftest.py) ----------------------------------------

DEEP = b"[" * 30000 + b"]" * 30000


@pytest.mark.parametrize(
    "method, route",
    [
        ("POST", "/links"),
        ("PUT", "/links/NAME/impair"),
        ("POST", "/links/NAME/capture"),
        ("POST", "/counters/reset"),
    ],
)
def test_nesting_too_deep_is_a_400(method, route, inproc):
    status, doc = inproc.call(method, route.replace("NAME", inproc.link), DEEP)
    assert status == 400 and doc["error"] == "the body is not JSON (nested too deeply)"


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"rate": Infinity}', "Infinity is not a JSON number"),
        (b'{"rate": 1e400}', "number 1e400 is out of range"),
        (b'{"loss": NaN}', "NaN is not a JSON number"),
        (b'{"limit": ' + b"9" * 5000 + b"}", "an integer of 5000 digits is out of range"),
        (b'{"rate": 1e308}', "rate: 1e+308kbit is outside 1bit..1tbit"),
        (b'{"limit": 1e308}', "limit: 1e+308 is outside 1..4294967295 frames"),
        (b'{"gap": 4294967296, "reorder": 1, "delay": 1}', "gap: 4294967296 is outside"),
        (b'{"delay": 1e308}', "delay: 1e+308ms is outside 0..60s"),
        (b'{"netem": "rate 1e400bit"}', "rate: 1e400bit is outside 1bit..1tbit"),
        (b'{"netem": "limit \xc2\xb2"}', "limit: '\xb2' is not a whole number"),
    ],
)
def test_impairment_numbers_out_of_range_are_a_400(body, says, inproc):
    status, doc = inproc.call("PUT", f"/links/{inproc.link}/impair", body)
    assert status == 400 and says in doc["error"], doc
    assert inproc.app.links[inproc.link].p2p.impairment("a2b") is None


@pytest.mark.parametrize(
    "options, says",
    [
        ('"snaplen": Infinity', "Infinity is not a JSON number"),
        ('"snaplen": 1e308', "snaplen: 1e+308 is outside 0..262144 bytes"),
        ('"snaplen": ' + "9" * 90, "snaplen: a number of 90+ digits is outside 0..262144"),
        ('"size_mb": 1e308', "size_mb: 1e+308 is outside 0..1000000 MB"),
        ('"size_mb": 1, "files": 1e300', "files: 1e+300 is outside 0..1000000"),
        ('"seconds": 1e10', "seconds: 10000000000.0 is outside 0..31622400 s"),
        ('"seconds": -1', "seconds: -1 is outside 0..31622400 s"),
    ],
)
def test_capture_numbers_out_of_range_are_a_400(options, says, inproc, tmp_path):
    body = f'{{"file": "cap.pcapng", {options}}}'.encode()
    status, doc = inproc.call("POST", f"/links/{inproc.link}/capture", body)
    assert status == 400 and says in doc["error"], doc
    assert not (tmp_path / "cap.pcapng").exists()


def test_the_longest_ring_the_command_line_takes_the_api_takes(inproc, tmp_path):
    body = {"file": "cap.pcapng", "seconds": 31622400, "size_mb": 1_000_000, "files": 1_000_000}
    status, doc = inproc.call("POST", f"/links/{inproc.link}/capture", body)
    assert status == 201, doc
    assert doc["ring"] == {"size": 10**12, "seconds": 31622400.0, "files": 1_000_000}
