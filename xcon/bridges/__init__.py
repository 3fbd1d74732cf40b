"""Bridges: the forwarding rule between ports.

A bridge owns ports (it is their :class:`~xcon.ports.PortOwner`) and decides
where each whole frame goes: :mod:`~xcon.bridges.p2p` joins two ports both
ways (zero-copy, or through a VLAN rewrite), :mod:`~xcon.bridges.hub` floods
each frame to every other port.  Bridges never touch descriptors: they see
frames in a port's buffer, call ``port.send`` and ``set_reading`` /
``set_writing``, and are tested with :class:`xcon.testing.fakeport.FakePort`
instead of sockets.

Every direction of every bridge is one :class:`~xcon.bridges.flows.Flow`:
rewrite -> stage (impairment) -> tap (capture) -> send.  A bridge lists its
flows with ``directions()``; capture and impairment work through them alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from xcon.bridges.flows import Direction
from xcon.ports import Port
from xcon.stats import FlowStats

__all__ = ["Bridge"]


class Bridge(Protocol):
    """What the process (:class:`~xcon.app.Xcon`) needs of any bridge."""

    name: str
    #: Called when a port goes up or down (the link table sets it).
    on_state: Callable[[], None] | None

    @property
    def ports(self) -> Sequence[Port]: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def flow_stats(self) -> list[FlowStats]: ...

    def directions(self) -> list[Direction]: ...
