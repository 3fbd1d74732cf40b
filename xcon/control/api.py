"""The control API: HTTP requests in, changes to the running :class:`~xcon.app.Xcon`
and JSON out.  Routes and status codes (README, "Control"):

=======  =============================  ================================================
GET      /                              version, engine, uptime, the routes
GET      /links                         every link with its ends, state, counters, rates
POST     /links                         add ``{"spec": "A--B", "monitors": {...}}``: 201
GET      /links/NAME                    one link in detail (NAME percent-encoded)
DELETE   /links/NAME                    remove it (its connections only)
POST     /links/NAME/down, /up          cable pull (``{"monitors": {...}}`` optional)
POST     /links/NAME/capture            capture to a file in the capture directory
                                        ``{"file": NAME, "overwrite": false, ...}``: 201
GET      /links/NAME/capture            a live capture: pcapng, chunked, until the
                                        client goes (``?snaplen=&filter=&drops=``)
DELETE   /links/NAME/capture            stop the link's captures
PUT      /links/NAME/impair             impair (also POST): ``{"direction": "a2b"|"b2a"|
                                        "both", "netem": "delay 10ms loss 1%"}`` or the
                                        fields (``{"delay": "10ms", "loss": 1}``)
DELETE   /links/NAME/impair             clear (``{"direction": ...}`` optional: both)
POST     /counters/reset                all counters, or ``{"link": NAME}``
GET      /health                        the health file's code and message
GET      /metrics                       Prometheus text exposition
POST     /reload                        apply the ``--config`` file again (as SIGHUP)
=======  =============================  ================================================

Errors are ``{"error": "one line"}`` with 400 (malformed: a spec that does not
parse, bad JSON, a number out of its range), 404 (no such link or route), 405
(method), 409 (clashes with the links present, or cannot be opened), 413 (body
too large), 500 (a bug: logged in one line), 502 (a router's monitor did not
do its part; xcon's own side was changed).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xcon import __version__, native
from xcon.app import Link, Xcon, check_monitors
from xcon.bridges.hub import Hub
from xcon.bridges.p2p import P2PLink
from xcon.control.access import ADMIN, Access, Refused
from xcon.control.server import (
    ControlServer,
    Pending,
    Request,
    Response,
    Streaming,
    error_response,
    json_response,
)
from xcon.errors import BadRequest, LinkError, Unavailable
from xcon.health import health_text
from xcon.monitor import Monitor, MonitorError
from xcon.ports import Port
from xcon.stats import FlowStats

log = logging.getLogger("xcon.control")

#: Drop reasons that are about the destination (counted as transmit drops of
#: the end the frames were going to); every other reason is a receive drop of
#: the end they came from.
TRANSMIT_REASONS = frozenset(
    {"port_down", "queue_full", "impair_loss", "impair_queue", "impair_cleared"}
)
RATE_EVERY = 1.0
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Starts a reload of the config file; calls back (on the loop) with what
#: changed or the error.
Reload = Callable[[Callable[[dict[str, Any] | LinkError], None]], None]

ROUTES = [
    "GET /",
    "GET /links",
    "POST /links",
    "GET /links/NAME",
    "DELETE /links/NAME",
    "POST /links/NAME/down",
    "POST /links/NAME/up",
    "POST /links/NAME/capture",
    "GET /links/NAME/capture",
    "DELETE /links/NAME/capture",
    "PUT /links/NAME/impair",
    "DELETE /links/NAME/impair",
    "POST /counters/reset",
    "GET /health",
    "GET /metrics",
    "POST /reload",
]


@dataclass
class EndView:
    """One end of a link as the API shows it: its port, what xcon read from it
    and forwarded (``rx``) and what xcon sent to it (``tx``)."""

    port: Port
    rx: FlowStats
    tx: FlowStats
    kind: str

    @property
    def rx_drops(self) -> dict[str, int]:
        return {r: n for r, n in sorted(self.rx.drops.items()) if n and r not in TRANSMIT_REASONS}

    @property
    def tx_drops(self) -> dict[str, int]:
        return {r: n for r, n in sorted(self.tx.drops.items()) if n and r in TRANSMIT_REASONS}


def end_views(link: Link) -> list[EndView]:
    b = link.bridge
    kinds = [e.kind for e in link.ends]
    if isinstance(b, P2PLink):
        fa, fb = b.flows[b.a].stats, b.flows[b.b].stats
        views = [EndView(b.a, fa, fb, ""), EndView(b.b, fb, fa, "")]
    elif isinstance(b, Hub):
        views = [EndView(p, b.rx[p], b.tx[p], "") for p in b.ports]
    else:  # pragma: no cover - every bridge is one of the two
        return []
    for v, kind in zip(views, kinds, strict=False):
        v.kind = kind
    return views


class RateMeter:
    """Frames/s and bits/s per direction over the last second or two: a
    snapshot of every counter is taken each :data:`RATE_EVERY` seconds, and a
    rate is the change since the older of the last two."""

    def __init__(self, app: Xcon) -> None:
        self.app = app
        self._prev: tuple[float, dict[int, tuple[int, int]]] = (time.monotonic(), {})
        self._cur = self._prev
        self._timer = app.engine.call_every(RATE_EVERY, self.tick)

    def tick(self) -> None:
        snap = {
            id(fs): (fs.frames, fs.bytes)
            for link in self.app.links.values()
            for fs in link.bridge.flow_stats()
        }
        self._prev, self._cur = self._cur, (time.monotonic(), snap)

    def rate(self, fs: FlowStats) -> tuple[float, float]:
        """(frames/s, bits/s) of ``fs``; 0 for a flow younger than a snapshot."""
        t, snap = self._prev
        before = snap.get(id(fs))
        dt = time.monotonic() - t
        if before is None or dt <= 0:
            return 0.0, 0.0
        frames = max(0, fs.frames - before[0])
        nbytes = max(0, fs.bytes - before[1])
        return frames / dt, nbytes * 8 / dt

    def close(self) -> None:
        self._timer.cancel()


def link_kind(link: Link) -> str:
    if link.p2p is not None:
        return "p2p"
    if isinstance(link.bridge, Hub):
        return "hub"
    return "device"


def link_json(link: Link, meter: RateMeter | None, detail: bool = False) -> dict[str, Any]:
    ends = []
    p2p = link.bridge if isinstance(link.bridge, P2PLink) else None
    for v in end_views(link):
        p, st = v.port, v.port.stats
        rx_fps, rx_bps = meter.rate(v.rx) if meter else (0.0, 0.0)
        tx_fps, tx_bps = meter.rate(v.tx) if meter else (0.0, 0.0)
        mon = link.monitors.get(p.name)
        end: dict[str, Any] = {
            "name": p.name,
            "kind": v.kind,
            "state": "up" if p.connected else "ready" if p.healthy else "down",
            "peer": p.peer,
            "monitor": str(mon) if mon else None,
            "rx_frames": v.rx.frames,
            "rx_bytes": v.rx.bytes,
            "tx_frames": v.tx.frames,
            "tx_bytes": v.tx.bytes,
            "rx_drops": v.rx_drops,
            "tx_drops": v.tx_drops,
            "rx_frames_per_s": round(rx_fps, 1),
            "rx_bits_per_s": round(rx_bps),
            "tx_frames_per_s": round(tx_fps, 1),
            "tx_bits_per_s": round(tx_bps),
            "connects": st.connects,
            "reconnects": st.reconnects,
            "disconnects": st.disconnects,
        }
        if detail:
            end.update(
                protocol_errors=st.protocol_errors,
                partial_bytes=st.partial_bytes,
                last_error=st.last_error,
                counters=p.counter_text(),
            )
        ends.append(end)
    states = {e["state"] for e in ends}
    caps = link_captures(link, meter.app.captures if meter is not None else None)
    doc: dict[str, Any] = {
        "name": link.name,
        "kind": link_kind(link),
        "source": link.source,
        "admin": "up" if p2p is None or p2p.admin_up else "down",
        "state": "up" if states <= {"up", "ready"} else "down" if states == {"down"} else "partial",
        "vlan": link.spec.vid if link.spec else None,
        "ends": ends,
        "captures": caps,
    }
    if link.p2p is not None:
        doc["impair"] = impair_json(link.p2p)
    if detail:
        doc["directions"] = [
            {
                "name": fs.name,
                "frames": fs.frames,
                "bytes": fs.bytes,
                "drops": dict(fs.drops),
                "events": dict(fs.events),
                "late": fs.late.as_json() if fs.late is not None else None,
            }
            for fs in link.bridge.flow_stats()
        ]
        doc["admin_changes"] = p2p.admin_changes if p2p is not None else 0
    return doc


def link_captures(link: Link, captures: Any = None) -> list[dict[str, Any]]:
    """The link's captures as the API shows them ([] when none): those its
    flows' taps write to, then those that failed (kept by ``captures``, the
    manager, with their error)."""
    if not isinstance(link.bridge, P2PLink):
        return []
    caps = list(getattr(link.bridge.a_to_b.tap, "captures", None) or ())
    if captures is not None:
        caps += captures.failed_of(link.name)
    return [c.describe() for c in caps]


def impair_json(p2p: P2PLink) -> dict[str, str | None]:
    """Each direction's impairment in netem's words (None: not impaired)."""
    out: dict[str, str | None] = {}
    for d in ("a2b", "b2a"):
        imp = p2p.impairment(d)
        out[d] = imp.words() if imp is not None else None
    return out


class ControlAPI:
    """The request handler of the control server (see the module docstring).

    ``reload`` (set when xcon runs from ``--config``) reads the file again
    (off the loop) and calls back with what changed or the error
    (:meth:`xcon.control.config.ConfigReloader.reload`)."""

    def __init__(
        self,
        app: Xcon,
        engine_name: str = "",
        reload: Reload | None = None,
        access: Access | None = None,
    ) -> None:
        self.app = app
        #: Who may do what (the default: root and xcon's user on the unix
        #: socket, read-only on TCP).
        self.access = access or Access()
        self.engine_name = engine_name or app.engine.name
        self.reload = reload
        #: The server answering for it (set by ``start_control``): its limits
        #: and counters.
        self.server: ControlServer | None = None
        self.started = time.time()
        self.meter = RateMeter(app)
        #: Scrapes waiting for the /metrics render in progress (None: none running).
        self._scrapes: list[Pending] | None = None

    def close(self) -> None:
        self.meter.close()

    # -- dispatch -----------------------------------------------------------------------
    def __call__(self, req: Request) -> Response | Pending | Streaming:
        try:
            req.role = self.access.check(
                req.peer, req.method, req.path, req.headers.get("authorization")
            )
        except Refused as e:
            resp = error_response(e.status, str(e))
            if e.status == 401:
                resp.headers.append(("WWW-Authenticate", 'Bearer realm="xcon"'))
            return resp
        try:
            return self._route(req)
        except LinkError as e:
            return error_response(e.status, str(e))
        except ValueError as e:
            return error_response(400, str(e))

    def _route(self, req: Request) -> Response | Pending | Streaming:
        path, method = req.path.rstrip("/") or "/", req.method
        if path == "/":
            return self._only(method, "GET") or json_response(200, self.index())
        if path == "/links":
            if method == "GET":
                return json_response(200, {"links": self.links_json()})
            if method == "POST":
                return self.add(req)
            return _method_not_allowed("GET, POST")
        if path.startswith("/links/"):
            return self._link_route(req, path[len("/links/") :])
        if path == "/health":
            return self._only(method, "GET") or json_response(200, self.health_json())
        if path == "/metrics":
            return self._only(method, "GET") or self.metrics()
        if path == "/counters/reset":
            if method != "POST":
                return _method_not_allowed("POST")
            body = _object(req)
            name = body.get("link")
            if name is not None and not isinstance(name, str):
                raise BadRequest('"link" is a link name')
            links = self.app.reset_counters(name)
            return json_response(200, {"reset": [link.name for link in links]})
        if path == "/reload":
            if method != "POST":
                return _method_not_allowed("POST")
            if self.reload is None:
                return error_response(409, "xcon was not started with --config: nothing to reload")
            return self.reload_config(self.reload)
        return error_response(404, f"no such route: {method} {req.path} (see GET /)")

    def _only(self, method: str, allowed: str) -> Response | None:
        return None if method == allowed else _method_not_allowed(allowed)

    def _link_route(self, req: Request, rest: str) -> Response | Pending | Streaming:
        method = req.method
        if rest.endswith("/capture") and rest not in self.app.links:
            return self.capture(req, rest[: -len("/capture")])
        if rest.endswith("/impair") and rest not in self.app.links:
            name = rest[: -len("/impair")]
            if method in ("PUT", "POST"):
                return self.impair(req, name)
            if method == "DELETE":
                return self.impair(req, name, clear=True)
            return _method_not_allowed("PUT, POST, DELETE")
        if method == "POST":
            name, _, action = rest.rpartition("/")
            if action not in ("down", "up"):
                return error_response(404, "POST /links/NAME/down or /up (NAME percent-encoded)")
            return self.admin(req, name, action == "up")
        if method == "GET":
            return json_response(200, link_json(self.app.find(rest), self.meter, detail=True))
        if method == "DELETE":
            link = self.app.remove_link(rest)
            return json_response(200, {"removed": link.name})
        return _method_not_allowed("GET, DELETE, POST")

    # -- operations -------------------------------------------------------------------
    def index(self) -> dict[str, Any]:
        return {
            "xcon": __version__,
            "fast_path": native.BACKEND,
            "engine": self.engine_name,
            "uptime_s": round(time.time() - self.started, 1),
            "links": len(self.app.links),
            "routes": ROUTES,
        }

    def links_json(self) -> list[dict[str, Any]]:
        return [link_json(link, self.meter) for link in self.app.links.values()]

    def health_json(self) -> dict[str, Any]:
        connected, total, ready = self.app.health_counts()
        text = health_text(connected, total, ready).splitlines()
        return {
            "code": int(text[0]),
            "message": text[1],
            "connected": connected,
            "ready": ready,
            "total": total,
            "links": len(self.app.links),
            # Why the health file does not say this (it could not be written), or None.
            "file_error": self.app.health.error,
        }

    def add(self, req: Request) -> Response:
        body = _object(req)
        spec = body.get("spec")
        if not isinstance(spec, str) or not spec:
            raise BadRequest('POST /links needs {"spec": "END--END"}')
        admin = body.get("admin", "up")
        if admin not in ("up", "down"):
            raise BadRequest('"admin" is "up" or "down"')
        monitors = _monitor_texts(body)
        if req.role != ADMIN:
            from xcon.linkspec import SpecError, parse_link

            try:
                parsed = parse_link(spec)
            except SpecError as e:
                raise BadRequest(str(e)) from None
            kinds = [_kind(parsed.left), _kind(parsed.right)]
            try:
                self.access.check_add(req.role, req.peer, kinds)
                if monitors:
                    self.access.check_monitors(req.role, req.peer)
            except Refused as e:
                return error_response(e.status, str(e))
        link = self.app.add_link(spec, monitors, source="api", admin_up=admin == "up")
        return json_response(201, link_json(link, self.meter, detail=True))

    def impair(self, req: Request, name: str, clear: bool = False) -> Response:
        from xcon.impair.spec import ImpairError, from_fields, parse_netem

        body = _object(req)
        direction = body.pop("direction", "both")
        if not isinstance(direction, str):
            raise BadRequest('"direction" is "a2b", "b2a" or "both"')
        imp = None
        if not clear:
            netem = body.pop("netem", None)
            try:
                if netem is not None:
                    if body:
                        raise BadRequest('give "netem" words or fields, not both')
                    if not isinstance(netem, str):
                        raise BadRequest('"netem" is a string of tc-netem words')
                    imp = parse_netem(netem)
                elif body:
                    imp = from_fields(body)
                else:
                    raise BadRequest('PUT /links/NAME/impair needs {"netem": "delay 10ms ..."}')
            except ImpairError as e:
                raise BadRequest(str(e)) from None
        elif body:
            raise BadRequest(
                f"DELETE /links/NAME/impair takes only a direction, not {sorted(body)}"
            )
        link = self.app.set_impair(name, direction, imp)
        return json_response(200, link_json(link, self.meter, detail=True))

    def admin(self, req: Request, name: str, up: bool) -> Response | Pending:
        link = self.app.find(name)
        body = _object(req)
        if body.get("monitors"):
            try:
                self.access.check_monitors(req.role, req.peer)
            except Refused as e:
                return error_response(e.status, str(e))
            if link.spec is None:
                raise BadRequest(f"{link.name} is not a p2p link")
            link.monitors.update(check_monitors(link.spec, _monitor_texts(body)))
        link, _changed = self.app.set_admin(link.name, up)
        monitors = list(link.monitors.values())
        if not monitors:
            return json_response(200, link_json(link, self.meter, detail=True))
        return self._set_links(link, monitors, up)

    def _set_links(self, link: Link, monitors: Sequence[Monitor], up: bool) -> Pending:
        """Tell every router's monitor (on worker threads); answer when all did."""
        pending = Pending()
        results: dict[int, str] = {}

        def finish() -> None:
            failed = [results[i] for i in range(len(monitors)) if results[i]]
            if failed:
                err = Unavailable(
                    f"link {link.name} is {'up' if up else 'down'} in xcon, but "
                    + "; ".join(failed)
                )
                log.warning("control: %s", err)
                pending.resolve(error_response(err.status, str(err)))
            else:
                log.info(
                    "link %s: routers' NICs set %s (%s)",
                    link.name,
                    "on" if up else "off",
                    ", ".join(map(str, monitors)),
                )
                pending.resolve(json_response(200, link_json(link, self.meter, detail=True)))

        for i, mon in enumerate(monitors):

            def done(_result: object, err: BaseException | None, i: int = i) -> None:
                results[i] = "" if err is None else _one(err)
                if len(results) == len(monitors):
                    finish()

            self.app.engine.run_in_thread(functools.partial(mon.set_link, up), done)
        return pending

    def capture(self, req: Request, name: str) -> Response | Pending | Streaming:
        """POST: to a file in the capture directory; GET: a live stream;
        DELETE: stop (README, "Capture").  A filter not compiled before is
        compiled off the loop: the answer comes when it is."""
        from xcon.capture.manager import captures_of
        from xcon.capture.options import check_file

        caps = captures_of(self.app)
        if req.method == "POST":
            body = _object(req)
            if "file" not in body:
                raise BadRequest('POST /links/NAME/capture needs {"file": NAME}')
            overwrite = body.pop("overwrite", False)
            if not isinstance(overwrite, bool):
                raise BadRequest('"overwrite" is true or false')
            file = body["file"]
            check_file(file)  # ValueError: a 400
            options = capture_options(body, file=True)
            caps.check_named(name, file, options)

            def to_file(bpf: Any) -> Response:
                cap = caps.start_named(name, file, options, overwrite=overwrite, bpf=bpf)
                return json_response(201, cap.describe())

            return self._with_filter(options.filter, to_file)
        if req.method == "GET":
            refused = self.server.refuse_stream() if self.server is not None else None
            if refused is not None:
                return refused
            query = {k: v[-1] for k, v in req.query.items()}
            options = capture_options(query, file=False)
            caps.check_stream(name, options)

            def to_stream(bpf: Any) -> Streaming:
                _cap, sink = caps.start_stream(name, options, bpf=bpf)
                return Streaming(sink)

            return self._with_filter(options.filter, to_stream)
        if req.method == "DELETE":
            stopped = caps.stop(name)
            return json_response(200, {"stopped": [c.describe() for c in stopped]})
        return _method_not_allowed("GET, POST, DELETE")

    def _with_filter(
        self, expression: str | None, start: Callable[[Any], Response | Streaming]
    ) -> Response | Pending | Streaming:
        """``start(program)`` now when the filter is compiled already (or
        there is none), else once a worker thread has compiled it."""
        from xcon.capture.manager import captures_of

        if not expression:
            return start(None)
        filters = captures_of(self.app).filters
        program = filters.ready(expression)
        if program is not None:
            return start(program)
        pending = Pending()

        def done(program: Any, err: BaseException | None) -> None:
            try:
                if err is not None:
                    raise err
                answer = start(program)
            except LinkError as e:
                answer = error_response(e.status, str(e))
            except Exception as e:  # noqa: BLE001 - as the server does: one line, a 500
                log.error("control: capture failed: %s: %s", type(e).__name__, e)
                answer = error_response(500, f"internal error: {type(e).__name__}: {e}")
            pending.resolve(answer)

        filters.compile(expression, done)
        return pending

    def reload_config(self, reload: Reload) -> Pending:
        """The file is read on a worker thread; the answer comes when it has
        been applied (200, what changed) or refused (400, nothing changed)."""
        pending = Pending()

        def done(result: dict[str, Any] | LinkError) -> None:
            if isinstance(result, LinkError):
                pending.resolve(error_response(result.status, str(result)))
            else:
                pending.resolve(json_response(200, result))

        reload(done)
        return pending

    def metrics(self) -> Pending:
        """A snapshot on the loop, rendered on a worker thread (see :mod:`.metrics`).
        Scrapes arriving while a render runs share its answer (one render at a
        time, however many scrapers)."""
        from xcon.control.metrics import render, snapshot

        pending = Pending()
        if self._scrapes is not None:
            self._scrapes.append(pending)
            return pending
        self._scrapes = [pending]
        snap = snapshot(self.app, self.engine_name, self.server)
        snap.refused = dict(self.access.refused)

        def done(text: object, err: BaseException | None) -> None:
            waiting, self._scrapes = self._scrapes or [], None
            if err is not None:
                log.error("control: /metrics failed: %s: %s", type(err).__name__, err)
                resp = error_response(500, f"internal error: {err}")
            else:
                assert isinstance(text, bytes)
                resp = Response(200, text, content_type=METRICS_TYPE)
            for p in waiting:
                p.resolve(resp)

        self.app.engine.run_in_thread(lambda: render(snap), done)
        return pending


CAPTURE_KEYS = ("snaplen", "filter", "drops")
CAPTURE_FILE_KEYS = ("file", "size_mb", "seconds", "files")


def capture_options(doc: dict[str, Any], file: bool) -> Any:
    """A capture's options from a JSON body (``file``) or a query string
    (values are strings there); raises BadRequest naming the bad one."""
    from xcon.capture.options import OutOfRange, checked_options

    known = CAPTURE_KEYS + (CAPTURE_FILE_KEYS if file else ())
    for key in doc:
        if key not in known:
            raise BadRequest(f"unknown capture option {key!r} (known: {', '.join(known)})")

    flt = doc.get("filter")
    if flt is not None and not isinstance(flt, str):
        raise BadRequest('"filter" is a tcpdump expression (a string)')
    drops = doc.get("drops", True)
    if isinstance(drops, str):
        if drops not in ("0", "1", "true", "false", "yes", "no"):
            raise BadRequest("drops is true or false")
        drops = drops in ("1", "true", "yes")
    if not isinstance(drops, bool):
        raise BadRequest("drops is true or false")
    numbers = {k: doc[k] for k in ("snaplen", "size_mb", "seconds", "files") if k in doc}
    try:
        return checked_options(filter=flt or None, drops=drops, **numbers)
    except OutOfRange as e:
        raise BadRequest(str(e)) from None


def _object(req: Request) -> dict[str, Any]:
    doc = req.json()
    if not isinstance(doc, dict):
        raise BadRequest("the body is a JSON object")
    return doc


def _monitor_texts(body: dict[str, Any]) -> dict[str, str]:
    mons = body.get("monitors") or {}
    if not isinstance(mons, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mons.items()
    ):
        raise BadRequest('"monitors" maps an end to its monitor: {"vr1/1": "vr1:4000"}')
    return mons


def _kind(end: Any) -> str:
    """An end's kind as ``--control-allow-ends`` names it."""
    kind = str(end.kind)
    return "listen" if kind.startswith("listen") else kind


def _one(err: BaseException) -> str:
    if isinstance(err, MonitorError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _method_not_allowed(allowed: str) -> Response:
    resp = error_response(405, f"method not allowed here (allowed: {allowed})")
    resp.headers.append(("Allow", allowed))
    return resp
