"""A hub: N ports; each whole frame from one port is copied to every other port.

Frames are appended whole to each destination's bounded
:class:`~xcon.framing.OutBuffer` and sent from there, so frames from different
ports never interleave.  A destination that cannot keep up does not slow the
others down: when its queue is full, the frames that do not fit are dropped
for that port only (tail drop, counted as ``queue_full``).  A port that is
down drops its share (``port_down``).  The hub never pauses a source.
"""

from __future__ import annotations

from collections.abc import Callable

from xcon import native
from xcon.framing import FRAME_HEADER, OutBuffer, iter_frames
from xcon.ports import Port
from xcon.stats import FlowStats
from xcon.trace import log_frame, log_frames

__all__ = ["Hub"]

#: Default queue per destination port.
QUEUE_BYTES = 1024 * 1024


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
        self.out: dict[Port, OutBuffer] = {p: OutBuffer(queue_bytes) for p in ports}
        self.rx: dict[Port, FlowStats] = {p: FlowStats(f"{p.name}->hub") for p in ports}
        self.tx: dict[Port, FlowStats] = {p: FlowStats(f"hub->{p.name}") for p in ports}
        self._blocked: set[Port] = set()  # ports with a send outstanding
        for p in ports:
            p.owner = self

    @property
    def ports(self) -> list[Port]:
        return self._ports

    def start(self) -> None:
        for p in self._ports:
            p.start()

    def close(self) -> None:
        for p in self._ports:
            p.close()

    def flow_stats(self) -> list[FlowStats]:
        return [self.rx[p] for p in self._ports] + [self.tx[p] for p in self._ports]

    # -- PortOwner ------------------------------------------------------------------
    def port_state(self, port: Port) -> None:
        if self.on_state:
            self.on_state()

    def port_up(self, port: Port) -> None:
        port.set_reading(True)
        if self.on_state:
            self.on_state()

    def port_down(self, port: Port, reason: str) -> None:
        self.tx[port].drop("port_down", self.out[port].clear())
        self._blocked.discard(port)
        port.set_writing(False)
        if self.on_state:
            self.on_state()

    def received(self, port: Port) -> None:
        zero = port.inbuf.take_zero_frames()
        if zero:
            self.rx[port].drop("zero_length", zero)
            if self.debug:
                log_frame(self.rx[port].name, f"dropped: zero_length (x{zero})", b"")
        if port.inbuf.nready:
            self._flood(port)

    def writable(self, port: Port) -> None:
        self._send(port)

    # -- forwarding -------------------------------------------------------------------
    def _flood(self, src: Port) -> None:
        buf = src.inbuf
        start, ready, nframes = buf.start, buf.ready, buf.nready
        size = ready - start
        rx = self.rx[src]
        rx.frames += nframes
        rx.bytes += size - FRAME_HEADER * nframes
        if self.debug:
            n = len(self._ports) - 1
            log_frames(rx.name, f"flooded to {n} port{'s' * (n != 1)}", buf.mv, start, ready)
        span = buf.span()
        for dst in self._ports:
            if dst is src:
                continue
            tx = self.tx[dst]
            if not dst.up:
                tx.drop("port_down", nframes)
                if self.debug:
                    log_frames(tx.name, "dropped: port_down", buf.mv, start, ready)
                continue
            out = self.out[dst]
            # While a send is outstanding the queued bytes stay where they are:
            # a transport may still hold a view of them.
            free = out.free(compact=dst not in self._blocked)
            if free >= size:
                cut, fit = size, nframes
            else:
                # Tail drop for this port only: the whole frames that fit go in.
                pos, fit, _status = native.scan(buf.buf, start, start + free)
                cut = pos - start
                tx.drop("queue_full", nframes - fit)
                if self.debug:
                    for off, length in iter_frames(buf.mv, pos, ready):
                        log_frame(tx.name, "dropped: queue_full", buf.mv[off : off + length])
            if fit:
                out.append(span[:cut], fit)
                tx.frames += fit
                tx.bytes += cut - FRAME_HEADER * fit
                self._send(dst)
        buf.consume(size)

    def _send(self, dst: Port) -> None:
        out = self.out[dst]
        pending = out.pending
        if not pending:
            return
        n = dst.send(out.span())
        out.consume(n)
        if n < pending:
            self._blocked.add(dst)
            dst.set_writing(True)
        else:
            self._blocked.discard(dst)
            dst.set_writing(False)
