"""One impaired direction of a p2p link: :class:`ImpairFlow`.

Used only for a direction that has an impairment: the link's plain flow
(:class:`~xcon.bridges.p2p.DirectFlow` or
:class:`~xcon.bridges.p2p.VlanFlow`) is set aside while it runs and comes
back when the impairment is cleared, so an unimpaired direction pays nothing.

On each batch of whole frames from the source (after the VLAN rewrite, if
the link has one) the :class:`~xcon.impair.stage.ImpairStage` decides, and
the frames that go on are copied into its delay line with a departure time;
the source's buffer is then free at once, so **the source is never paused**:
a delay line is a queue, and like netem's it tail-drops at its limit
(``impair_queue``) rather than backpressuring the router.  An impairment
that holds nothing back (no delay, rate or reordering: loss, duplicate,
corrupt) keeps p2p's backpressure instead: while the destination is blocked
the source is not read.  Due frames are
sent as one span per send; the next departure is a precise engine timer
(:meth:`~xcon.engines.Engine.call_at`).  When the destination blocks, the
line holds (and fills); when it is writable again, sending resumes.

Clearing the impairment drops what its line still holds (``impair_cleared``,
as ``tc qdisc del`` frees netem's queue), and so does a new impairment that
times frames differently (another delay, rate or reordering); the frame a
blocked destination took in part is finished first.  New frames never wait
behind departures the old settings gave (``rate 8bit``: minutes a frame).

Taps see frames as they leave (``sent``, once per span, after the
impairment: a corrupted frame is captured corrupted) and the frames the
stage drops (``dropped``, per frame).
"""

from __future__ import annotations

from collections.abc import Callable

from xcon.bridges.flow import Flow, VlanFlow
from xcon.engines import TimerHandle
from xcon.framing import OutBuffer
from xcon.impair.spec import Impairment
from xcon.impair.stage import DelayLine, ImpairStage, same_timing
from xcon.trace import log_frames

__all__ = ["ImpairFlow"]

#: Engines whose streams keep a view of bytes a send did not take.
HOLDS_VIEWS = frozenset({"uvloop", "asyncio"})


class ImpairFlow(Flow):
    """A direction through an impairment stage and its delay line."""

    def __init__(
        self,
        base: Flow,
        imp: Impairment,
        seed: int,
        on_drained: Callable[[ImpairFlow], None] | None = None,
    ) -> None:
        super().__init__(base.src, base.dst, base.stats.name, base.debug)
        self.base = base
        self.adopt(base)
        self.stage = ImpairStage(imp, seed, self.stats)
        self.stage.on_drop = self._tap_drop
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        self._sending = False  # a send is outstanding (destination blocked)
        #: The line and end offset of the span the destination took in part.
        self._inflight: tuple[DelayLine, int] | None = None
        #: Cleared: frames still waiting go out, new ones pass undelayed
        #: behind them, then ``on_drained`` puts the plain flow back.
        self.clearing = False
        self.on_drained = on_drained
        self._vlan: VlanFlow | None = base if isinstance(base, VlanFlow) else None
        self._scratch = OutBuffer() if self._vlan is not None else None
        self._backpressure = True
        self._holding()
        # Sending straight from the receive buffer is safe where a send that
        # takes part copies nothing it did not take (epoll): an asyncio
        # transport keeps a view of the rest, which the next read would
        # overwrite once the batch is consumed.
        self._direct = base.dst.engine.name not in HOLDS_VIEWS

    @property
    def impairment(self) -> Impairment:
        return self.stage.imp

    def set(self, imp: Impairment) -> None:
        """A new impairment, live: frames in the line keep their times if it
        times frames as the old one did, else they are dropped (``impair_cleared``)."""
        self.clearing = False
        if not same_timing(self.stage.imp, imp):
            self._discard("impair_cleared")
        self.stage.set(imp)
        self._holding()

    def clear(self) -> None:
        """Stop impairing: what waits in the line is dropped (``impair_cleared``;
        the rest of a frame being sent is finished first); the plain flow
        returns once nothing is outstanding."""
        self.clearing = True
        self._discard("impair_cleared")
        self.stage.set(Impairment(limit=self.stage.imp.limit))
        self._holding()
        self._check_drained()

    def _discard(self, reason: str) -> None:
        """Drop what waits in the line but the span being sent (see ``clear``)."""
        frames, nbytes = self.stage.discard(self._inflight if self._sending else None)
        if frames:
            # Counted as forwarded when admitted; they never left.
            self.stats.frames -= frames
            self.stats.bytes -= nbytes
            self.stats.drop(reason, frames)
        if self._timer is not None:  # armed for a departure that is gone
            self._timer.cancel()
            self._timer = None
        self._arm()

    def _holding(self) -> None:
        imp = self.stage.imp
        self._backpressure = not (imp.delay or imp.jitter or imp.rate or imp.reorder)
        self.stage.hold_limit = not self._backpressure
        self._set_sending(self._sending)

    # -- frames in ------------------------------------------------------------------
    def received(self) -> None:
        zero = self.src.inbuf.take_zero_frames()
        if zero:
            self.stats.drop("zero_length", zero)
        if self.src.inbuf.nready:
            self._admit()
            self.push()

    def _admit(self) -> None:
        buf = self.src.inbuf
        if self.admin_down:
            self._drop_ready("admin_down")
            return
        if not self.dst.up:
            self._drop_ready("port_down")
            return
        now = self.dst.engine.time()
        if self.debug:
            log_frames(
                self.stats.name,
                f"impaired ({self.stage.imp.words()})",
                buf.mv,
                buf.start,
                buf.ready,
            )
        vlan = self._vlan
        if vlan is None:
            stage = self.stage
            if self._direct and not self._sending and stage.express.head == stage.express.tail:
                stage.send = self._send_now
            try:
                stage.admit(buf.mv, buf.start, buf.ready, now, compact=not self._sending)
            finally:
                stage.send = None
            buf.consume_frames(buf.ready, buf.nready)
            return
        # VLAN link: rewrite first (the impairment applies to what leaves).
        out, st = self._scratch, self.stats
        assert out is not None
        while buf.nready:
            out.free()
            consumed, written, nout, drops = vlan._fn(
                buf.buf, buf.start, buf.ready, vlan.vid, out.buf, out.end, out.capacity
            )
            ndrop = 0
            for reason, k in zip(vlan._reasons, drops, strict=True):
                if k:
                    st.drop(reason, k)
                    ndrop += k
            buf.consume_frames(consumed, nout + ndrop)
            if nout:
                self.stage.admit(out.mv, out.end, written, now, compact=not self._sending)
            out.clear()
            if not consumed:
                break

    # -- frames out -----------------------------------------------------------------
    def push(self) -> None:
        """Send what is due (also when the destination is writable again)."""
        stage, dst = self.stage, self.dst
        if not dst.up:
            return
        now = dst.engine.time()
        while True:
            if self.admin_down and not self._sending:
                # Pulled: what waits in the line is lost with the cable (a
                # span already begun was finished first: a frame is never cut).
                self._lose_line("admin_down")
                break
            span = self._rest_of_cut_span() or stage.due(now)
            if span is None:
                break
            line, start, end = span
            if self.tap is not None and end > line.tapped:
                self.tap.sent(line.mv, max(start, line.tapped), end)
                line.tapped = end
            n = dst.send(line.mv[start:end])
            line.consume(n, now)
            if n < end - start:
                self._inflight = (line, end)
                self._set_sending(True)
                return
            self._inflight = None
            self._set_sending(False)
        self._set_sending(False)
        self._arm()
        if self.clearing:
            self._check_drained()

    def _rest_of_cut_span(self) -> tuple[DelayLine, int, int] | None:
        """What is left of the span the destination took in part: it goes out
        before anything else (a reordered frame sent "at once" must not land
        inside a frame already begun)."""
        cut = self._inflight
        if cut is None:
            return None
        line, end = cut
        if line.head < end <= line.tail:
            return line, line.head, end
        self._inflight = None
        return None

    def _send_now(self, mv: memoryview, start: int, end: int) -> int:
        """Send frames straight from the source buffer (the stage's ``send``)."""
        if self.tap is not None:
            self.tap.sent(mv, start, end)
        return self.dst.send(mv[start:end])

    def _set_sending(self, on: bool) -> None:
        if on != self._sending:
            self._sending = on
            self.dst.set_writing(on)
        # An impairment that holds nothing back (loss, duplicate, corrupt: no
        # delay, no rate) keeps p2p's backpressure: the source is not read
        # while the destination is blocked, so a busy destination costs no
        # frames the impairment did not decide to lose.
        hold = on and self._backpressure
        if hold != self.blocked:
            self.blocked = hold
            self.src.set_reading(not hold)

    def _arm(self) -> None:
        when = self.stage.next_departure()
        if when is None or (self._timer is not None and self._timer_at <= when):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.dst.engine.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._sending:
            self.push()

    def _check_drained(self) -> None:
        if self.clearing and self.stage.empty and not self._sending and self.on_drained:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.on_drained(self)

    def _tap_drop(self, reason: str, mv: memoryview, start: int, end: int) -> None:
        if self.tap is not None:
            self.tap.dropped(reason, mv, start, end)

    def admin_changed(self) -> None:
        if not self.admin_down:
            return
        if not self.blocked and self.src.inbuf.nready:
            self._admit()  # dropped, admin_down
        self.push()  # the line is lost

    def _lose_line(self, reason: str) -> None:
        self._inflight = None
        lost = self.stage.clear()
        if lost:
            # Counted as forwarded when admitted; they never left.
            self.stats.frames -= lost
            self.stats.drop(reason, lost)

    # -- ports going down -------------------------------------------------------------
    def drop_pending(self) -> None:
        self._lose_line("port_down")
        self._set_sending(False)
        if self.src.inbuf.nready:
            self._drop_ready("port_down")
        self._check_drained()

    def dest_down(self) -> None:
        self.drop_pending()
        self._block(False)

    def source_down(self) -> None:
        if self.dst.up and self.src.inbuf.nready:
            self._admit()
            self.push()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stage.close()
        if self._scratch is not None:
            self._scratch.close()
