"""Impairment as a stage of a flow's pipeline (:class:`~xcon.bridges.flows.Stage`).

:class:`ImpairSender` puts an :class:`~xcon.impair.stage.ImpairStage` (the
sans-I/O decisions and the delay line) into one direction of a link: the
flow hands it each batch of whole frames after the rewrite; the stage
decides, and the frames that go on are copied into its delay line with a
departure time; the source's buffer is then free at once, so **the source is
never paused**: a delay line is a queue, and like netem's it tail-drops at
its limit (``impair_queue``) rather than backpressuring the router.  An
impairment that holds nothing back (no delay, rate or reordering: loss,
duplicate, corrupt) keeps the flow's backpressure instead: while the
destination is blocked the source is not read (:meth:`Flow.hold
<xcon.bridges.flows.Flow.hold>`).  Due frames are sent as one span per send;
the next departure is a precise engine timer
(:meth:`~xcon.engines.Engine.call_at`).  When the destination blocks, the line
holds (and fills); when it is writable again, sending resumes.

Clearing the impairment (:meth:`ImpairSender.retire`) drops what its line
still holds (``impair_cleared``, as ``tc qdisc del`` frees netem's queue),
and so does a new impairment that times frames differently (another delay,
rate or reordering); the frame a blocked destination took in part is
finished first.  New frames never wait behind departures the old settings
gave (``rate 8bit``: minutes a frame).

The tap sees frames as they leave (after the impairment: a corrupted frame
is captured corrupted) and the frames the stage drops, per frame.

:func:`impair_flow` is how a bridge impairs one of its flows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xcon.engines import TimerHandle
from xcon.framing import FRAME_HEADER
from xcon.impair.spec import Impairment
from xcon.impair.stage import DelayLine, ImpairStage, derive_seed, same_timing
from xcon.trace import log_frames

if TYPE_CHECKING:
    from xcon.bridges.flows import Flow

__all__ = ["ImpairSender", "impair_flow", "impairment_of"]

#: Engines whose streams keep a view of bytes a send did not take.
HOLDS_VIEWS = frozenset({"uvloop", "asyncio"})


def impair_flow(flow: Flow, imp: Impairment | None, seed: int, link: str, direction: str) -> None:
    """Impair ``flow`` with ``imp`` (None or a null one: clear), live: sockets
    are not touched.  ``seed`` is the run's (``--seed``): the direction's own
    random stream is derived from it, ``link`` and ``direction``."""
    current = flow.stage if isinstance(flow.stage, ImpairSender) else None
    waiting = flow.next_stage if isinstance(flow.next_stage, ImpairSender) else None
    if imp is None or imp.null:
        flow.set_stage(None)
    elif current is not None:
        current.set(imp)
    elif waiting is not None:
        waiting.imp = imp
    else:
        flow.set_stage(ImpairSender(imp, derive_seed(seed, link, direction)))


def impairment_of(flow: Flow) -> Impairment | None:
    """The impairment ``flow`` runs or is about to run (None: not impaired)."""
    for stage in (flow.next_stage, flow.stage):
        if isinstance(stage, ImpairSender) and not stage.clearing:
            return stage.impairment
    return None


class ImpairSender:
    """The :class:`~xcon.bridges.flows.Stage` of an impaired direction."""

    def __init__(self, imp: Impairment, seed: int) -> None:
        self.imp = imp
        self.seed = seed
        self.flow: Flow | None = None
        self.stage: ImpairStage | None = None
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0
        self._sending = False  # a send is outstanding (destination blocked)
        #: The line and end offset of the span the destination took in part.
        self._inflight: tuple[DelayLine, int] | None = None
        #: Retired: what waits is dropped, then the flow is told it is gone.
        self.clearing = False
        self._backpressure = True
        self._direct = False

    @property
    def impairment(self) -> Impairment:
        return self.stage.imp if self.stage is not None else self.imp

    # -- Stage ----------------------------------------------------------------------
    def attach(self, flow: Flow) -> None:
        self.flow = flow
        self.stage = ImpairStage(self.imp, self.seed, flow.stats)
        self.stage.on_drop = flow.show_dropped
        # Sending straight from the receive buffer is safe where a send that
        # takes part copies nothing it did not take (epoll): an asyncio
        # transport keeps a view of the rest, which the next read would
        # overwrite once the batch is consumed.
        self._direct = flow.dst.engine.name not in HOLDS_VIEWS
        self._holding()

    def set(self, imp: Impairment) -> None:
        """A new impairment, live: frames in the line keep their times if it
        times frames as the old one did, else they are dropped (``impair_cleared``)."""
        assert self.stage is not None
        self.clearing = False
        if not same_timing(self.stage.imp, imp):
            self._discard("impair_cleared")
        self.stage.set(imp)
        self._holding()

    def holding(self) -> bool:
        return self._sending or (self.stage is not None and not self.stage.empty)

    def retire(self) -> None:
        """Stop impairing: what waits in the line is dropped (``impair_cleared``;
        the rest of a frame being sent is finished first); the flow goes on
        without the stage once nothing is outstanding."""
        assert self.stage is not None
        self.clearing = True
        self._discard("impair_cleared")
        self.stage.set(Impairment(limit=self.stage.imp.limit))
        self._holding()
        self._check_drained()

    def admit(self, mv: memoryview, start: int, end: int, nframes: int, direct: bool) -> None:
        flow, stage = self.flow, self.stage
        assert flow is not None and stage is not None
        now = flow.dst.engine.time()
        if flow.debug:
            log_frames(flow.stats.name, f"impaired ({stage.imp.words()})", mv, start, end)
        express = stage.express
        if direct and self._direct and not self._sending and express.head == express.tail:
            stage.send = self._send_now
        try:
            stage.admit(mv, start, end, now, compact=not self._sending)
        finally:
            stage.send = None

    def push(self) -> None:
        """Send what is due (also when the destination is writable again)."""
        flow, stage = self.flow, self.stage
        assert flow is not None and stage is not None
        dst = flow.dst
        if not dst.up:
            return
        now = dst.engine.time()
        while True:
            if flow.admin_down and not self._sending:
                # Pulled: what waits in the line is lost with the cable (a
                # span already begun was finished first: a frame is never cut).
                self._lose_line("admin_down")
                break
            span = self._rest_of_cut_span() or stage.due(now)
            if span is None:
                break
            line, start, end = span
            if end > line.tapped:
                flow.show_sent(line.mv, max(start, line.tapped), end)
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
        self._check_drained()

    def lose(self, reason: str) -> None:
        self._lose_line(reason)
        self._set_sending(False)
        self._check_drained()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.stage is not None:
            self.stage.close()

    # -- inside ---------------------------------------------------------------------
    def _discard(self, reason: str) -> None:
        """Drop what waits in the line but the span being sent (see ``retire``)."""
        flow, stage = self.flow, self.stage
        assert flow is not None and stage is not None
        frames, nbytes = stage.discard(self._inflight if self._sending else None)
        if frames:
            # Counted as forwarded when admitted; they never left.
            flow.stats.frames -= frames
            flow.stats.bytes -= nbytes
            flow.stats.drop(reason, frames)
        if self._timer is not None:  # armed for a departure that is gone
            self._timer.cancel()
            self._timer = None
        self._arm()

    def _lose_line(self, reason: str) -> None:
        flow, stage = self.flow, self.stage
        assert flow is not None and stage is not None
        self._inflight = None
        # The line may start inside a frame the destination took in part:
        # forget everything (bytes exact at a frame boundary, else short by
        # what was sent of that frame).
        held = sum(line.tail - line.head for line in (stage.express, stage.line))
        frames = stage.clear()
        nbytes = max(0, held - FRAME_HEADER * frames)
        if frames:
            # Counted as forwarded when admitted; they never left.
            flow.stats.frames -= frames
            flow.stats.bytes -= nbytes
            flow.stats.drop(reason, frames)

    def _holding(self) -> None:
        assert self.stage is not None
        imp = self.stage.imp
        self._backpressure = not (imp.delay or imp.jitter or imp.rate or imp.reorder)
        self.stage.hold_limit = not self._backpressure
        self._set_sending(self._sending, force=True)

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
        flow = self.flow
        assert flow is not None
        flow.show_sent(mv, start, end)
        return flow.dst.send(mv[start:end])

    def _set_sending(self, on: bool, force: bool = False) -> None:
        flow = self.flow
        assert flow is not None
        if on != self._sending or force:
            if on != self._sending:
                self._sending = on
                flow.dst.set_writing(on)
            # An impairment that holds nothing back (loss, duplicate, corrupt:
            # no delay, no rate) keeps the flow's backpressure: the source is
            # not read while the destination is blocked, so a busy destination
            # costs no frames the impairment did not decide to lose.
            flow.hold(on and self._backpressure)

    def _arm(self) -> None:
        flow, stage = self.flow, self.stage
        assert flow is not None and stage is not None
        when = stage.next_departure()
        if when is None or (self._timer is not None and self._timer_at <= when):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = flow.dst.engine.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._sending:
            self.push()

    def _check_drained(self) -> None:
        stage, flow = self.stage, self.flow
        if self.clearing and stage is not None and stage.empty and not self._sending:
            assert flow is not None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            flow.stage_gone(self)
