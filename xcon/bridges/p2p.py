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
from typing import Any, Protocol

from xcon import native
from xcon.framing import FRAME_HEADER, OutBuffer, iter_frames
from xcon.limits import MAX_FRAME
from xcon.native.abi import (
    ETH_HDR_LEN,
    INSERT_DROPS,
    STRIP_DROPS,
    VLAN_HDR_LEN,
    VLAN_TAG_LEN,
)
from xcon.ports import Port
from xcon.stats import FlowStats
from xcon.trace import insert_verdict, log_frame, log_frames, strip_verdict

log = logging.getLogger("xcon.bridge")

__all__ = ["DirectFlow", "Flow", "FlowTap", "P2PLink", "VlanFlow"]


class FlowTap(Protocol):
    """An observer of one direction (capture): it sees the frames that cross.

    Spans are whole qemu-framed frames (4-byte big-endian length, then the
    frame) in ``mv[start:end]``; the observer must copy what it keeps before
    returning and must never block or raise.  A flow calls it once per batch
    (not per frame) and only when one is set, so a link without it pays one
    attribute test per batch."""

    def sent(self, mv: memoryview, start: int, end: int) -> None:
        """These frames are about to be sent to the destination (after any rewrite)."""

    def dropped(self, reason: str, mv: memoryview, start: int, end: int) -> None:
        """These frames were dropped for ``reason`` (a :class:`FlowStats` reason)."""


class Flow:
    """One direction of a link."""

    def __init__(self, src: Port, dst: Port, name: str, debug: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.stats = FlowStats(name)
        self.debug = debug
        self.blocked = False  # output pending: source reading paused
        self.admin_down = False  # the link is pulled: drop what arrives
        #: An observer of this direction (capture), or None.
        self.tap: FlowTap | None = None

    def adopt(self, other: Flow) -> None:
        """Take over what a direction keeps whichever flow runs it (a live
        impairment swaps flows): counters, tap, administrative state."""
        self.stats = other.stats
        self.tap = other.tap
        self.admin_down = other.admin_down
        self.debug = other.debug

    def close(self) -> None:
        """Release what the flow holds beyond its ports (timers, queues)."""

    def received(self) -> None:
        """Whole frames wait in the source's buffer: forward them."""
        zero = self.src.inbuf.take_zero_frames()
        if zero:
            self.stats.drop("zero_length", zero)
            if self.debug:
                log_frame(self.stats.name, f"dropped: zero_length (x{zero})", b"")
        if self.src.inbuf.nready:
            self.push()

    def push(self) -> None:
        """Send what is ready (also called when the destination is writable again)."""
        raise NotImplementedError

    def drop_pending(self) -> None:
        """The destination went down: what was queued for it is lost."""
        raise NotImplementedError

    def admin_changed(self) -> None:
        """The link was pulled or plugged back (``admin_down`` already set):
        a pull drops what waits in the source's buffer at once."""
        if self.admin_down and not self.blocked and self.src.inbuf.nready:
            self.push()

    def _block(self, on: bool) -> None:
        if on != self.blocked:
            self.blocked = on
            self.src.set_reading(not on)
            self.dst.set_writing(on)

    def _drop_ready(self, reason: str) -> None:
        buf = self.src.inbuf
        if self.debug:
            log_frames(self.stats.name, f"dropped: {reason}", buf.mv, buf.start, buf.ready)
        if self.tap is not None and buf.ready > buf.start:
            self.tap.dropped(reason, buf.mv, buf.start, buf.ready)
        self.stats.drop(reason, buf.drop_ready())

    def source_down(self) -> None:
        """The source dropped: whole frames already read still go out."""
        if self.dst.up and self.src.inbuf.nready:
            self.push()

    def dest_down(self) -> None:
        self.drop_pending()
        self._block(False)


class DirectFlow(Flow):
    """p2p without rewriting: complete-frame spans are sent zero-copy."""

    def __init__(self, src: Port, dst: Port, name: str, debug: bool = False) -> None:
        super().__init__(src, dst, name, debug)
        self._batch_frames = 0  # frames in the span being sent
        self._batch_bytes = 0

    def push(self) -> None:
        buf = self.src.inbuf
        if not self.blocked:
            # Start a new batch: everything complete in the buffer.
            if self.admin_down:
                self._drop_ready("admin_down")
                return
            if not self.dst.up:
                self._drop_ready("port_down")
                return
            self._batch_frames = buf.nready
            self._batch_bytes = buf.pending
            if self.debug:
                log_frames(self.stats.name, "forwarded", buf.mv, buf.start, buf.ready)
            if self.tap is not None:
                self.tap.sent(buf.mv, buf.start, buf.ready)
        pending = buf.pending
        n = self.dst.send(buf.span())
        buf.consume(n)
        if n == pending:
            st = self.stats
            st.frames += self._batch_frames
            st.bytes += self._batch_bytes - FRAME_HEADER * self._batch_frames
            self._batch_frames = 0
            self._block(False)
        else:
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
            buf.consume(buf.pending)
            self._batch_frames = 0
        else:
            self._drop_ready("port_down")


VlanFn = Callable[..., tuple[int, int, int, tuple[int, ...]]]


class VlanFlow(Flow):
    """p2p with a VLAN rewrite (access port emulation) into an out buffer.

    ``strip``: trunk to access port (frames of VLAN ``vid`` lose their tag,
    others are dropped); otherwise access port to trunk (every frame gets the
    tag).  Drop reasons: :data:`~xcon.native.abi.STRIP_DROPS` /
    :data:`~xcon.native.abi.INSERT_DROPS`."""

    def __init__(
        self, src: Port, dst: Port, name: str, vid: int, strip: bool, debug: bool = False
    ) -> None:
        super().__init__(src, dst, name, debug)
        self.vid = vid
        self.strip = strip
        self.out = OutBuffer()
        self._fn: VlanFn = native.vlan_strip if strip else native.vlan_insert
        self._reasons = STRIP_DROPS if strip else INSERT_DROPS

    def push(self) -> None:
        buf, out, st = self.src.inbuf, self.out, self.stats
        if not self.dst.up:
            lost = out.clear()
            st.frames -= lost  # counted as forwarded when rewritten
            st.drop("port_down", lost)
            self._drop_ready("port_down")
            return
        while True:
            # While a send is outstanding the queued bytes stay where they are:
            # a transport may still hold a view of them.
            if buf.nready and self.admin_down:
                self._drop_ready("admin_down")
            elif buf.nready and out.free(compact=not self.blocked):
                start, end = buf.start, out.end
                consumed, written, nout, drops = self._fn(
                    buf.buf, start, buf.ready, self.vid, out.buf, end, out.capacity
                )
                ndrop = 0
                for reason, k in zip(self._reasons, drops, strict=True):
                    if k:
                        st.drop(reason, k)
                        ndrop += k
                if self.debug:
                    self._log(start, consumed)
                if self.tap is not None:
                    if ndrop:
                        self._tap_each(start, consumed, end, written)
                    elif nout:
                        self.tap.sent(out.mv, end, written)
                st.frames += nout
                st.bytes += written - end - FRAME_HEADER * nout
                buf.consume_frames(consumed, nout + ndrop)
                out.commit(written, nout)
            if not out.pending:
                self._block(False)
                return
            pending = out.pending
            n = self.dst.send(out.span())
            out.consume(n)
            if n < pending:
                self._block(True)
                return
            if not buf.nready:
                self._block(False)
                return

    def _tap_each(self, start: int, end: int, out_start: int, out_end: int) -> None:
        """Show the tap a batch with drops frame by frame, in order: each frame
        of ``start:end`` the rewrite dropped, with its reason, or the frame it
        became in the out buffer (only when a tap is set and there were drops)."""
        tap = self.tap
        assert tap is not None
        mv, vid, out = self.src.inbuf.mv, self.vid, self.out.mv
        made = iter_frames(out, out_start, out_end)
        for off, length in iter_frames(mv, start, end):
            reason = drop_reason(mv[off : off + length], vid, self.strip)
            if reason:
                tap.dropped(reason, mv, off - FRAME_HEADER, off + length)
            else:
                o, n = next(made)
                tap.sent(out, o - FRAME_HEADER, o + n)

    def _log(self, start: int, end: int) -> None:
        mv, vid, name = self.src.inbuf.mv, self.vid, self.stats.name
        for off, length in iter_frames(mv, start, end):
            frame = mv[off : off + length]
            if self.strip:
                verdict = strip_verdict(frame, vid)
            else:
                verdict = insert_verdict(frame, vid, MAX_FRAME)
            log_frame(name, verdict, frame)

    def drop_pending(self) -> None:
        # Frames in the out queue were counted as forwarded when rewritten;
        # move them to the drop count.
        lost = self.out.clear()
        self.stats.frames -= lost
        self.stats.drop("port_down", lost)
        self._drop_ready("port_down")


def drop_reason(frame: memoryview, vid: int, strip: bool) -> str:
    """Why a VLAN rewrite drops ``frame`` (one of STRIP_DROPS / INSERT_DROPS),
    or "" when it keeps it: the rules of ``native.vlan_strip``/``vlan_insert``."""
    n = len(frame)
    if n < ETH_HDR_LEN:
        return "runt"
    if not strip:
        return "too_big" if n + VLAN_TAG_LEN > MAX_FRAME else ""
    if frame[12:14] != b"\x81\x00":
        return "untagged"
    if n < VLAN_HDR_LEN:
        return "runt"
    return "" if int.from_bytes(frame[14:16], "big") & 0x0FFF == vid else "other_vlan"


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
