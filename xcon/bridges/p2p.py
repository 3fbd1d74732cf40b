"""Point-to-point links: two ports joined both ways, one
:class:`~xcon.bridges.flows.Flow` per direction (rewrite -> stage -> tap ->
send: see :mod:`xcon.bridges.flows` for the rules).

The hot path is :class:`~xcon.bridges.flows.DirectFlow`: the source port
hands over the whole frames in its :class:`~xcon.framing.FrameBuffer` and
that span is given to ``dst.send`` as a memoryview of the receive buffer
itself (zero copy).  A VLAN link (``vlan``, ``access``) rewrites through a
:class:`~xcon.bridges.flows.VlanFlow` instead.

``a2b`` is the direction from the link's first end (``a``, as written in
``--p2p A--B``) to its second, ``b2a`` the other.  A link set
administratively down (:meth:`P2PLink.set_admin`, the control API's cable
pull) drops both ways with the reason ``admin_down``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from xcon.bridges.flows import DirectFlow, Direction, Flow, FlowTap, VlanFlow
from xcon.ports import Port
from xcon.stats import FlowStats

if TYPE_CHECKING:
    from xcon.impair.spec import Impairment

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

    # -- impairment -------------------------------------------------------------------
    def direction(self, src: Port) -> str:
        return "a2b" if src is self.a else "b2a"

    def sources(self, direction: str) -> list[Port]:
        """The source ports of ``direction`` (a2b, b2a or both)."""
        return {"a2b": [self.a], "b2a": [self.b], "both": [self.a, self.b]}[direction]

    def impairment(self, direction: str) -> Impairment | None:
        """The impairment of ``a2b`` or ``b2a``, or None."""
        flow = self.flows[self.sources(direction)[0]]
        if flow.stage is None and flow.next_stage is None:
            return None
        from xcon.impair.sender import impairment_of  # loaded with the first impairment

        return impairment_of(flow)

    def set_impair(self, direction: str, imp: Impairment | None, seed: int) -> None:
        """Impair ``direction`` (None or a null impairment clears it), live:
        sockets are not touched (see :mod:`xcon.impair.sender`)."""
        from xcon.impair.sender import impair_flow

        for src in self.sources(direction):
            impair_flow(self.flows[src], imp, seed, self.name, self.direction(src))

    def set_tap(self, direction: str, tap: FlowTap | None) -> None:
        """Observe ``a2b`` or ``b2a`` (None: stop)."""
        self.flows[self.sources(direction)[0]].set_tap(tap)

    def directions(self) -> list[Direction]:
        """a2b (from end 0 to end 1), then b2a."""
        return [Direction(self.flows[self.a], 1, 0), Direction(self.flows[self.b], 0, 1)]

    @property
    def ports(self) -> tuple[Port, Port]:
        return (self.a, self.b)

    @property
    def admin_up(self) -> bool:
        """False while either direction is set administratively down."""
        return not any(f.admin_down for f in self.flows.values())

    @property
    def pulled(self) -> bool:
        """Both directions down: the cable is pulled (the routers lose carrier
        when their monitors are known); one direction alone is a one-way fault."""
        return all(f.admin_down for f in self.flows.values())

    def admin_state(self) -> str:
        """``up``, ``down`` (pulled), or ``down a2b`` / ``down b2a`` (one way)."""
        down = [d for d in ("a2b", "b2a") if self.flows[self.sources(d)[0]].admin_down]
        return "up" if not down else "down" if len(down) == 2 else f"down {down[0]}"

    @property
    def a_to_b(self) -> Flow:
        return self.flows[self.a]

    def set_admin(self, up: bool, direction: str = "both") -> bool:
        """Pull the cable (``up=False``: nothing crosses ``direction``, both
        ways by default) or plug it back in; returns whether the state
        changed.  Sources keep being read and what they send meanwhile is
        dropped and counted (``admin_down``)."""
        flows = [self.flows[src] for src in self.sources(direction)]
        if all(f.admin_down == (not up) for f in flows):
            return False
        self.admin_changes += 1
        for flow in flows:
            if flow.admin_down != (not up):
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
    def _state_changed(self) -> None:
        if self.on_state:
            self.on_state()

    def received(self, port: Port) -> None:
        self.flows[port].received()

    def writable(self, port: Port) -> None:
        self._into[port].writable()

    def port_state(self, port: Port) -> None:
        self._state_changed()

    def port_up(self, port: Port) -> None:
        # Read from the port unless frames it sent earlier still wait for the peer.
        port.set_reading(not self.flows[port].blocked)
        # Whole frames read before an end came up (only a handover leaves any:
        # xcon.handover) go out once both ends are up.
        for flow in (self.flows[port], self._into[port]):
            if flow.src.inbuf.nready and flow.src.up and flow.dst.up:
                flow.received()
        self._state_changed()

    def port_down(self, port: Port, reason: str) -> None:
        self._into[port].dest_down()
        self.flows[port].source_down()
        self._state_changed()
