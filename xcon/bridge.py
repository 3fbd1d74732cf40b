"""Bridges: the forwarding rule between ports.

A :class:`Flow` is one direction of a link (frames read from ``src`` go to
``dst``).  The p2p hot path is :class:`DirectFlow`: a read lands in the source
port's :class:`~xcon.framing.FrameBuffer`, the native scan finds the end of the
last whole frame, and that span is handed to ``send`` as a memoryview of the
receive buffer itself (zero copy).  If the kernel takes only part of it, the
unsent tail stays where it is and the source is not read again until it has
drained (backpressure): memory per direction is the buffer, whatever the
routers do.

:class:`VlanFlow` rewrites frames (tag insert or strip, native) from the source
buffer into an out buffer and sends that; the same backpressure rule applies.

A flow whose destination is down drops the whole frames meant for it and
counts them, as a pulled cable would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from xcon import native
from xcon.framing import PROTOCOL_ERROR, OutBuffer
from xcon.ports import Port
from xcon.stats import FlowStats
from xcon.trace import log_frames

log = logging.getLogger("xcon.bridge")

#: Reads per readiness event before yielding to other links.
READS_PER_EVENT = 4


class Flow:
    """One direction of a link."""

    def __init__(self, src: Port, dst: Port, name: str, debug: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.stats = FlowStats(name)
        self.debug = debug
        self.blocked = False  # output pending: source reading paused

    # Subclasses implement _push (move/ send what is ready) and _drop_pending.
    def _push(self) -> None:
        raise NotImplementedError

    def drop_pending(self) -> None:
        """The destination went down: what was queued for it is lost."""
        raise NotImplementedError

    def on_readable(self) -> None:
        """The source is readable (readiness engines): read a bounded batch."""
        src = self.src
        buf = src.inbuf
        for _ in range(READS_PER_EVENT):
            room = buf.room()
            n = src.recv_into(room)
            if n <= 0 or not self.received(n) or n < len(room):
                return

    def received(self, n: int) -> bool:
        """``n`` bytes landed in the source's buffer; forward the whole frames.

        Returns whether reading may go on (not blocked, no protocol error)."""
        src = self.src
        buf = src.inbuf
        status = buf.filled(n)
        if buf.zero_frames:
            self.stats.drop("zero_length", buf.zero_frames)
            buf.zero_frames = 0
        if buf.nready:
            self._push()
        if status == PROTOCOL_ERROR:
            length = int.from_bytes(buf.mv[buf.error : buf.error + 4], "big")
            src.protocol_error(f"frame length {length} exceeds {native.MAX_FRAME}")
            return False
        return not self.blocked

    def on_writable(self) -> None:
        self._push()

    def _block(self, on: bool) -> None:
        if on != self.blocked:
            self.blocked = on
            self.src.set_reading(not on)
            self.dst.set_writing(on)

    def source_down(self) -> None:
        """The source dropped: whole frames already read still go out."""
        if self.dst.up and self.src.inbuf.nready:
            self._push()

    def dest_down(self) -> None:
        self.drop_pending()
        self._block(False)

    def dest_up(self) -> None:
        pass


class DirectFlow(Flow):
    """p2p without rewriting: complete-frame spans are sent zero-copy."""

    def __init__(self, src: Port, dst: Port, name: str, debug: bool = False) -> None:
        super().__init__(src, dst, name, debug)
        self._batch_frames = 0  # frames in the span being sent
        self._batch_bytes = 0

    def _push(self) -> None:
        buf = self.src.inbuf
        if not self.blocked:
            # Start a new batch: everything complete in the buffer.
            if not self.dst.up:
                self.stats.drop("port_down", buf.drop_ready())
                return
            self._batch_frames = buf.nready
            self._batch_bytes = buf.ready - buf.start
            if self.debug:
                log_frames(self.stats.name, buf.mv, buf.start, buf.ready)
        pending = buf.ready - buf.start
        n = self.dst.send(buf.mv[buf.start : buf.ready])
        if n < 0:
            return  # dst went down; dest_down() has accounted for the batch
        if n == pending:
            st = self.stats
            st.frames += self._batch_frames
            st.bytes += self._batch_bytes - 4 * self._batch_frames
            buf.consume(n)
            self._batch_frames = 0
            self._block(False)
        else:
            buf.consume(n)
            buf.nready = self._batch_frames  # consume() of a partial span keeps the count
            self._block(True)

    def drop_pending(self) -> None:
        buf = self.src.inbuf
        if not buf.nready:
            return
        if self.blocked and self._batch_frames:
            # Part of the batch is in the kernel: frames wholly before ``start``
            # were delivered, the rest are lost with the connection.
            first = buf.ready - self._batch_bytes
            _pos, full, _st = native.scan(buf.buf, first, buf.start)
            self.stats.frames += full
            self.stats.drop("port_down", self._batch_frames - full)
            buf.consume(buf.ready - buf.start)
            buf.nready = 0
            self._batch_frames = 0
        else:
            self.stats.drop("port_down", buf.drop_ready())


VlanFn = Callable[..., tuple[int, int, int, tuple[int, ...]]]


class VlanFlow(Flow):
    """p2p with a VLAN rewrite (access port emulation) into an out buffer."""

    STRIP_DROPS = ("untagged", "other_vlan", "runt")
    INSERT_DROPS = ("too_big", "runt")

    def __init__(
        self, src: Port, dst: Port, name: str, vid: int, strip: bool, debug: bool = False
    ) -> None:
        super().__init__(src, dst, name, debug)
        self.vid = vid
        self.strip = strip
        self.out = OutBuffer()
        self._fn: VlanFn = native.vlan_strip if strip else native.vlan_insert
        self._reasons = self.STRIP_DROPS if strip else self.INSERT_DROPS

    def _push(self) -> None:
        buf, out, st = self.src.inbuf, self.out, self.stats
        if not self.dst.up:
            st.drop("port_down", buf.drop_ready() + out.clear())
            return
        while True:
            if buf.nready and out.free():
                consumed, written, nout, drops = self._fn(
                    buf.buf, buf.start, buf.ready, self.vid, out.buf, out.end, out.capacity
                )
                ndrop = 0
                for reason, k in zip(self._reasons, drops, strict=True):
                    if k:
                        st.drop(reason, k)
                        ndrop += k
                if self.debug and written > out.end:
                    log_frames(st.name, out.mv, out.end, written)
                st.frames += nout
                st.bytes += written - out.end - 4 * nout
                buf.consume_frames(consumed, nout + ndrop)
                out.end = written
                out.nframes += nout
            if not out.pending:
                self._block(False)
                return
            pending = out.pending
            n = self.dst.send(out.span())
            if n < 0:
                return
            out.consume(n)
            if n < pending:
                self._block(True)
                return
            if not buf.nready:
                self._block(False)
                return

    def drop_pending(self) -> None:
        # Frames in the out queue were counted as forwarded when rewritten;
        # move them to the drop count.
        lost = self.out.clear()
        self.stats.frames -= lost
        self.stats.drop("port_down", lost + self.src.inbuf.drop_ready())


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
        self.vlan = vlan
        self.flows: dict[Port, Flow] = {}
        for src, dst in ((a, b), (b, a)):
            name = f"{src.name}->{dst.name}"
            flow: Flow
            if vlan is None:
                flow = DirectFlow(src, dst, name, debug)
            elif dst is access:
                flow = VlanFlow(src, dst, name, vlan, strip=True, debug=debug)
            else:
                flow = VlanFlow(src, dst, name, vlan, strip=False, debug=debug)
            self.flows[src] = flow
        self._into = {dst_flow.dst: dst_flow for dst_flow in self.flows.values()}

    @property
    def ports(self) -> tuple[Port, Port]:
        return (self.a, self.b)

    def start(self) -> None:
        self.a.start()
        self.b.start()

    def close(self) -> None:
        self.a.close()
        self.b.close()

    # -- PortOwner ------------------------------------------------------------------
    def readable(self, port: Port) -> None:
        self.flows[port].on_readable()

    def received(self, port: Port, n: int) -> None:
        self.flows[port].received(n)

    def writable(self, port: Port) -> None:
        self._into[port].on_writable()

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

    def flow_stats(self) -> list[FlowStats]:
        return [f.stats for f in self.flows.values()]


class Hub:
    """N ports; each whole frame from one port is copied to every other port.

    Frames are appended whole to each destination's bounded :class:`OutBuffer`
    and sent from there, so frames from different ports never interleave.  A
    destination that cannot keep up does not slow the others down: when its
    queue is full, the frames that do not fit are dropped for that port only
    (tail drop, counted as ``queue_full``).  A port that is down drops its
    share (``port_down``).
    """

    def __init__(
        self,
        ports: list[Port],
        *,
        debug: bool = False,
        on_state: Callable[[], None] | None = None,
        queue_bytes: int = 1024 * 1024,
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
    def port_up(self, port: Port) -> None:
        port.set_reading(True)
        if self.on_state:
            self.on_state()

    def port_down(self, port: Port, reason: str) -> None:
        out = self.out[port]
        self.tx[port].drop("port_down", out.clear())
        self._blocked.discard(port)
        port.set_writing(False)
        if self.on_state:
            self.on_state()

    def readable(self, port: Port) -> None:
        buf = port.inbuf
        for _ in range(READS_PER_EVENT):
            room = buf.room()
            n = port.recv_into(room)
            if n <= 0 or not self.received(port, n) or n < len(room):
                return

    def received(self, port: Port, n: int) -> bool:
        buf = port.inbuf
        status = buf.filled(n)
        if buf.zero_frames:
            self.rx[port].drop("zero_length", buf.zero_frames)
            buf.zero_frames = 0
        if buf.nready:
            self._flood(port)
        if status == PROTOCOL_ERROR:
            length = int.from_bytes(buf.mv[buf.error : buf.error + 4], "big")
            port.protocol_error(f"frame length {length} exceeds {native.MAX_FRAME}")
            return False
        return True

    def _flood(self, src: Port) -> None:
        buf = src.inbuf
        start, ready, nframes = buf.start, buf.ready, buf.nready
        size = ready - start
        rx = self.rx[src]
        rx.frames += nframes
        rx.bytes += size - 4 * nframes
        if self.debug:
            log_frames(rx.name, buf.mv, start, ready)
        span = buf.mv[start:ready]
        for dst in self._ports:
            if dst is src:
                continue
            tx = self.tx[dst]
            if not dst.up:
                tx.drop("port_down", nframes)
                continue
            out = self.out[dst]
            # While a send is outstanding the queued bytes stay where they are:
            # an asyncio transport may still hold a view of them.
            free = out.free(compact=dst not in self._blocked)
            if free >= size:
                cut, fit = size, nframes
            else:
                # Tail drop for this port only: the whole frames that fit go in.
                pos, fit, _status = native.scan(buf.buf, start, start + free)
                cut = pos - start
                tx.drop("queue_full", nframes - fit)
            if fit:
                out.mv[out.end : out.end + cut] = span[:cut]
                out.end += cut
                out.nframes += fit
                tx.frames += fit
                tx.bytes += cut - 4 * fit
                self._send(dst)
        buf.consume(size)

    def _send(self, dst: Port) -> None:
        out = self.out[dst]
        pending = out.pending
        if not pending:
            return
        n = dst.send(out.span())
        if n < 0:
            return  # went down: port_down() dropped its queue
        out.consume(n)
        if n < pending:
            self._blocked.add(dst)
            dst.set_writing(True)
        else:
            self._blocked.discard(dst)
            dst.set_writing(False)

    def writable(self, port: Port) -> None:
        self._send(port)
