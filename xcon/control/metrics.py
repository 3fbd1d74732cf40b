"""Prometheus metrics of the running links, named as node_exporter names a
network device's (``node_network_receive_bytes_total`` becomes
``xcon_link_receive_bytes_total``): counters end in ``_total``, sizes are in
bytes, every per-end series has the labels ``link`` (the link's name) and
``end`` (the end's name), drops also ``reason``.

The values are read from the live counters at scrape time by a custom
collector (nothing is updated on the data path), and rendered by
prometheus_client's own exposition, with its process collector (RSS, CPU,
open files) on a private registry beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from xcon import __version__, native
from xcon.app import Xcon

__all__ = ["LinkCollector", "exposition"]


class LinkCollector(Collector):
    """Every link's ends, counters and states, read when scraped."""

    def __init__(self, app: Xcon, engine: str) -> None:
        self.app = app
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        from xcon.control.api import end_views

        labels = ["link", "end"]
        dlabels = ["link", "end", "reason"]

        def counter(name: str, doc: str, lab: list[str] = labels) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=lab)

        rx_frames = counter("xcon_link_receive_frames", "Frames read from the end and forwarded.")
        rx_bytes = counter(
            "xcon_link_receive_bytes", "Bytes of the frames read from the end and forwarded."
        )
        rx_drop = counter(
            "xcon_link_receive_drop", "Frames read from the end and dropped, by reason.", dlabels
        )
        tx_frames = counter("xcon_link_transmit_frames", "Frames sent to the end.")
        tx_bytes = counter("xcon_link_transmit_bytes", "Bytes of the frames sent to the end.")
        tx_drop = counter(
            "xcon_link_transmit_drop",
            "Frames meant for the end and dropped (it was down, or its queue full), by reason.",
            dlabels,
        )
        up = GaugeMetricFamily("xcon_link_end_up", "1 while the end is connected.", labels=labels)
        connects = counter("xcon_link_connects", "Connections (or opens) of the end.")
        reconnects = counter(
            "xcon_link_reconnects", "Connections of the end after it had been connected before."
        )
        carrier = counter(
            "xcon_link_carrier_changes",
            "Times the end went up or down (connections made and lost).",
        )
        errors = counter(
            "xcon_link_protocol_errors", "Connections reset for a frame length qemu would reject."
        )
        admin = GaugeMetricFamily(
            "xcon_link_admin_up", "0 while the link is set administratively down.", labels=["link"]
        )
        admin_changes = CounterMetricFamily(
            "xcon_link_admin_changes", "Times the link was set down or up.", labels=["link"]
        )
        for link in self.app.links.values():
            name = link.name
            p2p = link.p2p
            admin.add_metric([name], 0.0 if p2p is not None and not p2p.admin_up else 1.0)
            admin_changes.add_metric([name], p2p.admin_changes if p2p is not None else 0)
            for v in end_views(link):
                ls = [name, v.port.name]
                rx_frames.add_metric(ls, v.rx.frames)
                rx_bytes.add_metric(ls, v.rx.bytes)
                tx_frames.add_metric(ls, v.tx.frames)
                tx_bytes.add_metric(ls, v.tx.bytes)
                for reason, n in v.rx_drops.items():
                    rx_drop.add_metric([*ls, reason], n)
                for reason, n in v.tx_drops.items():
                    tx_drop.add_metric([*ls, reason], n)
                st = v.port.stats
                up.add_metric(ls, 1.0 if v.port.connected else 0.0)
                connects.add_metric(ls, st.connects)
                reconnects.add_metric(ls, st.reconnects)
                carrier.add_metric(ls, st.connects + st.drops)
                errors.add_metric(ls, st.protocol_errors)
        yield from (rx_frames, rx_bytes, rx_drop, tx_frames, tx_bytes, tx_drop, up)
        yield from (connects, reconnects, carrier, errors, admin, admin_changes)
        connected, total, ready = self.app.health_counts()
        links = GaugeMetricFamily("xcon_links", "Links (p2p links, hubs, listening modes).")
        links.add_metric([], len(self.app.links))
        yield links
        ends = GaugeMetricFamily("xcon_ends", "Ends of all links, by state.", labels=["state"])
        ends.add_metric(["connected"], connected)
        ends.add_metric(["ready"], ready - connected)
        ends.add_metric(["down"], total - ready)
        yield ends
        healthy = GaugeMetricFamily("xcon_healthy", "1 while the health file says 0 (healthy).")
        healthy.add_metric([], 1.0 if connected >= total or ready >= total else 0.0)
        yield healthy
        info = GaugeMetricFamily(
            "xcon_build_info",
            "xcon's version, fast path and engine.",
            labels=["version", "fast_path", "engine"],
        )
        info.add_metric([__version__, native.BACKEND, self.engine], 1.0)
        yield info


def exposition(app: Xcon, engine: str) -> Callable[[], bytes]:
    """A function rendering the metrics in the text format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LinkCollector(app, engine))
    ProcessCollector(registry=registry)
    return lambda: generate_latest(registry)
