"""Bridges: the forwarding rule between ports.

A bridge owns ports (it is their :class:`~xcon.ports.PortOwner`) and decides
where each whole frame goes: :mod:`~xcon.bridges.p2p` joins two ports both
ways (zero-copy, or through a VLAN rewrite), :mod:`~xcon.bridges.hub` floods
each frame to every other port.  Bridges never touch descriptors: they see
frames in a port's buffer, call ``port.send`` and ``set_reading`` /
``set_writing``, and are tested with :class:`xcon.testing.fakeport.FakePort`
instead of sockets.

A new stage inside a link (impairment, capture) is a per-direction object of
:class:`~xcon.bridges.p2p.P2PLink` between reading the source's frames and
sending them, costing nothing when a link does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from xcon.ports import Port
from xcon.stats import FlowStats

__all__ = ["Bridge"]


class Bridge(Protocol):
    """What the process (:class:`~xcon.app.Xcon`) needs of any bridge."""

    name: str

    @property
    def ports(self) -> Sequence[Port]: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def flow_stats(self) -> list[FlowStats]: ...
