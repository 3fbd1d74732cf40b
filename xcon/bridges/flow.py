"""The directions of a link: a :class:`Flow` forwards the whole frames read
from ``src`` to ``dst`` (:class:`DirectFlow` zero-copy, :class:`VlanFlow`
through a VLAN rewrite); see :mod:`xcon.bridges.p2p` for the rules.  Kept
apart from :class:`~xcon.bridges.p2p.P2PLink` so that the impaired direction
(:mod:`xcon.bridges.impair`) builds on the flows without importing the link
that swaps it in."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

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

__all__ = ["DirectFlow", "Flow", "FlowTap", "VlanFlow"]


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
