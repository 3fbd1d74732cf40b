"""Sans-I/O reassembly of qemu's length-prefixed frame stream.

qemu's socket netdev sends every Ethernet frame as a 4-byte big-endian length
followed by that many bytes.  A :class:`FrameBuffer` is the receive side of one
such stream: the owner reads from its socket straight into :meth:`room`, calls
:meth:`filled`, and then forwards the span ``[start, ready)``, which always
holds whole, validated frames and nothing else.

Layout of the preallocated buffer (never reallocated, never sliced into new
``bytes``)::

    0 ........ start ............ ready ................ end ........ capacity
      consumed   complete frames   start of a frame        free
                 (to forward)      still arriving

Complexity: every byte is scanned once (``ready`` only moves forward), and at
most one compaction moves the unconsumed tail to the front per refill, so the
work per byte is O(1) whatever the split of the stream into reads.

Lengths are checked as they are read: a zero length is dropped and counted, a
length above :data:`MAX_FRAME` (qemu's own limit, which makes qemu close the
connection) is a protocol error that the owner turns into a reset of that
connection.  No length is ever used to size an allocation.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator

from xcon import native
from xcon.limits import FRAME_HEADER, MAX_FRAME

__all__ = [
    "FRAME_HEADER",
    "MAX_FRAME",
    "NEED_DATA",
    "TOO_BIG",
    "FrameBuffer",
    "OutBuffer",
    "iter_frames",
]
#: Default capacity of one direction's buffer: room for a burst of many frames
#: and always for one maximum-size frame.
DEFAULT_CAPACITY = 256 * 1024
#: A read is offered at least this much room; below it the tail is compacted.
MIN_ROOM = 64 * 1024

#: :meth:`FrameBuffer.filled` speaks the fast path's status vocabulary:
#: ``NEED_DATA`` (all well, waiting for more) or ``TOO_BIG`` (protocol error).
NEED_DATA = native.NEED_DATA
TOO_BIG = native.TOO_BIG


class FrameBuffer:
    """Receive buffer of one length-prefixed stream (see the module docstring)."""

    __slots__ = ("buf", "mv", "capacity", "start", "ready", "end", "nready", "zero_frames", "error")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < MAX_FRAME + FRAME_HEADER + MIN_ROOM:
            raise ValueError(f"capacity {capacity} cannot hold a maximum-size frame and a read")
        # Anonymous mmap: pages cost memory only once touched, so idle links are cheap.
        self.buf = mmap.mmap(-1, capacity)
        self.mv = memoryview(self.buf)
        self.capacity = capacity
        self.start = 0
        self.ready = 0
        self.end = 0
        #: Whole frames in ``[start, ready)``.
        self.nready = 0
        #: Zero-length frames dropped so far.
        self.zero_frames = 0
        #: Offset of the header that failed validation, or -1.
        self.error = -1

    # -- receiving -----------------------------------------------------------------
    def room(self) -> memoryview:
        """Writable view of the free space; compacts first when it is short."""
        end = self.end
        if not end:
            return self.mv  # empty (the usual case at low rates): no new view
        if self.capacity - end < MIN_ROOM and self.start:
            self.compact()
            end = self.end
        return self.mv[end:]

    def filled(self, n: int) -> int:
        """Account for ``n`` bytes written into :meth:`room`; scan the new frames.

        Returns ``NEED_DATA`` or ``TOO_BIG`` (an oversized length; the complete
        frames before it are still in ``[start, ready)``).
        """
        self.end = end = self.end + n
        ready = self.ready
        if end - ready > FRAME_HEADER:
            # The read brought exactly one whole frame (one frame per wake-up,
            # the usual case at low rates): what the scan would find, without it.
            length = _LEN(self.buf, ready)[0]
            if length <= MAX_FRAME and ready + FRAME_HEADER + length == end:
                self.ready = end
                self.nready += 1
                return NEED_DATA
        return self._scan()

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` in (for tests and tools; sockets use room/filled)."""
        status = NEED_DATA
        view = memoryview(data)
        while view:
            room = self.room()
            if not room:
                raise BufferError("frame buffer full: consume frames before feeding more")
            k = min(len(room), len(view))
            room[:k] = view[:k]
            view = view[k:]
            status = self.filled(k)
            if status != NEED_DATA:
                return status
        return status

    def _scan(self) -> int:
        while True:
            pos, nframes, status = native.scan(self.buf, self.ready, self.end)
            self.ready = pos
            self.nready += nframes
            if status == native.NEED_DATA:
                return NEED_DATA
            if status == native.TOO_BIG:
                self.error = pos
                return TOO_BIG
            # A zero-length frame sits at ``pos``: slide the complete frames
            # before it over its 4 header bytes so the span stays contiguous.
            mv, start = self.mv, self.start
            mv[start + FRAME_HEADER : pos + FRAME_HEADER] = mv[start:pos]
            self.start = start + FRAME_HEADER
            self.ready = pos + FRAME_HEADER
            self.zero_frames += 1

    def take_zero_frames(self) -> int:
        """Zero-length frames dropped since the last call (for the drop counter)."""
        n, self.zero_frames = self.zero_frames, 0
        return n

    def bad_length(self) -> int:
        """The oversized length that made :meth:`filled` return ``TOO_BIG``."""
        return int.from_bytes(self.mv[self.error : self.error + FRAME_HEADER], "big")

    # -- consuming -----------------------------------------------------------------
    def span(self) -> memoryview:
        """The complete frames not yet consumed, as one view (zero copy)."""
        return self.mv[self.start : self.ready]

    def consume(self, n: int) -> None:
        """Mark ``n`` bytes from ``start`` as forwarded (may end inside a frame)."""
        self.start += n
        if self.start >= self.ready:
            self.nready = 0
        if self.start == self.end:
            self.start = self.ready = self.end = 0

    def consume_frames(self, upto: int, nframes: int) -> None:
        """Consume up to offset ``upto``, a frame boundary that ends ``nframes`` frames."""
        self.nready -= nframes
        self.consume(upto - self.start)

    def drop_ready(self) -> int:
        """Discard the complete frames not yet consumed; returns how many."""
        n = self.nready
        self.consume(self.ready - self.start)
        self.nready = 0
        return n

    def discard_partial(self) -> int:
        """Drop the bytes of an incomplete frame (its connection went away); returns them."""
        partial = self.end - self.ready
        self.end = self.ready
        if self.start == self.end:
            self.start = self.ready = self.end = 0
        self.error = -1
        return partial

    def compact(self) -> None:
        """Move the unconsumed bytes to the front of the buffer."""
        start = self.start
        if not start:
            return
        n = self.end - start
        if n:
            self.mv[0:n] = self.mv[start : self.end]
        self.start = 0
        self.ready -= start
        self.end = n

    @property
    def pending(self) -> int:
        """Bytes of complete frames waiting to be consumed."""
        return self.ready - self.start

    def close(self) -> None:
        self.mv.release()
        self.buf.close()


class OutBuffer:
    """A bounded linear queue of whole frames to send (used when frames are
    rewritten or fanned out, so the source buffer cannot be sent directly)."""

    __slots__ = ("buf", "mv", "capacity", "start", "end", "nframes")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.buf = mmap.mmap(-1, capacity)
        self.mv = memoryview(self.buf)
        self.capacity = capacity
        self.start = 0
        self.end = 0
        self.nframes = 0

    def free(self, compact: bool = True) -> int:
        """Room at the end; reclaims consumed space first (moving bytes only if ``compact``)."""
        if self.start and self.start == self.end:
            self.start = self.end = 0
        elif compact and self.capacity - self.end < MIN_ROOM and self.start:
            n = self.end - self.start
            self.mv[0:n] = self.mv[self.start : self.end]
            self.start, self.end = 0, n
        return self.capacity - self.end

    @property
    def pending(self) -> int:
        return self.end - self.start

    def append(self, frames: memoryview, nframes: int) -> None:
        """Copy ``nframes`` whole frames in (the caller made room with :meth:`free`)."""
        end = self.end
        self.mv[end : end + len(frames)] = frames
        self.end = end + len(frames)
        self.nframes += nframes

    def commit(self, end: int, nframes: int) -> None:
        """``nframes`` frames were written in place up to offset ``end``."""
        self.end = end
        self.nframes += nframes

    def span(self) -> memoryview:
        return self.mv[self.start : self.end]

    def consume(self, n: int) -> None:
        self.start += n
        if self.start == self.end:
            self.start = self.end = 0
            self.nframes = 0

    def clear(self) -> int:
        n = self.nframes
        self.start = self.end = self.nframes = 0
        return n

    def close(self) -> None:
        self.mv.release()
        self.buf.close()


_LEN = struct.Struct(">I").unpack_from


def iter_frames(buf: native.abi.ReadableBuffer, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield ``(payload_offset, length)`` for each complete valid frame from ``start``.

    Stops where :func:`native.scan` stops (incomplete, zero or too-big header).
    For logging and tools, not the hot path."""
    size = buf.nbytes if isinstance(buf, memoryview) else len(buf)
    native.abi.check_range(size, start, end)
    pos = start
    while end - pos >= FRAME_HEADER:
        (length,) = _LEN(buf, pos)
        if length == 0 or length > MAX_FRAME or pos + FRAME_HEADER + length > end:
            return
        yield pos + FRAME_HEADER, length
        pos += FRAME_HEADER + length
