"""One direction of a link, as one pipeline: **rewrite -> stage -> tap -> send**.

A :class:`Flow` forwards the whole frames of one direction (qemu-framed: a
4-byte big-endian length, then the frame) to its destination ``dst``:

1. **rewrite**: :class:`VlanFlow` tags or untags frames (access port
   emulation) into an out buffer; :class:`DirectFlow` rewrites nothing and
   sends straight from the source's receive buffer (zero copy);
   :class:`QueueFlow` (a hub's way out to one port) takes frames offered by
   the hub into a bounded queue (tail drop, ``queue_full``).
2. **stage**: at most one :class:`Stage` (impairment today,
   :class:`xcon.impair.sender.ImpairSender`), set with :meth:`Flow.set_stage`.
   With a stage, every frame that leaves the rewrite is handed to the stage,
   which decides what goes on and when, and sends it through
   :meth:`Flow.show_sent` and ``dst.send``.  Without one, the flow sends
   itself: a direction without a stage pays one attribute test per batch.
3. **tap**: an observer (:class:`FlowTap`: capture), set with
   :meth:`Flow.set_tap`; it sees the frames as they are sent (after the
   rewrite and the stage: a corrupted frame is seen corrupted) and the
   frames dropped, with the reason.  One attribute test per batch when unset.
4. **send**: ``dst.send`` of whole-frame spans.  When the destination takes
   part of a span, the rest stays where it is and the source is not read
   until it has drained (backpressure): memory per direction is bounded,
   whatever the routers do.  A stage may instead hold frames in a queue of
   its own and keep reading the source (a delay line: see the stage).

A flow whose destination is down drops the whole frames meant for it and
counts them (``port_down``), as a pulled cable would.  ``admin_down`` (the
link pulled through the control API) drops both ways with the reason
``admin_down``; sources are still read, so nothing queues and routers are
never backpressured; a batch whose send had begun is finished first, so a
frame is never cut.

The bridges (:mod:`~xcon.bridges.p2p`, :mod:`~xcon.bridges.hub`) build
flows and route port events to them; nothing else assigns a flow's
attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

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
from xcon.stats import FlowStats
from xcon.trace import insert_verdict, log_frame, log_frames, strip_verdict

if TYPE_CHECKING:
    from xcon.engines import Engine
    from xcon.ports import Port

log = logging.getLogger("xcon.bridge")

__all__ = [
    "Direction",
    "DirectFlow",
    "Flow",
    "FlowTap",
    "Outlet",
    "QueueFlow",
    "Stage",
    "VlanFlow",
]


class FlowTap(Protocol):
    """An observer of one direction (capture): it sees the frames that cross.

    Spans are whole qemu-framed frames in ``mv[start:end]``; the observer
    must copy what it keeps before returning and must never block or raise.
    A flow calls it once per batch (not per frame), and only when set."""

    def sent(self, mv: memoryview, start: int, end: int) -> None:
        """These frames are about to be sent to the destination (after any rewrite)."""

    def dropped(self, reason: str, mv: memoryview, start: int, end: int) -> None:
        """These frames were dropped for ``reason`` (a :class:`FlowStats` reason)."""


class Stage(Protocol):
    """A step between a flow's rewrite and its tap (impairment today).

    :meth:`Flow.set_stage` calls :meth:`attach` once, when no send of the
    flow's own is outstanding; from then on the flow hands the stage every
    batch of whole frames that leaves the rewrite (:meth:`admit`) and calls
    :meth:`push` when the destination is writable again.  The stage sends
    through ``flow.dst.send`` (calling :meth:`Flow.show_sent` first), counts
    what it forwards and drops in ``flow.stats``, reports drops with
    :meth:`Flow.show_dropped`, may pause the source with :meth:`Flow.hold`,
    and, once asked to :meth:`retire` and holding nothing any more, calls
    :meth:`Flow.stage_gone`.  It never blocks the loop (timers through
    ``flow.dst.engine``)."""

    def attach(self, flow: Flow) -> None: ...

    def admit(self, mv: memoryview, start: int, end: int, nframes: int, direct: bool) -> None:
        """Whole frames ``mv[start:end]`` for the destination: copy what is
        kept before returning.  ``direct``: the span is the source's receive
        buffer, which the stage may hand to ``dst.send`` at once."""

    def push(self) -> None:
        """The destination may take more: send what is due."""

    def lose(self, reason: str) -> None:
        """Drop everything held (the destination went down, the link was
        pulled), counted under ``reason``; a span being sent is finished first."""

    def holding(self) -> bool:
        """Whether frames wait in the stage or a send of its own is outstanding."""
        ...

    def retire(self) -> None:
        """Stop: drop what is held, then :meth:`Flow.stage_gone` once nothing is outstanding."""

    def close(self) -> None:
        """Release timers and buffers (the link is gone)."""


class Direction(NamedTuple):
    """One flow of a bridge, and the ends (indexes into the bridge's ports)
    its frames go to (None: into a hub, not to an end) and come from."""

    flow: Flow
    to_end: int | None
    from_end: int


class Outlet(Protocol):
    """What a flow sends to: a :class:`~xcon.ports.Port`, or a hub's inlet."""

    name: str
    engine: Engine

    @property
    def up(self) -> bool: ...

    def send(self, data: memoryview) -> int: ...

    def set_writing(self, on: bool) -> None: ...


class Flow:
    """One direction of a link: see the module docstring."""

    def __init__(self, src: Port, dst: Outlet, name: str, debug: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.stats = FlowStats(name)
        self.debug = debug
        self.blocked = False  # output pending: source reading paused
        self.admin_down = False  # the link is pulled: drop what arrives
        #: The observer (capture), or None: :meth:`set_tap`.
        self.tap: FlowTap | None = None
        #: The stage (impairment), or None: :meth:`set_stage`.
        self.stage: Stage | None = None
        #: A stage waiting for the flow's own send to finish.
        self._next_stage: Stage | None = None

    # -- the pipeline's parts ----------------------------------------------------------
    def set_tap(self, tap: FlowTap | None) -> None:
        self.tap = tap

    def set_stage(self, stage: Stage | None) -> None:
        """Put ``stage`` into the pipeline (None: retire the current one).

        A stage starts between batches only: while a send of the flow's own
        is outstanding it waits for it (so no frame is cut or sent twice).
        A retired stage drops what it holds and leaves once nothing it sent
        is outstanding."""
        if stage is None:
            self._next_stage = None
            if self.stage is not None:
                self.stage.retire()
            return
        if self.stage is not None:
            raise RuntimeError(f"{self.stats.name} has a stage already")
        if self.blocked:
            self._next_stage = stage
        else:
            self._attach(stage)

    def _attach(self, stage: Stage) -> None:
        self._next_stage = None
        self.stage = stage
        stage.attach(self)

    def stage_gone(self, stage: Stage) -> None:
        """Called by a retired stage that holds nothing any more."""
        if self.stage is stage:
            self.stage = None
            stage.close()

    @property
    def next_stage(self) -> Stage | None:
        """A stage set while a send was outstanding, not attached yet."""
        return self._next_stage

    def show_sent(self, mv: memoryview, start: int, end: int) -> None:
        """Tell the tap these frames are being sent (stages call this)."""
        if self.tap is not None:
            self.tap.sent(mv, start, end)

    def show_dropped(self, reason: str, mv: memoryview, start: int, end: int) -> None:
        """Tell the tap these frames were dropped (stages call this)."""
        if self.tap is not None:
            self.tap.dropped(reason, mv, start, end)

    def hold(self, on: bool) -> None:
        """Pause (``on``) or resume reading the source (a stage's backpressure)."""
        if on != self.blocked:
            self.blocked = on
            self.src.set_reading(not on)

    # -- events from the bridge ----------------------------------------------------------
    def close(self) -> None:
        """Release what the flow holds beyond its ports (the stage, queues)."""
        if self.stage is not None:
            self.stage.close()
            self.stage = None

    def received(self) -> None:
        """Whole frames wait in the source's buffer: forward them."""
        buf = self.src.inbuf
        if buf.zero_frames:
            zero = buf.take_zero_frames()
            self.stats.drop("zero_length", zero)
            if self.debug:
                log_frame(self.stats.name, f"dropped: zero_length (x{zero})", b"")
        if buf.nready:
            if self.stage is None:  # the hot path: no call more than it needs
                self.push()
            else:
                self._forward()

    def _forward(self) -> None:
        """The ready frames go on: sent (no stage) or handed to the stage."""
        if self.stage is None:
            self.push()
        else:
            self._admit()
            self.stage.push()

    def writable(self) -> None:
        """The destination takes data again."""
        if self.stage is None:
            self.push()
        else:
            self.stage.push()

    def push(self) -> None:
        """Send what is ready (no stage): the rewrite's own sending."""
        raise NotImplementedError

    def drop_pending(self) -> None:
        """The destination went down: what was queued for it is lost."""
        raise NotImplementedError

    def admin_changed(self) -> None:
        """The link was pulled or plugged back (``admin_down`` already set):
        a pull drops what waits in the source's buffer at once."""
        if not self.admin_down:
            return
        if self.stage is None:
            if not self.blocked and self.src.inbuf.nready:
                self.push()
            return
        if not self.blocked and self.src.inbuf.nready:
            self._admit()  # dropped, admin_down
        self.stage.push()  # what the stage holds is lost with the cable

    def source_down(self) -> None:
        """The source dropped: whole frames already read still go out."""
        if self.dst.up and self.src.inbuf.nready:
            self._forward()

    def dest_down(self) -> None:
        if self.stage is not None:
            self.stage.lose("port_down")
            if self.src.inbuf.nready:
                self._drop_ready("port_down")
        else:
            self.drop_pending()
        self._block(False)

    # -- helpers --------------------------------------------------------------------------
    def _admit(self) -> None:
        """Hand the ready frames to the stage (after the rewrite), or drop them."""
        buf = self.src.inbuf
        if self.admin_down:
            self._drop_ready("admin_down")
        elif not self.dst.up:
            self._drop_ready("port_down")
        else:
            if self.debug:
                log_frames(self.stats.name, "to its stage", buf.mv, buf.start, buf.ready)
            self._stage_frames()

    def _stage_frames(self) -> None:
        """Give the stage the ready frames of the source (rewritten)."""
        raise NotImplementedError

    def _block(self, on: bool) -> None:
        if on != self.blocked:
            self.blocked = on
            self.src.set_reading(not on)
            self.dst.set_writing(on)
            if not on and self._next_stage is not None:
                self._attach(self._next_stage)

    def _drop_ready(self, reason: str) -> None:
        buf = self.src.inbuf
        if self.debug:
            log_frames(self.stats.name, f"dropped: {reason}", buf.mv, buf.start, buf.ready)
        if self.tap is not None and buf.ready > buf.start:
            self.tap.dropped(reason, buf.mv, buf.start, buf.ready)
        self.stats.drop(reason, buf.drop_ready())


class DirectFlow(Flow):
    """No rewrite: complete-frame spans are sent zero-copy."""

    def __init__(self, src: Port, dst: Outlet, name: str, debug: bool = False) -> None:
        super().__init__(src, dst, name, debug)
        self._batch_frames = 0  # frames in the span being sent
        self._batch_bytes = 0

    def push(self) -> None:
        buf = self.src.inbuf
        start, ready = buf.start, buf.ready
        pending = ready - start
        blocked = self.blocked
        if not blocked:
            # Start a new batch: everything complete in the buffer.
            if self.admin_down:
                self._drop_ready("admin_down")
                return
            if not self.dst.up:
                self._drop_ready("port_down")
                return
            self._batch_frames = buf.nready
            self._batch_bytes = pending
            if self.debug:
                log_frames(self.stats.name, "forwarded", buf.mv, start, ready)
            if self.tap is not None:
                self.tap.sent(buf.mv, start, ready)
        n = self.dst.send(buf.mv[start:ready])
        buf.consume(n)
        if n == pending:
            st, frames = self.stats, self._batch_frames
            st.frames += frames
            st.bytes += self._batch_bytes - FRAME_HEADER * frames
            self._batch_frames = 0
            if blocked:
                self._block(False)
        else:
            self._block(True)

    def _stage_frames(self) -> None:
        buf = self.src.inbuf
        stage = self.stage
        assert stage is not None
        stage.admit(buf.mv, buf.start, buf.ready, buf.nready, True)
        buf.consume_frames(buf.ready, buf.nready)

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
    """A VLAN rewrite (access port emulation) into an out buffer.

    ``strip``: trunk to access port (frames of VLAN ``vid`` lose their tag,
    others are dropped); otherwise access port to trunk (every frame gets the
    tag).  Drop reasons: :data:`~xcon.native.abi.STRIP_DROPS` /
    :data:`~xcon.native.abi.INSERT_DROPS`."""

    def __init__(
        self, src: Port, dst: Outlet, name: str, vid: int, strip: bool, debug: bool = False
    ) -> None:
        super().__init__(src, dst, name, debug)
        self.vid = vid
        self.strip = strip
        self.out = OutBuffer()
        self._fn: VlanFn = native.vlan_strip if strip else native.vlan_insert
        self._reasons = STRIP_DROPS if strip else INSERT_DROPS

    def _rewrite(self, out: OutBuffer) -> tuple[int, int, int, int]:
        """Rewrite the source's ready frames into ``out`` as far as they fit:
        (end of what was read, end of what was written, frames written,
        frames dropped); drops are counted, the source and ``out`` untouched."""
        buf, st = self.src.inbuf, self.stats
        consumed, written, nout, drops = self._fn(
            buf.buf, buf.start, buf.ready, self.vid, out.buf, out.end, out.capacity
        )
        ndrop = 0
        for reason, k in zip(self._reasons, drops, strict=True):
            if k:
                st.drop(reason, k)
                ndrop += k
        if self.debug:
            self._log(buf.start, consumed)
        return consumed, written, nout, ndrop

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
                consumed, written, nout, ndrop = self._rewrite(out)
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

    def _stage_frames(self) -> None:
        # With a stage the out buffer is free (a stage starts when nothing is
        # outstanding): it serves as scratch, and the stage copies what it keeps.
        buf, stage, out = self.src.inbuf, self.stage, self.out
        assert stage is not None
        out.free()
        while buf.nready:
            start, end = buf.start, out.end
            consumed, written, nout, ndrop = self._rewrite(out)
            if ndrop and self.tap is not None:
                self._tap_drops(start, consumed)
            buf.consume_frames(consumed, nout + ndrop)
            if nout:
                stage.admit(out.mv, end, written, nout, False)
            if consumed == start:
                break

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

    def _tap_drops(self, start: int, end: int) -> None:
        """Show the tap the frames of ``start:end`` the rewrite dropped."""
        tap = self.tap
        assert tap is not None
        mv = self.src.inbuf.mv
        for off, length in iter_frames(mv, start, end):
            reason = drop_reason(mv[off : off + length], self.vid, self.strip)
            if reason:
                tap.dropped(reason, mv, off - FRAME_HEADER, off + length)

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


class _NoSource:
    """The source of a :class:`QueueFlow`: frames are offered, never read."""

    __slots__ = ()

    def set_reading(self, on: bool) -> None:
        pass


class QueueFlow(Flow):
    """Frames offered by a hub (:meth:`offer`), queued for one port: a
    bounded out buffer that tail-drops (``queue_full``) instead of pausing
    anyone, so a slow port costs only its own frames."""

    def __init__(self, dst: Port, name: str, queue_bytes: int, debug: bool = False) -> None:
        super().__init__(_NoSource(), dst, name, debug)  # type: ignore[arg-type]
        self.out = OutBuffer(queue_bytes)

    def offer(self, mv: memoryview, start: int, end: int, nframes: int) -> None:
        """Whole frames ``mv[start:end]`` for this port (copied before return)."""
        dst, tx = self.dst, self.stats
        if not dst.up:
            tx.drop("port_down", nframes)
            if self.debug:
                log_frames(tx.name, "dropped: port_down", mv, start, end)
            self.show_dropped("port_down", mv, start, end)
            return
        stage = self.stage
        if stage is not None:
            stage.admit(mv, start, end, nframes, False)
            stage.push()
            return
        out = self.out
        size = end - start
        # While a send is outstanding the queued bytes stay where they are:
        # a transport may still hold a view of them.
        free = out.free(compact=not self.blocked)
        if free >= size:
            cut, fit = end, nframes
        else:
            # Tail drop for this port only: the whole frames that fit go in.
            cut, fit, _status = native.scan(mv, start, start + free)
            tx.drop("queue_full", nframes - fit)
            if self.debug:
                for off, length in iter_frames(mv, cut, end):
                    log_frame(tx.name, "dropped: queue_full", mv[off : off + length])
            self.show_dropped("queue_full", mv, cut, end)
        if fit:
            if self.tap is not None:
                self.tap.sent(mv, start, cut)
            out.append(mv[start:cut], fit)
            tx.frames += fit
            tx.bytes += cut - start - FRAME_HEADER * fit
            self.push()

    def push(self) -> None:
        out = self.out
        pending = out.pending
        if not pending:
            self._block(False)
            return
        n = self.dst.send(out.span())
        out.consume(n)
        self._block(n < pending)

    def received(self) -> None:  # pragma: no cover - nothing is read
        raise AssertionError("a queue flow is offered frames, it reads none")

    def source_down(self) -> None:
        pass

    def admin_changed(self) -> None:
        pass

    def dest_down(self) -> None:
        if self.stage is not None:
            self.stage.lose("port_down")
        self.drop_pending()
        self._block(False)

    def drop_pending(self) -> None:
        self.stats.drop("port_down", self.out.clear())


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
