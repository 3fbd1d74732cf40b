"""A hub: N ports; each whole frame from one port is copied to every other port.

Each port has two :class:`~xcon.bridges.flows.Flow` pipelines (rewrite ->
stage -> tap -> send), named from the port's side as for a p2p link whose
first end is the port and whose second is the hub:

* ``a2b``, **into the hub** (:class:`IntoHub`): the frames read from the
  port, sent to the hub's inlet, which offers them to every other port;
* ``b2a``, **out of the hub** (:class:`~xcon.bridges.flows.QueueFlow`): the
  frames the other ports sent, queued for this port and sent to it.

So an impairment of ``a2b`` on one end acts on what that router sends (every
other port sees it), one of ``b2a`` on what it receives (only it sees it);
a capture of a hub records every frame sent to each end (and the frames
dropped, on the end they came from).

Frames are appended whole to each destination's bounded out buffer and sent
from there, so frames from different ports never interleave.  A destination
that cannot keep up does not slow the others down: when its queue is full,
the frames that do not fit are dropped for that port only (tail drop,
counted as ``queue_full``).  A port that is down drops its share
(``port_down``).  The hub never pauses a source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xcon import native
from xcon.bridges.flows import DirectFlow, Direction, Flow, FlowTap, QueueFlow
from xcon.engines import Engine
from xcon.framing import FRAME_HEADER
from xcon.ports import Port
from xcon.stats import FlowStats
from xcon.trace import log_frames

if TYPE_CHECKING:
    from xcon.impair.spec import Impairment

__all__ = ["Hub"]

#: Default queue per destination port.
QUEUE_BYTES = 1024 * 1024


class Inlet:
    """Where a port's frames enter the hub (the destination of its
    :class:`IntoHub` flow): it takes every frame at once."""

    up = True

    def __init__(self, hub: Hub, src: Port) -> None:
        self.hub = hub
        self.src = src
        self.name = "hub"
        self.engine: Engine = src.engine

    def send(self, data: memoryview) -> int:
        """A stage's span (its frames are counted here, once per send)."""
        _pos, nframes, _status = native.scan(data, 0, len(data))
        self.hub.spread(self.src, data, 0, len(data), nframes)
        return len(data)

    def set_writing(self, on: bool) -> None:
        pass


class IntoHub(DirectFlow):
    """A port's frames into the hub: without a stage, the ready frames are
    offered to every other port straight from the receive buffer."""

    def __init__(self, src: Port, hub: Hub, name: str, debug: bool = False) -> None:
        super().__init__(src, Inlet(hub, src), name, debug)
        self.hub = hub

    def push(self) -> None:
        buf, st = self.src.inbuf, self.stats
        start, ready, nframes = buf.start, buf.ready, buf.nready
        if self.admin_down:
            self._drop_ready("admin_down")
            return
        if self.debug:
            n = len(self.hub.ports) - 1
            log_frames(st.name, f"flooded to {n} port{'s' * (n != 1)}", buf.mv, start, ready)
        if self.tap is not None:
            self.tap.sent(buf.mv, start, ready)
        st.frames += nframes
        st.bytes += ready - start - FRAME_HEADER * nframes
        self.hub.spread(self.src, buf.mv, start, ready, nframes)
        buf.consume(ready - start)


class Hub:
    """A flooding bridge of two or more ports (see the module docstring)."""

    def __init__(
        self,
        ports: list[Port],
        *,
        debug: bool = False,
        on_state: Callable[[], None] | None = None,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        if len(ports) < 2:
            raise ValueError("a hub needs at least two ports")
        self._ports = ports
        self.name = "hub(" + " ".join(p.name for p in ports) + ")"
        self.debug = debug
        self.on_state = on_state
        #: Each port's two directions: into the hub (a2b) and out of it (b2a).
        self.into: dict[Port, Flow] = {}
        self.outof: dict[Port, QueueFlow] = {}
        for p in ports:
            self.into[p] = IntoHub(p, self, f"{p.name}->hub", debug)
            self.outof[p] = QueueFlow(p, f"hub->{p.name}", queue_bytes, debug)
            p.owner = self

    @property
    def rx(self) -> dict[Port, FlowStats]:
        """What each port sent into the hub."""
        return {p: f.stats for p, f in self.into.items()}

    @property
    def tx(self) -> dict[Port, FlowStats]:
        """What the hub sent to each port."""
        return {p: f.stats for p, f in self.outof.items()}

    def flow(self, port: Port, direction: str) -> Flow:
        """``a2b``: ``port`` into the hub; ``b2a``: the hub out to ``port``."""
        return self.into[port] if direction == "a2b" else self.outof[port]

    def impairment(self, port: Port, direction: str) -> Impairment | None:
        flow = self.flow(port, direction)
        if flow.stage is None and flow.next_stage is None:
            return None
        from xcon.impair.sender import impairment_of  # loaded with the first impairment

        return impairment_of(flow)

    def set_impair(self, port: Port, direction: str, imp: Impairment | None, seed: int) -> None:
        """Impair one end's ``direction`` (a2b, b2a or both; see the module docstring)."""
        from xcon.impair.sender import impair_flow

        for d in ("a2b", "b2a") if direction == "both" else (direction,):
            impair_flow(self.flow(port, d), imp, seed, f"{self.name} {port.name}", d)

    def set_tap(self, port: Port, direction: str, tap: FlowTap | None) -> None:
        self.flow(port, direction).set_tap(tap)

    def directions(self) -> list[Direction]:
        """Per port (in order): into the hub (to no end), out of the hub to it."""
        out = []
        for i, p in enumerate(self._ports):
            out += [Direction(self.into[p], None, i), Direction(self.outof[p], i, i)]
        return out

    @property
    def ports(self) -> list[Port]:
        return self._ports

    def start(self) -> None:
        for p in self._ports:
            p.start()

    def close(self) -> None:
        for p in self._ports:
            p.close()
        for p in self._ports:
            self.into[p].close()
            self.outof[p].close()

    def flow_stats(self) -> list[FlowStats]:
        return [self.into[p].stats for p in self._ports] + [
            self.outof[p].stats for p in self._ports
        ]

    # -- PortOwner ------------------------------------------------------------------
    def _state_changed(self) -> None:
        if self.on_state:
            self.on_state()

    def port_state(self, port: Port) -> None:
        self._state_changed()

    def port_up(self, port: Port) -> None:
        port.set_reading(True)
        if port.inbuf.nready:  # frames a handover brought (xcon.handover)
            self.into[port].received()
        self._state_changed()

    def port_down(self, port: Port, reason: str) -> None:
        self.outof[port].dest_down()
        self.into[port].source_down()
        self._state_changed()

    def received(self, port: Port) -> None:
        self.into[port].received()

    def writable(self, port: Port) -> None:
        self.outof[port].writable()

    # -- forwarding -------------------------------------------------------------------
    def spread(self, src: Port, mv: memoryview, start: int, end: int, nframes: int) -> None:
        """Offer the whole frames ``mv[start:end]`` from ``src`` to every other port."""
        for dst in self._ports:
            if dst is not src:
                self.outof[dst].offer(mv, start, end, nframes)
