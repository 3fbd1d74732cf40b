"""How ``xcon ctl`` reaches a running xcon: HTTP/1.1 over its unix socket or a
``--control-listen`` address, one request at a time (:class:`Client`), or a
response read as it comes (:class:`LiveResponse`, a live capture).  Any
failure to reach xcon is :class:`Unreachable`."""

from __future__ import annotations

import http.client
import json
import os
import socket
from urllib.parse import quote, urlsplit

from xcon.control import DEFAULT_SOCKET

#: Seconds to wait for xcon (``xcon ctl --timeout``).
TIMEOUT = 10.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = _unix_socket(self.path, self.timeout)


class Unreachable(Exception):
    pass


def link_path(name: str, action: str = "") -> str:
    """``/links/NAME`` (and ``/ACTION``) with the link's name percent-encoded."""
    return "/links/" + quote(name, safe="") + (f"/{action}" if action else "")


class Client:
    """One request at a time to xcon's control API."""

    def __init__(
        self,
        path: str | None = None,
        url: str | None = None,
        timeout: float = TIMEOUT,
        token: str | None = None,
    ):
        self.path = path
        self.url = url
        self.timeout = timeout
        #: Sent as ``Authorization: Bearer`` (changes on a --control-listen address).
        self.token = token

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def where(self) -> str:
        return self.url or os.path.abspath(self.path or DEFAULT_SOCKET)

    def _address(self) -> tuple[str, int]:
        assert self.url
        u = urlsplit(self.url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"--url {self.url!r}: expected http://HOST:PORT")
        return u.hostname, u.port or 80

    def _conn(self) -> http.client.HTTPConnection:
        if self.url:
            host, port = self._address()
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        return UnixHTTPConnection(self.path or DEFAULT_SOCKET, timeout=self.timeout)

    def connect(self) -> socket.socket:
        """A connected blocking socket to xcon (for a streamed answer)."""
        if self.url:
            return socket.create_connection(self._address(), timeout=self.timeout)
        s = _unix_socket(self.path or DEFAULT_SOCKET, self.timeout)
        s.settimeout(None)
        return s

    def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes, str]:
        """(status, body, content type); raises Unreachable.  ``body``: sent as
        JSON, or as it is when it is bytes already (a request passed on)."""
        conn = self._conn()
        if isinstance(body, bytes):
            data: bytes | None = body
        else:
            data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        headers.update(self.auth_headers)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException) as e:
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise Unreachable(f"cannot reach xcon at {self.where}: {why}") from None
        finally:
            conn.close()

    def stream(self, method: str, path: str) -> LiveResponse:
        """Send a request whose answer is read as it comes; raises Unreachable."""
        try:
            sock = self.connect()
        except OSError as e:
            raise Unreachable(f"cannot reach xcon at {self.where}: {e.strerror or e}") from None
        live = LiveResponse(sock, self.where)
        try:
            live.send(method, path, self.auth_headers)
        except BaseException:
            live.close()
            raise
        return live


class LiveResponse:
    """A response read piece by piece as xcon sends it (a live capture).

    :meth:`receive` blocks for the next piece; the body read so far waits in
    :meth:`take`.  ``status`` is 0 until the head arrived; ``complete`` says
    whether the response ended as HTTP says it ends (not cut off).

    h11 is imported here, not with the module: only a live capture needs it,
    and it would add a fifth to every ``xcon ctl``'s start."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        import h11

        self.sock = sock
        self.where = where
        self.conn: h11.Connection = h11.Connection(h11.CLIENT)
        self.status = 0
        #: The response's headers, names in lower case.
        self.headers: dict[str, str] = {}
        self.complete = False
        self._body: list[bytes] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, method: str, path: str, headers: dict[str, str]) -> None:
        import h11

        try:
            self.sock.sendall(
                self.conn.send(
                    h11.Request(
                        method=method, target=path, headers=[("Host", "xcon"), *headers.items()]
                    )
                )
            )
            self.sock.sendall(self.conn.send(h11.EndOfMessage()))
        except (OSError, h11.ProtocolError) as e:
            raise Unreachable(f"request to {self.where} failed: {e}") from None

    def receive(self) -> bool:
        """Read what xcon sent next (blocking); False once the response is over."""
        import h11

        try:
            data = self.sock.recv(256 * 1024)
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    self.status = event.status_code
                    self.headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    self._body.append(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    self.complete = True
                    return False
        except (OSError, h11.ProtocolError) as e:
            raise Unreachable(f"the stream from {self.where} ended: {e}") from None
        return bool(data)

    def take(self) -> list[bytes]:
        """The body's pieces received since the last call."""
        body, self._body = self._body, []
        return body

    def close(self) -> None:
        self.sock.close()


def _unix_socket(path: str, timeout: float | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s
