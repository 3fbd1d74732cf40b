"""A small HTTP/1.1 server inside the reactor, for the control API.

The protocol is h11's (a sans-I/O HTTP/1.1 state machine); this module only
moves bytes between sockets and it, on the engine's ``register`` interface,
so it runs unchanged on both engines and never blocks the loop.  It is meant
for a few local clients (``xcon ctl``, curl, a Prometheus scraper), and for
surviving anything else:

* a request head or body over :data:`MAX_REQUEST` bytes is answered 413 (or
  400 for a head) and the connection closed; h11 enforces the head limit
  while the head is still incomplete, so nothing is buffered beyond it;
* each readiness event reads at most :data:`READ_CHUNK` bytes, a connection
  gets at most one request answered per loop turn (pipelined ones wait for
  the next turn), and each accept event takes at most
  :data:`ACCEPTS_PER_EVENT` connections, so a flood costs the links a bounded
  slice of each loop turn;
* a request must be complete within :data:`REQUEST_TIMEOUT` seconds of its
  first byte (slowloris), and a connection idle for :data:`IDLE_TIMEOUT`
  seconds is closed; one timer sweeps every second;
* at most :data:`MAX_CONNECTIONS` connections: a new one closes the one that
  has been quiet longest;
* an accept that fails for lack of descriptors or memory (EMFILE, ENFILE,
  ENOBUFS, ENOMEM) leaves the connection in the backlog and the socket
  readable, so the listener stops being watched for :data:`ACCEPT_PAUSE_MIN`
  seconds, doubling up to :data:`ACCEPT_PAUSE_MAX` while it goes on failing
  (counted: ``accept_errors``; one log line when it starts, one when accepts
  work again);
* a handler that raises is answered 500 with one log line, never a traceback;
  an answer the client does not read is dropped with the connection at the
  timeout.

A handler returns a :class:`Response`, or a :class:`Pending` it completes
later from the loop (an answer that waits for a router's monitor, or a
capture filter's compile, run on a worker thread); the connection reads
nothing more until then.  Or a
:class:`Streaming` answer: a body of unknown length (chunked), taken from a
:class:`StreamBody` as the client reads it (a live capture).  The server
holds at most one piece of it at a time and takes the next only when the
socket took the last, so a client that reads slowly holds back the body's
source (which must bound itself: a capture drops), never the loop; at most
:data:`STREAM_PIECES` pieces are sent per loop turn.  The body ends when its
source ends (then the connection closes) or when the client goes (the
source is told: ``gone``).  A stream is not timed out while its client
reads, however slowly, or while its source is quiet; one whose client took
nothing for :data:`STREAM_STALL` seconds (its socket full all that time) is
ended.  At most :data:`MAX_STREAMS` streams run at once (another is answered
503, and its source told ``gone``), and streams do not count against
:data:`MAX_CONNECTIONS`, so they can never take a plain request's place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from xcon.control.access import LOCAL, Peer, unix_peer
from xcon.control.sockets import Bound, bind_tcp, bind_unix
from xcon.engines import ERRORS, READ, WRITE, Callback, Engine, Registration, TimerHandle

log = logging.getLogger("xcon.control")

__all__ = [
    "ControlServer",
    "Pending",
    "Request",
    "Response",
    "StreamBody",
    "Streaming",
    "json_response",
]

#: Largest request head, and largest request body, in bytes.
MAX_REQUEST = 64 * 1024
READ_CHUNK = 64 * 1024
ACCEPTS_PER_EVENT = 16
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
SWEEP_EVERY = 1.0
#: Longest a closing connection is read (and discarded) after its answer.
LINGER = 2.0
SERVER_NAME = b"xcon"
#: The longest integer a JSON body may hold (every number xcon takes is far
#: shorter; longer ones would cost time to convert).
MAX_DIGITS = 100
#: Pieces of a streamed body sent per loop turn at most.
STREAM_PIECES = 4
#: At exit, the seconds a stream whose source ended has to take its last bytes.
FINAL_FLUSH = 1.0
#: Streamed answers running at once, at most (besides MAX_CONNECTIONS).
MAX_STREAMS = 16
#: A stream whose client took no byte for this long is ended.
STREAM_STALL = 30.0
#: accept() errors that mean "no resources now" (descriptors, buffers, memory).
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: After such an error a listener stops accepting this long, doubling up to the max.
ACCEPT_PAUSE_MIN = 0.1
ACCEPT_PAUSE_MAX = 1.0


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    #: Who sent it (the unix socket's peer credentials, or a TCP address).
    peer: Peer = LOCAL
    #: What the API decided the client is (see :mod:`xcon.control.access`).
    role: str = ""

    def json(self) -> Any:
        """The body as JSON (empty: ``{}``); raises ValueError with a one-line
        message.  Numbers must be finite (Python's json takes ``Infinity``,
        ``NaN`` and ``1e400``, which is infinite; JSON has none of them)."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(
                self.body, parse_float=_finite, parse_int=_integer, parse_constant=_no_constant
            )
        except (ValueError, UnicodeDecodeError) as e:  # with every number out of range
            raise ValueError(f"the body is not JSON ({e})") from None
        except RecursionError:
            raise ValueError("the body is not JSON (nested too deeply)") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc, indent=1).encode() + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class Pending:
    """An answer that comes later: call :meth:`resolve` from the loop (with a
    :class:`Response`, or a :class:`Streaming` answer)."""

    def __init__(self) -> None:
        self._done: Callable[[Response | Streaming], None] | None = None
        self._response: Response | Streaming | None = None

    def resolve(self, response: Response | Streaming) -> None:
        if self._response is not None:
            return
        self._response = response
        if self._done is not None:
            self._done(response)

    def _then(self, done: Callable[[Response | Streaming], None]) -> None:
        self._done = done
        if self._response is not None:
            done(self._response)


class StreamBody(Protocol):
    """The source of a streamed body (see the module docstring)."""

    content_type: str
    #: True once the source has nothing more to give than what ``pull`` returns.
    ended: bool

    def pull(self) -> bytes | None:
        """The next piece, or None when there is none now."""

    def set_wakeup(self, wake: Callable[[], None] | None) -> None:
        """``wake`` is called (on the loop) when a piece is ready or the body ended."""

    def gone(self) -> None:
        """The client went away (or the server closed): no more pulls."""


@dataclass
class Streaming:
    """An answer whose body is streamed (``Transfer-Encoding: chunked``)."""

    body: StreamBody
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], "Response | Pending | Streaming"]


class ControlServer:
    """Listening sockets and their connections on ``engine`` (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        handler: Handler,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        max_request: int = MAX_REQUEST,
        max_streams: int = MAX_STREAMS,
        stream_stall: float = STREAM_STALL,
    ) -> None:
        self.engine = engine
        self.handler = handler
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.max_request = max_request
        self.max_streams = max_streams
        self.stream_stall = stream_stall
        self.listeners: list[_Listener] = []
        self.conns: dict[int, _Conn] = {}
        self._sweeper: TimerHandle | None = None
        #: Counters for the tests and the metrics.
        self.requests = 0
        self.rejected = 0
        #: Accepts that failed for lack of descriptors or memory.
        self.accept_errors = 0
        #: Streams running; refused (MAX_STREAMS); ended for a client that read nothing.
        self.streams = 0
        self.streams_refused = 0
        self.streams_stalled = 0

    @property
    def addresses(self) -> list[str]:
        return [lst.address for lst in self.listeners]

    # -- listening ------------------------------------------------------------------
    def listen_unix(self, path: str, group: int | None = None) -> str:
        """Listen on a unix socket at ``path`` (:func:`.sockets.bind_unix`);
        returns the absolute path."""
        bound = bind_unix(path, group)
        self.adopt(bound)
        return bound.address

    def listen_tcp(self, host: str, port: int) -> str:
        """Listen on TCP ``host:port`` (port 0: any); returns ``host:port``."""
        bound = bind_tcp(host, port)
        self.adopt(bound)
        return bound.address

    def adopt(self, bound: Bound) -> None:
        """Accept on a listening socket made already (at start, or handed over)."""
        bound.sock.setblocking(False)
        lst = _Listener(self, bound.sock, bound.address, bound.unlink)
        self.listeners.append(lst)
        if self._sweeper is None:
            self._sweeper = self.engine.call_every(SWEEP_EVERY, self.sweep)

    def bound_sockets(self) -> list[Bound]:
        """The listening sockets, for a handover (:mod:`xcon.handover`)."""
        return [Bound(lst.sock, lst.address, lst.unlink) for lst in self.listeners]

    def keep_files(self) -> None:
        """Another xcon listens on these sockets now: closing leaves their files."""
        for lst in self.listeners:
            lst.unlink = None

    def close(self) -> None:
        """Close every connection and listener (and remove the unix socket file)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.conns.values()):
            if conn.stream is not None and conn.stream.ended:
                conn.finish_stream(FINAL_FLUSH)
            conn.close()
        for lst in self.listeners:
            lst.close()
        self.listeners.clear()

    def refuse_stream(self) -> Response | None:
        """The answer to a stream request when :data:`MAX_STREAMS` run already
        (counted), or None when there is room for one more."""
        if self.streams < self.max_streams:
            return None
        self.streams_refused += 1
        return error_response(
            503, f"{self.streams} live streams run already (at most {self.max_streams}): end one"
        )

    # -- connections ------------------------------------------------------------------
    def _accepted(self, sock: socket.socket, peer: Peer) -> None:
        if len(self.conns) - self.streams >= self.max_connections:
            idle = [c for c in self.conns.values() if c.pending is None and c.stream is None]
            if idle:
                min(idle, key=lambda c: c.last_active).close()
                self.rejected += 1
            else:
                sock.close()
                self.rejected += 1
                return
        sock.setblocking(False)
        conn = _Conn(self, sock, peer)
        self.conns[conn.fd] = conn

    def sweep(self) -> None:
        """Close connections past their time (see the module docstring)."""
        now = time.monotonic()
        for conn in list(self.conns.values()):
            if conn.stream is not None:
                if conn.stalled_since is not None and now - conn.stalled_since > self.stream_stall:
                    self.streams_stalled += 1
                    log.warning(
                        "control: a live stream ended: its client read nothing in %g s",
                        self.stream_stall,
                    )
                    conn.close()
                continue
            if conn.pending is not None:
                continue
            if (
                conn.request_started is not None
                and now - conn.request_started > self.request_timeout
            ):
                conn.fail(408, "request not complete in time")
            elif now - conn.last_active > self.idle_timeout:
                conn.close()


class _Listener:
    __slots__ = (
        "server",
        "sock",
        "address",
        "unlink",
        "reg",
        "_pause",
        "_backoff",
        "_failed",
        "_failing_since",
    )

    def __init__(
        self, server: ControlServer, sock: socket.socket, address: str, unlink: str | None
    ) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.unlink = unlink
        self.reg: Registration | None = server.engine.register(
            sock.fileno(), Callback(self._accept), READ
        )
        self._pause: TimerHandle | None = None  # accepting paused (out of resources)
        self._backoff = ACCEPT_PAUSE_MIN
        self._failed = 0  # failed accepts in this failure period
        self._failing_since = 0.0

    def _accept(self) -> None:
        if self._pause is not None:
            return
        for _ in range(ACCEPTS_PER_EVENT):
            try:
                s, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                self._recovered()
                return
            except OSError as e:
                if e.errno in RESOURCE_ERRORS:
                    self._out_of_resources(e)
                return
            self._recovered()
            if self.unlink is not None:
                peer = unix_peer(s)
            else:
                host, port = addr[:2]
                peer = Peer("tcp", address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            self.server._accepted(s, peer)

    def _out_of_resources(self, e: OSError) -> None:
        """The connection stays in the backlog, so the socket stays readable:
        stop watching it for a while (doubling up to ACCEPT_PAUSE_MAX) instead
        of spinning; one log line when it starts, one when it ends."""
        self.server.accept_errors += 1
        self._failed += 1
        if self._failed == 1:
            self._failing_since = time.monotonic()
            log.warning(
                "control: cannot accept on %s (%s): pausing accepts, retrying every %g to %g s",
                self.address,
                e.strerror or e,
                ACCEPT_PAUSE_MIN,
                ACCEPT_PAUSE_MAX,
            )
        if self.reg is not None:
            self.reg.set(0)
        self._pause = self.server.engine.call_later(self._backoff, self._resume)
        self._backoff = min(self._backoff * 2, ACCEPT_PAUSE_MAX)

    def _resume(self) -> None:
        self._pause = None
        if self.reg is not None:
            self.reg.set(READ)
            self._accept()

    def _recovered(self) -> None:
        if self._failed:
            log.warning(
                "control: accepting on %s again, after %d failed accepts in %.1f s",
                self.address,
                self._failed,
                time.monotonic() - self._failing_since,
            )
            self._failed = 0
        self._backoff = ACCEPT_PAUSE_MIN

    def close(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        if self.reg is not None:
            self.reg.close()
            self.reg = None
        self.sock.close()
        if self.unlink:
            with contextlib.suppress(OSError):
                os.unlink(self.unlink)


class _Conn:
    """One client connection: bytes in and out of its h11 state machine."""

    def __init__(self, server: ControlServer, sock: socket.socket, peer: Peer) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.fd = sock.fileno()
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_request)
        self.out = bytearray()
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.pending: Pending | None = None
        self.closing = False
        self.closing_since = 0.0
        self.closed = False
        self.last_active = time.monotonic()
        self.request_started: float | None = None
        self.stream: StreamBody | None = None
        #: Since when the socket has taken no byte of the stream (None: it takes them).
        self.stalled_since: float | None = None
        self._woken = False
        self.reg = server.engine.register(self.fd, self, READ)

    # -- events ---------------------------------------------------------------------
    def handle_event(self, events: int) -> None:
        if self.closed:
            return
        if events & READ:
            self._read()
        if self.closed:
            return
        if events & WRITE:
            if self.stream is not None:
                self._pump()
            else:
                self._flush()
        elif events & ERRORS and not events & READ:
            self.close()

    def _read(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.last_active = time.monotonic()
        if self.stream is not None:  # streaming: the client only reads; EOF ends it
            if not data:
                self.close()
            return
        if data and self.request_started is None:
            self.request_started = self.last_active
        if self.closing:  # answered and closing: discard what still comes
            if not data:
                self.close()
            elif self.last_active - self.closing_since > LINGER:
                self.close()
            return
        try:
            self.h11.receive_data(data)
        except RuntimeError:  # data after the peer's EOF
            self.close()
            return
        self._process()

    def _process(self) -> None:
        """Take h11's events until it needs data or a request is complete."""
        conn = self.h11
        while self.pending is None and not self.closing:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                what = "request head too large" if status == 431 or "large" in str(e) else str(e)
                self.fail(400 if status == 431 else status, f"bad request: {what}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body.clear()
                length = _content_length(event)
                if length is not None and length > self.server.max_request:
                    self.fail(413, f"request body over {self.server.max_request} bytes")
                    return
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.server.max_request:
                    self.fail(413, f"request body over {self.server.max_request} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _dispatch(self) -> None:
        ev = self.request
        assert ev is not None
        self.server.requests += 1
        target = ev.target.decode("latin-1")
        parts = urlsplit(target)
        req = Request(
            method=ev.method.decode("latin-1").upper(),
            path=unquote(parts.path),
            query=parse_qs(parts.query),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers},
            body=bytes(self.body),
            peer=self.peer,
        )
        self.body.clear()
        try:
            answer = self.server.handler(req)
        except Exception as e:  # noqa: BLE001 - one line in the log, a 500 to the client
            log.error("control: %s %s failed: %s: %s", req.method, req.path, type(e).__name__, e)
            answer = error_response(500, f"internal error: {type(e).__name__}: {e}")
        if isinstance(answer, Streaming):
            refused = self.server.refuse_stream()
            if refused is not None:
                answer.body.gone()
                self.respond(refused)
            else:
                self._start_stream(answer)
        elif isinstance(answer, Pending):
            self.pending = answer
            self.reg.set(0)  # nothing more is read until it is answered
            answer._then(self._answer_later)
        else:
            self.respond(answer)

    def _answer_later(self, response: Response | Streaming) -> None:
        self.pending = None
        if self.closed:
            if isinstance(response, Streaming):
                response.body.gone()  # nobody to stream to: its source ends
            return
        if isinstance(response, Streaming):
            refused = self.server.refuse_stream()  # the cap holds for a stream answered later too
            if refused is not None:
                response.body.gone()
                self.respond(refused)
            else:
                self._start_stream(response)
        else:
            self.respond(response)

    # -- answering --------------------------------------------------------------------
    def respond(self, resp: Response, close: bool = False) -> None:
        conn = self.h11
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.close()
            return
        headers = [
            ("Content-Type", resp.content_type),
            ("Content-Length", str(len(resp.body))),
            ("Server", SERVER_NAME.decode()),
            *resp.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        try:
            self.out += conn.send(h11.Response(status_code=resp.status, headers=headers))
            head_only = self.request is not None and self.request.method == b"HEAD"
            if resp.body and not head_only:
                self.out += conn.send(h11.Data(data=resp.body))
            self.out += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.close()
            return
        if close or conn.our_state is h11.MUST_CLOSE:
            self.closing = True
            self.closing_since = time.monotonic()
        self._flush()

    # -- streaming --------------------------------------------------------------------
    def _start_stream(self, answer: Streaming) -> None:
        body = answer.body
        headers = [
            ("Content-Type", body.content_type),
            ("Server", SERVER_NAME.decode()),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *answer.headers,
        ]
        try:
            self.out += self.h11.send(h11.Response(status_code=answer.status, headers=headers))
        except h11.LocalProtocolError:
            body.gone()
            self.close()
            return
        self.stream = body
        self.server.streams += 1
        body.set_wakeup(self._wake)
        self._pump()

    def _wake(self) -> None:
        """The body has more (called from inside a capture: pump on the next turn)."""
        if not self._woken and not self.closed:
            self._woken = True
            self.server.engine.call_soon(self._woke)

    def _woke(self) -> None:
        self._woken = False
        if self.stream is not None and not self.closed:
            self._pump()

    def _pump(self) -> None:
        """Send what the socket takes, a piece of the body at a time."""
        body = self.stream
        assert body is not None
        for _ in range(STREAM_PIECES):
            if not self._send_out():
                return
            piece = body.pull()
            if piece is None:
                if body.ended:
                    self._end_stream()
                else:
                    self.reg.set(READ)
                return
            try:
                self.out += self.h11.send(h11.Data(data=piece))
            except h11.LocalProtocolError:
                self.close()
                return
        if self._send_out():
            self.reg.set(READ | WRITE)  # more may wait: the next turn takes it

    def _send_out(self) -> bool:
        """Send ``out``; False when the socket is full (WRITE asked) or closed."""
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                if self.stalled_since is None:
                    self.stalled_since = time.monotonic()
                self.reg.set(READ | WRITE)
                return False
            except OSError:
                self.close()
                return False
            del self.out[:n]
            self.stalled_since = None
        return not self.closed

    def finish_stream(self, timeout: float) -> None:
        """The server closes: send what is left of an ended stream, its end
        included, waiting at most ``timeout`` seconds for the client to read it."""
        body = self.stream
        assert body is not None
        while (piece := body.pull()) is not None:
            with contextlib.suppress(h11.LocalProtocolError):
                self.out += self.h11.send(h11.Data(data=piece))
        with contextlib.suppress(h11.LocalProtocolError):
            self.out += self.h11.send(h11.EndOfMessage())
        body.set_wakeup(None)
        self.stream = None
        self.server.streams -= 1
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(self.out)
        except OSError:
            pass
        self.out.clear()

    def _end_stream(self) -> None:
        body = self.stream
        assert body is not None
        body.set_wakeup(None)
        self.stream = None
        self.server.streams -= 1
        try:
            self.out += self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self.close()
            return
        self.closing = True
        self.closing_since = time.monotonic()
        self._flush()

    def fail(self, status: int, message: str) -> None:
        """Answer an error (when the protocol still allows one) and close."""
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.respond(error_response(status, message), close=True)
        else:
            self.close()

    def _flush(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            del self.out[:n]
            self.last_active = time.monotonic()
        if self.out:
            self.reg.set(WRITE)
            return
        if self.closing:
            # Lingering close: stop sending, read and discard what the client
            # still sends until it hangs up (or the idle timeout), so the kernel
            # does not reset the connection before the client has read the answer.
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.close()
                return
            self.reg.set(READ)
            return
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.request = None
            self.request_started = None
            self.reg.set(READ)
            # A request pipelined behind this one is taken on the next loop turn,
            # so a client sending many at once cannot hold the loop.
            self.server.engine.call_soon(self._next_request)
        elif self.pending is None:
            self.reg.set(READ)

    def _next_request(self) -> None:
        if not self.closed and self.pending is None:
            self._process()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.reg.close()
        self.server.conns.pop(self.fd, None)
        if self.stream is not None:
            body, self.stream = self.stream, None
            self.server.streams -= 1
            body.set_wakeup(None)
            body.gone()
        with contextlib.suppress(OSError):
            self.sock.close()


def _content_length(event: h11.Request) -> int | None:
    for k, v in event.headers:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
