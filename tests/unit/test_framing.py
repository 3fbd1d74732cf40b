"""FrameBuffer: whole, byte by byte, random splits, trailing bytes, bad lengths."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcon.framing import MAX_FRAME, NEED_DATA, TOO_BIG, FrameBuffer
from xcon.testing.frames import wire
from xcon.testing.strategies import examples


def drain(fb: FrameBuffer) -> list[bytes]:
    """Take every complete frame out of the buffer (as a forwarder would)."""
    out = []
    span = bytes(fb.span())
    pos = 0
    while pos < len(span):
        n = struct.unpack_from(">I", span, pos)[0]
        out.append(span[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(span), "span must end on a frame boundary"
    assert fb.nready == len(out)
    fb.consume(len(span))
    return out


def feed_in_pieces(fb: FrameBuffer, stream: bytes, cuts: list[int]) -> list[bytes]:
    got: list[bytes] = []
    prev = 0
    for c in sorted(set(cuts)) + [len(stream)]:
        piece = memoryview(stream)[prev:c]
        while piece:  # as a socket read would: never more than the room offered
            room = fb.room()
            k = min(len(room), len(piece))
            room[:k] = piece[:k]
            assert fb.filled(k) == NEED_DATA
            got += drain(fb)
            piece = piece[k:]
        prev = c
    return got


SIZES = [60, 1514, 9018, 65535, MAX_FRAME]


def test_whole_stream():
    frames = [bytes([i]) * s for i, s in enumerate(SIZES)]
    fb = FrameBuffer()
    got = []
    for f in frames:  # each maximum-size frame fits with room to spare
        assert fb.feed(wire(f)) == NEED_DATA
        got += drain(fb)
    assert got == frames


def test_one_byte_at_a_time():
    frames = [bytes((i * 31 + s) % 256 for i in range(s)) for s in (60, 1514, 9018)]
    stream = b"".join(wire(f) for f in frames)
    fb = FrameBuffer()
    got = []
    for i in range(len(stream)):
        assert fb.feed(stream[i : i + 1]) == NEED_DATA
        if fb.nready:
            got += drain(fb)
    assert got == frames


def test_trailing_partial_is_never_yielded():
    f = b"\xaa" * 100
    fb = FrameBuffer()
    fb.feed(wire(f) + wire(b"\xbb" * 50)[:30])
    assert drain(fb) == [f]
    assert fb.end - fb.ready == 30  # the partial frame waits
    assert fb.discard_partial() == 30
    fb.feed(wire(b"\xcc" * 10))
    assert drain(fb) == [b"\xcc" * 10]


def test_zero_length_dropped_and_counted():
    fb = FrameBuffer()
    stream = wire(b"a" * 20) + b"\0\0\0\0" + wire(b"b" * 30) + b"\0\0\0\0"
    assert fb.feed(stream) == NEED_DATA
    assert drain(fb) == [b"a" * 20, b"b" * 30]
    assert fb.zero_frames == 2


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**32 - 1])
def test_oversized_length_is_protocol_error(length):
    fb = FrameBuffer()
    good = wire(b"x" * 64)
    status = fb.feed(good + struct.pack(">I", length) + b"junk")
    assert status == TOO_BIG
    assert drain(fb) == [b"x" * 64]  # frames before the bad header are still whole
    assert fb.error >= 0


def test_one_whole_frame_per_read():
    """A read that brings exactly one whole frame (the usual case at low
    rates) is counted without a scan, as the scan would count it: after
    frames not yet consumed, after the start of the same frame, and not for
    a zero-length or oversized header alone."""
    fb = FrameBuffer()
    assert fb.feed(wire(b"a" * 60)) == NEED_DATA
    assert (fb.nready, fb.ready, fb.end) == (1, 64, 64)
    assert fb.feed(wire(b"b" * 70)) == NEED_DATA  # "a" still waits: both are ready
    assert drain(fb) == [b"a" * 60, b"b" * 70]
    c = wire(b"c" * 80)
    fb.feed(c[:10])  # the frame's first bytes, then the rest of it
    assert fb.nready == 0
    assert fb.feed(c[10:]) == NEED_DATA
    assert drain(fb) == [b"c" * 80]
    assert fb.feed(b"\0\0\0\0") == NEED_DATA  # zero length: dropped and counted
    assert (fb.nready, fb.zero_frames) == (0, 1)
    assert fb.feed(struct.pack(">I", MAX_FRAME + 1)) == TOO_BIG
    assert fb.nready == 0 and fb.error >= 0


def test_max_frame_accepted():
    fb = FrameBuffer()
    assert fb.feed(wire(b"m" * MAX_FRAME)) == NEED_DATA
    assert drain(fb) == [b"m" * MAX_FRAME]


def test_buffer_memory_is_fixed():
    fb = FrameBuffer()
    cap = fb.capacity
    for i in range(2000):
        fb.feed(wire(bytes([i % 256]) * 1500))
        drain(fb)
    assert fb.capacity == cap and len(fb.buf) == cap


frame_sizes = st.lists(st.integers(min_value=1, max_value=MAX_FRAME), min_size=1, max_size=6)


@settings(max_examples=examples(60), deadline=None)
@given(sizes=frame_sizes, data=st.data())
def test_random_splits(sizes, data):
    frames = [bytes([(i * 7 + s) % 256]) * s for i, s in enumerate(sizes)]
    stream = b"".join(wire(f) for f in frames)
    trailing = data.draw(st.binary(max_size=3))  # less than a header: never a frame
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    fb = FrameBuffer()
    got = feed_in_pieces(fb, stream + trailing, [c for c in cuts])
    assert got == frames
    assert fb.end - fb.ready == len(trailing)
