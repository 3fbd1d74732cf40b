"""One capture of one link: the frames its flows show their taps, as pcapng,
through a bounded buffer to a sink (a file, or a stream to an HTTP client).

The recording model (README, "Capture"):

* a forwarded frame is recorded once, on the interface of the end it is
  delivered to, flagged **outbound** (``epb_flags`` direction 2), as it is
  sent: after a VLAN rewrite (tag inserted or removed);
* a frame xcon drops (VLAN mismatch, runt, link pulled, destination down) is
  recorded on the interface of the end it came from, flagged **inbound**
  (direction 1), as it arrived, with the reason as the packet's comment
  (``dropped by xcon: other_vlan``), unless ``drops`` is off;
* every frame of one batch (one read from the source) has the batch's
  timestamp (nanoseconds, wall clock).

**Never in the way of forwarding.**  The buffer is a bounded pool of chunks
(at most :data:`CHUNKS` of :data:`CHUNK` bytes, 16 MiB; made as bursts need
them); the flow's tap writes Enhanced
Packet Blocks into the current chunk (``native.capture_frames``: header and
copy in one pass), a full chunk goes to the sink and a free one is taken.
The sink gives chunks back once written.  When no chunk is free the frames
are not recorded: they are counted as the capture's drops (per interface:
``isb_osdrop`` in the statistics block, ``drops`` in the API), and the link
goes on at its rate.  A partly filled chunk goes to the sink every
:data:`FLUSH_EVERY` seconds, so a live reader sees frames within that time.

Costs on the data path: a link without a capture has no tap (its flows test
one attribute per batch); with one, each batch costs one call of the C
function per chunk it touches, plus a scan of the frames it drops.  A filter
runs per frame (libpcap's ``bpf_filter`` through cffi): a filtered capture
costs about a microsecond per frame.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from xcon import __version__, native
from xcon.capture import pcapng
from xcon.capture.bpf import BpfFilter, compile_filter
from xcon.capture.options import MAX_SNAPLEN, CaptureOptions
from xcon.engines import Engine, TimerHandle
from xcon.framing import iter_frames
from xcon.limits import FRAME_HEADER

log = logging.getLogger("xcon.capture")

__all__ = ["MAX_SNAPLEN", "Capture", "CaptureOptions", "CaptureTap", "Sink"]

#: The buffer: chunks of CHUNK bytes, at most CHUNKS of them per capture
#: (16 MiB), FIRST_CHUNKS made at once and the rest when a burst needs them.
CHUNK = 256 * 1024
CHUNKS = 64
FIRST_CHUNKS = 4
#: A partly filled chunk goes to the sink this often (seconds).
FLUSH_EVERY = 0.05


class Sink(Protocol):
    """Where a capture's bytes go.  ``put`` hands over a chunk (its first
    ``n`` bytes are whole blocks); the sink gives it back with
    :meth:`Capture.release` when done with it, from any thread."""

    def attach(self, capture: Capture) -> None: ...

    def put(self, chunk: bytearray, n: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class Capture:
    """One capture: counters, the chunk pool, the interfaces (one per link end)."""

    def __init__(
        self,
        engine: Engine,
        link: str,
        interfaces: Sequence[str],
        options: CaptureOptions,
        sink: Sink,
        *,
        chunks: int = CHUNKS,
        chunk: int = CHUNK,
        ident: int = 0,
        source: str = "api",
        bpf: BpfFilter | None = None,
    ) -> None:
        if bpf is None and options.filter:
            bpf = compile_filter(options.filter)  # a kept program when there is one
        self.bpf = bpf
        self.engine = engine
        self.link = link
        self.interfaces = list(interfaces)
        self.options = options
        self.snaplen = options.snaplen
        self.ident = ident
        self.source = source
        self.chunk_size = chunk
        first = min(chunks, FIRST_CHUNKS)
        self.free: deque[bytearray] = deque(bytearray(chunk) for _ in range(first))
        #: Chunks the pool may still grow by (a quiet link never needs them).
        self.spare = chunks - first
        self.cur: bytearray | None = None
        self.cur_pos = 0
        n = len(self.interfaces)
        #: Per interface: frames recorded, lost for want of room, rejected by the filter.
        self.kept = [0] * n
        self.lost = [0] * n
        self.filtered = [0] * n
        self.start_ns = time.time_ns()
        self.started = time.time()
        self.active = True
        #: Why the capture ended, when it failed (a write error, its writer's death).
        self.error: str | None = None
        #: Called when the capture ends, and again if it fails after that (its
        #: file's last write): the manager forgets it, or keeps it with its error.
        self.on_end: Callable[[Capture], None] | None = None
        self.sink = sink
        sink.attach(self)
        self._timer: TimerHandle | None = engine.call_every(FLUSH_EVERY, self.flush)

    # -- what the sinks write -----------------------------------------------------
    def header(self) -> bytes:
        """The section header and the interfaces: the start of every file."""
        return pcapng.section_header(f"xcon {__version__}") + b"".join(
            pcapng.interface_description(name, self.snaplen) for name in self.interfaces
        )

    def statistics(self) -> bytes:
        """An Interface Statistics Block per interface, now (since the capture began)."""
        now = time.time_ns()
        return b"".join(
            pcapng.interface_statistics(
                i,
                now,
                start_ns=self.start_ns,
                received=self.kept[i] + self.lost[i] + self.filtered[i],
                delivered=self.kept[i],
                dropped=self.lost[i],
                accepted=self.kept[i] + self.lost[i] if self.bpf is not None else None,
            )
            for i in range(len(self.interfaces))
        )

    @property
    def frames(self) -> int:
        return sum(self.kept)

    @property
    def drops(self) -> int:
        return sum(self.lost)

    def release(self, chunk: bytearray) -> None:
        """A sink is done with ``chunk`` (any thread)."""
        self.free.append(chunk)

    # -- recording (the flows' taps, on the loop) -------------------------------------
    def record(self, if_id: int, flags: int, mv: memoryview, start: int, end: int) -> None:
        """Whole framed frames ``mv[start:end]`` on interface ``if_id``."""
        if not self.active:
            return
        if self.bpf is not None:
            self._record_matching(if_id, flags, mv, start, end, "")
            return
        self._write(if_id, flags, mv, start, end, time.time_ns())

    def record_dropped(self, if_id: int, reason: str, mv: memoryview, start: int, end: int) -> None:
        if self.active and self.options.drops:
            self._record_matching(if_id, pcapng.INBOUND, mv, start, end, reason)

    def _write(self, if_id: int, flags: int, mv: memoryview, start: int, end: int, ts: int) -> None:
        capture_frames = native.capture_frames
        while start < end:
            cur = self.cur
            if cur is None:
                cur = self._take()
                if cur is None:
                    self.lost[if_id] += native.scan(mv, start, end)[1]
                    return
            pos, w, n = capture_frames(
                mv, start, end, cur, self.cur_pos, self.chunk_size, if_id, flags, ts, self.snaplen
            )
            self.kept[if_id] += n
            self.cur_pos = w
            if pos == end or (n == 0 and w == 0):
                return
            self._hand()
            start = pos

    def _record_matching(
        self, if_id: int, flags: int, mv: memoryview, start: int, end: int, reason: str
    ) -> None:
        """Frame by frame: the filter, and for a dropped frame its comment."""
        ts = time.time_ns()
        bpf = self.bpf
        view = bpf.view(mv) if bpf is not None else None
        for off, length in iter_frames(mv, start, end):
            if bpf is not None and not bpf.matches(view, off, length):
                self.filtered[if_id] += 1
                continue
            if not reason:
                self._write(if_id, flags, mv, off - FRAME_HEADER, off + length, ts)
                continue
            cap = min(length, self.snaplen) if self.snaplen else length
            blk = pcapng.enhanced_packet(
                if_id, ts, mv[off : off + cap], length, flags, f"dropped by xcon: {reason}"
            )
            self._put_block(if_id, blk)

    def _put_block(self, if_id: int, blk: bytes) -> None:
        if self.cur is not None and self.chunk_size - self.cur_pos < len(blk):
            self._hand()
        if self.cur is None:
            self.cur = self._take()
            if self.cur is None:
                self.lost[if_id] += 1
                return
        self.cur[self.cur_pos : self.cur_pos + len(blk)] = blk
        self.cur_pos += len(blk)
        self.kept[if_id] += 1

    def _take(self) -> bytearray | None:
        try:
            # The chunk given back last: still in the cache (the oldest would
            # cycle the copy through the whole pool).
            self.cur = self.free.pop()
        except IndexError:
            if not self.spare:
                return None
            self.spare -= 1
            self.cur = bytearray(self.chunk_size)
        self.cur_pos = 0
        return self.cur

    def _hand(self) -> None:
        cur, n = self.cur, self.cur_pos
        self.cur, self.cur_pos = None, 0
        if cur is not None:
            if n:
                self.sink.put(cur, n)
            else:
                self.free.append(cur)

    def flush(self) -> None:
        """A partly filled chunk goes to the sink (the timer, and the end)."""
        if self.cur is not None and self.cur_pos:
            self._hand()
        self.sink.flush()

    # -- the end ------------------------------------------------------------------------
    def stop(self, error: str | None = None) -> None:
        """End the capture: what was recorded goes out, then the statistics."""
        if not self.active:
            return
        self.active = False
        if error and self.error is None:
            self.error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        self.sink.close()
        if self.on_end is not None:
            self.on_end(self)

    def fail(self, error: str) -> None:
        """The sink failed (on the loop): the capture ends, keeping ``error``."""
        if self.active:
            self.stop(error)
        elif self.error is None:
            self.error = error
            if self.on_end is not None:
                self.on_end(self)

    @property
    def state(self) -> str:
        """``running``, ``stopped``, or ``failed`` (ended by an error)."""
        return "running" if self.active else "failed" if self.error else "stopped"

    def describe(self) -> dict[str, Any]:
        """The capture as the API shows it."""
        o = self.options
        doc: dict[str, Any] = {
            "id": self.ident,
            "link": self.link,
            "source": self.source,
            "state": self.state,
            "snaplen": o.snaplen,
            "filter": o.filter,
            "drops_recorded": o.drops,
            "frames": self.frames,
            "drops": self.drops,
            "filtered": sum(self.filtered),
            "interfaces": [
                {"name": n, "frames": k, "drops": d}
                for n, k, d in zip(self.interfaces, self.kept, self.lost, strict=True)
            ],
            "seconds": round(time.time() - self.started, 1),
            "error": self.error,
        }
        doc.update(self.sink.describe())
        return doc


class CaptureTap:
    """A flow's tap (:class:`~xcon.bridges.flows.FlowTap`): one direction of a
    link, into every capture of it.  Forwarded frames go to ``out_if``
    (the end they are sent to; None: not recorded, as for frames into a hub,
    recorded where they leave it), dropped ones to ``in_if`` (the end they
    came from)."""

    __slots__ = ("captures", "out_if", "in_if")

    def __init__(self, captures: list[Capture], out_if: int | None, in_if: int) -> None:
        self.captures = captures
        self.out_if = out_if
        self.in_if = in_if

    def sent(self, mv: memoryview, start: int, end: int) -> None:
        out_if = self.out_if
        if out_if is None:  # into a hub: recorded as sent to each end
            return
        for c in self.captures:
            c.record(out_if, pcapng.OUTBOUND, mv, start, end)

    def dropped(self, reason: str, mv: memoryview, start: int, end: int) -> None:
        for c in self.captures:
            c.record_dropped(self.in_if, reason, mv, start, end)
