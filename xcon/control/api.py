"""The control API: HTTP requests in, changes to the running :class:`~xcon.app.Xcon`
and JSON out.  The routes are those of :mod:`.routes` (docs/control.md): each
is answered by the method of :class:`ControlAPI` its table row names.

Errors are ``{"error": "one line"}`` with 400 (malformed: a spec that does not
parse, bad JSON, a number out of its range), 401 and 403 (not this client's to
make: :mod:`.access`), 404 (no such link or route), 405 (method), 409 (clashes with the links present, or cannot be opened), 413 (body
too large), 500 (a bug: logged in one line), 502 (a router's monitor did not
do its part; xcon's own side was changed).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from xcon import __version__, native
from xcon.app import Link, Xcon, check_monitors, end_name
from xcon.bridges.hub import Hub
from xcon.bridges.p2p import P2PLink
from xcon.control.access import ADMIN, Access, Refused
from xcon.control.routes import ROUTES, NoRoute, Route, WrongMethod, resolve
from xcon.control.server import (
    ControlServer,
    Pending,
    Request,
    Response,
    Streaming,
    error_response,
    json_response,
)
from xcon.control.views import end_views, impairments, link_captures
from xcon.errors import BadRequest, LinkError, NotFound, Unavailable, one_line
from xcon.health import health_status
from xcon.links import vrnetlab_monitor
from xcon.linkspec import End, SpecError, parse_link
from xcon.monitor import MonitorError
from xcon.stats import FlowStats

if TYPE_CHECKING:
    from xcon.capture.bpf import BpfFilter
    from xcon.capture.options import CaptureOptions
    from xcon.control.config import Reload, ReloadResult

log = logging.getLogger("xcon.control")

RATE_EVERY = 1.0
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: What a handler returns: an answer now, one to come, or a stream.
Answer = Response | Pending | Streaming
Handler = Callable[[Request, str], Answer]
Started = TypeVar("Started", Response, Streaming)


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
    app = meter.app if meter is not None else None
    carriers = app.carriers.of(link.name) if app is not None and app.carriers else {}
    for v in end_views(link):
        p, st = v.port, v.port.stats
        rx_fps, rx_bps = meter.rate(v.rx) if meter else (0.0, 0.0)
        tx_fps, tx_bps = meter.rate(v.tx) if meter else (0.0, 0.0)
        mon = link.monitors.get(p.name)
        carrier = carriers.get(p.name)
        end: dict[str, Any] = {
            "name": p.name,
            "kind": v.kind,
            "state": "up" if p.connected else "ready" if p.healthy else "down",
            "peer": p.peer,
            "monitor": str(mon) if mon else None,
            "carrier": carrier.as_json() if carrier is not None else None,
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
        "admin": "up" if p2p is None else p2p.admin_state(),
        "state": "up" if states <= {"up", "ready"} else "down" if states == {"down"} else "partial",
        "vlan": link.spec.vid if link.spec else None,
        "ends": ends,
        "captures": caps,
    }
    doc["impair"] = impair_json(link)
    doc["flap"] = link.flap.as_json(link.bridge.ports[0].engine.time()) if link.flap else None
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


def impair_json(link: Link) -> dict[str, str | None]:
    """Each direction's impairment in netem's words (None: not impaired);
    see :func:`~xcon.control.views.impairments` for the keys."""
    return {d: imp.words() if imp is not None else None for d, imp in impairments(link).items()}


class ControlAPI:
    """The request handler of the control server: each request is checked
    (:class:`~xcon.control.access.Access`), then answered by the method its
    route names (:data:`~xcon.control.routes.ROUTES`).  Every handler takes the
    request and the link name of the route's ``NAME`` (``""`` for none).

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
        self.reload_file = reload
        #: The server answering for it (set by ``start_control``): its limits
        #: and counters.
        self.server: ControlServer | None = None
        self.started = time.time()
        self.meter = RateMeter(app)
        #: Scrapes waiting for the /metrics render in progress (None: none running).
        self._scrapes: list[Pending] | None = None
        self.handlers: dict[Route, Handler] = {r: getattr(self, r.handler) for r in ROUTES}

    def close(self) -> None:
        self.meter.close()

    # -- dispatch -----------------------------------------------------------------------
    def __call__(self, req: Request) -> Answer:
        found = checked_route(self.access, req, self.app.links.__contains__)
        if isinstance(found, Response):
            return found
        route, name = found
        try:
            return self.handlers[route](req, name)
        except LinkError as e:
            return error_response(e.status, str(e))
        except ValueError as e:
            return error_response(400, str(e))

    # -- the routes -------------------------------------------------------------------
    def status(self, req: Request, name: str) -> Response:
        return json_response(
            200,
            {
                "xcon": __version__,
                "fast_path": native.BACKEND,
                "engine": self.engine_name,
                "uptime_s": round(time.time() - self.started, 1),
                "links": len(self.app.links),
                "routes": [str(r) for r in ROUTES],
            },
        )

    def list_links(self, req: Request, name: str) -> Response:
        links = [link_json(link, self.meter) for link in self.app.links.values()]
        return json_response(200, {"links": links})

    def show_link(self, req: Request, name: str) -> Response:
        return json_response(200, link_json(self.app.find(name), self.meter, detail=True))

    def remove_link(self, req: Request, name: str) -> Response:
        link = self.app.remove_link(name)
        return json_response(200, {"removed": link.name})

    def health(self, req: Request, name: str) -> Response:
        connected, total, ready = self.app.health_counts()
        code, message = health_status(connected, total, ready)
        return json_response(
            200,
            {
                "code": code,
                "message": message,
                "connected": connected,
                "ready": ready,
                "total": total,
                "links": len(self.app.links),
                # Why the health file does not say this (it could not be written), or None.
                "file_error": self.app.health.error,
            },
        )

    def reset_counters(self, req: Request, name: str) -> Response:
        body = _object(req)
        link = body.get("link")
        if link is not None and not isinstance(link, str):
            raise BadRequest('"link" is a link name')
        links = self.app.reset_counters(link)
        return json_response(200, {"reset": [x.name for x in links]})

    def add_link(self, req: Request, name: str) -> Response:
        body = _object(req)
        spec = body.get("spec")
        if not isinstance(spec, str) or not spec:
            raise BadRequest('POST /links needs {"spec": "END--END"}')
        admin = body.get("admin", "up")
        if admin not in ("up", "down"):
            raise BadRequest('"admin" is "up" or "down"')
        monitors = _monitor_texts(body)
        if req.role != ADMIN:
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

    def impair(self, req: Request, name: str) -> Response:
        from xcon.impair.spec import ImpairError, from_fields, parse_netem

        body = _object(req)
        direction = _direction(body)
        end = _end(body)
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
        link = self.app.set_impair(name, direction, imp, end)
        return json_response(200, link_json(link, self.meter, detail=True))

    def clear_impair(self, req: Request, name: str) -> Response:
        body = _object(req)
        direction = _direction(body)
        end = _end(body)
        if body:
            raise BadRequest(
                f"DELETE /links/NAME/impair takes only a direction and an end, not {sorted(body)}"
            )
        link = self.app.set_impair(name, direction, None, end)
        return json_response(200, link_json(link, self.meter, detail=True))

    def set_down(self, req: Request, name: str) -> Response | Pending:
        return self._set_admin(req, name, False)

    def set_up(self, req: Request, name: str) -> Response | Pending:
        return self._set_admin(req, name, True)

    def _set_admin(self, req: Request, name: str, up: bool) -> Response | Pending:
        """Pull or plug (both ways, or ``direction``); when the link's routers
        have monitors, answer once their carrier followed (503 naming the
        monitors that failed: xcon's side is done all the same)."""
        link = self.app.find(name)
        body = _object(req)
        direction = _direction(body)
        if body.get("monitors"):
            try:
                self.access.check_monitors(req.role, req.peer)
            except Refused as e:
                return error_response(e.status, str(e))
            if link.spec is None:
                raise BadRequest(f"{link.name} is not a p2p link")
            self.app.set_monitors(link, check_monitors(link.spec, _monitor_texts(body)))
        link, _changed = self.app.set_admin(link.name, up, direction)
        carriers = self.app.carriers
        if carriers is None or not carriers.of(link.name):
            return json_response(200, link_json(link, self.meter, detail=True))
        pending = Pending()

        def settled(errors: list[str]) -> None:
            if errors:
                err = Unavailable(
                    f"link {link.name} is {'up' if up else 'down'} in xcon, but "
                    + "; ".join(errors)
                )
                pending.resolve(error_response(err.status, str(err)))
            else:
                pending.resolve(json_response(200, link_json(link, self.meter, detail=True)))

        carriers.settle(link, settled)
        return pending

    def flap(self, req: Request, name: str) -> Response:
        body = _object(req)
        unknown = sorted(set(body) - {"down", "up", "count"})
        if unknown or "down" not in body or "up" not in body:
            raise BadRequest(
                'POST /links/NAME/flap takes {"down": "2s", "up": "10s", "count": 3} '
                "(count optional: until stopped)"
            )
        link = self.app.flap(name, body["down"], body["up"], body.get("count"))
        return json_response(200, link_json(link, self.meter, detail=True))

    def stop_flap(self, req: Request, name: str) -> Response:
        link = self.app.find(name)
        if not self.app.stop_flap(link):
            raise NotFound(f"link {link.name} has no flap schedule")
        return json_response(200, link_json(link, self.meter, detail=True))

    # Captures (docs/capture.md).  A filter not compiled before is compiled
    # off the loop: the answer comes when it is.
    def capture_to_file(self, req: Request, name: str) -> Response | Pending:
        """To a file in the capture directory."""
        from xcon.capture.manager import captures_of
        from xcon.capture.options import check_file

        caps = captures_of(self.app)
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

        def to_file(bpf: BpfFilter | None) -> Response:
            cap = caps.start_named(name, file, options, overwrite=overwrite, bpf=bpf)
            return json_response(201, cap.describe())

        return self._with_filter(options.filter, to_file)

    def capture_live(self, req: Request, name: str) -> Response | Pending | Streaming:
        """A live stream, until the client goes."""
        from xcon.capture.manager import captures_of

        refused = self.server.refuse_stream() if self.server is not None else None
        if refused is not None:
            return refused
        caps = captures_of(self.app)
        query = {k: v[-1] for k, v in req.query.items()}
        options = capture_options(query, file=False)
        caps.check_stream(name, options)

        def to_stream(bpf: BpfFilter | None) -> Streaming:
            _cap, sink = caps.start_stream(name, options, bpf=bpf)
            return Streaming(sink)

        return self._with_filter(options.filter, to_stream)

    def stop_captures(self, req: Request, name: str) -> Response:
        from xcon.capture.manager import captures_of

        stopped = captures_of(self.app).stop(name)
        return json_response(200, {"stopped": [c.describe() for c in stopped]})

    def _with_filter(
        self, expression: str | None, start: Callable[[BpfFilter | None], Started]
    ) -> Started | Pending:
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

        def done(program: BpfFilter | None, err: BaseException | None) -> None:
            answer: Response | Streaming
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

    def events(self, req: Request, name: str) -> Response | Streaming:
        """Every change of a link's state from now on, one JSON line each
        (:mod:`xcon.events`), until the client goes; ``?link=NAME`` and
        ``?type=T`` (repeated or comma-separated) keep some only."""
        from xcon.events import TYPES

        refused = self.server.refuse_stream() if self.server is not None else None
        if refused is not None:
            return refused
        unknown = sorted(set(req.query) - {"link", "type"})
        if unknown:
            raise BadRequest(f"unknown query {unknown[0]!r} (known: link, type)")
        links = set()
        for text in _listed(req.query.get("link")):
            try:
                links.add(self.app.find(text).name)
            except NotFound:
                links.add(text)  # a link to come
        types = _listed(req.query.get("type"))
        known = set(TYPES) | {t.partition(".")[0] for t in TYPES}
        for t in types:
            if t not in known:
                raise BadRequest(f"unknown event type {t!r} (known: {', '.join(TYPES)})")
        return Streaming(self.app.events.subscribe(links, types))

    def reload(self, req: Request, name: str) -> Response | Pending:
        """The file is read on a worker thread; the answer comes when it has
        been applied (200, what changed) or refused (400, nothing changed)."""
        if self.reload_file is None:
            return error_response(409, "xcon was not started with --config: nothing to reload")
        pending = Pending()

        def done(result: ReloadResult | LinkError) -> None:
            if isinstance(result, LinkError):
                pending.resolve(error_response(result.status, str(result)))
            else:
                pending.resolve(json_response(200, result))

        self.reload_file(done)
        return pending

    # Restart and handover (docs/restart.md): root only, answered at once;
    # what follows happens on the loop.
    def restart(self, req: Request, name: str) -> Response:
        self._root_only(req, "restart xcon")
        self.app.engine.call_soon(self.app.restart_in_place)
        return json_response(202, {"restarting": True, "pid": os.getpid()})

    def handover(self, req: Request, name: str) -> Response:
        self._root_only(req, "hand xcon's connections over")
        self.app.give(handover_socket(req))
        return json_response(202, {"handing_over": True, "pid": os.getpid()})

    def _root_only(self, req: Request, what: str) -> None:
        root_only(self.access, req, what)

    def metrics(self, req: Request, name: str) -> Pending:
        """A snapshot on the loop, rendered on a worker thread (see :mod:`.metrics`).
        Scrapes arriving while a render runs share its answer (one render at a
        time, however many scrapers).  prometheus_client is imported with the
        first scrape, not at start."""
        from xcon.control import metrics

        pending = Pending()
        if self._scrapes is not None:
            self._scrapes.append(pending)
            return pending
        self._scrapes = [pending]
        snap = metrics.snapshot(self.app, self.engine_name, self.server)
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

        self.app.engine.run_in_thread(lambda: metrics.render(snap), done)
        return pending


CAPTURE_KEYS = ("snaplen", "filter", "drops")
CAPTURE_FILE_KEYS = ("file", "size_mb", "seconds", "files")


def checked_route(
    access: Access, req: Request, is_link: Callable[[str], bool]
) -> tuple[Route, str] | Response:
    """The access check (``req.role`` set), then the route of ``req`` and the
    link name its NAME gives; or the answer refusing it (401, 403, 404, 405).
    ``is_link``: whether a link by that name is present."""
    try:
        req.role = access.check(req.peer, req.method, req.path, req.headers.get("authorization"))
    except Refused as e:
        resp = error_response(e.status, str(e))
        if e.status == 401:
            resp.headers.append(("WWW-Authenticate", 'Bearer realm="xcon"'))
        return resp
    try:
        return resolve(req.method, req.path, is_link)
    except NoRoute:
        return error_response(404, f"no such route: {req.method} {req.path} (see GET /)")
    except WrongMethod as e:
        return _method_not_allowed(", ".join(e.allowed))


def root_only(access: Access, req: Request, what: str) -> None:
    """Raises Refused (403, counted) unless ``req`` is root's."""
    if req.role != ADMIN:
        raise access._refuse(req.peer, 403, f"only root may {what}")


def handover_socket(req: Request) -> str:
    """``POST /handover``'s ``{"socket": PATH}``: a unix socket's absolute
    path; raises BadRequest."""
    body = _object(req)
    path = body.get("socket")
    if set(body) != {"socket"} or not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest('POST /handover takes {"socket": "/absolute/path/of/a/unix/socket"}')
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except (OSError, ValueError) as e:
        raise BadRequest(f"{one_line(path)}: {getattr(e, 'strerror', None) or e}") from None
    if not is_socket:
        raise BadRequest(f"{one_line(path)} is not a unix socket")
    return path


def capture_options(doc: dict[str, Any], file: bool) -> CaptureOptions:
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


def _listed(values: list[str] | None) -> list[str]:
    """A query's values, repeated or comma-separated, without empty ones."""
    return [v.strip() for text in values or () for v in text.split(",") if v.strip()]


def _object(req: Request) -> dict[str, Any]:
    doc = req.json()
    if not isinstance(doc, dict):
        raise BadRequest("the body is a JSON object")
    return doc


def _monitor_texts(body: dict[str, Any]) -> dict[str, str]:
    mons = body.get("monitors") or {}
    if mons == "vrnetlab":  # each HOST/N end: HOST:4000, pNN (as --monitors vrnetlab)
        spec = body.get("spec")
        try:
            parsed = parse_link(spec) if isinstance(spec, str) else None
        except SpecError as e:
            raise BadRequest(str(e)) from None
        if parsed is None:
            raise BadRequest('"monitors": "vrnetlab" goes with POST /links and its "spec"')
        return {
            end_name(e): str(m)
            for e in (parsed.left, parsed.right)
            if (m := vrnetlab_monitor(e)) is not None
        }
    if not isinstance(mons, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mons.items()
    ):
        raise BadRequest(
            '"monitors" maps an end to its monitor: {"vr1/1": "vr1:4000"} (or "vrnetlab")'
        )
    return mons


def _direction(body: dict[str, Any]) -> str:
    direction = body.pop("direction", "both")
    if not isinstance(direction, str):
        raise BadRequest('"direction" is "a2b", "b2a" or "both"')
    return direction


def _end(body: dict[str, Any]) -> str | None:
    end = body.pop("end", None)
    if end is not None and not isinstance(end, str):
        raise BadRequest('"end" is the name of one end of a hub, e.g. "vr1/1"')
    return end


def _kind(end: End) -> str:
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
