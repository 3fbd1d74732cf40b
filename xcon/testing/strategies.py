"""Hypothesis strategies and settings shared by the property tests.

:func:`frame_streams` draws what a port's frame buffer holds: qemu-framed
frames (4-byte big-endian length, then the frame) of every interesting length
and VLAN shape, now and then a length that lies, trailing bytes, and a
``start``/``end`` window on the buffer.  :func:`examples` scales a test's
example count to the hypothesis profile of the run: ``thorough`` (``make
test``) runs each property test at its full count, the quick default a quarter
of it (``tests/conftest.py`` registers both).
"""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from xcon.limits import MAX_FRAME

__all__ = [
    "DST_MAC",
    "FILL",
    "LENGTHS",
    "PROPERTY",
    "SRC_MAC",
    "VID",
    "VIDS",
    "dot1q",
    "examples",
    "frame_heads",
    "frame_streams",
    "tci",
]

#: hypothesis' own default count: the thorough profile's, which :func:`examples`
#: takes as a test's full count.
FULL = 100


def examples(n: int) -> int:
    """The example count of a property test whose full count is ``n``, for the
    profile this run loaded (``n`` under ``thorough``, a quarter by default)."""
    current = settings.default
    assert current is not None
    return max(1, n * current.max_examples // FULL)


#: The frame-function property tests: their full count, no deadline (a slow
#: machine is not a failure), large draws allowed.
PROPERTY = settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VID = 123
FILL = random.Random(7).randbytes(MAX_FRAME + 2048)
DST_MAC = bytes.fromhex("020000000002")
SRC_MAC = bytes.fromhex("020000000001")


def tci(vid: int, pcp: int = 0, dei: int = 0) -> bytes:
    return struct.pack(">H", (pcp << 13) | (dei << 12) | vid)


def dot1q(vid: int, pcp: int = 0, dei: int = 0) -> bytes:
    return b"\x81\x00" + tci(vid, pcp, dei)


LENGTHS = st.one_of(
    st.integers(0, 20),
    st.sampled_from([13, 14, 17, 18]),
    st.integers(14, 1600),
    st.integers(14, 1600),
    st.sampled_from([9018, MAX_FRAME - 5, MAX_FRAME - 4, MAX_FRAME - 3, MAX_FRAME, MAX_FRAME + 1]),
    st.integers(0, 70000),
)
VIDS = st.sampled_from([VID, VID, VID, 0, 1, 4095, VID + 1])


@st.composite
def frame_heads(draw: st.DrawFn) -> bytes:
    macs = DST_MAC + SRC_MAC
    kind = draw(st.sampled_from(["untagged", "dot1q", "qinq", "dot1q2", "random"]))
    pcp = draw(st.integers(0, 7))
    dei = draw(st.integers(0, 1))
    if kind == "untagged":
        return macs + b"\x08\x00"
    if kind == "dot1q":
        return macs + dot1q(draw(VIDS), pcp, dei) + b"\x08\x00"
    if kind == "qinq":
        return macs + b"\x88\xa8" + tci(draw(VIDS), pcp, dei) + dot1q(draw(VIDS)) + b"\x08\x00"
    if kind == "dot1q2":
        return macs + dot1q(draw(VIDS), pcp, dei) + dot1q(draw(VIDS)) + b"\x86\xdd"
    return draw(st.binary(min_size=0, max_size=24))


@st.composite
def frame_streams(draw: st.DrawFn) -> tuple[bytes, int, int]:
    parts = []
    bounds = [0]
    for _ in range(draw(st.integers(0, 8))):
        head = draw(frame_heads())
        length = draw(LENGTHS)
        off = draw(st.integers(0, 1024))
        body = (head + FILL[off : off + length])[:length]
        declared = length
        if draw(st.integers(0, 39)) == 0:
            declared = draw(st.one_of(st.integers(0, 70000), st.integers(0, 2**32 - 1)))
        parts.append(struct.pack(">I", declared) + body)
        bounds.append(bounds[-1] + 4 + length)
    parts.append(draw(st.binary(max_size=10)))
    buf = b"".join(parts)
    # Mostly aligned starts (where a caller resumes), sometimes anywhere;
    # ends at the buffer end, a frame boundary or a random split point.
    how = draw(st.integers(0, 9))
    if how < 5:
        start = 0
    elif how < 9:
        start = draw(st.sampled_from(bounds))
    else:
        start = draw(st.integers(0, len(buf)))
    how = draw(st.integers(0, 3))
    if how < 2:
        end = len(buf)
    elif how == 2:
        end = draw(st.sampled_from([b for b in bounds if b >= start] or [len(buf)]))
    else:
        end = draw(st.integers(start, len(buf)))
    return buf, start, end
