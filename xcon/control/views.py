"""The links as the control plane shows them, for the API's JSON (:mod:`.api`)
and the metrics (:mod:`.metrics`) alike: each end with what it received and
was sent, drops split into the end's receive and transmit drops, captures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xcon.app import Link, end_name
from xcon.bridges.hub import Hub
from xcon.bridges.p2p import P2PLink
from xcon.impair.spec import Impairment
from xcon.ports import Port
from xcon.stats import FlowStats

if TYPE_CHECKING:
    from xcon.capture.manager import Captures

#: Drop reasons that are about the destination (counted as transmit drops of
#: the end the frames were going to); every other reason is a receive drop of
#: the end they came from.
TRANSMIT_REASONS = frozenset(
    {"port_down", "queue_full", "impair_loss", "impair_queue", "impair_cleared"}
)


@dataclass
class EndView:
    """One end of a link as the API shows it: its port, what xcon read from it
    and forwarded (``rx``) and what xcon sent to it (``tx``)."""

    port: Port
    rx: FlowStats
    tx: FlowStats
    kind: str
    #: ``rx`` and ``tx`` are one p2p direction each, shared with the other
    #: end: split their drops by reason.  A hub end's flows are its own
    #: (into the hub, out of it): every drop of ``rx`` is a receive drop,
    #: every drop of ``tx`` a transmit drop.
    shared: bool = True

    @property
    def rx_drops(self) -> dict[str, int]:
        return _drops(self.rx, transmit=False, shared=self.shared)

    @property
    def tx_drops(self) -> dict[str, int]:
        return _drops(self.tx, transmit=True, shared=self.shared)


def _drops(stats: FlowStats, transmit: bool, shared: bool) -> dict[str, int]:
    """The drops of ``stats`` an end counts as its transmit (or receive) drops."""
    return {
        r: n
        for r, n in sorted(stats.drops.items())
        if n and (not shared or (r in TRANSMIT_REASONS) == transmit)
    }


def end_views(link: Link) -> list[EndView]:
    b = link.bridge
    kinds = [e.kind for e in link.ends]
    if isinstance(b, P2PLink):
        fa, fb = b.flows[b.a].stats, b.flows[b.b].stats
        views = [EndView(b.a, fa, fb, ""), EndView(b.b, fb, fa, "")]
    elif isinstance(b, Hub):
        views = [EndView(p, b.into[p].stats, b.outof[p].stats, "", shared=False) for p in b.ports]
    else:  # pragma: no cover - every bridge is one of the two
        return []
    for v, kind in zip(views, kinds, strict=False):
        v.kind = kind
    return views


def link_captures(link: Link, captures: Captures | None = None) -> list[dict[str, Any]]:
    """The link's captures as the API shows them ([] when none): those its
    flows' taps write to, then those that failed (kept by ``captures``, the
    manager, with their error)."""
    tap = link.bridge.directions()[0].flow.tap
    caps = list(getattr(tap, "captures", None) or ())
    if captures is not None:
        caps += captures.failed_of(link.name)
    return [c.describe() for c in caps]


def impairments(link: Link) -> dict[str, Impairment | None]:
    """Each direction's impairment (None: not impaired): ``a2b`` and ``b2a``
    for a p2p link, ``END:a2b`` and ``END:b2a`` per end of a hub (into the
    hub, out of it)."""
    b = link.bridge
    if isinstance(b, P2PLink):
        return {d: b.impairment(d) for d in ("a2b", "b2a")}
    if isinstance(b, Hub):
        return {
            f"{end_name(e)}:{d}": b.impairment(p, d)
            for p, e in zip(b.ports, link.ends, strict=False)
            for d in ("a2b", "b2a")
        }
    return {}  # pragma: no cover - every bridge is one of the two
