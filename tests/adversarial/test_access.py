"""Nobody but root (and whom root names) drives xcon: another local user, on
the TCP listener or the unix socket, reads what a Prometheus scrape reads and
changes nothing.  The client runs as an unprivileged user (``setpriv``), the
way an attacker on the host would, against xcon running as root."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from xcon.testing.control import api, read_head
from xcon.testing.fakeqemu import endpoint
from xcon.testing.process import XconProcess, run_xcon
from xcon.testing.wait import wait_until

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

NOBODY = 65534
#: A user that is neither root, nor xcon's user, nor in any group given below.
STRANGER = 65533

#: The client, stdlib only, run as another user: requests from argv (JSON),
#: answers on stdout (JSON: [status, body] or [0, error]).
CLIENT = r"""
import http.client, json, socket, sys

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.unix = path
    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.unix)
        self.sock = s

out = []
for where, method, path, body, headers in json.loads(sys.argv[1]):
    try:
        if where.startswith("/"):
            conn = Unix(where)
        else:
            host, port = where.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        out.append([r.status, r.read(200000).decode("utf-8", "replace")])
        conn.close()
    except OSError as e:
        out.append([0, f"{type(e).__name__}: {e.strerror or e}"])
print(json.dumps(out))
"""


def _python_for_others() -> str | None:
    """An interpreter another user may run (the venv's may sit under /root)."""
    for cand in (sys.executable, "/usr/bin/python3"):
        real = os.path.realpath(cand)
        if not os.path.exists(real):
            continue
        probe = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", real, "-c", ""],
            capture_output=True,
        )
        if probe.returncode == 0:
            return real
    return None


@pytest.fixture(scope="module")
def as_user():
    """``as_user(uid, requests, gid=None) -> [(status, body)]``: the requests made by
    a process of that user (groups cleared, primary group ``gid``)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: xcon runs as root and the client as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (Debian package util-linux)")
    python = _python_for_others()
    if python is None:
        pytest.skip("no Python interpreter that an unprivileged user may run")
    d = tempfile.mkdtemp(prefix="xcon-access-")
    os.chmod(d, 0o755)
    script = os.path.join(d, "client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    os.chmod(script, 0o644)

    def run(uid: int, requests: list[tuple], gid: int | None = None) -> list[tuple[int, str]]:
        reqs = [(w, m, p, b, h or {}) for (w, m, p, b, h) in requests]
        r = subprocess.run(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid if gid is not None else uid}",
                "--clear-groups",
                python,
                script,
                json.dumps(reqs),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert r.returncode == 0, r.stderr
        return [tuple(x) for x in json.loads(r.stdout)]

    yield run
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def started(peers):
    """``started(*args) -> (XconProcess, link name)``: xcon as root with one p2p
    link between two fake routers, in a directory others may enter."""
    made: list[XconProcess] = []

    def start(*args: str) -> tuple[XconProcess, str]:
        a, b = peers(), peers()
        name = f"{endpoint(a)}--{endpoint(b)}"
        d = tempfile.mkdtemp(prefix="xcon-access-run-")
        os.chmod(d, 0o755)
        xc = XconProcess(["--p2p", name, *args], cwd=d)
        made.append(xc)
        xc.wait_health("0", contains="All 2 sockets connected")
        return xc, name

    yield start
    for xc in made:
        xc.kill()
        shutil.rmtree(xc.workdir, ignore_errors=True)


def tcp_address(xc: XconProcess) -> str:
    log = xc.wait_log("control API on http://")
    line = [x for x in log.splitlines() if "control API on http://" in x][0]
    return line.split("control API on http://")[1].split()[0]


def quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def victim_file() -> tuple[str, bytes]:
    """A root-only file in a root-only directory: what an attacker aims a capture at."""
    d = tempfile.mkdtemp(prefix="xcon-victim-")
    os.chmod(d, 0o700)
    path = os.path.join(d, "victim")
    with open(path, "wb") as f:
        f.write(b"root's data\n")
    os.chmod(path, 0o600)
    return path, b"root's data\n"


def test_tcp_listener_without_a_token_only_reads(started, as_user):
    xc, name = started("--control-listen", "127.0.0.1:0")
    where = tcp_address(xc)
    victim, content = victim_file()
    link = f"/links/{quoted(name)}"
    spec = "listen:127.0.0.1:5001--listen:127.0.0.1:5002"
    got = as_user(
        NOBODY,
        [
            (where, "GET", "/metrics", None, None),
            (where, "GET", "/links", None, None),
            (where, "GET", link, None, None),
            (where, "GET", "/health", None, None),
            (where, "POST", "/links", {"spec": spec}, None),
            (where, "POST", f"{link}/capture", {"file": victim}, None),
            (where, "GET", f"{link}/capture", None, None),
            (where, "POST", f"{link}/down", None, None),
            (where, "PUT", f"{link}/impair", {"netem": "loss 100%"}, None),
            (where, "POST", "/counters/reset", None, None),
            (where, "DELETE", link, None, None),
            (where, "POST", "/reload", None, None),
        ],
    )
    reads, changes = got[:4], got[4:]
    assert [s for s, _ in reads] == [200, 200, 200, 200], reads
    assert "xcon_link_receive_frames_total" in reads[0][1]
    for status, body in changes:
        assert status == 403, (status, body)
        assert "read-only" in json.loads(body)["error"]
    # nothing changed: the link is there, up, unimpaired, no capture; the victim untouched
    st = os.stat(victim)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    with open(victim, "rb") as f:
        assert f.read() == content
    doc = json.loads(api(xc).request("GET", link)[1])
    assert doc["admin"] == "up" and doc["captures"] == []
    assert doc["impair"] == {"a2b": None, "b2a": None}
    assert "refused" in xc.log()
    # the refusals are counted
    metrics = as_user(NOBODY, [(where, "GET", "/metrics", None, None)])[0][1]
    assert 'xcon_control_refused_requests_total{reason="forbidden"} 8.0' in metrics
    shutil.rmtree(os.path.dirname(victim), ignore_errors=True)


def test_tcp_listener_changes_need_the_token(started, as_user):
    d = tempfile.mkdtemp(prefix="xcon-token-")
    token_file = os.path.join(d, "token")
    xc, name = started("--control-listen", "127.0.0.1:0", "--control-token-file", token_file)
    where = tcp_address(xc)
    # made at start, 0600, root's
    st = os.stat(token_file)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    with open(token_file) as f:
        token = f.read().strip()
    assert len(token) >= 32
    link = f"/links/{quoted(name)}"
    good = {"Authorization": f"Bearer {token}"}
    bad = {"Authorization": f"Bearer {token[:-1]}x"}
    got = as_user(
        NOBODY,
        [
            (where, "POST", f"{link}/down", None, None),
            (where, "POST", f"{link}/down", None, bad),
            (where, "POST", f"{link}/down", None, good),
            # a token holder may not open host resources or name monitors
            (where, "POST", "/links", {"spec": "listen:127.0.0.1:5001--tap:evil0"}, good),
            (where, "POST", "/links", {"spec": "unix:/run/x.sock--raw:lo"}, good),
            (
                where,
                "POST",
                f"{link}/up",
                {"monitors": {name.split("--")[0]: "127.0.0.1:22"}},
                good,
            ),
            (where, "POST", f"{link}/up", None, good),
        ],
    )
    assert got[0][0] == 401 and "token" in json.loads(got[0][1])["error"]
    assert got[1][0] == 401
    assert got[2][0] == 200 and json.loads(got[2][1])["admin"] == "down"
    assert got[3][0] == 403 and "listen, tap" in json.loads(got[3][1])["error"]
    assert got[4][0] == 403 and "raw, unix" in json.loads(got[4][1])["error"]
    assert got[5][0] == 403 and "monitors" in json.loads(got[5][1])["error"]
    assert got[6][0] == 200 and json.loads(got[6][1])["admin"] == "up"
    assert not os.path.exists("/sys/class/net/evil0")
    # xcon ctl with the token file
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "ctl", "--url", f"http://{where}"]
        + ["--token-file", token_file, "down", name],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "xcon", "ctl", "--url", f"http://{where}", "up", name],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "Authorization: Bearer" in r.stderr
    shutil.rmtree(d, ignore_errors=True)


def test_allow_ends_lets_token_holders_add_those_kinds(started, as_user):
    d = tempfile.mkdtemp(prefix="xcon-token-")
    token_file = os.path.join(d, "token")
    with open(token_file, "w") as f:
        f.write("s3cret-token-for-the-lab-0123456789\n")
    os.chmod(token_file, 0o600)
    xc, _name = started(
        "--control-listen",
        "127.0.0.1:0",
        "--control-token-file",
        token_file,
        "--control-allow-ends",
        "udp",
    )
    where = tcp_address(xc)
    good = {"Authorization": "Bearer s3cret-token-for-the-lab-0123456789"}
    got = as_user(
        NOBODY,
        [
            (
                where,
                "POST",
                "/links",
                {"spec": "udp:127.0.0.1:40001@40002--udp:127.0.0.1:40003@40004"},
                good,
            ),
            (
                where,
                "POST",
                "/links",
                {"spec": "udp:127.0.0.1:40005@40006--tcp:127.0.0.1:22"},
                good,
            ),
        ],
    )
    assert got[0][0] == 201, got[0]
    assert got[1][0] == 403 and "tcp ends" in json.loads(got[1][1])["error"]
    shutil.rmtree(d, ignore_errors=True)


def test_unix_socket_is_root_only_unless_a_group_is_named(started, as_user):
    xc, name = started()
    sock = os.path.join(xc.workdir, "xcon.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    got = as_user(NOBODY, [(sock, "GET", "/links", None, None)])
    assert got[0][0] == 0 and "PermissionError" in got[0][1]
    # a socket whose mode was widened by someone: the peer's credentials still decide
    os.chmod(sock, 0o666)
    got = as_user(STRANGER, [(sock, "GET", "/links", None, None)])
    assert got[0][0] == 403 and f"uid {STRANGER}" in json.loads(got[0][1])["error"]


def test_control_group_members_change_links_but_do_not_add(started, as_user):
    xc, name = started("--control-group", str(NOBODY))
    sock = os.path.join(xc.workdir, "xcon.sock")
    st = os.stat(sock)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY
    link = f"/links/{quoted(name)}"
    got = as_user(
        NOBODY,
        [
            (sock, "GET", "/links", None, None),
            (sock, "POST", f"{link}/down", None, None),
            (sock, "POST", f"{link}/up", None, None),
            (sock, "POST", "/links", {"spec": "tap:evil1--listen:127.0.0.1:5003"}, None),
        ],
        gid=NOBODY,
    )
    assert [s for s, _ in got] == [200, 200, 200, 403], got
    # a user outside the group cannot even connect (the socket's mode)
    got = as_user(STRANGER, [(sock, "GET", "/links", None, None)])
    assert got[0][0] == 0 and "PermissionError" in got[0][1]


def with_token_file(tmp_path, path) -> subprocess.CompletedProcess[str]:
    """xcon started with ``path`` as its token file (and nothing to connect to)."""
    return run_xcon(
        *("--p2p", "a/1--b/1", "--control", "none", "--control-listen", "127.0.0.1:0"),
        *("--control-token-file", str(path), "--health-file", str(tmp_path / "health")),
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "mode, content, message",
    [
        (0o644, "a-long-enough-token-0123456789\n", "others may read it"),
        (0o600, "short\n", "expected one token"),
        (0o600, "two tokens-0123456789 abcdefghijklmnop\n", "expected one token"),
    ],
)
def test_a_bad_token_file_is_one_line_and_exit_2(tmp_path, mode, content, message):
    path = tmp_path / "token"
    path.write_text(content)
    os.chmod(path, mode)
    r = with_token_file(tmp_path, path)
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.splitlines() if "error" in x]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_symlinked_token_file_is_refused(tmp_path):
    real = tmp_path / "real"
    real.write_text("a-long-enough-token-0123456789\n")
    os.chmod(real, 0o600)
    link = tmp_path / "token"
    link.symlink_to(real)
    r = with_token_file(tmp_path, link)
    assert r.returncode == 2 and "--control-token-file" in r.stderr, r.stderr


def test_usage_errors_of_the_access_flags(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_xcon("--p2p", "a/1--b/1", *args, cwd=tmp_path)

    r = run("--control-token-file", "t")
    assert r.returncode == 2 and "applies to --control-listen only" in r.stderr
    r = run("--control-group", "no-such-group-xyz")
    assert r.returncode == 2 and "no such group" in r.stderr
    r = run("--control", "none", "--control-group", "0")
    assert r.returncode == 2 and "control socket" in r.stderr
    r = run("--control-allow-ends", "qemu,bogus")
    assert r.returncode == 2 and "'qemu,bogus'" in r.stderr
    r = run("--control-allow-ends", "")
    assert r.returncode == 2 and "expected kinds" in r.stderr


def test_tcp_connection_identity_is_not_trusted_for_reads_of_traffic(started):
    """A live capture is the lab's traffic: not for a token-less TCP client."""
    xc, name = started("--control-listen", "127.0.0.1:0")
    host, port = tcp_address(xc).rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(f"GET /links/{quoted(name)}/capture HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = read_head(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 403"), got
    wait_until(lambda: "refused" in xc.log(), 5, "the refusal logged")
