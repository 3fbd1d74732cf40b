"""The control plane: an HTTP/1.1 JSON API inside the reactor (:mod:`.server`,
:mod:`.api`), Prometheus metrics (:mod:`.metrics`), ``xcon ctl`` (:mod:`.client`)
and the ``--config`` file (:mod:`.config`).

It reads and changes links while they forward, on the same loop and thread,
so it never races the data path; it never blocks the loop (a router's
monitor is asked on a worker thread) and never touches a link it was not
asked to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from xcon.errors import ModeError

if TYPE_CHECKING:
    from xcon.app import Xcon
    from xcon.control.config import Reload
    from xcon.control.sockets import Bound

#: The control socket when ``--control`` is not given (in the working directory,
#: next to the health file; ``/xcon.sock`` in the container).
DEFAULT_SOCKET = "xcon.sock"


class ControlSettings:
    """Where the control API listens (checked values).  A plain class, not a
    dataclass: ``xcon ctl`` imports this package, and dataclasses would cost
    it 8 ms of start-up."""

    __slots__ = ("path", "path_given", "tcp", "group", "token_file", "allow_ends")

    def __init__(
        self,
        path: str | None = DEFAULT_SOCKET,  # None: no unix socket
        path_given: bool = False,  # --control PATH: failing to listen there is an error
        tcp: tuple[str, int] | None = None,
        group: int | None = None,  # --control-group: its members are operators
        token_file: str | None = None,  # --control-token-file: changes over TCP with it
        allow_ends: frozenset[str] = frozenset(),  # --control-allow-ends
    ) -> None:
        self.path = path
        self.path_given = path_given
        self.tcp = tcp
        self.group = group
        self.token_file = token_file
        self.allow_ends = allow_ends

    def __repr__(self) -> str:
        return (
            f"ControlSettings(path={self.path!r}, path_given={self.path_given}, tcp={self.tcp}, "
            f"group={self.group}, token_file={self.token_file!r}, "
            f"allow_ends={sorted(self.allow_ends)})"
        )


def parse_listen(text: str, any_address: bool = False) -> tuple[str, int]:
    """``--control-listen HOST:PORT`` (``[V6]:PORT``, ``localhost:PORT``): an IP
    address and a port; a non-loopback address only with ``any_address``.
    Raises ValueError with the message for the user."""
    import ipaddress

    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--control-listen {text!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:9810")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"--control-listen {text!r}: {host!r} is not an IP address (IPv6 in brackets)"
        ) from None
    if not (port_text.isascii() and port_text.isdigit() and 0 <= int(port_text) <= 65535):
        raise ValueError(f"--control-listen {text!r}: port {port_text!r} is not in 0..65535")
    if not ip.is_loopback and not any_address:
        raise ValueError(
            f"--control-listen {text!r}: {host} is not a loopback address; anything that "
            "reaches it reads the links and metrics, and the token of changes crosses the "
            "network in clear: add --control-listen-any to listen there anyway"
        )
    return str(ip), int(port_text)


def start_control(
    app: Xcon,
    settings: ControlSettings,
    engine_name: str,
    reload: Reload | None = None,
    handed: list[Bound] | None = None,
) -> None:
    """Listen for the control API on ``app``'s engine (nothing when disabled).

    The sockets are made now: one that cannot be made is a :class:`ModeError`
    when the user asked for it, and a warning for the default path.  The
    server (HTTP, the API, the metrics) is loaded on the loop's first turn,
    once the links have started: it costs start-up time that forwarding need
    not wait for, and a client connecting before waits in the backlog.
    ``handed``: listening sockets a handover passed (:mod:`xcon.handover`),
    used instead of new ones."""
    from xcon.control.sockets import bind_tcp, bind_unix

    token = None
    if settings.token_file:
        from xcon.control.access import load_token

        token = load_token(settings.token_file)
    bound: list[Bound] = list(handed or ())
    pending = _Pending(bound)
    app.services.append(pending)
    if handed is None:
        bind_control(settings, token is not None, bound, bind_unix, bind_tcp)

    def serve() -> None:
        if pending.closed:
            return
        from xcon.control.access import Access
        from xcon.control.api import ControlAPI
        from xcon.control.server import ControlServer

        access = Access(token, settings.group, settings.allow_ends, settings.token_file)
        api = ControlAPI(app, engine_name, reload=reload, access=access)
        server = ControlServer(app.engine, api)
        api.server = server
        for b in bound:
            server.adopt(b)
        bound.clear()
        app.services.remove(pending)
        app.services.append(server)
        app.services.append(api)

    if bound:
        app.engine.call_soon(serve)
    else:
        app.services.remove(pending)


def bind_control(
    settings: ControlSettings,
    token: bool,
    bound: list[Bound],
    bind_unix: Callable[[str, int | None], Bound],
    bind_tcp: Callable[[str, int], Bound],
) -> None:
    """Make the control sockets ``settings`` asks for into ``bound`` (logged)."""
    import logging

    log = logging.getLogger("xcon.control")
    try:
        if settings.path is not None:
            try:
                b = bind_unix(settings.path, settings.group)
                bound.append(b)
                log.info(
                    "control API on unix socket %s (xcon ctl --control %s)", b.address, b.address
                )
            except OSError as e:
                msg = f"cannot listen on control socket {os.path.abspath(settings.path)}: {e.strerror or e}"
                if settings.path_given:
                    raise ModeError(msg, exit_code=1) from None
                log.warning("%s; running without it (--control PATH to choose another)", msg)
        if settings.tcp is not None:
            host, port = settings.tcp
            try:
                b = bind_tcp(host, port)
            except OSError as e:
                raise ModeError(
                    f"cannot listen on --control-listen {host}:{port}: {e.strerror or e}",
                    exit_code=1,
                ) from None
            bound.append(b)
            log.info(
                "control API on http://%s (GET /metrics for Prometheus; %s)",
                b.address,
                f"changes with the token in {settings.token_file}"
                if token
                else "read-only: no --control-token-file",
            )
    except BaseException:
        for b in bound:
            b.close()
        bound.clear()
        raise


class _Pending:
    """The control sockets until the server takes them (a service of the
    app: closed at exit, or when a start fails, before it did)."""

    def __init__(self, bound: list[Bound]) -> None:
        self.bound = bound
        self.closed = False

    def bound_sockets(self) -> list[Bound]:
        return list(self.bound)

    def keep_files(self) -> None:
        for b in self.bound:
            b.unlink = None

    def close(self) -> None:
        self.closed = True
        for b in self.bound:
            b.close()
        self.bound.clear()
