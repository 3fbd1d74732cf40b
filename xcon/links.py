"""The link table: the bridges one xcon runs, by name, and the changes made
to them while it runs (add, remove, pull, impair, reset).

:class:`LinkTable` holds the links and what is derived from them alone: the
ports the health file counts, the counters' lines, the ``--trace`` rates.
The process around it (the engine's loop, signals, the health file's end,
the services) is :class:`xcon.app.Xcon`, a link table that runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xcon import modes, rlimit
from xcon.bridges import Bridge
from xcon.bridges.hub import Hub
from xcon.bridges.p2p import P2PLink
from xcon.engines import Engine, TimerHandle
from xcon.errors import BadRequest, Conflict, ModeError, NotFound, one_line
from xcon.events import Events
from xcon.health import HealthFile
from xcon.limits import FLAP_COUNT, FLAP_SECONDS, OutOfRange, duration
from xcon.linkspec import (
    End,
    Endpoint,
    LinkSpec,
    Resource,
    SpecError,
    check_distinct,
    make_port,
    open_ports,
    parse_end,
    parse_link,
    why_once,
)
from xcon.monitor import Monitor, default_netdev, parse_monitor
from xcon.ports import Port
from xcon.ports.services import PortServices
from xcon.stats import FlowStats

if TYPE_CHECKING:
    from xcon.impair.spec import Impairment

log = logging.getLogger("xcon")

#: Directions of a p2p link an impairment applies to.
DIRECTIONS = ("a2b", "b2a", "both")


@dataclass
class Flap:
    """A link pulled for ``down`` seconds, plugged back for ``up``, ``count``
    times (None: until stopped)."""

    down: float
    up: float
    count: int | None = None
    done: int = 0
    next_at: float = 0.0
    timer: TimerHandle | None = None

    def words(self) -> str:
        times = f", {self.count} times" if self.count is not None else ", until stopped"
        return f"down {self.down:g}s, up {self.up:g}s{times}"

    def as_json(self, now: float) -> dict[str, object]:
        return {
            "down": self.down,
            "up": self.up,
            "count": self.count,
            "done": self.done,
            "next_in": round(max(0.0, self.next_at - now), 3),
        }


@dataclass
class Link:
    """A bridge the process runs, by name.

    ``name`` is the link as the user wrote it (``vr1/1--vr2/1``: the spec in
    its canonical form) for p2p links; a hub or a listening mode has its own.
    ``ends`` are what it holds (checked against new links: a NIC is in one
    link only).  Only p2p links (``spec`` set) can be removed or pulled."""

    name: str
    bridge: Bridge
    ends: tuple[End, ...] = ()
    spec: LinkSpec | None = None
    #: Where it came from: "command line", "config" or "api".
    source: str = "command line"
    #: A router's qemu monitor per end name: its carrier follows the link.
    monitors: dict[str, Monitor] = field(default_factory=dict)
    #: A flap schedule running on the link, or None.
    flap: Flap | None = None
    #: Whether each of its ports was up when last seen (the events' up and down).
    ups: list[bool] = field(default_factory=list)

    @property
    def p2p(self) -> P2PLink | None:
        return self.bridge if isinstance(self.bridge, P2PLink) and self.spec else None


class LinkTable:
    """Links (bridges by name) on an engine, and the health file's count of
    their ports; links can be added, removed and pulled while they run."""

    def __init__(self, engine: Engine, health: HealthFile, debug: bool = False) -> None:
        self.engine = engine
        #: What the ports of this engine share (host gates, the listener watch...).
        self.port_services = PortServices(engine)
        self.links: dict[str, Link] = {}
        self.health = health
        self.debug = debug
        #: Links are started as they are added (set while the process runs).
        self.running = False
        #: Called with each link added (any source) and with each link about to
        #: be removed (captures follow links through these).
        self.link_added: list[Callable[[Link], None]] = []
        self.link_removed: list[Callable[[Link], None]] = []
        #: Called with a link whose ports went up or down, or whose admin
        #: state or monitors changed (the routers' carrier follows these).
        self.link_changed: list[Callable[[Link], None]] = []
        #: Monitors by end name for every link with that end (``--monitor``),
        #: and whether HOST/N ends get vrnetlab's (``--monitors vrnetlab``).
        self.monitor_rules: dict[str, Monitor] = {}
        self.vrnetlab_monitors = False
        #: Seed of every impaired direction's random stream (``--seed``): each
        #: direction draws from its own stream derived from it and its name.
        self.seed: int = int.from_bytes(os.urandom(4), "big")
        self._seed_logged = False
        #: How a p2p link gets its ports (tests put fakes here).
        self.make_port: Callable[[PortServices, End], Port] = make_port
        self.open_ports: Callable[[Sequence[Port]], None] = open_ports
        #: Each direction's counters at the last trace: (frames, bytes, dropped).
        self._traced: dict[int, tuple[int, int, int]] = {}
        #: Every change of a link's state, to whoever follows (``GET /events``).
        self.events = Events()
        self._health_due = False

    @property
    def bridges(self) -> list[Bridge]:
        return [link.bridge for link in self.links.values()]

    # -- building -----------------------------------------------------------------
    def add_bridge(
        self,
        bridge: Bridge,
        *,
        name: str | None = None,
        ends: Sequence[End] = (),
        spec: LinkSpec | None = None,
        source: str = "command line",
        monitors: Mapping[str, Monitor] | None = None,
    ) -> Link:
        """Add a bridge, started at once if the process is running; its port
        changes update the health file and call :attr:`link_changed`.  A p2p
        link's monitors: ``monitors`` (checked), else ``--monitor``'s, else
        vrnetlab's when asked."""
        link = Link(name or bridge.name, bridge, tuple(ends), spec, source)
        if spec is not None:
            link.monitors = self.monitors_for(spec, monitors or {})
        link.ups = [p.up for p in bridge.ports]
        bridge.on_state = lambda: self._link_state(link)
        self.links[link.name] = link
        self.events.emit("link.added", link.name, reason=source)
        if self.running:
            self._start(link)
        for hook in self.link_added:
            hook(link)
        return link

    def _link_state(self, link: Link) -> None:
        self.health_soon()
        ports = link.bridge.ports
        if len(link.ups) != len(ports):
            link.ups = [False] * len(ports)
        for i, p in enumerate(ports):
            if p.up != link.ups[i]:
                link.ups[i] = p.up
                if p.up:
                    self.events.emit("link.up", link.name, p.name, p.peer, peer=p.peer)
                else:
                    self.events.emit("link.down", link.name, p.name, p.stats.last_error)
        for hook in self.link_changed:
            hook(link)

    def monitors_for(self, spec: LinkSpec, given: Mapping[str, Monitor]) -> dict[str, Monitor]:
        """A link's monitors by end name: ``given`` (the link's own), else the
        ``--monitor`` rule for that end, else vrnetlab's (``HOST:4000``,
        ``pNN``) for a HOST/N end when ``--monitors vrnetlab``."""
        out: dict[str, Monitor] = {}
        for end in (spec.left, spec.right):
            name = end_name(end)
            mon = given.get(name) or self.monitor_rules.get(name)
            if mon is None and self.vrnetlab_monitors:
                mon = vrnetlab_monitor(end)
            if mon is not None:
                out[name] = mon
        return out

    def set_monitors(self, link: Link, given: Mapping[str, Monitor], replace: bool = False) -> None:
        """Give ``link`` these monitors, added to its own (``replace``: instead
        of them), with the rules for the rest, as at add."""
        if link.spec is None:
            raise BadRequest(f"{link.name} is not a p2p link: only p2p links have monitors")
        merged = self.monitors_for(link.spec, given if replace else {**link.monitors, **given})
        if merged != link.monitors:
            link.monitors = merged
            for hook in self.link_changed:
                hook(link)

    def _start(self, link: Link) -> None:
        link.bridge.start()
        for fs in link.bridge.flow_stats():
            self._traced[id(fs)] = (fs.frames, fs.bytes, fs.dropped)
        self.update_health()

    # -- links while running ----------------------------------------------------------
    def find(self, name: str) -> Link:
        """The link called ``name`` (``hub`` for the only hub), or the p2p link with the same two ends in
        either order (``B/1--A/1`` for ``A/1--B/1``; a VLAN link's ``:VID`` may
        be left out: a NIC is in one link only, so the ends say which).  Raises
        NotFound naming the closest links' names."""
        link = self.links.get(name)
        if link is not None:
            return link
        hubs = [link for link in self.links.values() if isinstance(link.bridge, Hub)]
        if name == "hub" and len(hubs) == 1:
            return hubs[0]
        try:
            spec = parse_link(name)
        except SpecError:
            spec = None
        if spec is not None:
            ends = {end_name(spec.left), end_name(spec.right)}
            written = {str(spec.left), str(spec.right)}
            for link in self.links.values():
                if link.spec is None:
                    continue
                theirs = (link.spec.left, link.spec.right)
                if {end_name(e) for e in theirs} == ends and (
                    spec.vid is None or {str(e) for e in theirs} == written
                ):
                    return link
        import difflib  # only a name that matches nothing needs it

        def likeness(link: Link) -> float:
            """0..1: how alike the names are; two links' ends end by end, in
            the order that makes them most alike."""
            if spec is None or link.spec is None:
                return difflib.SequenceMatcher(None, name, link.name).ratio()
            ours = (end_name(spec.left), end_name(spec.right))
            theirs = (end_name(link.spec.left), end_name(link.spec.right))
            return max(
                sum(
                    difflib.SequenceMatcher(None, o, t).ratio()
                    for o, t in zip(ours, ts, strict=True)
                )
                / 2
                for ts in (theirs, theirs[::-1])
            )

        scores = {n: likeness(link) for n, link in self.links.items()}
        close = sorted(
            (n for n, x in scores.items() if x >= 0.6), key=scores.__getitem__, reverse=True
        )
        names = ", ".join(one_line(n) for n in close[:3])
        hint = f" (closest: {names})" if names else ""
        raise NotFound(f"no link {one_line(name)!r}{hint}")

    def check_new(self, spec: LinkSpec, ignore: Sequence[str] = ()) -> None:
        """Raise :class:`Conflict` if ``spec`` would share a NIC (or any resource)
        with a link present (but those named in ``ignore``)."""
        try:
            check_distinct([spec])
        except SpecError as e:
            raise BadRequest(str(e)) from None
        self.check_ends(str(spec), (spec.left, spec.right), ignore)

    def check_ends(self, name: str, ends: Sequence[End], ignore: Sequence[str] = ()) -> None:
        """Raise :class:`Conflict` if a link called ``name`` exists, or if one
        of ``ends`` shares a resource with a link present (but those named in
        ``ignore``)."""
        if name in self.links and name not in ignore:
            raise Conflict(f"link {name} exists")
        held: dict[Resource, tuple[str, End]] = {}
        for link in self.links.values():
            if link.name in ignore:
                continue
            for end in link.ends:
                for key in end.resources:
                    held[key] = (link.name, end)
        for end in ends:
            for key in end.resources:
                other = held.get(key)
                if other is not None:
                    raise Conflict(
                        f"{end} is already in link {other[0]!r} (as {other[1]}): {why_once(end)}"
                    )

    def add_link(
        self,
        text: str,
        monitors: Mapping[str, Monitor | str] | None = None,
        source: str = "api",
        admin_up: bool = True,
    ) -> Link:
        """Parse, check and start one p2p link without touching any other.

        Raises :class:`BadRequest` (the spec does not parse), :class:`Conflict`
        (it exists, or shares a NIC with a link present, or an end cannot be
        opened)."""
        try:
            spec = parse_link(text)
        except SpecError as e:
            raise BadRequest(str(e)) from None
        self.check_new(spec)
        monitors = check_monitors(spec, monitors or {})
        try:
            rlimit.ensure_nofile(2 + len(self.ports()))
            [bridge] = modes.p2p_bridges(self, [spec], debug=self.debug)
        except ModeError as e:
            raise Conflict(str(e)) from None
        if not admin_up:
            bridge.set_admin(False)
        link = self.add_bridge(
            bridge,
            name=str(spec),
            ends=(spec.left, spec.right),
            spec=spec,
            source=source,
            monitors=monitors,
        )
        log.info("p2p link %s added (%s)", link.name, source)
        return link

    def add_hub(self, name: str, ends: Sequence[End], source: str) -> Link:
        """Check and start one hub called ``name`` (its ends checked by the
        caller: :func:`xcon.linkspec.check_hub`) without touching any other
        link.  Raises :class:`Conflict` (the name exists, an end is in
        another link or cannot be opened)."""
        self.check_ends(name, ends)
        try:
            rlimit.ensure_nofile(len(ends) + len(self.ports()))
            modes.hub(self, ends, debug=self.debug, name=name, source=source)
        except ModeError as e:
            raise Conflict(str(e)) from None
        log.info("hub %s added (%s): %s", name, source, " ".join(map(str, ends)))
        return self.links[name]

    def remove_link(self, name: str, why: str = "api", hubs: bool = False) -> Link:
        """Close one p2p link (or, with ``hubs``, a hub: a topology file's)
        and forget it, its connections only; raises NotFound or Conflict (not
        a p2p link)."""
        link = self.find(name)
        hub = hubs and isinstance(link.bridge, Hub)
        if link.p2p is None and not hub:
            raise Conflict(f"{link.name} is not a p2p link: only p2p links can be removed")
        for hook in self.link_removed:
            hook(link)
        self.stop_flap(link)
        del self.links[link.name]
        # Closing reports the ports down; the health file must not count them meanwhile.
        link.bridge.on_state = None
        link.bridge.close()
        for fs in link.bridge.flow_stats():
            self._traced.pop(id(fs), None)
        self.update_health()
        log.info("%s %s removed (%s)", "hub" if hub else "p2p link", link.name, why)
        self.events.emit("link.removed", link.name, reason=why)
        return link

    def set_admin(self, name: str, up: bool, direction: str = "both") -> tuple[Link, bool]:
        """Pull a p2p link's cable in xcon (or plug it back), both ways or one
        (``direction``: a one-way fault leaves the routers' carrier alone);
        returns the link and whether its state changed.  The routers' carrier
        follows (:mod:`xcon.carrier`)."""
        link = self.find(name)
        if link.p2p is None:
            raise Conflict(f"{link.name} is not a p2p link: only p2p links can be set down or up")
        if direction not in DIRECTIONS:
            raise BadRequest(f"direction {one_line(direction)!r}: one of {', '.join(DIRECTIONS)}")
        changed = link.p2p.set_admin(up, direction)
        if changed:
            admin = link.p2p.admin_state()
            log.info("p2p link %s administratively %s", link.name, admin)
            self.events.emit(
                "admin.changed", link.name, reason=admin, admin=admin, direction=direction
            )
            for hook in self.link_changed:
                hook(link)
        return link, changed

    # -- flapping on a schedule -------------------------------------------------------------
    def flap(self, name: str, down: object, up: object, count: object = None) -> Link:
        """Pull the link for ``down``, plug it back for ``up`` (seconds, or
        times as ``2s``, ``500ms``), ``count`` times (None: until stopped);
        the loop runs it.  A new schedule replaces the link's old one.
        Raises NotFound, Conflict (not p2p), BadRequest."""
        link = self.find(name)
        if link.p2p is None:
            raise Conflict(f"{link.name} is not a p2p link: only p2p links can flap")
        try:
            times = (
                duration(down, FLAP_SECONDS, "flap down"),
                duration(up, FLAP_SECONDS, "flap up"),
                None if count is None else FLAP_COUNT.check(count, name="flap count"),
            )
        except OutOfRange as e:
            raise BadRequest(str(e)) from None
        self.stop_flap(link)
        link.flap = Flap(*times)
        log.info("p2p link %s flaps: %s", link.name, link.flap.words())
        self.events.emit("flap.started", link.name, reason=link.flap.words())
        self._flap_step(link, link.flap)
        return link

    def _flap_step(self, link: Link, flap: Flap) -> None:
        if link.flap is not flap:
            return
        going_down = link.p2p is not None and not link.p2p.pulled
        if going_down and flap.count is not None and flap.done >= flap.count:
            link.flap = None
            log.info("p2p link %s: flap schedule done (%d times)", link.name, flap.done)
            self.events.emit("flap.stopped", link.name, reason=f"done ({flap.done} times)")
            return
        self.set_admin(link.name, not going_down)
        if going_down:
            flap.done += 1
        wait = flap.down if going_down else flap.up
        flap.next_at = self.engine.time() + wait
        flap.timer = self.engine.call_later(wait, lambda: self._flap_step(link, flap))

    def stop_flap(self, link: Link) -> bool:
        """Stop the link's flap schedule (the link is left plugged in); returns
        whether it had one."""
        flap, link.flap = link.flap, None
        if flap is None:
            return False
        if flap.timer is not None:
            flap.timer.cancel()
        if link.p2p is not None and link.p2p.pulled and link.name in self.links:
            self.set_admin(link.name, True)
        log.info("p2p link %s: flap schedule stopped after %d times", link.name, flap.done)
        self.events.emit("flap.stopped", link.name, reason=f"stopped after {flap.done} times")
        return True

    def set_impair(
        self, name: str, direction: str, imp: Impairment | None, end: str | None = None
    ) -> Link:
        """Impair a link's direction (``a2b``, ``b2a`` or ``both``) live, or
        clear it (``imp`` None).  A hub's directions are those of one of its
        ends (``end``): a2b into the hub, b2a out of it.  Raises NotFound,
        BadRequest."""
        link = self.find(name)
        if direction not in DIRECTIONS:
            raise BadRequest(f"direction {one_line(direction)!r}: one of {', '.join(DIRECTIONS)}")
        bridge = link.bridge
        where = direction
        if isinstance(bridge, Hub):
            port = self._hub_end(link, bridge, end)
            bridge.set_impair(port, direction, imp, self.seed)
            where = f"{port.name} {direction}"
        elif isinstance(bridge, P2PLink):
            if end is not None:
                raise BadRequest(
                    f"{link.name} is a p2p link: its directions are a2b and b2a "
                    "(an end is named for a hub's links only)"
                )
            bridge.set_impair(direction, imp, self.seed)
        else:  # pragma: no cover - every bridge is one of the two
            raise Conflict(f"{link.name} cannot be impaired")
        if imp is not None and not imp.null and not self._seed_logged:
            self._seed_logged = True
            log.info(
                "impairment seed %d (--seed %d replays the random draws)", self.seed, self.seed
            )
        words = imp.words() if imp is not None and not imp.null else None
        log.info("link %s %s: impairment %s", link.name, where, words or "cleared")
        if words:
            self.events.emit(
                "impair.set", link.name, reason=f"{where}: {words}", direction=where, netem=words
            )
        else:
            self.events.emit("impair.cleared", link.name, reason=where, direction=where)
        return link

    @staticmethod
    def _hub_end(link: Link, hub: Hub, end: str | None) -> Port:
        """The port of the hub's end named ``end``; raises BadRequest."""
        names = [end_name(e) for e in link.ends]
        if end is None:
            raise BadRequest(f"{link.name} is a hub: name one of its ends ({', '.join(names)})")
        for port, name, e in zip(hub.ports, names, link.ends, strict=False):
            if end in (name, port.name, str(e)):
                return port
        raise BadRequest(f"{link.name} has no end {one_line(end)!r}: one of {', '.join(names)}")

    def reset_counters(self, name: str | None = None) -> list[Link]:
        """Counters of one link (or all) back to zero."""
        links = [self.find(name)] if name is not None else list(self.links.values())
        for link in links:
            for fs in link.bridge.flow_stats():
                fs.reset()
                self._traced[id(fs)] = (0, 0, 0)
            for p in link.bridge.ports:
                p.stats.reset()
        return links

    # -- state --------------------------------------------------------------------
    def ports(self) -> list[Port]:
        return [p for b in self.bridges for p in b.ports]

    def health_counts(self) -> tuple[int, int, int]:
        """(connected, total, ready) over every link's ports, as the health file counts."""
        ports = self.ports()
        connected = sum(1 for p in ports if p.connected)
        return connected, len(ports), sum(1 for p in ports if p.healthy)

    def update_health(self) -> None:
        self._health_due = False
        self.health.update(*self.health_counts())

    def health_soon(self) -> None:
        """Update the health file once the loop has handled what is ready: a
        hundred links connecting at once count their ports and write the file
        once, not once each."""
        if not self._health_due:
            self._health_due = True
            self.engine.call_soon(self._health_if_due)

    def _health_if_due(self) -> None:
        if self._health_due:
            self.update_health()

    def counters(self) -> list[str]:
        lines = []
        for b in self.bridges:
            for fs in b.flow_stats():
                lines.append(fs.render())
            for p in b.ports:
                lines.append(_port_line(p))
        return lines

    def trace_lines(self, interval: float) -> list[str]:
        """One line per direction whose counters changed since the last call,
        with rates over ``interval`` seconds."""
        lines = []
        for b in self.bridges:
            for fs in b.flow_stats():
                line = _trace_line(fs, self._traced.get(id(fs)), interval)
                self._traced[id(fs)] = (fs.frames, fs.bytes, fs.dropped)
                if line:
                    lines.append(line)
        return lines


def check_monitors(spec: LinkSpec, monitors: Mapping[str, Monitor | str]) -> dict[str, Monitor]:
    """``monitors`` keyed by end name as its port is named (``vr2/1`` for
    ``vr2/1:123``); a key may be any spelling of an end.  Raises BadRequest."""
    ends = {end_name(e): e for e in (spec.left, spec.right)}
    out = {}
    for key, mon in monitors.items():
        try:
            name = end_name(parse_end(key))
        except SpecError:
            name = key
        end = ends.get(name)
        if end is None:
            raise BadRequest(f"monitor for {one_line(key)!r}: not an end of {spec}")
        if isinstance(mon, str):
            nic = end.nic if isinstance(end, Endpoint) else None
            try:
                mon = parse_monitor(mon, default_netdev(nic))
            except SpecError as e:
                raise BadRequest(str(e)) from None
        out[name] = mon
    return out


def vrnetlab_monitor(end: End) -> Monitor | None:
    """vrnetlab's monitor of a HOST/N end: its router's first VM listens on
    ``HOST:4000`` and NIC N is netdev ``pNN`` (None for other kinds of end)."""
    if not isinstance(end, Endpoint):
        return None
    netdev = default_netdev(end.nic)
    return Monitor(end.host, VRNETLAB_MONITOR_PORT, netdev) if netdev else None


#: The TCP port of the monitor of a vrnetlab router's first VM.
VRNETLAB_MONITOR_PORT = 4000


def end_name(end: End) -> str:
    """An end's name without its VLAN id (``vr2/1`` for ``vr2/1:123``)."""
    text = str(end)
    return text.rsplit(":", 1)[0] if end.vid is not None else text


def _port_line(p: Port) -> str:
    s = p.stats
    extra = p.counter_text()
    return (
        f"{p.name}: {'up' if p.up else 'down'} connects={s.connects} disconnects={s.disconnects} "
        f"protocol_errors={s.protocol_errors} partial_bytes={s.partial_bytes}"
        + (f" last_error={s.last_error!r}" if s.last_error else "")
        + (f" {extra}" if extra else "")
    )


def _trace_line(fs: FlowStats, before: tuple[int, int, int] | None, interval: float) -> str:
    frames0, bytes0, dropped0 = before or (0, 0, 0)
    df, db, dd = fs.frames - frames0, fs.bytes - bytes0, fs.dropped - dropped0
    if not (df or db or dd):
        return ""
    rate = f"{df / interval:.0f} frames/s {db * 8 / interval / 1e6:.3f} Mbit/s"
    if dd:
        rate += f" {dd / interval:.0f} drops/s"
    return f"{fs.render()} ({rate})"
