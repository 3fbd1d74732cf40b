"""The control API's routes, in one table.

Everything that names a route reads it from :data:`ROUTES`: the server
dispatches on it (:mod:`.api`), ``GET /`` lists it, the access check asks it
which requests only read (:mod:`.access`), ``xcon ctl`` has one subcommand per
``ctl`` name in it (:mod:`.client`), and docs/control.md's route table is
checked against it by the tests.

``NAME`` in a path is a link's name, percent-encoded in the request (link
names contain ``/``).  Decoded, it may contain ``/`` itself, so a path can
match several routes' paths (``/links/a/1--b/1/down`` is ``NAME/down`` of
``a/1--b/1`` or ``NAME`` of ``a/1--b/1/down``): the route whose NAME is a
link present wins, then the route with the longer fixed part.

Imported by ``xcon ctl`` on every call: plain classes, nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

#: What stands for a link's name in a route's path.
NAME = "NAME"


class Route:
    """One request the API answers: ``METHOD /path``, the :class:`ControlAPI`
    method that answers it (``handler``), the ``xcon ctl`` subcommand that
    makes it (``ctl``; "" for a route only xcon itself calls), what it does (one line), whether a reader may make it
    (``read``: docs/security.md) and methods answered the same way without
    being listed (``also``)."""

    __slots__ = ("method", "path", "handler", "ctl", "does", "read", "also", "_prefix", "_suffix")

    def __init__(
        self,
        method: str,
        path: str,
        handler: str,
        ctl: str,
        does: str,
        *,
        read: bool = False,
        also: tuple[str, ...] = (),
    ) -> None:
        self.method = method
        self.path = path
        self.handler = handler
        self.ctl = ctl
        self.does = does
        self.read = read
        self.also = also
        prefix, sep, suffix = path.partition(NAME)
        self._prefix = prefix
        self._suffix: str | None = suffix if sep else None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def __repr__(self) -> str:
        return f"Route({str(self)!r})"

    @property
    def methods(self) -> tuple[str, ...]:
        return (self.method, *self.also)

    @property
    def fixed(self) -> int:
        """Characters of the path that are not NAME (the longer, the more specific)."""
        return len(self._prefix) + len(self._suffix or "")

    def name_in(self, path: str) -> str | None:
        """The link name ``path`` (decoded, without a trailing ``/``) gives
        this route's NAME, ``""`` when the route has none; None when ``path``
        is not this route's."""
        suffix = self._suffix
        if suffix is None:
            return "" if path == self._prefix else None
        if len(path) <= self.fixed or not path.startswith(self._prefix):
            return None
        if not path.endswith(suffix):
            return None
        return path[len(self._prefix) : len(path) - len(suffix)]

    def target(self, name: str = "") -> str:
        """The request's path for link ``name`` (percent-encoded)."""
        if self._suffix is None:
            return self.path
        return self._prefix + quote(name, safe="") + self._suffix


# fmt: off
ROUTES: tuple[Route, ...] = (
    #     method     path                    handler             ctl         does
    Route("GET",     "/",                    "status",           "status",   "version, fast path, engine, uptime, the routes", read=True),
    Route("GET",     "/links",               "list_links",       "links",    "every link: its ends with state, peer, counters, drops, rates", read=True),
    Route("POST",    "/links",               "add_link",         "add",      'add a p2p link: {"spec": "A--B"} (201)'),
    Route("GET",     "/links/NAME",          "show_link",        "link",     "one link in detail, with per-direction counters and each end's last error", read=True),
    Route("DELETE",  "/links/NAME",          "remove_link",      "remove",   "remove a p2p link (its connections only)"),
    Route("POST",    "/links/NAME/down",     "set_down",         "down",     "pull the link's cable (or one direction: {\"direction\": \"a2b\"})"),
    Route("POST",    "/links/NAME/up",       "set_up",           "up",       "plug the link's cable back in"),
    Route("POST",    "/links/NAME/flap",     "flap",             "flap",     'pull and plug on a schedule: {"down": "2s", "up": "10s", "count": 3}'),
    Route("DELETE",  "/links/NAME/flap",     "stop_flap",        "flap",     "stop the link's flap schedule (left plugged in)"),
    Route("POST",    "/links/NAME/capture",  "capture_to_file",  "capture",  'capture to a file in the capture directory: {"file": NAME} (201)'),
    Route("GET",     "/links/NAME/capture",  "capture_live",     "capture",  "a live capture: pcapng, chunked, until the client goes"),
    Route("DELETE",  "/links/NAME/capture",  "stop_captures",    "capture",  "stop the link's captures"),
    Route("PUT",     "/links/NAME/impair",   "impair",           "impair",   'impair a direction live: {"direction": "a2b", "netem": "delay 10ms"} (also POST)', also=("POST",)),
    Route("DELETE",  "/links/NAME/impair",   "clear_impair",     "impair",   "clear a direction's impairment"),
    Route("POST",    "/counters/reset",      "reset_counters",   "reset",    "counters of all links (or one) to zero"),
    Route("GET",     "/health",              "health",           "health",   "the health file's code and message", read=True),
    Route("GET",     "/metrics",             "metrics",          "metrics",  "Prometheus text exposition", read=True),
    Route("POST",    "/reload",              "reload",           "reload",   "apply the --config file again (as SIGHUP)"),
    Route("POST",    "/restart",             "restart",          "restart",  "run xcon again in place, its connections handed over (as SIGUSR2; 202)"),
    Route("POST",    "/handover",            "handover",         "",         'hand every connection to a new xcon: {"socket": PATH} (202; xcon --takeover)'),
    Route("GET",     "/events",              "events",           "events",   "every change of a link's state as it happens: JSON lines, chunked, until the client goes"),
)
# fmt: on

#: Each route by ``METHOD /path``.
BY_NAME = {str(r): r for r in ROUTES}


def route(text: str) -> Route:
    """The route ``METHOD /path`` (KeyError for none)."""
    return BY_NAME[text]


def commands() -> list[str]:
    """``xcon ctl``'s subcommands, in the table's order."""
    return list(dict.fromkeys(r.ctl for r in ROUTES if r.ctl))


class NoRoute(LookupError):
    """No route has this path (a 404)."""


class WrongMethod(LookupError):
    """The path is a route's, not with this method (a 405); ``allowed``: those it has."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def _never(_name: str) -> bool:
    return False


def resolve(method: str, path: str, is_link: Callable[[str], bool] = _never) -> tuple[Route, str]:
    """The route answering ``method path`` (decoded) and the link name its
    NAME gives (``""`` for none).  ``is_link(name)``: whether a link by that
    name is present.  Raises :class:`NoRoute` or :class:`WrongMethod`."""
    path = path.rstrip("/") or "/"
    best: tuple[bool, int] | None = None
    owner: list[tuple[Route, str]] = []
    for r in ROUTES:
        name = r.name_in(path)
        if name is None:
            continue
        rank = (bool(name) and is_link(name), r.fixed)
        if best is None or rank > best:
            best, owner = rank, []
        if rank == best:
            owner.append((r, name))
    if not owner:
        raise NoRoute(path)
    for r, name in owner:
        if method in r.methods:
            return r, name
    raise WrongMethod(tuple(m for r, _ in owner for m in r.methods))


def readable(method: str, path: str) -> bool:
    """Whether a reader may make this request: a GET (or HEAD) that every
    route with a path matching ``path`` answers by reading (so ``GET
    /links/x/capture`` is not: it may be a live capture of ``x``)."""
    if method not in ("GET", "HEAD"):
        return False
    path = path.rstrip("/") or "/"
    gets = [r for r in ROUTES if "GET" in r.methods and r.name_in(path) is not None]
    return bool(gets) and all(r.read for r in gets)


def read_paths() -> list[str]:
    """The paths a reader may GET."""
    return [r.path for r in ROUTES if r.read]
