"""Prometheus metrics of the running links, named as node_exporter names a
network device's (``node_network_receive_bytes_total`` becomes
``xcon_link_receive_bytes_total``): counters end in ``_total``, sizes are in
bytes, every per-end series has the labels ``link`` (the link's name) and
``end`` (the end's name), drops also ``reason``.

A scrape costs the loop only a snapshot of the counters (:func:`snapshot`:
plain numbers, no I/O); rendering them (prometheus_client's own exposition,
with its process collector for RSS, CPU and open files, on a private
registry) runs on a worker thread.  That render is some 8000 samples for 500
links; prometheus_client before 0.21 renders them in ~25 ms, later versions
(which check and escape every label name of every sample for UTF-8 names)
in ~38 ms, and under the GIL a busy loop stretches either, hence the pin in
``pyproject.toml``.  Rendering in a forked child was tried and measured
slower on two cores (the child competes with the loop and the routers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from xcon import __version__, native
from xcon.app import Xcon
from xcon.control.server import ControlServer
from xcon.control.views import end_views, impairments, link_captures
from xcon.health import healthy

__all__ = ["Snapshot", "render", "snapshot"]

#: One end: name, rx frames, rx bytes, tx frames, tx bytes, rx drops, tx drops,
#: connected, reconnects, carrier changes, tx impairment events.
EndRow = tuple[
    str, int, int, int, int, dict[str, int], dict[str, int], bool, int, int, dict[str, int]
]


@dataclass
class Snapshot:
    """The counters of every link at one moment, as plain values."""

    links: list[tuple[str, bool, list[EndRow]]] = field(default_factory=list)
    #: (link, direction, netem words) of every impaired direction.
    impairs: list[tuple[str, str, str]] = field(default_factory=list)
    health: tuple[int, int, int] = (0, 0, 0)
    engine: str = ""
    #: (link, end, cumulative buckets, sum of seconds) of every end fed by a
    #: delay line (how late frames left it).
    lates: list[tuple[str, str, list[tuple[float, int]], float]] = field(default_factory=list)
    #: Per captured link: (name, captures running, frames recorded, frames dropped).
    captures: list[tuple[str, int, int, int]] = field(default_factory=list)
    #: Control requests refused, by reason ("token": no or a wrong token,
    #: "forbidden": not this client's to make).
    refused: dict[str, int] = field(default_factory=dict)
    #: The health file: (says what it should, failed writes).
    health_file: tuple[bool, int] = (True, 0)
    #: The control server's counters (see :class:`ControlCounters`), None without one.
    control: ControlCounters | None = None
    #: Per link with a capture running or failed: (name, captures that failed).
    capture_errors: list[tuple[str, int]] = field(default_factory=list)
    #: Per monitored end: (link, end, carrier as xcon set it: 1/0/None unknown,
    #: times set, monitor errors).
    carriers: list[tuple[str, str, int | None, int, int]] = field(default_factory=list)
    #: Event streams: (subscribers now, clients dropped for falling behind).
    events: tuple[int, int] = (0, 0)


@dataclass
class ControlCounters:
    """The control server's own counters at one moment."""

    accept_errors: int
    streams: int
    streams_refused: int
    streams_stalled: int


def snapshot(app: Xcon, engine: str, server: ControlServer | None = None) -> Snapshot:
    """Read every link's counters (on the loop: quick, no I/O)."""
    snap = Snapshot(
        health=app.health_counts(),
        engine=engine,
        health_file=(app.health.ok, app.health.errors),
        events=(len(app.events.subscribers), app.events.dropped_clients),
    )
    if server is not None:
        snap.control = ControlCounters(
            server.accept_errors, server.streams, server.streams_refused, server.streams_stalled
        )
    errors: dict[str, int] = app.captures.errors if app.captures is not None else {}
    if app.carriers is not None:
        for mine in app.carriers.ends.values():
            for ec in mine.values():
                state = None if ec.state is None else int(ec.state)
                snap.carriers.append((ec.link, ec.end, state, ec.changes, ec.errors))
    for link in app.links.values():
        p2p = link.p2p
        ends: list[EndRow] = []
        for v in end_views(link):
            st = v.port.stats
            ends.append(
                (
                    v.port.name,
                    v.rx.frames,
                    v.rx.bytes,
                    v.tx.frames,
                    v.tx.bytes,
                    v.rx_drops,
                    v.tx_drops,
                    v.port.connected,
                    st.reconnects,
                    st.connects + st.disconnects,
                    {k: n for k, n in v.tx.events.items() if n},
                )
            )
            late = v.tx.late
            if late is not None:
                snap.lates.append((link.name, v.port.name, late.cumulative(), late.sum))
        snap.links.append((link.name, p2p is None or p2p.admin_up, ends))
        caps = link_captures(link)  # the running ones
        if caps:
            frames = sum(c["frames"] for c in caps)
            snap.captures.append((link.name, len(caps), frames, sum(c["drops"] for c in caps)))
        failed = errors.get(link.name, 0)
        if caps or failed:
            snap.capture_errors.append((link.name, failed))
        for d, imp in impairments(link).items():
            if imp is not None:
                snap.impairs.append((link.name, d, imp.words()))
    return snap


class SnapshotCollector(Collector):
    """Metric families of one :class:`Snapshot`."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        def family(name: str, doc: str, kind: str = "counter") -> Metric:
            return Metric(name, doc, kind)

        rx_frames = family("xcon_link_receive_frames", "Frames read from the end and forwarded.")
        rx_bytes = family(
            "xcon_link_receive_bytes", "Bytes of the frames read from the end and forwarded."
        )
        rx_drop = family(
            "xcon_link_receive_drop", "Frames read from the end and dropped, by reason."
        )
        tx_frames = family("xcon_link_transmit_frames", "Frames sent to the end.")
        tx_bytes = family("xcon_link_transmit_bytes", "Bytes of the frames sent to the end.")
        tx_drop = family(
            "xcon_link_transmit_drop",
            "Frames meant for the end and dropped (it was down, or its queue full), by reason.",
        )
        up = family("xcon_link_end_up", "1 while the end is connected.", "gauge")
        reconnects = family(
            "xcon_link_reconnects", "Connections of the end after it had been connected before."
        )
        carrier = family(
            "xcon_link_carrier_changes",
            "Times the end went up or down (connections made and lost).",
        )
        admin = family(
            "xcon_link_admin_up", "0 while the link is set administratively down.", "gauge"
        )
        impaired = family(
            "xcon_link_transmit_impaired",
            "Frames sent to the end that the link's impairment duplicated, corrupted or "
            "reordered, by event (its losses are transmit drops, reason impair_loss).",
        )
        # Samples are added directly, one label dict shared by an end's series
        # (what add_metric would build per sample): a 500-link scrape is 7500 series.
        for name, admin_up, ends in self.snap.links:
            admin.add_sample("xcon_link_admin_up", {"link": name}, 1.0 if admin_up else 0.0)
            for end, rxf, rxb, txf, txb, rxd, txd, is_up, recon, changes, events in ends:
                ls = {"link": name, "end": end}
                rx_frames.add_sample("xcon_link_receive_frames_total", ls, rxf)
                rx_bytes.add_sample("xcon_link_receive_bytes_total", ls, rxb)
                tx_frames.add_sample("xcon_link_transmit_frames_total", ls, txf)
                tx_bytes.add_sample("xcon_link_transmit_bytes_total", ls, txb)
                for reason, n in rxd.items():
                    rx_drop.add_sample("xcon_link_receive_drop_total", {**ls, "reason": reason}, n)
                for reason, n in txd.items():
                    tx_drop.add_sample("xcon_link_transmit_drop_total", {**ls, "reason": reason}, n)
                up.add_sample("xcon_link_end_up", ls, 1.0 if is_up else 0.0)
                reconnects.add_sample("xcon_link_reconnects_total", ls, recon)
                carrier.add_sample("xcon_link_carrier_changes_total", ls, changes)
                for event, n in events.items():
                    impaired.add_sample(
                        "xcon_link_transmit_impaired_total", {**ls, "event": event}, n
                    )
        yield from (rx_frames, rx_bytes, rx_drop, tx_frames, tx_bytes, tx_drop, up)
        yield from (reconnects, carrier, admin, impaired)
        # Captures: counters of the captures running now (a new capture starts at 0).
        running = family("xcon_capture_running", "Captures running on the link.", "gauge")
        cap_frames = family(
            "xcon_capture_frames", "Frames recorded by the link's running captures."
        )
        cap_drops = family(
            "xcon_capture_drops",
            "Frames the link's running captures could not record (buffer full: the "
            "disk or the reader was slower); the link itself lost nothing.",
        )
        for name, n, frames, drops in self.snap.captures:
            ls = {"link": name}
            running.add_sample("xcon_capture_running", ls, n)
            cap_frames.add_sample("xcon_capture_frames_total", ls, frames)
            cap_drops.add_sample("xcon_capture_drops_total", ls, drops)
        cap_errors = family(
            "xcon_capture_errors",
            "Captures of the link that failed (a write error such as a full disk or a "
            "reader gone, or the capture's writer died); each is listed with its error.",
        )
        for name, n in self.snap.capture_errors:
            cap_errors.add_sample("xcon_capture_errors_total", {"link": name}, n)
        yield from (running, cap_frames, cap_drops, cap_errors)
        impair = GaugeMetricFamily(
            "xcon_link_impairment_info",
            "1 per impaired direction of a link, with its impairment in tc-netem's words.",
            labels=["link", "direction", "netem"],
        )
        for name, d, words in self.snap.impairs:
            impair.add_metric([name, d, words], 1.0)
        yield impair
        nic = GaugeMetricFamily(
            "xcon_link_end_carrier",
            "The carrier of the router's NIC at the end as xcon set it through its qemu "
            "monitor: 1 on, 0 off (ends with a monitor; absent until first set).",
            labels=["link", "end"],
        )
        sets = CounterMetricFamily(
            "xcon_link_end_carrier_set",
            "Times xcon changed the carrier of the router's NIC at the end.",
            labels=["link", "end"],
        )
        mon_errors = CounterMetricFamily(
            "xcon_link_monitor_errors",
            "Commands to the end's qemu monitor that failed (unreachable, busy, refused).",
            labels=["link", "end"],
        )
        for name, end, state, changes, errs in self.snap.carriers:
            if state is not None:
                nic.add_metric([name, end], float(state))
            sets.add_metric([name, end], changes)
            mon_errors.add_metric([name, end], errs)
        yield from (nic, sets, mon_errors)
        late = HistogramMetricFamily(
            "xcon_link_delay_lateness_seconds",
            "How late frames sent to the end left the link's delay line (sent minus due): "
            "what the delay line adds to the delay it was asked for.",
            labels=["link", "end"],
        )
        for name, end, cumulative, total in self.snap.lates:
            late.add_metric(
                [name, end],
                [("+Inf" if b == float("inf") else repr(b), float(n)) for b, n in cumulative],
                total,
            )
        yield late
        connected, total, ready = self.snap.health
        links = GaugeMetricFamily("xcon_links", "Links (p2p links, hubs, listening modes).")
        links.add_metric([], len(self.snap.links))
        yield links
        ends_g = GaugeMetricFamily("xcon_ends", "Ends of all links, by state.", labels=["state"])
        ends_g.add_metric(["connected"], connected)
        ends_g.add_metric(["ready"], ready - connected)
        ends_g.add_metric(["down"], total - ready)
        yield ends_g
        is_healthy = GaugeMetricFamily("xcon_healthy", "1 while the health file says 0 (healthy).")
        is_healthy.add_metric([], 1.0 if healthy(connected, total, ready) else 0.0)
        yield is_healthy
        refused_requests = family(
            "xcon_control_refused_requests",
            "Control API requests refused: no or a wrong token, or not this client's to make.",
        )
        for reason in ("token", "forbidden"):
            refused_requests.add_sample(
                "xcon_control_refused_requests_total",
                {"reason": reason},
                float(self.snap.refused.get(reason, 0)),
            )
        yield refused_requests
        file_ok, file_errors = self.snap.health_file
        ok = GaugeMetricFamily(
            "xcon_health_file_ok",
            "1 while the health file says what xcon_healthy says (0: it cannot be written).",
        )
        ok.add_metric([], 1.0 if file_ok else 0.0)
        errors = CounterMetricFamily(
            "xcon_health_file_errors",
            "Writes of the health file that failed (retried every second).",
        )
        errors.add_metric([], file_errors)
        yield from (ok, errors)
        ctl = self.snap.control
        if ctl is not None:
            accept = CounterMetricFamily(
                "xcon_control_accept_errors",
                "Connections to the control API not accepted for lack of descriptors or "
                "memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): accepting pauses meanwhile.",
            )
            accept.add_metric([], ctl.accept_errors)
            streams = GaugeMetricFamily(
                "xcon_control_streams",
                "Live streams (captures, events) the control API is sending.",
            )
            streams.add_metric([], ctl.streams)
            refused = CounterMetricFamily(
                "xcon_control_streams_refused",
                "Live streams refused (503): the most run already.",
            )
            refused.add_metric([], ctl.streams_refused)
            stalled = CounterMetricFamily(
                "xcon_control_streams_stalled",
                "Live streams ended because their client read nothing for too long.",
            )
            stalled.add_metric([], ctl.streams_stalled)
            yield from (accept, streams, refused, stalled)
        subscribers, dropped = self.snap.events
        followers = GaugeMetricFamily(
            "xcon_events_subscribers", "Clients following GET /events now."
        )
        followers.add_metric([], subscribers)
        dropped_clients = CounterMetricFamily(
            "xcon_events_dropped_clients",
            "Clients of GET /events dropped for falling too many events behind.",
        )
        dropped_clients.add_metric([], dropped)
        yield from (followers, dropped_clients)
        info = GaugeMetricFamily(
            "xcon_build_info",
            "xcon's version, fast path and engine.",
            labels=["version", "fast_path", "engine"],
        )
        info.add_metric([__version__, native.BACKEND, self.snap.engine], 1.0)
        yield info


_process = ProcessCollector(registry=None)


def render(snap: Snapshot) -> bytes:
    """The text exposition (version 0.0.4) of ``snap`` and of the process (any thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    registry.register(_process)
    return generate_latest(registry)
