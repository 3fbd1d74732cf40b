"""Point-to-point links: two ports joined both ways.

A :class:`Flow` is one direction of a link (frames read from ``src`` go to
``dst``).  The hot path is :class:`DirectFlow`: the source port hands over the
whole frames in its :class:`~xcon.framing.FrameBuffer` and that span is given
to ``dst.send`` as a memoryview of the receive buffer itself (zero copy).  If
the destination takes only part of it, the unsent tail stays where it is and
the source is not read again until it has drained (backpressure): memory per
direction is the buffer, whatever the routers do.

:class:`VlanFlow` rewrites frames (tag insert or strip, native) from the source
buffer into an out buffer and sends that; the same backpressure rule applies.

A flow whose destination is down drops the whole frames meant for it and
counts them, as a pulled cable would.  A link set administratively down
(:meth:`P2PLink.set_admin`, the control API's cable pull) does the same in
both directions with the reason ``admin_down``: its sources are still read,
so the routers are never backpressured and nothing queues; a batch whose
send had already begun is finished first, so a frame is never cut.  A destination that breaks while being
sent to simply takes nothing; it goes down from the loop afterwards, and only
then does the flow drop what was pending for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from xcon.bridges.flow import DirectFlow, Flow, FlowTap, VlanFlow
from xcon.ports import Port
from xcon.stats import FlowStats

log = logging.getLogger("xcon.bridge")

__all__ = ["DirectFlow", "Flow", "FlowTap", "P2PLink", "VlanFlow"]


class P2PLink:
    """Two ports joined both ways, with an optional VLAN access port on one side."""

    def __init__(
        self,
        a: Port,
        b: Port,
        *,
        vlan: int | None = None,
        access: Port | None = None,
        debug: bool = False,
        on_state: Callable[[], None] | None = None,
    ) -> None:
        self.a, self.b = a, b
        self.name = f"{a.name}--{b.name}"
        a.owner = self
        b.owner = self
        self.on_state = on_state
        self.flows: dict[Port, Flow] = {}
        for src, dst in ((a, b), (b, a)):
            name = f"{src.name}->{dst.name}"
            flow: Flow
            if vlan is None:
                flow = DirectFlow(src, dst, name, debug)
            else:
                flow = VlanFlow(src, dst, name, vlan, strip=dst is access, debug=debug)
            self.flows[src] = flow
        self._into = {flow.dst: flow for flow in self.flows.values()}
        #: Times the link was set administratively down or up.
        self.admin_changes = 0
        #: Impairments waiting for a blocked direction to finish its batch.
        self._pending_impair: dict[Port, Any] = {}

    # -- impairment -------------------------------------------------------------------
    def direction(self, src: Port) -> str:
        return "a2b" if src is self.a else "b2a"

    def sources(self, direction: str) -> list[Port]:
        """The source ports of ``direction`` (a2b, b2a or both)."""
        return {"a2b": [self.a], "b2a": [self.b], "both": [self.a, self.b]}[direction]

    def impairment(self, direction: str) -> Any:
        """The impairment of ``a2b`` or ``b2a`` (an Impairment), or None."""
        from xcon.bridges.impair import ImpairFlow

        src = self.sources(direction)[0]
        pending = self._pending_impair.get(src)
        if pending is not None:
            return pending[0]
        flow = self.flows[src]
        if isinstance(flow, ImpairFlow) and not flow.clearing:
            return flow.impairment
        return None

    def set_impair(self, direction: str, imp: Any, seed: int) -> None:
        """Impair ``direction`` (``imp``: an :class:`~xcon.impair.Impairment`,
        None or a null one to clear), live: sockets are not touched.  A
        direction's flow is swapped between batches only (a blocked one is
        retried every millisecond until its batch is out), so no frame is
        cut or sent twice; a cleared one drains its line first."""
        from xcon.bridges.impair import ImpairFlow

        for src in self.sources(direction):
            flow = self.flows[src]
            if imp is None or imp.null:
                self._pending_impair.pop(src, None)
                if isinstance(flow, ImpairFlow):
                    flow.clear()
            elif isinstance(flow, ImpairFlow):
                self._pending_impair.pop(src, None)
                flow.set(imp)
            else:
                self._pending_impair[src] = (imp, seed)
                self._try_impair(src)

    def _try_impair(self, src: Port) -> None:
        from xcon.bridges.impair import ImpairFlow
        from xcon.impair.stage import derive_seed

        pending = self._pending_impair.get(src)
        if pending is None:
            return
        flow = self.flows[src]
        if flow.blocked:
            src.engine.call_later(0.001, lambda: self._try_impair(src))
            return
        del self._pending_impair[src]
        imp, seed = pending
        new = ImpairFlow(
            flow, imp, derive_seed(seed, self.name, self.direction(src)), self._restore
        )
        self.flows[src] = new
        self._into[new.dst] = new

    def _restore(self, flow: Flow) -> None:
        from xcon.bridges.impair import ImpairFlow

        assert isinstance(flow, ImpairFlow)
        base = flow.base
        base.adopt(flow)
        if self.flows.get(flow.src) is flow:
            self.flows[flow.src] = base
            self._into[base.dst] = base
        flow.close()

    @property
    def ports(self) -> tuple[Port, Port]:
        return (self.a, self.b)

    @property
    def admin_up(self) -> bool:
        """False while the link is set administratively down (cable pulled)."""
        return not self.a_to_b.admin_down

    @property
    def a_to_b(self) -> Flow:
        return self.flows[self.a]

    def set_admin(self, up: bool) -> bool:
        """Pull the cable (``up=False``: nothing crosses, both ways) or plug it
        back in; returns whether the state changed.  Sources keep being read
        and what they send meanwhile is dropped and counted (``admin_down``)."""
        if up == self.admin_up:
            return False
        self.admin_changes += 1
        for flow in self.flows.values():
            flow.admin_down = not up
            flow.admin_changed()
        return True

    def start(self) -> None:
        self.a.start()
        self.b.start()

    def close(self) -> None:
        self.a.close()
        self.b.close()
        for flow in self.flows.values():
            flow.close()

    def flow_stats(self) -> list[FlowStats]:
        return [f.stats for f in self.flows.values()]

    # -- PortOwner ------------------------------------------------------------------
    def received(self, port: Port) -> None:
        self.flows[port].received()

    def writable(self, port: Port) -> None:
        self._into[port].push()

    def port_state(self, port: Port) -> None:
        if self.on_state:
            self.on_state()

    def port_up(self, port: Port) -> None:
        # Read from the port unless frames it sent earlier still wait for the peer.
        port.set_reading(not self.flows[port].blocked)
        if self.on_state:
            self.on_state()

    def port_down(self, port: Port, reason: str) -> None:
        self._into[port].dest_down()
        self.flows[port].source_down()
        if self.on_state:
            self.on_state()
