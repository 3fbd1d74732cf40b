"""Faults met in the field, each kept as the case that showed it.

* Out of file descriptors, a connection waiting on the control socket made
  every accept fail at once (EMFILE) and xcon spun at 100 % CPU logging
  megabytes a second; the listener now pauses and retries.
* Live capture streams never ended and counted as connections, so 64 of
  them locked every ``xcon ctl`` out; they now have a cap of their own and
  a client that reads nothing is let go.
* On a full filesystem the health file kept saying healthy after a router
  went down, and even after xcon exited.
* Clearing ``rate 8bit`` left the link dark for days: new frames queued
  behind the old settings' departures.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xcon.control.client import Client, Unreachable, link_path
from xcon.control.server import ControlServer, Request, Response, Streaming, json_response
from xcon.engines import make_engine
from xcon.testing.control import call, ctl, read_head, wait_api
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, numbered, wire
from xcon.testing.loop import run_until
from xcon.testing.loopback import new_host
from xcon.testing.wait import wait_until

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]


def metric(xc, name: str) -> float:
    """The value of an unlabelled sample in xcon's /metrics."""
    _s, text = call(xc, "GET", "/metrics")
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and not s.labels:
                return s.value
    raise AssertionError(f"{name} not in /metrics")


def health_answers(path: str) -> bool:
    try:
        status, data, _ = Client(path=path, timeout=2).request("GET", "/health")
    except Unreachable:
        return False
    return status == 200 and b'"code"' in data


# -- out of descriptors ----------------------------------------------------------------------

#: One link's two sockets and xcon's headroom (xcon.rlimit.HEADROOM): xcon starts,
#: and some fifty connections use up what is left.
NOFILE = 66


def low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_out_of_descriptors_xcon_pauses_accepting_instead_of_spinning(peers, xcon):
    a = peers()
    lhost = new_host()  # a listen: end: its accept meets the same shortage
    xc = xcon("--p2p", f"{endpoint(a)}--listen:{lhost}:10001", preexec=low_nofile)
    xc.wait_health("0", contains="Ready: 1 of 2")
    wait_api(xc)
    path = os.path.join(xc.workdir, "xcon.sock")
    held: list[socket.socket] = []
    try:
        for _ in range(100):  # more than xcon has descriptors for
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)  # completes in the backlog
            held.append(s)
        xc.wait_log("control: cannot accept")
        held += [socket.create_connection((lhost, 10001), timeout=5) for _ in range(3)]
        xc.wait_log(f"listen:{lhost}:10001: accept failed")
        lines = len(xc.log().splitlines())
        cpu = xc.cpu_seconds()
        time.sleep(2.0)  # the window measured
        cpu = xc.cpu_seconds() - cpu
        new_lines = xc.log().splitlines()[lines:]
        assert cpu < 0.4, f"{cpu:.2f} s of CPU in 2 s with connections waiting"
        # the data listener logs once per second's pause, the control one not again
        assert len(new_lines) <= 4, new_lines
        assert xc.log().count("cannot accept") == 1
    finally:
        for s in held:
            s.close()
    # descriptors free again: a fresh client is served, and the link's client too
    wait_until(lambda: health_answers(path), 10, "GET /health answered again")
    xc.wait_log("control: accepting on")
    assert "failed accepts in" in xc.log()
    assert metric(xc, "xcon_control_accept_errors_total") >= 1
    c = socket.create_connection((lhost, 10001), timeout=5)
    try:
        c.sendall(wire(numbered(1, 100)))
        a.wait_frames(1, timeout=10)
        assert check_numbered(a.frames[0]) == 1
        xc.wait_health("0", contains="All 2 sockets connected")
    finally:
        c.close()
    assert "Traceback" not in xc.log()
    assert xc.terminate() == 0


# -- live streams ----------------------------------------------------------------------------


def open_stream(path: str, name: str) -> tuple[socket.socket, bytes]:
    """GET a live capture of ``name``; returns the socket and the response head."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(f"GET {link_path(name, 'capture')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s, read_head(s)


def test_live_streams_have_a_cap_of_their_own_and_the_api_still_answers(peers, xcon):
    ends = [peers() for _ in range(6)]
    links = [f"{endpoint(ends[i])}--{endpoint(ends[i + 1])}" for i in (0, 2, 4)]
    xc = xcon("--p2p", *links)
    xc.wait_health("0", contains="All 6 sockets connected")
    wait_api(xc)
    path = os.path.join(xc.workdir, "xcon.sock")
    held: list[socket.socket] = []
    try:
        for name in links[:2]:  # 8 per link: the cap of 16 on two links
            for _ in range(8):
                s, head = open_stream(path, name)
                held.append(s)
                assert head.startswith(b"HTTP/1.1 200 "), head
        s, answer = open_stream(path, links[2])
        held.append(s)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        body = answer.split(b"\r\n\r\n", 1)[1]
        while len(body) < 10 or not body.endswith(b"\n"):
            body += s.recv(4096)
        doc = json.loads(body)
        assert "16 live streams" in doc["error"] and "\n" not in doc["error"]
        _s, link = call(xc, "GET", link_path(links[2]))
        assert link["captures"] == []  # refused before a capture started
        # idle connections up to the cap for requests: a request still gets a place
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            held.append(s)
        r = ctl(xc, "health")
        assert r.returncode == 0 and "All 6 sockets connected" in r.stdout, r
        assert health_answers(path)
        assert metric(xc, "xcon_control_streams") == 16
        assert metric(xc, "xcon_control_streams_refused_total") == 1
    finally:
        for s in held:
            s.close()
    # the streams' readers gone, their captures end and a stream can start again
    wait_until(lambda: metric(xc, "xcon_control_streams") == 0, 10, "the streams to end")
    s, head = open_stream(path, links[2])
    s.close()
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert xc.terminate() == 0


class Endless:
    """A streamed body that always has another 64 KiB piece."""

    content_type = "application/octet-stream"
    ended = False

    def __init__(self, made: list[Endless]) -> None:
        self.gone_ = False
        made.append(self)

    def pull(self) -> bytes | None:
        return b"x" * 65536

    def set_wakeup(self, wake) -> None:
        pass

    def gone(self) -> None:
        self.gone_ = True


@pytest.fixture
def stream_server(engine, tmp_path) -> Iterator[tuple]:
    """A control server in-process whose /stream answers are endless bodies."""
    loop = make_engine(engine)
    made: list[Endless] = []

    def handler(req: Request) -> Response | Streaming:
        if req.path == "/stream":
            return Streaming(Endless(made))
        return json_response(200, {"path": req.path})

    srv = ControlServer(loop, handler, max_connections=2, max_streams=3, stream_stall=0.5)
    path = srv.listen_unix(str(tmp_path / "s.sock"))
    clients: list[socket.socket] = []

    def connect(request: bytes = b"") -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(path)
        s.settimeout(5)
        if request:
            s.sendall(request)
        clients.append(s)
        return s

    try:
        yield loop, srv, made, connect
    finally:
        for s in clients:
            s.close()
        srv.close()
        loop.close()


STREAM = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"


def test_streams_take_no_request_places_and_one_over_the_cap_is_refused(stream_server):
    loop, srv, made, connect = stream_server
    srv.stream_stall = 60.0  # these clients read nothing, and must not be let go here
    for i in range(3):  # more streams than max_connections
        connect(STREAM)
        run_until(loop, lambda i=i: srv.streams == i + 1, "one more stream")
    over = connect(STREAM)
    run_until(loop, lambda: len(made) == 4 and made[3].gone_, "the fourth refused")
    assert over.recv(100).startswith(b"HTTP/1.1 503 ")
    assert srv.streams_refused == 1 and srv.streams == 3
    plain = connect(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    got = bytearray()

    def answered() -> bool:
        if select.select([plain], [], [], 0)[0]:
            got.extend(plain.recv(4096))
        return b'"path": "/x"' in got

    run_until(loop, answered, "a plain request answered beside three streams")
    assert got.startswith(b"HTTP/1.1 200 ")
    assert srv.streams == 3 and not any(b.gone_ for b in made[:3])


def test_a_stream_whose_client_reads_nothing_is_ended_one_that_reads_is_not(stream_server):
    loop, srv, made, connect = stream_server
    stuck = connect(STREAM)
    run_until(loop, lambda: srv.streams == 1, "a stream")
    reader = connect(STREAM)
    run_until(loop, lambda: srv.streams == 2, "two streams")
    read = [0]
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            try:
                read[0] += len(reader.recv(65536))
            except OSError:
                return
            time.sleep(0.01)

    t = threading.Thread(target=keep_reading, daemon=True)
    t.start()
    try:
        run_until(loop, lambda: srv.streams_stalled == 1, "the stuck stream ended")
        assert made[0].gone_ and not made[1].gone_
        at_end = read[0]
        run_until(loop, lambda: read[0] > at_end + 10 * 65536, "the reader still served")
        assert srv.streams == 1
    finally:
        stop.set()
        t.join(5)
    while stuck.recv(65536):  # what was queued, then the end: xcon closed it
        pass


# -- the health file on a full filesystem ----------------------------------------------------


@pytest.fixture
def tiny_fs(tmpfs) -> str:
    """A 64 KiB tmpfs (root), unmounted after the test."""
    return str(tmpfs("64k"))


def fill(directory: str) -> str:
    """Write a file until its filesystem is full; returns its path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
    finally:
        os.close(fd)
    return path


def test_a_full_filesystem_never_leaves_the_health_file_saying_healthy(peers, xcon, tiny_fs):
    a, b = peers(), peers()
    health = os.path.join(tiny_fs, "health")
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}", health_file=health)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    filler = fill(tiny_fs)
    b.stop()  # a router goes down: the file must stop saying healthy
    wait_until(lambda: xc.health() is None, 5, "the healthy file removed")
    xc.wait_log("removed health file")
    _s, doc = call(xc, "GET", "/health")
    assert doc["code"] == 1 and "No space left on device" in doc["file_error"], doc
    assert metric(xc, "xcon_health_file_ok") == 0
    r = ctl(xc, "health")
    assert r.returncode == 1 and "health file: cannot write" in r.stdout, r
    assert not [f for f in os.listdir(tiny_fs) if ".tmp." in f]  # no temporary left over
    os.unlink(filler)  # room again: the file is right within the retry period
    xc.wait_health("1", contains="Expected 2 sockets but only 1 connected", timeout=3)
    xc.wait_log("written again, after")
    assert call(xc, "GET", "/health")[1]["file_error"] is None
    assert metric(xc, "xcon_health_file_ok") == 1
    assert metric(xc, "xcon_health_file_errors_total") >= 1
    log = xc.log()
    assert log.count("health file: cannot write") == 1  # one line per failure period
    # full again when xcon stops: "not running" cannot be written, so no file
    filler = fill(tiny_fs)
    assert xc.terminate() == 0
    assert xc.health() is None, xc.health()
    os.unlink(filler)


# -- clearing an impairment ------------------------------------------------------------------


def test_clearing_rate_8bit_lets_the_next_frame_through_at_once(p2p):
    xc, a, b, link = p2p()
    status, _doc = call(xc, "PUT", link_path(link, "impair"), {"netem": "rate 8bit"})
    assert status == 200
    a.send_frames([numbered(i, 100) for i in range(5)])  # 100 s each at 8 bit/s
    wait_until(
        lambda: call(xc, "GET", link_path(link))[1]["ends"][0]["rx_frames"] == 5,
        5,
        "the frames in the delay line",
    )
    status, _doc = call(xc, "DELETE", link_path(link, "impair"))
    assert status == 200
    cleared = time.monotonic()
    a.send_frames([numbered(100, 100)])
    b.wait_frames(1, timeout=5)
    assert time.monotonic() - cleared < 2.0
    assert [check_numbered(f) for f in b.frames] == [100]
    _s, doc = call(xc, "GET", link_path(link))
    assert doc["ends"][1]["tx_drops"] == {"impair_cleared": 5}
    assert xc.terminate() == 0
