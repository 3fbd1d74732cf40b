"""What the ports of one engine share.

A lab of a thousand links whose routers are down costs next to nothing
because its ports share: one :class:`~xcon.ports.hostgate.HostGate` per host
(one name lookup, one probe), one :class:`~xcon.ports.listeners.ListenerWatch`
(one ``sock_diag`` dump for every host), one cache of which addresses are
local, and the VXLAN ends that share a local UDP port are one
:class:`~xcon.ports.dgram.VxlanGroups` group.  :class:`PortServices` holds
them for one engine: made with the engine (by :class:`~xcon.app.Xcon`) and
handed to every port factory (:func:`xcon.linkspec.make_port`), so nothing
is kept in a module global and two engines share nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xcon.engines import Engine
from xcon.ports.hostgate import HostGate
from xcon.ports.listeners import ListenerWatch, LocalAddresses

if TYPE_CHECKING:
    from xcon.ports.dgram import VxlanGroups


class PortServices:
    """What the ports of ``engine`` share (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Which addresses are this host's (a host whose every address is local is watched).
        self.local = LocalAddresses()
        #: The kernel's TCP listeners, listed while some port waits for one.
        self.listeners = ListenerWatch(engine)
        self._vxlan: VxlanGroups | None = None
        self._gates: dict[str, HostGate] = {}

    @property
    def vxlan(self) -> VxlanGroups:
        """VXLAN ends sharing a local port (made with the first VXLAN end)."""
        if self._vxlan is None:
            from xcon.ports.dgram import VxlanGroups

            self._vxlan = VxlanGroups()
        return self._vxlan

    def host_gate(self, host: str) -> HostGate:
        """The gate shared by every port of ``host`` (names compared without case
        and trailing dot)."""
        key = host.lower().rstrip(".")
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = HostGate(self.engine, host, self.listeners, self.local)
        return gate
