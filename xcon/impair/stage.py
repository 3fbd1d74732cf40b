"""The impairment of one direction, sans I/O: frames in, timestamped frames out.

An :class:`ImpairStage` is given whole qemu-framed frames (``admit``) and the
time they arrived, on whatever clock the caller runs (the engine's monotonic
clock, or a test's fake one).  Per frame, in netem's order
(``netem_enqueue``): duplicate?, lost?, corrupted?, then its departure time
(delay with jitter drawn from the distribution, reordering, rate).  Frames
that leave are copied into the **delay line**: a preallocated byte buffer
(anonymous ``mmap``: pages cost memory once touched) with an index of
``[departure, end offset, frames]`` entries.  Consecutive frames with the
same departure time share one entry, so a constant delay costs one entry per
received batch, not one per frame; unmodified frames are copied in runs (one
slice copy per run).  ``due(now)`` gives the span of frames whose time has
come, contiguous, ready for one ``send``; ``consume(n)`` takes sent bytes off.

Order is kept: a frame never departs before the one received before it
(departure = max(drawn time, previous departure)), unless ``reorder`` sends
it at once.  Reordered frames go to a second line, the *express* line,
which is always sent first: netem puts them at the head of its queue.

What is netem's exactly, and what is not:

* probabilities and correlation: netem's ``get_crandom`` (the next uniform
  is ``(1 - rho) * U + rho * last``), compared as netem compares;
  ``0%`` draws nothing and never fires, ``100%`` always fires;
* Gilbert-Elliott: netem's ``loss_gilb_ell`` (a transition draw, then a loss
  draw with the probability of the state the frame found);
* delay distributions: netem looks up an inverse-CDF table made by iproute2;
  here the inverse CDF is computed (normal: ``statistics.NormalDist``;
  pareto: alpha 3, standardized to mean 0 and deviation 1; paretonormal:
  a quarter pareto plus three quarters normal of the same uniform), then
  ``delay + jitter * value``, floored at 0; uniform is netem's
  ``[delay - jitter, delay + jitter)``;
* rate: netem's ``time_to_send = max(now + delay, last) + len * 8 / rate``
  (``len`` is the Ethernet frame without FCS, as netem's skb length);
* the duplicate is enqueued beside the original (it gets its own corrupt and
  delay draws, but is never lost: netem re-enqueues it at the root, through
  the loss draw again);
* the queue limit counts frames in the line (netem's ``limit``), and the
  line also holds at most ``capacity`` bytes; both tail-drop
  (``impair_queue``).  With jitter, netem reorders frames whose draws cross;
  this line does not (see above): state it, since tc users may expect it.

Changing the impairment: frames the old settings queued keep their
departure times only while the new settings time frames the same way (same
delay, jitter, rate and reordering: a change of loss, say); otherwise, and
always when the impairment is cleared, :meth:`ImpairStage.discard` drops
them (as ``tc qdisc del`` frees netem's queue), so no frame scheduled by old
settings (``rate 8bit``: minutes per frame) holds new ones behind it.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import random
from collections import deque
from collections.abc import Callable
from statistics import NormalDist

from xcon import native
from xcon.framing import FRAME_HEADER
from xcon.impair.spec import Impairment
from xcon.stats import FlowStats, Lateness

__all__ = ["DelayLine", "ImpairStage", "derive_seed", "same_timing"]

#: Bytes one direction's delay line can hold (untouched pages are free).
LINE_CAPACITY = 16 * 1024 * 1024
#: Express line (reordered frames) capacity.
EXPRESS_CAPACITY = 1024 * 1024

_NORMAL = NormalDist()
_PARETO_MEAN = 1.5  # alpha 3, x_m 1
_PARETO_STD = 0.75**0.5


def derive_seed(seed: int, link: str, direction: str) -> int:
    """The seed of one direction's stream: its draws depend on the run's seed and
    its own name only, never on another link's traffic."""
    h = hashlib.sha256(f"{seed}\0{link}\0{direction}".encode()).digest()
    return int.from_bytes(h[:8], "big")


def same_timing(a: Impairment, b: Impairment) -> bool:
    """Whether ``a`` and ``b`` give frames the same departure times (frames
    queued by one can stay in front of frames timed by the other)."""
    return (a.delay, a.jitter, a.delay_corr, a.distribution, a.rate) == (
        b.delay,
        b.jitter,
        b.delay_corr,
        b.distribution,
        b.rate,
    ) and (a.reorder, a.reorder_corr, a.gap) == (b.reorder, b.reorder_corr, b.gap)


class DelayLine:
    """A linear byte queue of whole frames with a departure time per run of frames."""

    __slots__ = ("buf", "mv", "capacity", "head", "tail", "entries", "frames", "tapped", "late")

    def __init__(self, capacity: int) -> None:
        self.buf = mmap.mmap(-1, capacity)
        self.mv = memoryview(self.buf)
        self.capacity = capacity
        self.head = 0
        self.tail = 0
        #: (departure, end offset, frames), in order of offset (and departure).
        #: Tuples of numbers, not lists: the collector stops tracking them, so
        #: a line at line rate never grows the oldest generation (whose full
        #: collections would stall the loop for milliseconds).
        self.entries: deque[tuple[float, int, int]] = deque()
        self.frames = 0
        #: Bytes before this offset were shown to the flow's tap.
        self.tapped = 0
        #: Where :meth:`consume` tells how late frames left (None: nobody asks).
        self.late: Lateness | None = None

    def room(self, need: int, compact: bool) -> bool:
        """Make ``need`` bytes of room at the tail (compacting if allowed)."""
        if self.tail + need <= self.capacity:
            return True
        if self.head == self.tail:
            self.head = self.tail = self.tapped = 0
        elif compact and self.head:
            head, n = self.head, self.tail - self.head
            self.mv[0:n] = self.mv[head : self.tail]
            self.entries = deque((w, e - head, k) for w, e, k in self.entries)
            self.head, self.tail = 0, n
            self.tapped = max(0, self.tapped - head)
        return self.tail + need <= self.capacity

    def push(self, when: float, data: memoryview, nframes: int) -> int:
        """Append ``data`` (whole frames) departing at ``when``; returns its offset."""
        off = self.tail
        end = off + len(data)
        self.mv[off:end] = data
        self.tail = end
        self.frames += nframes
        entries = self.entries
        if entries and entries[-1][0] == when:
            entries[-1] = (when, end, entries[-1][2] + nframes)
        else:
            entries.append((when, end, nframes))
        return off

    def due(self, now: float) -> int:
        """End offset of the frames whose departure has come (``head`` if none)."""
        end = self.head
        for when, e_end, _n in self.entries:
            if when > now:
                break
            end = e_end
        return end

    def consume(self, n: int, now: float | None = None) -> None:
        """``n`` bytes were sent (at ``now``: then each run of frames wholly
        sent is observed in :attr:`late`)."""
        self.head += n
        entries = self.entries
        late = self.late if now is not None else None
        while entries and entries[0][1] <= self.head:
            when, _end, k = entries.popleft()
            self.frames -= k
            if late is not None:
                late.observe(now - when, k)  # type: ignore[operator]
        if self.head == self.tail:
            self.head = self.tail = self.tapped = 0

    def truncate(self, cut: int) -> tuple[int, int]:
        """Forget the frames from offset ``cut`` (a frame boundary at or after
        ``head``) to the tail; returns how many frames and Ethernet bytes."""
        if cut >= self.tail:
            return 0, 0
        entries = self.entries
        dropped = 0
        while entries and entries[-1][1] > cut:
            when, end, k = entries.pop()
            if entries and entries[-1][1] >= cut:
                after = k  # the whole run lies after the cut
            else:  # the run the cut falls in: count its frames past the cut
                after = native.skip(self.mv, cut, end, k)[1]
            dropped += after
            self.frames -= k
            if k > after and cut > self.head:  # frames before the cut still wait
                entries.append((when, cut, k - after))
                self.frames += k - after
        nbytes = self.tail - cut - FRAME_HEADER * dropped
        self.tail = cut
        self.tapped = min(self.tapped, cut)
        if self.head == self.tail:
            entries.clear()
            self.head = self.tail = self.tapped = self.frames = 0
        return dropped, nbytes

    def clear(self) -> int:
        """Forget every frame; returns how many there were."""
        n = self.frames
        self.entries.clear()
        self.head = self.tail = self.tapped = self.frames = 0
        return n

    def close(self) -> None:
        self.mv.release()
        self.buf.close()


class ImpairStage:
    """Applies one :class:`Impairment` to the frames of one direction."""

    def __init__(
        self,
        imp: Impairment,
        seed: int,
        stats: FlowStats,
        capacity: int = LINE_CAPACITY,
        express_capacity: int = EXPRESS_CAPACITY,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.stats = stats
        self.line = DelayLine(capacity)
        self.express = DelayLine(express_capacity)
        if stats.late is None:
            stats.late = Lateness()
        self.line.late = self.express.late = stats.late
        #: The last departure time given (order and rate).
        self.last = float("-inf")
        self.counter = 0  # frames since the last reordered one (netem's gap)
        self._corr: dict[str, float] = {}
        self.ge_bad = False
        #: Called with (reason, view, start, end) for each frame lost here (tap).
        self.on_drop: Callable[[str, memoryview, int, int], None] | None = None
        self.set(imp)

    def set(self, imp: Impairment) -> None:
        """Change the impairment (frames already in the line keep their times:
        :meth:`discard` them unless :func:`same_timing`)."""
        self.imp = imp
        self._corr = {}
        self.ge_bad = False
        self.counter = 0
        # A frame departs only when every draw says nothing happens to it:
        # the run fast path copies such frames in one slice per run.
        self._timed = bool(imp.jitter or imp.rate or imp.reorder)
        # Only independent loss (or nothing) and a constant delay: draw how many
        # frames pass before the next loss (geometric) instead of one draw per
        # frame; native.skip finds that frame.  Same distribution, one Python
        # step per loss instead of per frame.
        self._skip = not (
            self._timed or imp.loss_corr or imp.gemodel is not None or imp.duplicate or imp.corrupt
        )
        self._gap = -1  # frames to pass before the next loss (-1: not drawn)

    #: Set by the flow while it may send at once (nothing waits, nothing
    #: outstanding): ``send(mv, start, end) -> bytes taken``.  Used by the
    #: skip path with no delay, so loss alone copies no frame.
    send: Callable[[memoryview, int, int], int] | None = None

    #: False when the flow backpressures its source instead of queueing (an
    #: impairment that holds nothing back): then ``limit`` does not apply,
    #: the line holds at most one received batch.
    hold_limit = True

    # -- randomness -------------------------------------------------------------------
    def _u(self, key: str, rho: float) -> float:
        """A uniform draw, correlated with the previous one of ``key`` as netem's get_crandom."""
        u = self.rng.random()
        if rho:
            u = (1 - rho) * u + rho * self._corr.get(key, 0.0)
            self._corr[key] = u
        return u

    def _event(self, key: str, p: float, rho: float) -> bool:
        if p <= 0:
            return False
        if p >= 1:
            return True
        return self._u(key, rho) < p

    def _lost(self) -> bool:
        imp = self.imp
        ge = imp.gemodel
        if ge is None:
            return self._event("loss", imp.loss, imp.loss_corr)
        p, r, bad_loss, good_loss = ge
        rnd = self.rng.random
        if self.ge_bad:
            if rnd() < r:
                self.ge_bad = False
            return bad_loss >= 1 or (bad_loss > 0 and rnd() < bad_loss)
        if rnd() < p:
            self.ge_bad = True
        return good_loss >= 1 or (good_loss > 0 and rnd() < good_loss)

    def _delay(self) -> float:
        imp = self.imp
        if not imp.jitter:
            return imp.delay
        u = self._u("delay", imp.delay_corr)
        dist = imp.distribution
        if dist == "uniform":
            z = 2 * u - 1
        else:
            u = min(max(u, 1e-12), 1 - 1e-12)
            if dist == "normal":
                z = _NORMAL.inv_cdf(u)
            else:
                zp = ((1 - u) ** (-1 / 3) - _PARETO_MEAN) / _PARETO_STD
                z = zp if dist == "pareto" else 0.25 * zp + 0.75 * _NORMAL.inv_cdf(u)
        return max(0.0, imp.delay + imp.jitter * z)

    # -- frames in ------------------------------------------------------------------
    def admit(self, mv: memoryview, start: int, end: int, now: float, compact: bool = True) -> int:
        """Take the whole frames in ``mv[start:end]`` that arrived at ``now``;
        returns how many frames were received."""
        if self._skip:
            return self._admit_skipping(mv, start, end, now, compact)
        imp, st = self.imp, self.stats
        line = self.line
        lossy = imp.lossy
        dup, corrupt = imp.duplicate, imp.corrupt
        timed = self._timed
        limit = imp.limit if self.hold_limit else 1 << 62
        frames = nbytes = 0
        received = 0
        pos = start
        run = start  # frames [run, pos) pass untouched, departing at `run_when`
        run_n = 0
        run_when = 0.0
        while pos < end:
            n = int.from_bytes(mv[pos : pos + FRAME_HEADER], "big")
            fe = pos + FRAME_HEADER + n
            received += 1
            copies = 1
            if dup and self._event("dup", dup, imp.duplicate_corr):
                copies = 2
            if lossy and self._lost():
                copies -= 1
                if not copies:
                    if run_n:
                        self._push(run_when, mv[run:pos], run_n, compact)
                        run_n = 0
                    st.drop("impair_loss")
                    if self.on_drop is not None:
                        self.on_drop("impair_loss", mv, pos, fe)
                    pos = run = fe
                    continue
            for _copy in range(copies):
                if line.frames + self.express.frames + run_n >= limit:
                    if run_n:
                        self._push(run_when, mv[run:pos], run_n, compact)
                        run_n = 0
                    self._queue_drop(mv, pos, fe)
                    continue
                flip = corrupt and self._event("corrupt", corrupt, imp.corrupt_corr)
                if not timed:
                    when = max(now + imp.delay, self.last)
                    self.last = when
                    if not flip and copies == 1 and (not run_n or when == run_when):
                        if not run_n:
                            run, run_when = pos, when
                        run_n += 1
                        frames += 1
                        nbytes += n
                        continue
                if run_n:
                    self._push(run_when, mv[run:pos], run_n, compact)
                    run_n = 0
                # Room first: a frame that cannot wait must not take a departure
                # slot (the rate's clock) from those that can.
                if not line.room(fe - pos, compact):
                    self._queue_drop(mv, pos, fe)
                    continue
                express = False
                if timed:
                    when, express = self._departure(now, n)
                target = self.express if express else line
                if express and not target.room(fe - pos, compact):
                    self._queue_drop(mv, pos, fe)
                    continue
                off = target.push(when, mv[pos:fe], 1)
                frames += 1
                nbytes += n
                if express:
                    st.event("reordered")
                if _copy:
                    st.event("duplicated")
                if flip:
                    r = self.rng.getrandbits(32)
                    i = off + FRAME_HEADER + (r >> 3) % n
                    target.buf[i] ^= 1 << (r & 7)
                    st.event("corrupted")
            pos = fe
            if not run_n:
                run = pos
        if run_n:
            self._push(run_when, mv[run:pos], run_n, compact)
        st.frames += frames
        st.bytes += nbytes
        return received

    def _next_gap(self) -> int:
        p = self.imp.loss
        if p <= 0:
            return 1 << 62
        if p >= 1:
            return 0
        return int(math.log(1.0 - self.rng.random()) / math.log(1.0 - p))

    def _admit_skipping(
        self, mv: memoryview, start: int, end: int, now: float, compact: bool
    ) -> int:
        """``admit`` for independent loss and a constant delay (see ``set``)."""
        imp, st, line = self.imp, self.stats, self.line
        when = max(now + imp.delay, self.last)
        self.last = when
        limit = imp.limit if self.hold_limit else 1 << 62
        skip = native.skip
        gap = self._gap if self._gap >= 0 else self._next_gap()
        pos = start
        received = frames = nbytes = 0
        while pos < end:
            if gap > 0:
                k = min(gap, limit - line.frames - self.express.frames)
                if k <= 0:  # the line is full: tail-drop one frame
                    nxt, n, _st = skip(mv, pos, end, 1)
                    if not n:
                        break
                    self._queue_drop(mv, pos, nxt)
                else:
                    nxt, n, _st = skip(mv, pos, end, k)
                    if not n:
                        break
                    send = self.send
                    if send is not None and not imp.delay and line.head == line.tail:
                        # Nothing waits and nothing is delayed: straight from
                        # the receive buffer; only what the destination did
                        # not take is copied (it must outlive the buffer).
                        took = send(mv, pos, nxt)
                        if took < nxt - pos:
                            line.push(when, mv[pos + took : nxt], n)
                            line.tapped = line.tail
                    else:
                        self._push(when, mv[pos:nxt], n, compact)
                    frames += n
                    nbytes += nxt - pos - FRAME_HEADER * n
                gap -= n
            else:
                nxt, n, _st = skip(mv, pos, end, 1)
                if not n:
                    break
                st.drop("impair_loss")
                if self.on_drop is not None:
                    self.on_drop("impair_loss", mv, pos, nxt)
                gap = self._next_gap()
            received += n
            pos = nxt
        self._gap = gap
        st.frames += frames
        st.bytes += nbytes
        return received

    def _departure(self, now: float, length: int) -> tuple[float, bool]:
        imp = self.imp
        if imp.reorder and (
            imp.gap == 0
            or self.counter >= imp.gap - 1
            and self._event("reorder", imp.reorder, imp.reorder_corr)
        ):
            self.counter = 0
            return now, True
        self.counter += 1
        when = max(now + self._delay(), self.last)
        if imp.rate:
            when += length * 8 / imp.rate
        self.last = when
        return when, False

    def _push(self, when: float, data: memoryview, nframes: int, compact: bool) -> None:
        """Append a run of untouched frames (already counted as forwarded by
        ``admit``); if the line's bytes are full, the run is dropped instead."""
        line = self.line
        if line.room(len(data), compact):
            line.push(when, data, nframes)
            return
        st = self.stats
        st.frames -= nframes
        st.bytes -= len(data) - FRAME_HEADER * nframes
        st.drop("impair_queue", nframes)
        if self.on_drop is not None:
            self.on_drop("impair_queue", data, 0, len(data))

    def _queue_drop(self, mv: memoryview, pos: int, fe: int) -> None:
        self.stats.drop("impair_queue")
        if self.on_drop is not None:
            self.on_drop("impair_queue", mv, pos, fe)

    # -- frames out -----------------------------------------------------------------
    def next_departure(self) -> float | None:
        """When the next frame is due (None: nothing waits)."""
        if self.express.entries:
            return self.express.entries[0][0]  # type: ignore[return-value]
        if self.line.entries:
            return self.line.entries[0][0]  # type: ignore[return-value]
        return None

    def due(self, now: float) -> tuple[DelayLine, int, int] | None:
        """The next span to send (its line, start, end), express first, or None."""
        for line in (self.express, self.line):
            if line.head < line.tail:
                end = line.due(now)
                if end > line.head:
                    return line, line.head, end
                if line is self.express:
                    continue
        return None

    @property
    def empty(self) -> bool:
        return self.line.head == self.line.tail and self.express.head == self.express.tail

    def discard(self, keep: tuple[DelayLine, int] | None = None) -> tuple[int, int]:
        """Drop every frame waiting but those of ``keep``'s line before its
        offset (the rest of a send the destination took in part: a frame is
        never cut); returns (frames, Ethernet bytes) dropped.  Departures
        start afresh: new frames wait behind nothing that was dropped."""
        frames = nbytes = 0
        for line in (self.express, self.line):
            cut = keep[1] if keep is not None and keep[0] is line else line.head
            f, b = line.truncate(max(cut, line.head))
            frames += f
            nbytes += b
        self.last = float("-inf")
        self.counter = 0
        return frames, nbytes

    def clear(self) -> int:
        """Drop everything waiting (the destination went down); returns frames."""
        return self.express.clear() + self.line.clear()

    def close(self) -> None:
        self.line.close()
        self.express.close()
