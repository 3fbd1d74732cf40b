"""The control server's HTTP handling in-process, on both engines: requests whole,
a byte at a time and pipelined; limits, timeouts, the connection cap, handler
errors and late answers.  Timeouts are shortened so the tests are quick."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from xcon.control.server import ControlServer, Pending, Request, Response, json_response
from xcon.engines import make_engine
from xcon.testing.loop import run_until


@pytest.fixture
def loop(engine):
    eng = make_engine(engine)
    yield eng
    eng.close()


def handler(req: Request) -> Response | Pending:
    if req.path == "/boom":
        raise RuntimeError("kaput")
    if req.path == "/echo":
        return json_response(200, {"method": req.method, "body": req.body.decode(), "q": req.query})
    return json_response(200, {"path": req.path})


@pytest.fixture
def server(loop, tmp_path):
    srv = ControlServer(loop, handler, idle_timeout=1.0, request_timeout=1.0, max_connections=8)
    path = srv.listen_unix(str(tmp_path / "c.sock"))
    yield srv, path
    srv.close()


def client(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(5)
    return s


def exchange(loop, path: str, chunks: list[bytes], responses: int = 1, pause: float = 0.0):
    """Send ``chunks`` from a thread while the loop runs; returns what came back."""
    s = client(path)
    got = bytearray()
    done = threading.Event()

    def talk() -> None:
        try:
            for c in chunks:
                s.sendall(c)
                if pause:
                    time.sleep(pause)
            while got.count(b"HTTP/1.1 ") < responses or not _complete(got, responses):
                data = s.recv(65536)
                if not data:
                    break
                got.extend(data)
        except OSError:
            pass
        finally:
            done.set()

    t = threading.Thread(target=talk, daemon=True)
    t.start()
    run_until(loop, done.is_set, "the exchange")
    t.join(5)
    s.close()
    return bytes(got)


def _complete(data: bytearray, n: int) -> bool:
    """``n`` whole responses (by Content-Length) are in ``data``."""
    pos = 0
    for _ in range(n):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return False
        head = bytes(data[pos:head_end]).lower()
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        pos = head_end + 4 + length
        if pos > len(data):
            return False
    return True


GET = b"GET /links/vr1%2F1--vr2%2F1?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_request_whole_and_a_byte_at_a_time(loop, server):
    _srv, path = server
    whole = exchange(loop, path, [GET])
    assert whole.startswith(b"HTTP/1.1 200 ") and b'"path": "/links/vr1/1--vr2/1"' in whole
    bytewise = exchange(loop, path, [GET[i : i + 1] for i in range(len(GET))])
    assert bytewise.split(b"\r\n\r\n", 1)[1] == whole.split(b"\r\n\r\n", 1)[1]


def test_pipelined_requests_are_all_answered_in_order(loop, server):
    body = b'{"a": 1}'
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    got = exchange(loop, path := server[1], [GET + post + GET], responses=3)
    assert got.count(b"HTTP/1.1 200 ") == 3
    assert got.index(b'"method": "POST"') > got.index(b'"path"')
    assert path


def test_a_body_over_the_limit_is_refused_at_once(loop, server):
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
    got = exchange(loop, server[1], [head])
    assert got.startswith(b"HTTP/1.1 413 ") and b"connection: close" in got.lower()


def test_a_chunked_body_over_the_limit_is_refused(loop, server):
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
    got = exchange(loop, server[1], [head] + [chunk] * 6)
    assert got.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\x13garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n",
    ],
    ids=["binary", "header", "huge-head"],
)
def test_garbage_is_a_400_and_the_connection_closes(loop, server, garbage):
    got = exchange(loop, server[1], [garbage])
    assert got.startswith(b"HTTP/1.1 400 ") or got.startswith(b"HTTP/1.1 505 "), got[:60]


def test_a_handler_error_is_a_500_and_one_log_line(loop, server, caplog):
    with caplog.at_level(logging.ERROR, logger="xcon.control"):
        got = exchange(loop, server[1], [b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert got.startswith(b"HTTP/1.1 500 ") and b"RuntimeError: kaput" in got
    assert [r.getMessage() for r in caplog.records] == [
        "control: GET /boom failed: RuntimeError: kaput"
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_slow_and_idle_clients_are_closed(loop, server):
    srv, path = server
    slow = client(path)
    slow.sendall(b"GET / HTTP/1.1\r\n")  # and nothing more
    idle = client(path)
    run_until(loop, lambda: len(srv.conns) == 2, "two connections")
    run_until(loop, lambda: not srv.conns, "both closed by the timeouts")
    slow.settimeout(1)
    assert slow.recv(1000).startswith(b"HTTP/1.1 408 ")
    assert idle.recv(1000) == b""


def test_the_connection_cap_closes_the_quietest(loop, server):
    srv, path = server
    first = client(path)
    run_until(loop, lambda: len(srv.conns) == 1, "one")
    time.sleep(0.01)
    others = [client(path) for _ in range(8)]
    run_until(loop, lambda: srv.rejected >= 1, "the cap")
    assert len(srv.conns) == 8
    first.settimeout(1)
    assert first.recv(10) == b"", "the oldest idle one went"
    got = exchange(loop, path, [GET])
    assert got.startswith(b"HTTP/1.1 200 ")
    for s in others:
        s.close()


def test_a_late_answer(loop, tmp_path):
    pending: list[Pending] = []

    def later(req: Request) -> Pending:
        p = Pending()
        pending.append(p)
        loop.call_later(0.05, lambda: p.resolve(json_response(202, {"late": True})))
        return p

    srv = ControlServer(loop, later)
    path = srv.listen_unix(str(tmp_path / "l.sock"))
    try:
        got = exchange(loop, path, [GET])
        assert got.startswith(b"HTTP/1.1 202 ") and b'"late": true' in got
    finally:
        srv.close()


class _Body:
    """A stream body with two pieces, already ended."""

    content_type = "application/octet-stream"

    def __init__(self) -> None:
        self.pieces = [b"hello ", b"world"]
        self.ended = True
        self.gone_called = False

    def pull(self) -> bytes | None:
        return self.pieces.pop(0) if self.pieces else None

    def set_wakeup(self, wake) -> None:
        pass

    def gone(self) -> None:
        self.gone_called = True


def test_a_late_stream_and_one_whose_client_left(loop, tmp_path):
    """A pending answer may turn into a stream (a live capture whose filter
    was compiled on a worker); if its client went meanwhile, the stream's
    source is told at once, so nothing keeps feeding it."""
    from xcon.control.server import Streaming

    pending: list[Pending] = []

    def later(req: Request) -> Pending:
        p = Pending()
        pending.append(p)
        return p

    srv = ControlServer(loop, later)
    path = srv.listen_unix(str(tmp_path / "s.sock"))
    try:
        s = client(path)
        s.sendall(GET)
        run_until(loop, lambda: len(pending) == 1, "the request")
        body = _Body()
        pending[0].resolve(Streaming(body))
        got = bytearray()
        done = threading.Event()

        def read() -> None:
            while data := s.recv(65536):
                got.extend(data)
            done.set()

        threading.Thread(target=read, daemon=True).start()
        run_until(loop, done.is_set, "the stream's end")
        s.close()
        assert got.startswith(b"HTTP/1.1 200 ") and b"hello " in got and b"world" in got
        assert got.endswith(b"0\r\n\r\n") and not body.gone_called
        # the client leaves before the answer: the stream's source is told
        s = client(path)
        s.sendall(GET)
        run_until(loop, lambda: len(pending) == 2, "the second request")
        s.close()
        run_until(loop, lambda: not srv.conns, "the server to see the client go")
        left = _Body()
        pending[1].resolve(Streaming(left))
        assert left.gone_called
    finally:
        srv.close()
