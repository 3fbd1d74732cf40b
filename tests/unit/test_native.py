"""The frame functions of xcon.native, on both backends.

Every behavioural test runs on the Python and the native backend. When the C
module is not built the native cases skip and say so (with ``XCON_NATIVE=1``
they fail instead). Property tests check the backends agree byte for byte on
random input, and agree with a small reference model written here.
"""

from __future__ import annotations

import errno
import importlib.util
import mmap
import os
import pathlib
import random
import re
import select
import socket
import struct
import time
import types
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from xcon import native
from xcon.framing import iter_frames
from xcon.native import (
    DGRAM_BATCH,
    MAX_DGRAM,
    MAX_FRAME,
    MAX_PREFIX,
    NEED_DATA,
    READ_EOF,
    TOO_BIG,
    ZERO,
    Backend,
)
from xcon.native.abi import API_VERSION
from xcon.testing.backends import get_backend
from xcon.testing.backends import native_backend as _native_backend
from xcon.testing.frames import encode_frames, tagged, wire
from xcon.testing.strategies import (
    DST_MAC,
    FILL,
    PROPERTY,
    SRC_MAC,
    VID,
    VIDS,
    dot1q,
    examples,
    frame_streams,
    tci,
)


@pytest.fixture(params=["python", "native"])
def be(request: pytest.FixtureRequest) -> Backend:
    if request.param == "native":
        return _native_backend()
    return native.load_backend("python")


# --------------------------------------------------------------------------
# Frame builders
# --------------------------------------------------------------------------


def eth(payload_len: int = 46, ethertype: int = 0x0800, tags: bytes = b"") -> bytes:
    return DST_MAC + SRC_MAC + tags + struct.pack(">H", ethertype) + FILL[:payload_len]


def qinq(vid: int) -> bytes:
    return b"\x88\xa8" + tci(vid)


def untag(frame: bytes) -> bytes:
    return frame[:12] + frame[16:]


def strip_all(be: Backend, buf: bytes, vid: int = VID, dst_size: int | None = None):
    dst = bytearray(dst_size if dst_size is not None else len(buf) + 64)
    res = be.vlan_strip(buf, 0, len(buf), vid, dst, 0, len(dst))
    return res, bytes(dst[: res[1]])


def insert_all(be: Backend, buf: bytes, vid: int = VID, dst_size: int | None = None):
    dst = bytearray(dst_size if dst_size is not None else 2 * len(buf) + 64)
    res = be.vlan_insert(buf, 0, len(buf), vid, dst, 0, len(dst))
    return res, bytes(dst[: res[1]])


def waiting(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on the non-blocking ``sock``, read until it has none."""
    got: list[bytes] = []
    while True:
        try:
            got.append(sock.recv(100_000))
        except BlockingIOError:
            return got


# --------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------


def test_loader_exports() -> None:
    assert native.BACKEND in ("native", "python")
    assert (MAX_FRAME, NEED_DATA, ZERO, TOO_BIG, READ_EOF) == (69632, 0, 1, 2, -1)
    chosen = native.load_backend(native.BACKEND)
    assert native.scan is chosen.scan
    assert native.vlan_strip is chosen.vlan_strip
    assert native.vlan_insert is chosen.vlan_insert
    assert native.read_frames is chosen.read_frames
    assert native.write_frames is chosen.write_frames
    assert native.recv_datagrams is chosen.recv_datagrams
    assert native.send_datagrams is chosen.send_datagrams
    assert (MAX_DGRAM, DGRAM_BATCH, MAX_PREFIX) == (65535, 64, 64)
    with pytest.raises(ValueError):
        native.load_backend("fortran")


def test_env_override_respected() -> None:
    forced = os.environ.get("XCON_NATIVE")
    if forced == "0":
        assert native.BACKEND == "python"
    elif forced == "1":
        assert native.BACKEND == "native"


def test_native_module_smoke() -> None:
    _native_backend()
    from xcon import _native  # type: ignore[attr-defined]

    assert _native.lib.XCON_MAX_FRAME == MAX_FRAME
    assert _native.lib.XCON_READ_BATCH == native.READ_BATCH
    assert _native.lib.XCON_MAX_DGRAM == MAX_DGRAM
    assert _native.lib.XCON_DGRAM_BATCH == DGRAM_BATCH
    assert _native.lib.XCON_MAX_PREFIX == MAX_PREFIX


def test_stale_native_module_refused() -> None:
    _native_backend()
    from xcon import _native  # type: ignore[attr-defined]
    from xcon.native import backend_c

    backend_c._check_built(_native.lib)
    consts = {
        name: getattr(_native.lib, name)
        for name in dir(_native.lib)
        if name.startswith("XCON_") and isinstance(getattr(_native.lib, name), int)
    }
    older = types.SimpleNamespace(**{**consts, "XCON_API_VERSION": API_VERSION - 1})
    with pytest.raises(ImportError, match=f"stale .API {API_VERSION - 1}, expected {API_VERSION}"):
        backend_c._check_built(older)
    other = types.SimpleNamespace(**{**consts, "XCON_MAX_FRAME": MAX_FRAME + 1})
    with pytest.raises(ImportError, match="stale"):
        backend_c._check_built(other)


# --------------------------------------------------------------------------
# The cffi declarations, generated from native/xcon_native.h
# --------------------------------------------------------------------------

NATIVE_SRC = pathlib.Path(__file__).resolve().parents[2] / "native"


@pytest.fixture(scope="module")
def build_script() -> types.ModuleType:
    """native/build_native.py as a module (it is a script, not a package)."""
    pytest.importorskip("cffi")
    spec = importlib.util.spec_from_file_location("build_native", NATIVE_SRC / "build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER_SAMPLE = """/* A header: comments, a guard, includes.
 * #define IN_A_COMMENT 1 is no declaration */
#ifndef SAMPLE_H
#define SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#define SAMPLE_LIMIT 64  /* trailing comment */
#define SAMPLE_NEG (-1)
// a line comment
int sample_sum(const uint8_t *buf, size_t start,
               size_t end, size_t out[]);   /* spans lines */

#endif
"""


def test_cdef_from_header(build_script: types.ModuleType) -> None:
    cdef = build_script.cdef_from_header(HEADER_SAMPLE)
    assert cdef == (
        "#define SAMPLE_LIMIT ...\n"
        "#define SAMPLE_NEG ...\n"
        "\n"
        "int sample_sum(const uint8_t *buf, size_t start,\n"
        "               size_t end, size_t out[]);\n"
    )
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    assert ffi.typeof("int(*)(const uint8_t *, size_t, size_t, size_t *)")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("#ifdef SAMPLE_X", "#ifdef cannot be declared"),
        ("#if SAMPLE_LIMIT > 1", "#if cannot be declared"),
        ("#undef SAMPLE_LIMIT", "#undef cannot be declared"),
        ('#include "other.h"', "#include cannot be declared"),
        ("#pragma once", "#pragma cannot be declared"),
        ("#define SAMPLE_TWICE(x) ((x) * 2)", "a macro with parameters"),
        ("#define SAMPLE_LONG \\", "a directive continued on the next line"),
        ("#define SAMPLE_FLAG", "a #define without a value"),
    ],
)
def test_cdef_from_header_refuses(build_script: types.ModuleType, line: str, why: str) -> None:
    text = HEADER_SAMPLE.replace("#define SAMPLE_NEG (-1)", line)
    number = HEADER_SAMPLE.splitlines().index("#define SAMPLE_NEG (-1)") + 1
    with pytest.raises(ValueError, match=f"^line {number}: {re.escape(why)}.*: {re.escape(line)}$"):
        build_script.cdef_from_header(text)


def test_cdef_from_header_unclosed_guard(build_script: types.ModuleType) -> None:
    with pytest.raises(ValueError, match="#ifndef SAMPLE_H has no #endif"):
        build_script.cdef_from_header(HEADER_SAMPLE.replace("#endif", ""))


def test_native_module_declares_the_header(build_script: types.ModuleType) -> None:
    """Every constant and function of xcon_native.h is in the compiled module,
    each constant with the header's value."""
    _native_backend()
    from xcon import _native  # type: ignore[attr-defined]

    header = (NATIVE_SRC / "xcon_native.h").read_text()
    values = dict(re.findall(r"^#define (XCON_\w+) \(?(-?\d+)\)?", header, re.MULTILINE))
    functions = re.findall(r"^\w[\w ]*\b(xcon_\w+)\(", header, re.MULTILINE)
    assert len(values) >= 20 and len(functions) >= 12
    for name, value in values.items():
        assert getattr(_native.lib, name) == int(value), name
    for name in functions:
        assert callable(getattr(_native.lib, name)), name
    cdef = build_script.read_cdef()
    assert sorted(re.findall(r"\b(XCON_\w+) \.\.\.", cdef)) == sorted(values)
    assert sorted(re.findall(r"\b(xcon_\w+)\(", cdef)) == sorted(functions)


# --------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------


def test_scan_empty_and_short_header(be: Backend) -> None:
    assert be.scan(b"", 0, 0) == (0, 0, NEED_DATA)
    assert be.scan(b"\x00\x00\x00", 0, 3) == (0, 0, NEED_DATA)


def test_scan_complete_frames(be: Backend) -> None:
    frames = [eth(46), eth(1486), eth(0)]
    buf = encode_frames(frames)
    assert be.scan(buf, 0, len(buf)) == (len(buf), 3, NEED_DATA)
    first = 4 + len(frames[0])
    assert be.scan(buf, first, len(buf)) == (len(buf), 2, NEED_DATA)
    assert be.scan(buf, 0, len(buf) - 1) == (len(buf) - 4 - len(frames[2]), 2, NEED_DATA)


def test_scan_byte_at_a_time(be: Backend) -> None:
    frames = [eth(46), eth(3), eth(1000, 0x8100)]
    buf = encode_frames(frames)
    bounds = []
    pos = 0
    for f in frames:
        pos += 4 + len(f)
        bounds.append(pos)
    for end in range(len(buf) + 1):
        done = [b for b in bounds if b <= end]
        expect = (done[-1] if done else 0, len(done), NEED_DATA)
        assert be.scan(buf, 0, end) == expect, end


def test_scan_trailing_garbage(be: Backend) -> None:
    buf = encode_frames([eth(46)]) + b"\x00\x00\x01"
    assert be.scan(buf, 0, len(buf)) == (50 + 14, 1, NEED_DATA)


def test_scan_zero(be: Backend) -> None:
    buf = encode_frames([eth(46)]) + b"\x00\x00\x00\x00" + encode_frames([eth(46)])
    assert be.scan(buf, 0, len(buf)) == (64, 1, ZERO)
    assert be.scan(buf, 68, len(buf)) == (len(buf), 1, NEED_DATA)


def test_scan_limit(be: Backend) -> None:
    ok = b"\x00" * MAX_FRAME
    buf = wire(ok)
    assert be.scan(buf, 0, len(buf)) == (len(buf), 1, NEED_DATA)
    big = wire(ok + b"\x00")
    assert be.scan(big, 0, len(big)) == (0, 0, TOO_BIG)
    # Reported as soon as the header is complete, before the payload arrives.
    assert be.scan(big, 0, 4) == (0, 0, TOO_BIG)
    assert be.scan(b"\xff\xff\xff\xff", 0, 4) == (0, 0, TOO_BIG)
    mixed = encode_frames([eth(46)]) + struct.pack(">I", MAX_FRAME + 1)
    assert be.scan(mixed, 0, len(mixed)) == (64, 1, TOO_BIG)


def test_scan_buffer_types(be: Backend) -> None:
    data = encode_frames([eth(46), eth(100)])
    ba = bytearray(data)
    mv = memoryview(ba)
    for buf in (data, ba, mv, mv[4:]):
        n = len(buf)
        res = be.scan(buf, 0, n)
        assert res == ((n, 2, NEED_DATA) if n == len(data) else (0, 0, TOO_BIG))
    with mmap.mmap(-1, len(data)) as mm:
        mm[:] = data
        assert be.scan(mm, 0, len(data)) == (len(data), 2, NEED_DATA)


@pytest.mark.parametrize("start,end", [(-1, 4), (5, 4), (0, 1000), (1000, 1000)])
def test_scan_rejects_bad_range(be: Backend, start: int, end: int) -> None:
    with pytest.raises((ValueError, OverflowError)):
        be.scan(bytearray(100), start, end)


def test_concurrent_threads(be: Backend) -> None:
    """Results never leak between threads (native calls run without the GIL)."""
    import threading

    def work(nframes: int, errors: list[str]) -> None:
        buf = encode_frames([eth(46)] * nframes)
        dst = bytearray(2 * len(buf))
        for _ in range(2000):
            if be.scan(buf, 0, len(buf)) != (len(buf), nframes, NEED_DATA):
                errors.append("scan")
                return
            res = be.vlan_insert(buf, 0, len(buf), VID, dst, 0, len(dst))
            if res[:3] != (len(buf), len(buf) + 4 * nframes, nframes):
                errors.append("insert")
                return

    errors: list[str] = []
    threads = [threading.Thread(target=work, args=(n, errors)) for n in (1, 7, 30, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --------------------------------------------------------------------------
# vlan_strip
# --------------------------------------------------------------------------


def test_strip_matching_vid(be: Backend) -> None:
    f = eth(46, tags=dot1q(VID, pcp=5, dei=1))
    (consumed, written, nout, drops), out = strip_all(be, wire(f))
    assert (consumed, nout, drops) == (len(f) + 4, 1, (0, 0, 0))
    assert out == wire(untag(f)) == wire(eth(46))
    assert written == len(out)


def test_strip_drops_and_counts(be: Backend) -> None:
    keep1 = eth(46, tags=dot1q(VID))
    keep2 = eth(1500, tags=dot1q(VID, pcp=7, dei=1))
    frames = [
        eth(46),  # untagged
        keep1,
        eth(46, 0x88A8, tags=b""),  # S-tag only ethertype: untagged
        eth(46, tags=qinq(VID) + dot1q(VID)),  # 0x88a8 outer: untagged
        eth(46, tags=dot1q(VID + 1)),  # other VLAN
        eth(46, tags=dot1q(0)),  # VID 0: other VLAN
        eth(46, tags=dot1q(4095)),  # other VLAN
        FILL[:13],  # runt < 14
        keep2,
        (DST_MAC + SRC_MAC + b"\x81\x00" + tci(VID))[:17],  # tagged runt < 18
    ]
    buf = encode_frames(frames)
    (consumed, written, nout, drops), out = strip_all(be, buf)
    assert consumed == len(buf)
    assert nout == 2
    assert drops == (3, 3, 2)
    assert out == wire(untag(keep1)) + wire(untag(keep2))
    assert written == len(out)


def test_strip_minimal_tagged_frame(be: Backend) -> None:
    f = DST_MAC + SRC_MAC + dot1q(VID) + b"\x08\x00"
    assert len(f) == 18
    (_, _, nout, drops), out = strip_all(be, wire(f))
    assert (nout, drops) == (1, (0, 0, 0))
    assert out == wire(DST_MAC + SRC_MAC + b"\x08\x00")


def test_strip_keeps_inner_tag(be: Backend) -> None:
    inner = dot1q(42, pcp=3)
    f = eth(60, tags=dot1q(VID) + inner)
    (_, _, nout, _), out = strip_all(be, wire(f))
    assert nout == 1
    assert out == wire(eth(60, tags=inner))


def test_strip_jumbo_and_limit(be: Backend) -> None:
    f = eth(MAX_FRAME - 18, tags=dot1q(VID))
    assert len(f) == MAX_FRAME
    (consumed, _, nout, drops), out = strip_all(be, wire(f))
    assert (consumed, nout, drops) == (MAX_FRAME + 4, 1, (0, 0, 0))
    assert out == wire(untag(f))


def test_strip_stops_when_dst_full(be: Backend) -> None:
    a = eth(100, tags=dot1q(VID))
    drop = eth(100)
    b = eth(200, tags=dot1q(VID))
    buf = encode_frames([a, drop, b])
    need_a = 4 + len(a) - 4
    for size in range(0, need_a):
        (consumed, written, nout, drops), _ = strip_all(be, buf, dst_size=size)
        assert (consumed, written, nout, drops) == (0, 0, 0, (0, 0, 0))
    # Room for a only: the dropped frame after it still goes, b waits.
    for size in (need_a, need_a + 200):
        (consumed, written, nout, drops), out = strip_all(be, buf, dst_size=size)
        assert (consumed, written, nout, drops) == (8 + len(a) + len(drop), need_a, 1, (1, 0, 0))
    (consumed, written, nout, drops), _ = strip_all(be, buf, dst_size=need_a + len(b))
    assert (consumed, nout) == (len(buf), 2)


def test_strip_offsets(be: Backend) -> None:
    f = eth(46, tags=dot1q(VID))
    src = bytearray(b"\xee" * 10 + wire(f) + b"\xee" * 10)
    dst = bytearray(b"\xdd" * 200)
    res = be.vlan_strip(src, 10, 10 + 4 + len(f), VID, dst, 7, 150)
    assert res == (10 + 4 + len(f), 7 + len(f), 1, (0, 0, 0))
    assert dst[:7] == b"\xdd" * 7
    assert dst[7 : 7 + len(f)] == wire(untag(f))
    assert dst[7 + len(f) :] == b"\xdd" * (200 - 7 - len(f))


def test_strip_stops_at_invalid_headers(be: Backend) -> None:
    f = eth(46, tags=dot1q(VID))
    for bad in (b"\x00\x00\x00\x00", struct.pack(">I", MAX_FRAME + 1), b"\x00\x00"):
        buf = wire(f) + bad + wire(f)
        (consumed, _, nout, _), _ = strip_all(be, buf)
        assert (consumed, nout) == (4 + len(f), 1)


def test_strip_argument_checks(be: Backend) -> None:
    buf = wire(eth(46, tags=dot1q(VID)))
    with pytest.raises(ValueError):
        be.vlan_strip(buf, 0, len(buf), 4096, bytearray(100), 0, 100)
    with pytest.raises(ValueError):
        be.vlan_strip(buf, 0, len(buf) + 1, VID, bytearray(100), 0, 100)
    with pytest.raises(ValueError):
        be.vlan_strip(buf, 0, len(buf), VID, bytearray(100), 0, 101)
    with pytest.raises(BufferError):
        be.vlan_strip(buf, 0, len(buf), VID, bytes(100), 0, 100)


# --------------------------------------------------------------------------
# vlan_insert
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [b"", dot1q(7), dot1q(VID, pcp=2), qinq(100) + dot1q(7)],
    ids=["untagged", "dot1q", "same-vid", "qinq"],
)
def test_insert_tags_every_frame(be: Backend, tags: bytes) -> None:
    f = eth(46, tags=tags)
    (consumed, written, nout, drops), out = insert_all(be, wire(f))
    assert (consumed, nout, drops) == (4 + len(f), 1, (0, 0))
    assert out == wire(DST_MAC + SRC_MAC + b"\x81\x00\x00\x7b" + tags + f[12 + len(tags) :])
    assert written == len(out) == 4 + len(f) + 4


def test_insert_vid_encoding(be: Backend) -> None:
    f = eth(46)
    for vid in (0, 1, 0x0ABC, 4095):
        (_, _, nout, _), out = insert_all(be, wire(f), vid=vid)
        assert out[4 + 12 : 4 + 16] == b"\x81\x00" + struct.pack(">H", vid)


def test_insert_drops(be: Backend) -> None:
    fits = b"\x00" * (MAX_FRAME - 4)
    over = b"\x00" * (MAX_FRAME - 3)
    buf = encode_frames([FILL[:13], over, eth(0), FILL[:1], fits])
    (consumed, _, nout, drops), out = insert_all(be, buf)
    assert (consumed, nout, drops) == (len(buf), 2, (1, 2))
    assert out == wire(tagged(eth(0), VID)) + wire(tagged(fits, VID))
    assert len(tagged(fits, VID)) == MAX_FRAME


def test_insert_stops_when_dst_full(be: Backend) -> None:
    a = eth(100)
    b = eth(10)
    buf = encode_frames([a, FILL[:5], b])
    need_a = 4 + len(a) + 4
    (consumed, written, nout, drops), _ = insert_all(be, buf, dst_size=need_a - 1)
    assert (consumed, written, nout, drops) == (0, 0, 0, (0, 0))
    (consumed, written, nout, drops), _ = insert_all(be, buf, dst_size=need_a + 4 + len(b) + 3)
    assert (consumed, written, nout, drops) == (8 + len(a) + 5, need_a, 1, (0, 1))


def test_insert_then_strip_round_trip(be: Backend) -> None:
    frames = [eth(n, tags=t) for n in (0, 46, 1486, 9000) for t in (b"", dot1q(5), qinq(9))]
    buf = encode_frames(frames)
    (_, _, n_in, _), tagged = insert_all(be, buf)
    (_, _, n_out, drops), back = strip_all(be, tagged)
    assert n_in == n_out == len(frames)
    assert drops == (0, 0, 0)
    assert back == buf


def test_insert_argument_checks(be: Backend) -> None:
    buf = wire(eth(46))
    with pytest.raises(ValueError):
        be.vlan_insert(buf, 0, len(buf), -1, bytearray(100), 0, 100)
    with pytest.raises(ValueError):
        be.vlan_insert(buf, 3, 2, VID, bytearray(100), 0, 100)
    with pytest.raises(BufferError):
        be.vlan_insert(buf, 0, len(buf), VID, b"\x00" * 100, 0, 100)


# --------------------------------------------------------------------------
# Reference model and property tests
# --------------------------------------------------------------------------


def ref_frames(buf: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(header offset, frame) for the frames scan() passes."""
    pos = start
    while end - pos >= 4:
        n = int.from_bytes(buf[pos : pos + 4], "big")
        if n == 0 or n > MAX_FRAME or pos + 4 + n > end:
            return
        yield pos, buf[pos + 4 : pos + 4 + n]
        pos += 4 + n


def ref_vlan(buf: bytes, start: int, end: int, vid: int, room: int, strip: bool):
    out = bytearray()
    pos = start
    nout = 0
    drops = [0, 0, 0] if strip else [0, 0]
    for hdr, f in ref_frames(buf, start, end):
        if strip:
            if len(f) < 14:
                drops[2] += 1
                new = None
            elif f[12:14] != b"\x81\x00":
                drops[0] += 1
                new = None
            elif len(f) < 18:
                drops[2] += 1
                new = None
            elif int.from_bytes(f[14:16], "big") & 0xFFF != vid:
                drops[1] += 1
                new = None
            else:
                new = f[:12] + f[16:]
        else:
            if len(f) < 14:
                drops[1] += 1
                new = None
            elif len(f) + 4 > MAX_FRAME:
                drops[0] += 1
                new = None
            else:
                new = f[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + f[12:]
        if new is not None:
            if len(out) + 4 + len(new) > room:
                return pos, bytes(out), nout, tuple(drops)
            out += wire(new)
            nout += 1
        pos = hdr + 4 + len(f)
    return pos, bytes(out), nout, tuple(drops)


BACKENDS = pytest.mark.parametrize("backend", ["python", "native"])


@st.composite
def vlan_cases(draw: st.DrawFn) -> tuple[bytes, int, int, int, bool, int, int]:
    buf, start, end = draw(frame_streams())
    vid = draw(VIDS)
    strip = draw(st.booleans())
    dst_start = draw(st.integers(0, 32))
    plenty = dst_start + 2 * (end - start) + 64
    dst_size = plenty if draw(st.booleans()) else draw(st.integers(dst_start, plenty))
    return buf, start, end, vid, strip, dst_start, dst_size


def run_vlan(be: Backend, case: tuple[bytes, int, int, int, bool, int, int]):
    buf, start, end, vid, strip, dst_start, dst_size = case
    dst = bytearray(b"\xa5" * dst_size)
    fn = be.vlan_strip if strip else be.vlan_insert
    res = fn(memoryview(buf), start, end, vid, dst, dst_start, dst_size)
    return res, bytes(dst)


@BACKENDS
@PROPERTY
@given(stream=frame_streams())
def test_scan_matches_model(backend: str, stream: tuple[bytes, int, int]) -> None:
    be = get_backend(backend)
    buf, start, end = stream
    pos, n, status = be.scan(bytearray(buf), start, end)
    frames = list(ref_frames(buf, start, end))
    assert n == len(frames)
    assert pos == (frames[-1][0] + 4 + len(frames[-1][1]) if frames else start)
    if end - pos < 4:
        assert status == NEED_DATA
    else:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        assert status == (ZERO if length == 0 else TOO_BIG if length > MAX_FRAME else NEED_DATA)
    assert list(iter_frames(buf, start, end)) == [(h + 4, len(f)) for h, f in frames]


@BACKENDS
@PROPERTY
@given(case=vlan_cases())
def test_vlan_matches_model(
    backend: str, case: tuple[bytes, int, int, int, bool, int, int]
) -> None:
    be = get_backend(backend)
    buf, start, end, vid, strip, dst_start, dst_size = case
    (consumed, written, nout, drops), dst_bytes = run_vlan(be, case)
    ref = ref_vlan(buf, start, end, vid, dst_size - dst_start, strip)
    assert (consumed, dst_bytes[dst_start:written], nout, drops) == ref
    assert dst_bytes[:dst_start] == b"\xa5" * dst_start
    assert dst_bytes[written:] == b"\xa5" * (dst_size - written)


@PROPERTY
@given(stream=frame_streams())
def test_scan_agrees(stream: tuple[bytes, int, int]) -> None:
    nat = _native_backend()
    py = native.load_backend("python")
    buf, start, end = stream
    assert nat.scan(bytearray(buf), start, end) == py.scan(buf, start, end)


@PROPERTY
@given(case=vlan_cases())
def test_vlan_agrees(case: tuple[bytes, int, int, int, bool, int, int]) -> None:
    nat = _native_backend()
    py = native.load_backend("python")
    assert run_vlan(nat, case) == run_vlan(py, case)


# --------------------------------------------------------------------------
# read_frames / write_frames over a datagram socket standing in for a tap
# --------------------------------------------------------------------------


@pytest.fixture
def seqpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def parse(buf: bytes | bytearray, start: int, end: int) -> list[bytes]:
    return [f for _, f in ref_frames(bytes(buf), start, end)]


def test_read_frames_until_eagain(be: Backend, seqpair) -> None:
    a, b = seqpair
    frames = [eth(46), eth(1486), eth(9018 - 14), FILL[:1]]
    for f in frames:
        b.send(f)
    buf = bytearray(200_000)
    pos, n, err = be.read_frames(a.fileno(), buf, 8, len(buf), MAX_FRAME)
    assert (n, err) == (4, 0)
    assert pos == 8 + sum(4 + len(f) for f in frames)
    assert parse(buf, 8, pos) == frames
    assert len(frames[2]) == 9018
    assert be.read_frames(a.fileno(), buf, pos, len(buf), MAX_FRAME) == (pos, 0, 0)


def test_read_frames_caps(be: Backend, seqpair) -> None:
    a, b = seqpair
    for i in range(5):
        b.send(eth(46 + i))
    buf = bytearray(4 * (4 + 1600))
    assert be.read_frames(a.fileno(), buf, 0, len(buf), 1600, 2) == (2 * 64 + 1, 2, 0)
    # Reads while 4 + max_frame bytes of room remain: two small frames here.
    start = 2 * 64 + 1
    pos, n, err = be.read_frames(a.fileno(), buf, start, start + 1604 + 70, 1600)
    assert (pos, n, err) == (start + 66 + 67, 2, 0)
    # Not even one: nothing read, and said so.
    assert be.read_frames(a.fileno(), buf, len(buf) - 1603, len(buf), 1600) == (
        len(buf) - 1603,
        0,
        errno.ENOBUFS,
    )
    pos, n, err = be.read_frames(a.fileno(), buf, 0, len(buf), 1600)
    assert (n, err) == (1, 0)
    assert parse(buf, 0, pos) == [eth(50)]


def test_read_frames_truncates_to_max_frame(be: Backend, seqpair) -> None:
    a, b = seqpair
    b.send(FILL[:300])
    buf = bytearray(1000)
    assert be.read_frames(a.fileno(), buf, 0, len(buf), 100) == (104, 1, 0)
    assert buf[:104] == wire(FILL[:100])


def test_read_frames_clamps_and_checks_max_frame(be: Backend, seqpair) -> None:
    a, b = seqpair
    buf = bytearray(MAX_FRAME + 4)
    b.send(b"\x01" * MAX_FRAME)
    assert be.read_frames(a.fileno(), buf, 0, len(buf), 10**6) == (MAX_FRAME + 4, 1, 0)
    assert be.read_frames(a.fileno(), buf, 0, len(buf), 0) == (0, 0, errno.EINVAL)


def test_read_frames_eof_and_errors(be: Backend, seqpair) -> None:
    a, b = seqpair
    b.send(eth(46))
    b.close()
    buf = bytearray(100_000)
    assert be.read_frames(a.fileno(), buf, 0, len(buf), 1518) == (64, 1, READ_EOF)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.setblocking(False)
        assert be.read_frames(s.fileno(), buf, 0, len(buf), 1518) == (0, 0, errno.ENOTCONN)
    finally:
        s.close()
    with pytest.raises(BufferError):
        be.read_frames(a.fileno(), bytes(100), 0, 100, 10)
    with pytest.raises(ValueError):
        be.read_frames(a.fileno(), buf, 0, len(buf) + 1, 10)


def test_write_frames(be: Backend, seqpair) -> None:
    a, b = seqpair
    frames = [eth(46), eth(9018 - 14), FILL[:1], eth(1486)]
    buf = b"\x99" * 3 + encode_frames(frames) + b"\x00\x00\x01\x00tail"
    res = be.write_frames(a.fileno(), buf, 3, len(buf))
    assert res == (len(buf) - 8, 4, 0, 0)
    assert [b.recv(100_000) for _ in frames] == frames


def test_write_frames_drops_invalid_lengths(be: Backend, seqpair) -> None:
    a, b = seqpair
    buf = (
        encode_frames([eth(46)])
        + b"\x00\x00\x00\x00"
        + wire(b"\x00" * (MAX_FRAME + 1))
        + encode_frames([eth(47)])
    )
    assert be.write_frames(a.fileno(), buf, 0, len(buf)) == (len(buf), 2, 2, 0)
    assert [b.recv(100_000), b.recv(100_000)] == [eth(46), eth(47)]


def test_write_frames_eagain_resumes(be: Backend, seqpair) -> None:
    a, b = seqpair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    frames = [eth(1486 - i) for i in range(200)]
    buf = bytearray(encode_frames(frames))
    pos = 0
    got: list[bytes] = []
    rounds = 0
    while pos < len(buf):
        new_pos, n, nd, err = be.write_frames(a.fileno(), buf, pos, len(buf))
        assert (nd, err) == (0, 0)
        assert new_pos == pos + sum(4 + len(f) for f in frames[len(got) : len(got) + n])
        pos = new_pos
        rounds += 1
        got += waiting(b)
    assert rounds > 1, "the socket never pushed back; EAGAIN path not exercised"
    assert got == frames


def test_write_frames_rejected_frame_dropped(be: Backend) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        buf = encode_frames([eth(46), eth(MAX_FRAME - 14), eth(47)])
        assert be.write_frames(a.fileno(), buf, 0, len(buf)) == (len(buf), 2, 1, 0)
        assert [b.recv(100_000), b.recv(100_000)] == [eth(46), eth(47)]
    finally:
        a.close()
        b.close()


def test_write_frames_device_error(be: Backend, seqpair) -> None:
    a, b = seqpair
    b.close()
    buf = encode_frames([eth(46), eth(47)])
    assert be.write_frames(a.fileno(), buf, 0, len(buf)) == (0, 0, 0, errno.EPIPE)


def test_write_then_read_round_trip(be: Backend, seqpair) -> None:
    a, b = seqpair
    frames = [eth(n) for n in (0, 46, 500, 1486, 9004)]
    src = encode_frames(frames)
    assert be.write_frames(a.fileno(), src, 0, len(src))[:2] == (len(src), len(frames))
    dst = bytearray(len(frames) * (4 + 9018))
    assert be.read_frames(b.fileno(), dst, 0, len(dst), 9018) == (len(src), len(frames), 0)
    assert dst[: len(src)] == src


def test_vlan_buffer_types(be: Backend) -> None:
    f = eth(46, tags=dot1q(VID))
    src = wire(f)
    expect = wire(untag(f))
    with mmap.mmap(-1, 4096) as mm:
        res = be.vlan_strip(memoryview(bytearray(src)), 0, len(src), VID, mm, 100, 4096)
        assert res == (len(src), 100 + len(expect), 1, (0, 0, 0))
        assert mm[100 : 100 + len(expect)] == expect
        res2 = be.vlan_insert(
            mm, 100, 100 + len(expect), VID, memoryview(bytearray(200))[10:], 0, 190
        )
        assert res2 == (100 + len(expect), len(src), 1, (0, 0))


IO_LENGTHS = st.one_of(
    st.integers(0, 20), st.integers(14, 1600), st.sampled_from([9018, MAX_FRAME, MAX_FRAME + 1])
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lengths=st.lists(IO_LENGTHS, max_size=8), tail=st.binary(max_size=6))
def test_io_agrees(lengths: list[int], tail: bytes) -> None:
    """write_frames then read_frames over a fresh socket pair: same results on both backends."""
    backends = (native.load_backend("python"), _native_backend())
    buf = b"".join(struct.pack(">I", n) + FILL[:n] for n in lengths) + tail
    outcomes = []
    for impl in backends:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            a.setblocking(False)
            b.setblocking(False)
            wrote = impl.write_frames(a.fileno(), buf, 0, len(buf))
            dst = bytearray(9 * (4 + MAX_FRAME))
            got = impl.read_frames(b.fileno(), dst, 0, len(dst), MAX_FRAME)
            outcomes.append((wrote, got, bytes(dst[: got[0]])))
        finally:
            a.close()
            b.close()
    assert outcomes[0] == outcomes[1]
    (consumed, n, dropped, err), (_, nread, rerr), data = outcomes[0]
    # Everything before `consumed` was either written or dropped as invalid;
    # the socket may push back (EAGAIN) before the end.
    pos = 0
    valid = []
    invalid = 0
    while pos < consumed:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        if 0 < length <= MAX_FRAME:
            valid.append(buf[pos + 4 : pos + 4 + length])
        else:
            invalid += 1
        pos += 4 + length
    assert pos == consumed
    assert (n, dropped, err) == (len(valid), invalid, 0)
    assert (nread, rerr) == (len(valid), 0)
    assert data == encode_frames(valid)


# --------------------------------------------------------------------------
# recv_datagrams / send_datagrams over loopback UDP (AF_UNIX datagrams where
# UDP cannot show it: the largest frames, a full socket buffer)
# --------------------------------------------------------------------------

SLOT = 4 + MAX_DGRAM
#: The largest UDP payload over IPv4 and over IPv6 (without jumbograms).
MAX_UDP = {"127.0.0.1": 65507, "::1": 65527}
VNI = 0x12345
VXLAN_EXPECT = bytes.fromhex("0800000001234500")
VXLAN_MASK = bytes.fromhex("08000000ffffff00")


def vxlan(vni: int = VNI, flags: int = 0x08, reserved: bytes = b"\x00\x00\x00", last: int = 0):
    """An 8-byte VXLAN header (RFC 7348); reserved fields settable to test they are ignored."""
    return bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([last])


def ipv6_loopback_missing() -> str | None:
    """Why IPv6 loopback cannot be used here, or None."""
    if not socket.has_ipv6:
        return "Python built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        return f"no IPv6 loopback address ::1 ({e})"
    return None


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def loopback(request: pytest.FixtureRequest) -> str:
    if request.param == "::1" and (why := ipv6_loopback_missing()):
        pytest.skip(why)
    return str(request.param)


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, closed after it."""
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def big_buffers(s: socket.socket) -> None:
    """4 MiB socket buffers (forced past rmem_max/wmem_max when root), so
    jumbo datagrams and long batches are not dropped by the kernel."""
    for force, plain in (
        (33, socket.SO_RCVBUF),  # SO_RCVBUFFORCE
        (32, socket.SO_SNDBUF),  # SO_SNDBUFFORCE
    ):
        try:
            s.setsockopt(socket.SOL_SOCKET, force, 4 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, plain, 4 << 20)


def udp_socket(socks: list[socket.socket], host: str | None, family: int = 0) -> socket.socket:
    """A non-blocking UDP socket with big buffers, bound to ``(host, 0)`` unless host is None."""
    family = family or (socket.AF_INET6 if host and ":" in host else socket.AF_INET)
    s = socket.socket(family, socket.SOCK_DGRAM)
    socks.append(s)
    s.setblocking(False)
    big_buffers(s)
    if host is not None:
        s.bind((host, 0))
    return s


def udp_link(socks: list[socket.socket], host: str) -> tuple[socket.socket, socket.socket]:
    """(rx, tx): two UDP sockets on ``host`` connected to each other."""
    rx = udp_socket(socks, host)
    tx = udp_socket(socks, host)
    rx.connect(tx.getsockname())
    tx.connect(rx.getsockname())
    return rx, tx


def unix_dgram_pair(socks: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    socks.extend((a, b))
    for s in (a, b):
        s.setblocking(False)
    return a, b


def wait_for(sock: socket.socket, events: int) -> None:
    """Until ``sock`` reports ``events`` (loopback delivers within the send,
    ICMP errors come back a little later)."""
    poller = select.poll()
    poller.register(sock, events)
    assert poller.poll(2000), f"socket never reported {events:#x}"


def sized(n: int, seed: int = 0) -> bytes:
    """An Ethernet frame of exactly ``n`` bytes (n >= 14)."""
    return eth(n - 14)[:14] + FILL[seed : seed + n - 14]


def sent_datagrams(be: Backend, socks, loopback: str, frames: list[bytes]):
    """``frames`` sent by ``be``, one datagram each, over a new UDP link, all of
    them accepted; returns the receiving socket once it is readable, and the frames
    as the buffer they were sent from."""
    rx, tx = udp_link(socks, loopback)
    buf = encode_frames(frames)
    assert be.send_datagrams(tx.fileno(), buf, 0, len(buf)) == (len(buf), len(frames), 0, 0)
    wait_for(rx, select.POLLIN)
    return rx, buf


def test_recv_datagrams_many_small_frames_one_batch(be: Backend, loopback: str, socks) -> None:
    frames = [sized(60, i) for i in range(150)]
    rx, buf = sent_datagrams(be, socks, loopback, frames)
    out = bytearray(b"\xee" * (7 + DGRAM_BATCH * SLOT))
    res = be.recv_datagrams(rx.fileno(), out, 7, len(out), 1000)
    assert res == (7 + len(buf), 150, 0, (0, 0, 0))
    assert out[:7] == b"\xee" * 7
    assert out[7 : 7 + len(buf)] == buf
    assert be.recv_datagrams(rx.fileno(), out, 7, len(out), 1000) == (7, 0, 0, (0, 0, 0))


def test_datagrams_frame_sizes(be: Backend, loopback: str, socks) -> None:
    rx, tx = udp_link(socks, loopback)
    largest = MAX_UDP[loopback]
    sizes = [14, 60, 1514, 9018, largest, largest + 1, 65535]
    frames = [sized(n, i) for i, n in enumerate(sizes)]
    buf = encode_frames(frames)
    # Above UDP's largest payload the kernel says EMSGSIZE: dropped, counted.
    assert be.send_datagrams(tx.fileno(), buf, 0, len(buf)) == (len(buf), 5, 2, 0)
    tx.send(b"")  # an empty datagram: no Ethernet header
    tx.send(FILL[:13])
    wait_for(rx, select.POLLIN)
    out = bytearray(8 * SLOT)
    pos, n, err, drops = be.recv_datagrams(rx.fileno(), out, 0, len(out), 100)
    assert (n, err, drops) == (5, 0, (2, 0, 0))
    assert out[:pos] == encode_frames(frames[:5])


def test_datagrams_largest_frame_and_truncation(be: Backend, socks) -> None:
    """A 65535-byte frame (more than UDP carries) over AF_UNIX datagrams;
    one byte more does not fit a slot: the kernel cuts it and it is dropped."""
    a, b = unix_dgram_pair(socks)
    big_buffers(a)
    frames = [sized(65535, 1), sized(65536, 2), sized(14, 3)]
    buf = encode_frames(frames)
    assert be.send_datagrams(a.fileno(), buf, 0, len(buf)) == (len(buf), 3, 0, 0)
    out = bytearray(3 * SLOT)
    pos, n, err, drops = be.recv_datagrams(b.fileno(), out, 0, len(out), 100)
    assert (n, err, drops) == (2, 0, (0, 0, 1))
    assert out[:pos] == encode_frames([frames[0], frames[2]])
    # With a header the slot still takes MAX_DGRAM bytes of frame.
    assert be.send_datagrams(a.fileno(), buf, 0, len(buf), prefix=vxlan()) == (len(buf), 3, 0, 0)
    pos, n, err, drops = be.recv_datagrams(
        b.fileno(), out, 0, len(out), 100, 8, VXLAN_EXPECT, VXLAN_MASK
    )
    assert (n, err, drops) == (2, 0, (0, 0, 1))
    assert out[:pos] == encode_frames([frames[0], frames[2]])


def test_recv_datagrams_more_waiting_than_room(be: Backend, loopback: str, socks) -> None:
    frames = [sized(1000, i) for i in range(10)]
    rx, buf = sent_datagrams(be, socks, loopback, frames)
    out = bytearray(5 + SLOT + 3000)
    # No room for one whole datagram: nothing read, said so.
    assert be.recv_datagrams(rx.fileno(), out, 5, 5 + SLOT - 1, 100) == (
        5,
        0,
        errno.ENOBUFS,
        (0, 0, 0),
    )
    got: list[bytes] = []
    counts = []
    while len(got) < len(frames):
        # Reads while a whole slot of room is left: 3 frames of 1004 bytes.
        pos, n, err, drops = be.recv_datagrams(rx.fileno(), out, 5, len(out), 100)
        assert (err, drops) == (0, (0, 0, 0))
        counts.append(n)
        got += parse(out, 5, pos)
        assert pos == 5 + 1004 * n
    assert counts == [3, 3, 3, 1]
    assert got == frames


def test_recv_datagrams_max_count(be: Backend, loopback: str, socks) -> None:
    frames = [sized(64 + i, i) for i in range(10)]
    rx, buf = sent_datagrams(be, socks, loopback, frames)
    out = bytearray(4 * SLOT)
    pos, n, err, _ = be.recv_datagrams(rx.fileno(), out, 0, len(out), 4)
    assert (n, err) == (4, 0)
    assert parse(out, 0, pos) == frames[:4]
    assert be.recv_datagrams(rx.fileno(), out, 0, len(out), 0) == (0, 0, 0, (0, 0, 0))
    pos, n, err, _ = be.recv_datagrams(rx.fileno(), out, 0, len(out), 100)
    assert (n, err) == (6, 0)
    assert parse(out, 0, pos) == frames[4:]


def test_datagrams_vxlan(be: Backend, loopback: str, socks) -> None:
    rx, tx = udp_link(socks, loopback)
    f1, f2, f3, f4 = (sized(n, n) for n in (60, 14, 1514, 100))
    tx.send(vxlan(VNI + 1) + sized(60))  # other VNI
    tx.send(vxlan() + f1)
    tx.send(vxlan(flags=0) + sized(60))  # I flag missing
    tx.send(vxlan(flags=0xF7) + sized(60))  # every flag but I
    # Reserved bits are ignored on receive.
    tx.send(vxlan(flags=0xFF, reserved=b"\xff\xff\xff", last=0xFF) + f2)
    tx.send(vxlan(0) + sized(60))  # VNI 0
    tx.send(vxlan() + FILL[:13])  # no room for an Ethernet header
    tx.send(vxlan())  # header only
    tx.send(vxlan()[:7])  # not even a header
    tx.send(b"")
    frames = encode_frames([f3, f4])
    assert be.send_datagrams(tx.fileno(), frames, 0, len(frames), prefix=vxlan()) == (
        len(frames),
        2,
        0,
        0,
    )
    wait_for(rx, select.POLLIN)
    out = bytearray(b"\xee" * (3 + 16 * SLOT))
    pos, n, err, drops = be.recv_datagrams(
        rx.fileno(), out, 3, len(out), 100, 8, VXLAN_EXPECT, VXLAN_MASK
    )
    assert (n, err, drops) == (4, 0, (8, 0, 0))
    assert out[:3] == b"\xee" * 3
    assert out[3:pos] == encode_frames([f1, f2, f3, f4])


def test_send_datagrams_prefix_on_the_wire(be: Backend, loopback: str, socks) -> None:
    rx, tx = udp_link(socks, loopback)
    frames = [sized(60, 1), sized(1514, 2)]
    buf = encode_frames(frames)
    head = vxlan(0xABCDEF)
    assert be.send_datagrams(tx.fileno(), buf, 0, len(buf), prefix=head) == (len(buf), 2, 0, 0)
    wait_for(rx, select.POLLIN)
    assert [rx.recv(70_000), rx.recv(70_000)] == [head + f for f in frames]


def _sources(socks: list[socket.socket], host: str, others: list[str]) -> list[socket.socket]:
    out = []
    for h in others:
        try:
            out.append(udp_socket(socks, h))
        except OSError as e:
            pytest.skip(f"cannot bind {h} ({e})")
    return out


def test_recv_datagrams_peer_filter_ipv4(be: Backend, socks) -> None:
    rx = udp_socket(socks, "127.0.0.1")
    near, near2, far = _sources(socks, "127.0.0.1", ["127.0.0.1", "127.0.0.1", "127.0.0.2"])
    mine = [sized(60, i) for i in range(4)]
    theirs = [sized(61, i) for i in range(3)]
    order = [(near, mine[0]), (far, theirs[0]), (near2, mine[1]), (far, theirs[1])]
    order += [(near, mine[2]), (near, mine[3]), (far, theirs[2])]
    peer4 = socket.inet_pton(socket.AF_INET, "127.0.0.1")
    out = bytearray(16 * SLOT)
    for peer, keep, nforeign in (
        (peer4, mine, 3),  # the port is not compared: near2 is kept
        (V4MAP + peer4, mine, 3),  # an IPv4-mapped peer is the same
        (socket.inet_pton(socket.AF_INET, "127.0.0.2"), theirs, 4),
        (None, [f for _, f in order], 0),
    ):
        for s, f in order:
            s.sendto(f, rx.getsockname())
        wait_for(rx, select.POLLIN)
        pos, n, err, drops = be.recv_datagrams(rx.fileno(), out, 0, len(out), 100, peer=peer)
        assert (n, err, drops) == (len(keep), 0, (0, nforeign, 0))
        assert parse(out, 0, pos) == keep


V4MAP = b"\x00" * 10 + b"\xff\xff"


def test_recv_datagrams_peer_filter_v4_mapped_source(be: Backend, socks) -> None:
    """An IPv6 socket sees IPv4 senders as ::ffff:a.b.c.d: the 4-byte peer matches them."""
    if why := ipv6_loopback_missing():
        pytest.skip(why)
    rx = udp_socket(socks, None, socket.AF_INET6)
    rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    rx.bind(("::ffff:127.0.0.1", 0))
    near, far = _sources(socks, "127.0.0.1", ["127.0.0.1", "127.0.0.2"])
    frames = [sized(60, i) for i in range(4)]
    for i, f in enumerate(frames):
        (near if i % 2 else far).sendto(f, ("127.0.0.1", rx.getsockname()[1]))
    wait_for(rx, select.POLLIN)
    out = bytearray(8 * SLOT)
    peer = socket.inet_pton(socket.AF_INET, "127.0.0.1")
    pos, n, err, drops = be.recv_datagrams(rx.fileno(), out, 0, len(out), 100, peer=peer)
    assert (n, err, drops) == (2, 0, (0, 2, 0))
    assert parse(out, 0, pos) == frames[1::2]


def test_recv_datagrams_peer_filter_ipv6(be: Backend, socks) -> None:
    if why := ipv6_loopback_missing():
        pytest.skip(why)
    rx, tx = udp_link(socks, "::1")
    frames = [sized(60, i) for i in range(3)]
    out = bytearray(4 * SLOT)
    for peer, kept in (
        ("::1", 3),
        ("2001:db8::1", 0),
        ("127.0.0.1", 0),  # IPv4 matches only IPv4-mapped sources
    ):
        for f in frames:
            tx.send(f)
        wait_for(rx, select.POLLIN)
        raw = socket.inet_pton(socket.AF_INET6 if ":" in peer else socket.AF_INET, peer)
        pos, n, err, drops = be.recv_datagrams(rx.fileno(), out, 0, len(out), 100, peer=raw)
        assert (n, err, drops) == (kept, 0, (0, 3 - kept, 0))
        assert parse(out, 0, pos) == frames[:kept]


def test_recv_datagrams_peer_filter_not_ip(be: Backend, socks) -> None:
    a, b = unix_dgram_pair(socks)
    a.send(sized(60))
    out = bytearray(SLOT)
    peer = socket.inet_pton(socket.AF_INET, "127.0.0.1")
    assert be.recv_datagrams(b.fileno(), out, 0, len(out), 10, peer=peer) == (0, 0, 0, (0, 1, 0))


def test_datagrams_connection_refused(be: Backend, loopback: str, socks) -> None:
    """A connected UDP socket whose peer is gone: the ICMP port unreachable is
    reported once, by the next receive or send, and nothing is lost for it."""
    a, b = udp_link(socks, loopback)
    waiting = encode_frames([sized(60, 1), sized(61, 2)])
    assert be.send_datagrams(a.fileno(), waiting, 0, len(waiting)) == (len(waiting), 2, 0, 0)
    wait_for(b, select.POLLIN)
    a.close()
    b.send(sized(62))
    wait_for(b, select.POLLERR)
    out = bytearray(4 * SLOT)
    assert be.recv_datagrams(b.fileno(), out, 0, len(out), 10) == (
        0,
        0,
        errno.ECONNREFUSED,
        (0, 0, 0),
    )
    # Called again: the frames that were waiting behind the error.
    pos, n, err, drops = be.recv_datagrams(b.fileno(), out, 0, len(out), 10)
    assert (pos, n, err, drops) == (len(waiting), 2, 0, (0, 0, 0))
    assert out[:pos] == waiting
    # A send that meets the refusal drops that frame and goes on.
    b.send(sized(63))
    wait_for(b, select.POLLERR)
    buf = encode_frames([sized(64, 1), sized(65, 2)])
    assert be.send_datagrams(b.fileno(), buf, 0, len(buf)) == (len(buf), 1, 1, 0)
    wait_for(b, select.POLLERR)  # the frame that went is refused in turn
    assert be.recv_datagrams(b.fileno(), out, 0, len(out), 10) == (
        0,
        0,
        errno.ECONNREFUSED,
        (0, 0, 0),
    )


def test_send_datagrams_eagain_resumes(be: Backend, socks) -> None:
    """A full socket: consumed_pos is the header of the first frame that did not go."""
    a, b = unix_dgram_pair(socks)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    frames = [sized(1514 - i, i) for i in range(200)]
    buf = bytearray(encode_frames(frames))
    out = bytearray(DGRAM_BATCH * SLOT)
    pos = 0
    got: list[bytes] = []
    sent = 0
    rounds = 0
    while pos < len(buf):
        new_pos, n, nd, err = be.send_datagrams(a.fileno(), buf, pos, len(buf))
        assert (nd, err) == (0, 0)
        assert new_pos == pos + sum(4 + len(f) for f in frames[sent : sent + n])
        pos = new_pos
        sent += n
        rounds += 1
        rpos, rn, rerr, drops = be.recv_datagrams(b.fileno(), out, 0, len(out), 1000)
        assert (rerr, drops) == (0, (0, 0, 0))
        got += parse(out, 0, rpos)
        assert len(got) == sent
    assert rounds > 1, "the socket never pushed back; EAGAIN path not exercised"
    assert got == frames


def test_send_datagrams_rejected_frames_dropped(be: Backend, socks) -> None:
    a, b = unix_dgram_pair(socks)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    frames = [sized(60, 1), sized(MAX_FRAME, 2), sized(61, 3)]
    buf = (
        encode_frames(frames[:2])
        + b"\x00\x00\x00\x00"
        + wire(b"\x00" * (MAX_FRAME + 1))
        + encode_frames(frames[2:])
        + b"\x00\x00\x01\x00tail"
    )
    # Too big for the socket (EMSGSIZE), zero length and above MAX_FRAME: dropped.
    assert be.send_datagrams(a.fileno(), buf, 0, len(buf)) == (len(buf) - 8, 2, 3, 0)
    assert [b.recv(100_000), b.recv(100_000)] == [frames[0], frames[2]]


def test_send_datagrams_to_address(be: Backend, loopback: str, socks) -> None:
    rx = udp_socket(socks, loopback)
    tx = udp_socket(socks, loopback)
    host, port = rx.getsockname()[:2]
    frames = [sized(60, 1), sized(1514, 2)]
    buf = encode_frames(frames)
    addrs: list[tuple] = [(host, port)]
    if ":" in host:
        addrs.append((host, port, 0, 0))
        addrs.append(("0:0::1", port, 0, 0))
    for addr in addrs:
        assert be.send_datagrams(tx.fileno(), buf, 0, len(buf), addr=addr) == (len(buf), 2, 0, 0)
        wait_for(rx, select.POLLIN)
        for f in frames:
            data, source = rx.recvfrom(70_000)
            assert (data, source[:2]) == (f, tx.getsockname()[:2])
    # Without an address an unconnected socket has nowhere to send: a socket error.
    assert be.send_datagrams(tx.fileno(), buf, 0, len(buf)) == (0, 0, 0, errno.EDESTADDRREQ)


def test_send_datagrams_ipv4_address_on_ipv6_socket(be: Backend, socks) -> None:
    if why := ipv6_loopback_missing():
        pytest.skip(why)
    rx = udp_socket(socks, "127.0.0.1")
    tx = udp_socket(socks, None, socket.AF_INET6)
    tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    buf = encode_frames([sized(60)])
    assert be.send_datagrams(tx.fileno(), buf, 0, len(buf), addr=rx.getsockname()) == (
        len(buf),
        1,
        0,
        0,
    )
    wait_for(rx, select.POLLIN)
    assert rx.recv(100) == sized(60)
    # An IPv6 destination on an IPv4 socket is refused by the socket.
    v4 = udp_socket(socks, "127.0.0.1")
    assert be.send_datagrams(v4.fileno(), buf, 0, len(buf), addr=("::1", 9)) == (
        0,
        0,
        0,
        errno.EAFNOSUPPORT,
    )


def test_datagrams_not_a_socket(be: Backend) -> None:
    r, w = os.pipe()
    try:
        buf = encode_frames([sized(60)])
        out = bytearray(SLOT)
        assert be.recv_datagrams(r, out, 0, len(out), 10) == (0, 0, errno.ENOTSOCK, (0, 0, 0))
        assert be.send_datagrams(w, buf, 0, len(buf)) == (0, 0, 0, errno.ENOTSOCK)
        # Nothing to do: no system call, no error.
        assert be.send_datagrams(w, buf, 0, 3) == (0, 0, 0, 0)
        assert be.recv_datagrams(r, out, 0, len(out), 0) == (0, 0, 0, (0, 0, 0))
        os.fstat(r)
        os.fstat(w)
    finally:
        os.close(r)
        os.close(w)


def test_datagrams_leave_the_descriptor_alone(be: Backend, socks) -> None:
    """The caller's descriptor stays open, and no call waits even with a
    default socket timeout set."""
    a, b = unix_dgram_pair(socks)
    out = bytearray(SLOT)
    buf = encode_frames([sized(60)])
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)
    try:
        t0 = time.monotonic()
        for _ in range(3):
            assert be.recv_datagrams(b.fileno(), out, 0, len(out), 10) == (0, 0, 0, (0, 0, 0))
            assert be.send_datagrams(a.fileno(), buf, 0, len(buf)) == (len(buf), 1, 0, 0)
            assert be.recv_datagrams(b.fileno(), out, 0, len(out), 10)[:3] == (len(buf), 1, 0)
        assert time.monotonic() - t0 < 2.0
    finally:
        socket.setdefaulttimeout(old)
    a.send(b"still open")
    assert b.recv(100) == b"still open"


def test_datagrams_argument_checks(be: Backend, socks) -> None:
    a, b = unix_dgram_pair(socks)
    fd = b.fileno()
    out = bytearray(2 * SLOT)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out) + 1, 10)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 5, 4, 10)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), -1)
    with pytest.raises(BufferError):
        be.recv_datagrams(fd, bytes(2 * SLOT), 0, 2 * SLOT, 10)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), 10, 8, VXLAN_EXPECT, VXLAN_MASK[:7])
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), 10, 8, VXLAN_EXPECT[:7], VXLAN_MASK)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), 10, 0, VXLAN_EXPECT, VXLAN_MASK)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), 10, 8)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), 10, -1)
    big = bytes(MAX_PREFIX + 1)
    with pytest.raises(ValueError):
        be.recv_datagrams(fd, out, 0, len(out), 10, MAX_PREFIX + 1, big, big)
    for peer in (b"", b"\x7f\x00\x00", bytes(5), bytes(17)):
        with pytest.raises(ValueError):
            be.recv_datagrams(fd, out, 0, len(out), 10, peer=peer)
    buf = encode_frames([sized(60)])
    with pytest.raises(ValueError):
        be.send_datagrams(a.fileno(), buf, 0, len(buf) + 1)
    with pytest.raises(ValueError):
        be.send_datagrams(a.fileno(), buf, 0, len(buf), prefix=big)
    bad_addrs = [
        ("localhost", 9),  # names are not looked up
        ("127.0.0.1", 70000),
        ("127.0.0.1", -1),
        ("127.0.0.1", True),
        ("127.0.0.1", 9.0),
        ("127.0.0.1", 9, 0, 0),  # IPv4 takes (host, port)
        ("::1", 9, 1 << 20, 0),
        ("::1", 9, 0, 1 << 32),
        ("fe80::1%lo", 9),
        ("::1",),
        ("::1", 9, 0, 0, 0),
        (b"127.0.0.1", 9),
    ]
    for addr in bad_addrs:
        with pytest.raises(ValueError):
            be.send_datagrams(a.fileno(), buf, 0, len(buf), addr=addr)
    with pytest.raises(TypeError):
        be.send_datagrams(a.fileno(), buf, 0, len(buf), addr=["127.0.0.1", 9])  # type: ignore[arg-type]
    # Nothing was read or sent by any of them.
    assert be.recv_datagrams(fd, out, 0, len(out), 10) == (0, 0, 0, (0, 0, 0))


# One receive of datagrams from two senders, against a model and across backends.

DGRAM_LENGTHS = st.one_of(
    st.integers(0, 30), st.integers(14, 1600), st.sampled_from([9018, 65507 - 8, 65507])
)
VXLAN_HEADS = st.sampled_from(
    [
        vxlan(),
        vxlan(),
        vxlan(flags=0x0C, reserved=b"\x01\x02\x03", last=0x99),
        vxlan(VNI ^ 1),
        vxlan(flags=0),
        b"",
    ]
)


@st.composite
def dgram_cases(draw: st.DrawFn):
    prefix = draw(st.booleans())
    datagrams = []
    for _ in range(draw(st.integers(0, 12))):
        sender = draw(st.integers(0, 1))
        length = draw(DGRAM_LENGTHS)
        off = draw(st.integers(0, 1024))
        head = draw(VXLAN_HEADS) if prefix else b""
        datagrams.append((sender, (head + FILL[off : off + length])[:65507]))
    # Within the default receive buffer limit (rmem_max) when not root.
    assume(sum(len(d) > 9000 for _, d in datagrams) <= 2)
    start = draw(st.integers(0, 16))
    room = draw(st.sampled_from([SLOT - 1, SLOT, SLOT + 3000, 3 * SLOT, 20 * SLOT]))
    max_count = draw(st.sampled_from([0, 1, 2, 5, 100]))
    filtered = draw(st.booleans())
    return datagrams, prefix, start, room, max_count, filtered


def ref_recv(datagrams, prefix: bool, start: int, room: int, max_count: int, filtered: bool):
    """What one recv_datagrams call makes of the queued datagrams: the result
    and how many datagrams it took off the queue."""
    end = start + room
    if room < SLOT:
        return (start, 0, errno.ENOBUFS, (0, 0, 0)), b"", 0
    plen = 8 if prefix else 0
    out = bytearray()
    pos = start
    n = bad = foreign = taken = 0
    for sender, d in datagrams:
        if n == max_count or end - pos < SLOT:
            break
        taken += 1
        if filtered and sender == 1:
            foreign += 1
        elif len(d) < plen + 14 or (
            prefix and (d[0] & 0x08 != 0x08 or d[4:7] != VNI.to_bytes(3, "big"))
        ):
            bad += 1
        else:
            out += wire(d[plen:])
            pos += 4 + len(d) - plen
            n += 1
    return (pos, n, 0, (bad, foreign, 0)), bytes(out), taken


def run_dgram_case(be: Backend, case) -> list:
    datagrams, prefix, start, room, max_count, filtered = case
    opened: list[socket.socket] = []
    try:
        rx = udp_socket(opened, "127.0.0.1")
        senders = [udp_socket(opened, "127.0.0.1"), udp_socket(opened, "127.0.0.2")]
        for sender, d in datagrams:
            senders[sender].sendto(d, rx.getsockname())
        if datagrams:
            wait_for(rx, select.POLLIN)
        match = (8, VXLAN_EXPECT, VXLAN_MASK) if prefix else (0, b"", b"")
        peer = socket.inet_pton(socket.AF_INET, "127.0.0.1") if filtered else None
        out = bytearray(b"\xa5" * (start + room + 5))
        outcomes = []
        for size, count in ((room, max_count), (30 * SLOT, 100)):
            res = be.recv_datagrams(rx.fileno(), out, start, start + size, count, *match, peer)
            outcomes.append((res, bytes(out[start : res[0]]), bytes(out[:start])))
            out = bytearray(b"\xa5" * (start + 30 * SLOT))
        return outcomes
    finally:
        for s in opened:
            s.close()


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=dgram_cases())
def test_recv_datagrams_matches_model_and_agrees(case) -> None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
    except OSError as e:
        pytest.skip(f"cannot bind 127.0.0.2 ({e})")
    py = run_dgram_case(native.load_backend("python"), case)
    assert run_dgram_case(_native_backend(), case) == py
    datagrams, prefix, start, room, max_count, filtered = case
    res, data, taken = ref_recv(datagrams, prefix, start, room, max_count, filtered)
    assert py[0] == (res, data, b"\xa5" * start)
    # The second call, with room for everything, gets the rest.
    rest, rest_data, _ = ref_recv(datagrams[taken:], prefix, start, 30 * SLOT, 100, filtered)
    assert py[1] == (rest, rest_data, b"\xa5" * start)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(IO_LENGTHS, max_size=80),
    tail=st.binary(max_size=6),
    prefix=st.sampled_from([b"", vxlan()]),
)
def test_send_datagrams_agrees(lengths: list[int], tail: bytes, prefix: bytes) -> None:
    """send_datagrams then recv_datagrams over fresh UDP sockets: same results
    on both backends, batches of more than DGRAM_BATCH included."""
    assume(sum(n for n in lengths if n <= 65507) <= 150_000)
    buf = b"".join(struct.pack(">I", n) + FILL[:n] for n in lengths) + tail
    match = (len(prefix), VXLAN_EXPECT, VXLAN_MASK) if prefix else (0, b"", b"")
    outcomes = []
    for impl in (native.load_backend("python"), _native_backend()):
        opened: list[socket.socket] = []
        try:
            rx, tx = udp_link(opened, "127.0.0.1")
            sent = impl.send_datagrams(tx.fileno(), buf, 0, len(buf), prefix)
            dst = bytearray(DGRAM_BATCH * SLOT)
            got = impl.recv_datagrams(rx.fileno(), dst, 0, len(dst), 1000, *match)
            outcomes.append((sent, got, bytes(dst[: got[0]])))
        finally:
            for s in opened:
                s.close()
    assert outcomes[0] == outcomes[1]
    (consumed, n, dropped, err), (_, nread, rerr, drops), data = outcomes[0]
    pos = 0
    kept = []
    invalid = 0
    while pos < consumed:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        frame = buf[pos + 4 : pos + 4 + length]
        if 0 < length <= MAX_FRAME and len(prefix) + length <= 65507:
            kept.append(frame)
        else:
            invalid += 1
        pos += 4 + length
    assert (pos, err) == (consumed, 0)
    assert (n, dropped) == (len(kept), invalid)
    # Sent frames shorter than an Ethernet header are dropped on receipt.
    assert (nread, rerr, drops) == (sum(len(f) >= 14 for f in kept), 0, (n - nread, 0, 0))
    assert data == encode_frames(f for f in kept if len(f) >= 14)


# --------------------------------------------------------------------------
# AF_PACKET with PACKET_VNET_HDR: offload_frame, read_packets, write_packets
# --------------------------------------------------------------------------
# Packets are built with xcon.testing.packets (plain checksum loops); every
# output frame is checked there independently of the code under test.

from xcon.native.abi import (  # noqa: E402
    OFFLOAD_VERDICTS,
    PACKET_COUNTERS,
    PACKET_ROOM,
    PKT_BAD_FRAME,
    PKT_CSUM,
    PKT_FORWARDED,
    PKT_MALFORMED,
    PKT_NO_ROOM,
    PKT_SPLIT,
    PKT_UNSUPPORTED,
    VNET_HDR_LEN,
)
from xcon.testing import packets as pk  # noqa: E402
from xcon.testing.frames import split_frames  # noqa: E402

PAYLOAD = random.Random(11).randbytes(70000)


def offload(be: Backend, vnet: bytes, frame: bytes, tpid: int = 0, tci: int = 0, room=None):
    """(verdict, output frames, written) of one packet into a fresh buffer."""
    size = room if room is not None else 3 * len(frame) + 65536
    dst = bytearray(b"\xa5" * (size + 16))
    written, nframes, verdict = be.offload_frame(vnet, frame, dst, 8, 8 + size, tpid, tci)
    assert dst[:8] == b"\xa5" * 8 and dst[written:] == b"\xa5" * (len(dst) - written)
    frames = split_frames(bytes(dst[8:written]))
    assert len(frames) == nframes
    return verdict, frames, written - 8


def test_packet_exports() -> None:
    chosen = native.load_backend(native.BACKEND)
    assert native.read_packets is chosen.read_packets
    assert native.write_packets is chosen.write_packets
    assert native.offload_frame is chosen.offload_frame
    assert (native.VNET_HDR_LEN, native.PACKET_ROOM) == (10, 98304)
    assert OFFLOAD_VERDICTS[PKT_NO_ROOM] == "no_room" and len(PACKET_COUNTERS) == 7


def test_packet_native_constants() -> None:
    _native_backend()
    from xcon import _native  # type: ignore[attr-defined]

    lib = _native.lib
    assert (lib.XCON_VNET_HDR_LEN, lib.XCON_PKT_ROOM) == (VNET_HDR_LEN, PACKET_ROOM)
    verdicts = (
        lib.XCON_PKT_FORWARDED,
        lib.XCON_PKT_CSUM,
        lib.XCON_PKT_SPLIT,
        lib.XCON_PKT_UNSUPPORTED,
        lib.XCON_PKT_MALFORMED,
        lib.XCON_PKT_BAD_FRAME,
        lib.XCON_PKT_NO_ROOM,
    )
    assert verdicts == tuple(range(len(OFFLOAD_VERDICTS)))
    assert lib.XCON_PKT_OUT_LEN >= 2 + len(PACKET_COUNTERS)


def test_checksum_helpers() -> None:
    assert pk.crc32c(b"123456789") == 0xE3069283  # the CRC32c check value
    assert pk.inet_checksum(bytes.fromhex("4500003c1c4640004006 0000 ac100a63ac100a0c")) == 0xB1E6


def test_offload_plain_frame(be: Backend) -> None:
    for frame in (eth(46), pk.tcp_packet(4, PAYLOAD[:100]).frame, FILL[:1]):
        verdict, frames, _ = offload(be, pk.vnet_hdr(), frame)
        assert (verdict, frames) == (PKT_FORWARDED, [frame])
    # DATA_VALID (a checksum already verified) changes nothing.
    frame = pk.udp_packet(6, PAYLOAD[:300]).frame
    assert offload(be, pk.vnet_hdr(pk.F_DATA_VALID), frame)[:2] == (PKT_FORWARDED, [frame])


@pytest.mark.parametrize(
    "make",
    [
        lambda: pk.tcp_packet(4, PAYLOAD[:1000]),
        lambda: pk.tcp_packet(6, PAYLOAD[:1001]),
        lambda: pk.udp_packet(4, PAYLOAD[:333]),
        lambda: pk.udp_packet(6, PAYLOAD[:8000]),
        lambda: pk.tcp_packet(4, PAYLOAD[:5], tags=dot1q(7), ip_options=b"\x01\x01\x01\x00"),
        lambda: pk.udp_packet(4, b""),
    ],
    ids=["tcp4", "tcp6", "udp4", "udp6-jumbo", "tcp4-inner-tag-options", "udp4-empty"],
)
def test_offload_completes_checksum(be: Backend, make) -> None:
    p = make()
    part = p.partial()
    assert part != p.frame and pk.check_frame(part)  # really partial
    verdict, frames, _ = offload(be, p.needs_csum(), part)
    assert verdict == PKT_CSUM
    assert frames == [p.frame]
    assert pk.check_frame(frames[0]) == []


def test_offload_udp_checksum_zero_is_sent_as_ffff(be: Backend) -> None:
    # Choose two payload bytes so that the UDP checksum comes out as 0.
    base = pk.udp_packet(4, b"\0\0" + PAYLOAD[:40])
    seg = bytearray(base.frame[base.l4 :])
    seg[6:8] = b"\0\0"
    pseudo = pk.pseudo_header(4, base.frame[26:30], base.frame[30:34], pk.UDP, len(seg))
    filler = ~pk.ones_sum(pseudo + bytes(seg)) & 0xFFFF
    p = pk.udp_packet(4, struct.pack(">H", filler) + PAYLOAD[:40])
    assert p.frame[p.l4 + 6 : p.l4 + 8] == b"\xff\xff"
    verdict, frames, _ = offload(be, p.needs_csum(), p.partial())
    assert (verdict, frames) == (PKT_CSUM, [p.frame])


@pytest.mark.parametrize("version", [4, 6])
def test_offload_sctp_crc32c(be: Backend, version: int) -> None:
    chunk = b"\x00\x03\x00\x10" + PAYLOAD[:12]  # a DATA chunk's worth of bytes
    p = pk.sctp_packet(version, chunk)
    verdict, frames, _ = offload(be, p.needs_csum(), p.partial())
    assert (verdict, frames) == (PKT_CSUM, [p.frame])
    assert pk.check_frame(frames[0]) == []
    # Behind an IPv6 hop-by-hop header (walked to find the protocol).
    if version == 6:
        hbh = bytes([pk.SCTP, 0, 1, 4, 0, 0, 0, 0])
        p = pk.sctp_packet(6, chunk, ext=hbh, ext_nh=0)
        assert offload(be, p.needs_csum(), p.partial())[:2] == (PKT_CSUM, [p.frame])


def check_segments(
    p: pk.Packet, frames: list[bytes], gso_size: int, tag: bytes = b""
) -> list[bytes]:
    """Every segment of super-frame ``p`` checked on its own; returns them untagged."""
    payload = p.payload
    nseg = -(-len(payload) // gso_size)
    assert len(frames) == nseg
    out = []
    for k, seg in enumerate(frames):
        if tag:
            assert seg[12:16] == tag
            seg = seg[:12] + seg[16:]
        out.append(seg)
        q = pk.locate(seg)
        assert q is not None and (q.l3, q.l4, q.hlen) == (p.l3, p.l4, p.hlen)
        assert pk.check_frame(seg) == [], k
        chunk = payload[k * gso_size : (k + 1) * gso_size]
        assert seg[p.hlen :] == chunk
        assert len(seg) == p.hlen + len(chunk)
        # Headers: as the super-frame's but for lengths, ids, checksums, seq and flags.
        f0, l3, l4 = p.frame, p.l3, p.l4
        assert seg[:l3] == f0[:l3]
        if p.version == 4:
            assert (
                struct.unpack_from(">H", seg, l3 + 4)[0]
                == (struct.unpack_from(">H", f0, l3 + 4)[0] + k) & 0xFFFF
            )
            assert seg[l3 + 6 : l3 + 10] == f0[l3 + 6 : l3 + 10]
            assert seg[l3 + 12 : l4] == f0[l3 + 12 : l4]  # addresses, options
        else:
            assert seg[l3 : l3 + 4] == f0[l3 : l3 + 4]
            assert seg[l3 + 6 : l4] == f0[l3 + 6 : l4]
        if p.proto == pk.TCP:
            seq0 = struct.unpack_from(">I", f0, l4 + 4)[0]
            assert struct.unpack_from(">I", seg, l4 + 4)[0] == (seq0 + k * gso_size) & 0xFFFFFFFF
            flags0 = f0[l4 + 13]
            expect = flags0
            if k < nseg - 1:
                expect &= ~(pk.FIN | pk.PSH)
            if k > 0:
                expect &= ~pk.CWR
            assert seg[l4 + 13] == expect, (k, hex(seg[l4 + 13]))
            assert seg[l4 + 8 : l4 + 13] == f0[l4 + 8 : l4 + 13]  # ack, data offset
            assert seg[l4 + 14 : l4 + 16] == f0[l4 + 14 : l4 + 16]  # window
            assert seg[l4 + 18 : p.hlen] == f0[l4 + 18 : p.hlen]  # urgent, options
        else:
            assert struct.unpack_from(">H", seg, l4 + 4)[0] == 8 + len(chunk)
            assert seg[l4 : l4 + 4] == f0[l4 : l4 + 4]
    assert b"".join(s[p.hlen :] for s in out) == payload
    return out


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("ecn", [False, True])
def test_gso_tcp_split(be: Backend, version: int, ecn: bool) -> None:
    flags = pk.ACK | pk.PSH | pk.FIN | pk.CWR | pk.ECE
    p = pk.tcp_packet(version, PAYLOAD[:10000], flags=flags, seq=0xFFFFF000)  # seq wraps
    verdict, frames, _ = offload(be, p.gso(1448, ecn), p.partial())
    assert verdict == PKT_SPLIT
    check_segments(p, frames, 1448)
    assert [len(f) for f in frames] == [p.hlen + 1448] * 6 + [p.hlen + 10000 - 6 * 1448]


@pytest.mark.parametrize("version", [4, 6])
def test_gso_udp_split(be: Backend, version: int) -> None:
    p = pk.udp_packet(version, PAYLOAD[:4001])
    verdict, frames, _ = offload(be, p.gso(1000), p.partial())
    assert verdict == PKT_SPLIT
    check_segments(p, frames, 1000)


def test_gso_split_restores_vlan_tag(be: Backend) -> None:
    p = pk.tcp_packet(4, PAYLOAD[:5000], flags=pk.ACK | pk.FIN)
    tag = struct.pack(">HH", 0x88A8, 0xA064)
    verdict, frames, _ = offload(be, p.gso(1400), p.partial(), 0x88A8, 0xA064)
    assert verdict == PKT_SPLIT
    untagged = check_segments(p, frames, 1400, tag)
    assert offload(be, p.gso(1400), p.partial())[1] == untagged
    # A plain frame with a tag and a partial checksum: completed, then tagged.
    q = pk.tcp_packet(6, PAYLOAD[:700])
    verdict, frames, _ = offload(be, q.needs_csum(), q.partial(), 0x8100, 5)
    assert (verdict, frames) == (PKT_CSUM, [tagged(q.frame, 5)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: pk.tcp_packet(4, PAYLOAD[:3000], ip_options=b"\x94\x04\x00\x00" * 10),
        lambda: pk.tcp_packet(4, PAYLOAD[:3000], tags=dot1q(30) + dot1q(31), options=b""),
        lambda: pk.tcp_packet(6, PAYLOAD[:3000], tags=qinq(30), options=b"\x01" * 40),
        lambda: pk.udp_packet(4, PAYLOAD[:3000], tags=dot1q(99)),
    ],
    ids=["ip-options", "two-inner-tags", "qinq-long-tcp-options", "udp-inner-tag"],
)
def test_gso_header_shapes(be: Backend, make) -> None:
    p = make()
    verdict, frames, _ = offload(be, p.gso(999), p.partial())
    assert verdict == PKT_SPLIT
    check_segments(p, frames, 999)


def test_gso_one_segment_and_exact_multiple(be: Backend) -> None:
    p = pk.tcp_packet(4, PAYLOAD[:1000], flags=pk.ACK | pk.PSH | pk.CWR)
    verdict, frames, _ = offload(be, p.gso(1448), p.partial())
    assert (verdict, frames) == (PKT_SPLIT, [p.frame])
    p = pk.tcp_packet(6, PAYLOAD[: 3 * 1440])
    verdict, frames, _ = offload(be, p.gso(1440), p.partial())
    assert verdict == PKT_SPLIT and len(frames) == 3
    check_segments(p, frames, 1440)


def test_gso_without_needs_csum_still_checksummed(be: Backend) -> None:
    """A super-frame merged by GRO carries DATA_VALID, not NEEDS_CSUM."""
    p = pk.tcp_packet(4, PAYLOAD[:4000])
    vnet = pk.vnet_hdr(pk.F_DATA_VALID, pk.GSO_TCPV4, p.hlen, 1448)
    verdict, frames, _ = offload(be, vnet, p.frame)
    assert verdict == PKT_SPLIT
    check_segments(p, frames, 1448)


def test_gso_largest_super_frame(be: Backend) -> None:
    p = pk.tcp_packet(4, PAYLOAD[: 65535 - 20 - 32])
    assert len(p.frame) == 65549
    verdict, frames, written = offload(be, p.gso(1448), p.partial(), 0x8100, 1)
    assert verdict == PKT_SPLIT and len(frames) == 46
    check_segments(p, frames, 1448, tagged(b"\0" * 12, 1)[12:16])
    # The room read_packets keeps is enough down to segments of 200 bytes, with tags.
    for version in (4, 6):
        q = pk.tcp_packet(version, PAYLOAD[: 65535 - (20 if version == 4 else 0) - 32])
        verdict, frames, written = offload(be, q.gso(200), q.partial(), 0x8100, 1, PACKET_ROOM)
        assert verdict == PKT_SPLIT and written <= PACKET_ROOM
        check_segments(q, frames, 200, tagged(b"\0" * 12, 1)[12:16])
        assert offload(be, q.gso(100), q.partial(), 0, 0, PACKET_ROOM)[0] == PKT_NO_ROOM


def test_gso_unsupported_dropped(be: Backend) -> None:
    t4 = pk.tcp_packet(4, PAYLOAD[:3000])
    t6 = pk.tcp_packet(6, PAYLOAD[:3000])
    u4 = pk.udp_packet(4, PAYLOAD[:3000])
    hbh = bytes([pk.TCP, 0, 1, 4, 0, 0, 0, 0])
    t6x = pk.tcp_packet(6, PAYLOAD[:3000], ext=hbh, ext_nh=0)
    frag = bytearray(t4.frame)
    frag[20:22] = b"\x20\x00"  # more fragments
    cases = [
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, 2, 0, 1000, t4.l4, 16), t4.frame),  # unknown type
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, pk.GSO_UDP, 0, 1000, u4.l4, 6), u4.frame),  # UFO
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, 0x7F, 0, 1000, t4.l4, 16), t4.frame),
        (t4.gso(1000)[:1] + bytes([pk.GSO_TCPV6]) + t4.gso(1000)[2:], t4.frame),  # v6 type, v4
        (t6.gso(1000)[:1] + bytes([pk.GSO_TCPV4]) + t6.gso(1000)[2:], t6.frame),
        (t4.gso(1000)[:1] + bytes([pk.GSO_UDP_L4]) + t4.gso(1000)[2:], t4.frame),  # UDP on TCP
        (u4.gso(1000)[:1] + bytes([pk.GSO_TCPV4]) + u4.gso(1000)[2:], u4.frame),  # TCP on UDP
        (u4.gso(1000)[:1] + bytes([pk.GSO_UDP_L4 | pk.GSO_ECN]) + u4.gso(1000)[2:], u4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, pk.GSO_TCPV6, 0, 1000, t6x.l4, 16), t6x.frame),
        (t4.gso(1000), bytes(frag)),
        (t4.gso(1000), eth(3000, 0x88B5)),  # not IP
        (t4.gso(1000), eth(3000, tags=dot1q(1) + dot1q(2) + dot1q(3))),  # three inner tags
    ]
    for i, (vnet, frame) in enumerate(cases):
        assert offload(be, vnet, frame)[:2] == (PKT_UNSUPPORTED, []), i


def test_offload_malformed_dropped(be: Backend) -> None:
    t4 = pk.tcp_packet(4, PAYLOAD[:3000])
    u6 = pk.udp_packet(6, PAYLOAD[:300])
    short = pk.tcp_packet(4, b"")
    n = len(t4.frame)
    cases = [
        # checksum offsets outside the frame
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, csum_start=n, csum_offset=0), t4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, csum_start=n - 1, csum_offset=0), t4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, csum_start=n - 2, csum_offset=1), t4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, csum_start=0xFFFF, csum_offset=0xFFFF), t4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, csum_start=0, csum_offset=n), t4.frame),
        # super-frames
        (t4.gso(0), t4.frame),  # gso_size 0
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, pk.GSO_TCPV4, 0, 1000, t4.l4 + 1, 16), t4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, pk.GSO_TCPV4, 0, 1000, t4.l4, 6), t4.frame),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, pk.GSO_UDP_L4, 0, 1000, u6.l4, 16), u6.frame),
        (t4.gso(1000), t4.frame[: t4.l4 + 19]),  # TCP header cut
        (t4.gso(1000), t4.frame[: t4.hlen - 1]),  # TCP options cut
        (t4.gso(1000), t4.frame[: t4.l3 + 19]),  # IPv4 header cut
        (u6.gso(1000), u6.frame[: u6.l3 + 39]),  # IPv6 header cut
        (short.gso(1000), short.frame),  # no payload
        (t4.gso(1000), t4.frame[:14] + b"\x46" + t4.frame[15:]),  # IHL 6, options not there
        (t4.gso(1000), t4.frame[:14] + b"\x44" + t4.frame[15:]),  # IHL 4
        (t4.gso(1000), t4.frame[:14] + b"\x65" + t4.frame[15:]),  # version 6 in IPv4
    ]
    doff = bytearray(t4.frame)
    doff[t4.l4 + 12] = 0x40  # data offset 4 words
    cases.append((t4.gso(1000), bytes(doff)))
    for i, (vnet, frame) in enumerate(cases):
        assert offload(be, vnet, frame)[:2] == (PKT_MALFORMED, []), i


def test_offload_bad_frames_dropped(be: Backend) -> None:
    assert offload(be, pk.vnet_hdr(), b"")[:2] == (PKT_BAD_FRAME, [])
    assert offload(be, pk.vnet_hdr(), b"\1" * 11, 0x8100, 1)[:2] == (PKT_BAD_FRAME, [])
    assert offload(be, pk.vnet_hdr(), b"\1" * 12, 0x8100, 1)[:2] == (
        PKT_FORWARDED,
        [b"\1" * 12 + b"\x81\x00\x00\x01"],
    )
    big = b"\1" * (MAX_FRAME - 3)
    assert offload(be, pk.vnet_hdr(), big, 0x8100, 1)[:2] == (PKT_BAD_FRAME, [])
    assert offload(be, pk.vnet_hdr(), big)[:2] == (PKT_FORWARDED, [big])
    assert offload(be, pk.vnet_hdr(), big + b"\1" * 4)[:2] == (PKT_BAD_FRAME, [])


def test_offload_room(be: Backend) -> None:
    p = pk.tcp_packet(4, PAYLOAD[:3000])
    need = 3 * (4 + 4 + p.hlen) + 3000
    for room, verdict in ((need - 1, PKT_NO_ROOM), (need, PKT_SPLIT)):
        assert offload(be, p.gso(1000), p.partial(), 0x8100, 9, room)[0] == verdict
    q = pk.udp_packet(6, PAYLOAD[:100])
    need = 4 + len(q.frame)
    assert offload(be, q.needs_csum(), q.partial(), room=need - 1)[0] == PKT_NO_ROOM
    assert offload(be, q.needs_csum(), q.partial(), room=need)[:2] == (PKT_CSUM, [q.frame])


def test_offload_argument_checks(be: Backend) -> None:
    frame = eth(46)
    dst = bytearray(200)
    with pytest.raises(ValueError):
        be.offload_frame(b"\0" * 9, frame, dst, 0, 200)
    with pytest.raises(ValueError):
        be.offload_frame(b"\0" * 12, frame, dst, 0, 200)
    with pytest.raises(ValueError):
        be.offload_frame(pk.vnet_hdr(), frame, dst, 0, 201)
    with pytest.raises(ValueError):
        be.offload_frame(pk.vnet_hdr(), frame, dst, 0, 200, 0x10000, 0)
    with pytest.raises(ValueError):
        be.offload_frame(pk.vnet_hdr(), frame, dst, 0, 200, 0x8100, -1)
    with pytest.raises(BufferError):
        be.offload_frame(pk.vnet_hdr(), frame, bytes(200), 0, 200)
    with mmap.mmap(-1, 4096) as mm:
        assert be.offload_frame(memoryview(pk.vnet_hdr()), bytearray(frame), mm, 10, 4096) == (
            10 + 4 + len(frame),
            1,
            PKT_FORWARDED,
        )


# -- both backends agree byte for byte, whatever the header and frame -------------------


@st.composite
def offload_cases(draw: st.DrawFn) -> tuple[bytes, bytes, int, int, int]:
    version = draw(st.sampled_from([4, 6]))
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "raw"]))
    size = draw(st.one_of(st.integers(0, 3000), st.sampled_from([0, 1, 65000])))
    tags = draw(st.sampled_from([b"", dot1q(5), qinq(6) + dot1q(7)]))
    if kind == "tcp":
        opts = draw(st.sampled_from([b"", pk.TS_OPTIONS, b"\x01" * 40]))
        ipo = draw(st.sampled_from([b"", b"\x01\x01\x01\x00"])) if version == 4 else b""
        p = pk.tcp_packet(version, PAYLOAD[:size], options=opts, ip_options=ipo, tags=tags)
    elif kind == "udp":
        p = pk.udp_packet(version, PAYLOAD[:size], tags=tags)
    elif kind == "sctp":
        p = pk.sctp_packet(version, PAYLOAD[: size % 2000], tags=tags)
    else:
        p = pk.Packet(eth(size % 3000), 14, 14, 4, 0, 14)
    frame = bytearray(p.partial() if kind != "raw" else p.frame)
    # Damage: cut the frame, or flip bytes in the headers.
    how = draw(st.integers(0, 5))
    if how == 0 and frame:
        del frame[draw(st.integers(0, len(frame) - 1)) :]
    elif how == 1 and frame:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, min(len(frame), p.hlen + 4) - 1))
            frame[at] = draw(st.integers(0, 255))
    ln = len(frame)
    near = st.one_of(
        st.integers(0, 0xFFFF),
        st.sampled_from([0, 1, 2, 6, 8, 16, p.l4, ln, ln - 1, ln - 2]).map(lambda x: x & 0xFFFF),
    )
    flags = draw(st.sampled_from([0, 1, 1, 2, 3, 0xFF]))
    gso_type = draw(
        st.one_of(st.sampled_from([0, 0, 1, 4, 5, 0x81, 0x84, 0x85, 3]), st.integers(0, 255))
    )
    gso_size = draw(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 1, 7, 200, 1448])))
    if draw(st.booleans()) and kind != "raw":
        vnet = p.gso(max(gso_size, 1)) if draw(st.booleans()) else p.needs_csum()
    else:
        vnet = pk.vnet_hdr(flags, gso_type, draw(near), gso_size, draw(near), draw(near))
    tpid = draw(st.sampled_from([0, 0, 0x8100, 0x88A8]))
    tci = draw(st.integers(0, 0xFFFF))
    room = draw(st.one_of(st.just(3 * 70000), st.integers(0, 3 * ln + 2000)))
    return vnet, bytes(frame), tpid, tci, room


def run_offload(be: Backend, case) -> tuple[tuple[int, int, int], bytes]:
    vnet, frame, tpid, tci, room = case
    dst = bytearray(b"\x5a" * (room + 7))
    res = be.offload_frame(vnet, frame, dst, 3, 3 + room, tpid, tci)
    return res, bytes(dst)


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=offload_cases())
def test_offload_agrees(case) -> None:
    nat = _native_backend()
    py = native.load_backend("python")
    got = run_offload(nat, case)
    assert got == run_offload(py, case)
    (written, nframes, verdict), dst = got
    frames = split_frames(dst[3:written])
    assert len(frames) == nframes
    assert all(0 < len(f) <= MAX_FRAME for f in frames)
    assert dst[:3] == b"\x5a" * 3 and dst[written:] == b"\x5a" * (len(dst) - written)
    if verdict == PKT_SPLIT:
        # Whatever the headers said, every segment leaves with right lengths and checksums.
        for f in frames:
            assert pk.check_frame(f if case[2] == 0 else f[:12] + f[16:]) == []


# -- read_packets / write_packets over a datagram socket standing in for the packet socket --


def datagrams(*items: tuple[bytes, bytes]) -> list[bytes]:
    return [vnet + frame for vnet, frame in items]


def test_read_packets_offloads(be: Backend, seqpair) -> None:
    a, b = seqpair
    plain = eth(46)
    csum = pk.udp_packet(6, PAYLOAD[:500])
    sup = pk.tcp_packet(4, PAYLOAD[:20000], flags=pk.ACK | pk.PSH)
    sup6 = pk.udp_packet(6, PAYLOAD[:3000])
    bad = pk.tcp_packet(4, PAYLOAD[:100])
    sent = datagrams(
        (pk.vnet_hdr(), plain),
        (csum.needs_csum(), csum.partial()),
        (sup.gso(1448), sup.partial()),
        (pk.vnet_hdr(pk.F_NEEDS_CSUM, 9, 0, 100, 34, 16), bad.frame),  # unsupported
        (bad.gso(0), bad.frame),  # malformed
        (pk.vnet_hdr(), b""),  # empty
        (b"\0" * 5, b""),  # shorter than the header
        (sup6.gso(1200), sup6.partial()),
    )
    for d in sent:
        b.send(d)
    buf = bytearray(b"\xee" * 400_000)
    pos, nframes, err, counters = be.read_packets(a.fileno(), buf, 16, len(buf) - 8)
    assert err == 0
    assert counters == (0, 0, 1, 2, 1, 1, 2)
    assert dict(zip(PACKET_COUNTERS, counters, strict=True))["gso_split"] == 2
    frames = split_frames(bytes(buf[16:pos]))
    assert nframes == len(frames) == 1 + 1 + 14 + 3
    assert frames[0] == plain and frames[1] == csum.frame
    check_segments(sup, frames[2:16], 1448)
    check_segments(sup6, frames[16:], 1200)
    assert buf[:16] == b"\xee" * 16 and buf[pos:] == b"\xee" * (len(buf) - pos)
    # Dry now: nothing read, no error.
    assert be.read_packets(a.fileno(), buf, 0, len(buf)) == (0, 0, 0, (0,) * 7)


def test_read_packets_same_as_offload_frame(be: Backend, seqpair) -> None:
    a, b = seqpair
    p = pk.tcp_packet(6, PAYLOAD[:9000], flags=pk.ACK | pk.FIN)
    b.send(p.gso(1000) + p.partial())
    buf = bytearray(200_000)
    pos, nframes, err, _ = be.read_packets(a.fileno(), buf, 0, len(buf))
    verdict, frames, written = offload(be, p.gso(1000), p.partial())
    assert (err, pos, verdict) == (0, written, PKT_SPLIT)
    assert split_frames(bytes(buf[:pos])) == frames


def test_read_packets_truncated(be: Backend, seqpair) -> None:
    a, b = seqpair
    b.send(pk.vnet_hdr() + b"\1" * (MAX_FRAME + 1))
    b.send(pk.vnet_hdr() + b"\2" * MAX_FRAME)
    buf = bytearray(2 * PACKET_ROOM)
    pos, nframes, err, counters = be.read_packets(a.fileno(), buf, 0, len(buf))
    assert (pos, nframes, err, counters) == (4 + MAX_FRAME, 1, 0, (1, 0, 0, 0, 0, 0, 0))
    assert buf[4:pos] == b"\2" * MAX_FRAME


def test_read_packets_room_and_cap(be: Backend, seqpair) -> None:
    a, b = seqpair
    for i in range(5):
        b.send(pk.vnet_hdr() + eth(46 + i))
    small = bytearray(PACKET_ROOM - 1)
    assert be.read_packets(a.fileno(), small, 0, len(small)) == (0, 0, errno.ENOBUFS, (0,) * 7)
    buf = bytearray(PACKET_ROOM + 150)
    # Packets are read while PACKET_ROOM bytes are left: three of them here.
    pos, n, err, _ = be.read_packets(a.fileno(), buf, 0, len(buf))
    assert (pos, n, err) == (64 + 65 + 66, 3, 0)
    assert split_frames(bytes(buf[:pos])) == [eth(46), eth(47), eth(48)]
    big = bytearray(3 * PACKET_ROOM)
    assert be.read_packets(a.fileno(), big, 0, len(big), 0) == (0, 0, 0, (0,) * 7)
    assert be.read_packets(a.fileno(), big, 0, len(big), 1) == (67, 1, 0, (0,) * 7)
    pos, n, err, _ = be.read_packets(a.fileno(), big, 0, len(big))
    assert split_frames(bytes(big[:pos])) == [eth(50)]


def test_read_packets_without_vnet_hdr(be: Backend, seqpair) -> None:
    a, b = seqpair
    p = pk.tcp_packet(4, PAYLOAD[:3000])
    b.send(p.partial())  # taken as it is: nothing to tell it needs work
    b.send(b"")  # an empty datagram: dropped as bad_frame
    buf = bytearray(2 * PACKET_ROOM)
    pos, n, err, counters = be.read_packets(a.fileno(), buf, 0, len(buf), vnet_hdr=False)
    assert (n, err, counters) == (1, 0, (0, 0, 0, 0, 0, 0, 1))
    assert split_frames(bytes(buf[:pos])) == [p.partial()]


def test_read_packets_errors(be: Backend, seqpair) -> None:
    buf = bytearray(PACKET_ROOM)
    r, w = os.pipe()
    try:
        assert be.read_packets(r, buf, 0, len(buf)) == (0, 0, errno.ENOTSOCK, (0,) * 7)
    finally:
        os.close(r)
        os.close(w)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.setblocking(False)
        assert be.read_packets(s.fileno(), buf, 0, len(buf))[2] in (errno.ENOTCONN, errno.EINVAL)
    finally:
        s.close()
    with pytest.raises(BufferError):
        be.read_packets(seqpair[0].fileno(), bytes(PACKET_ROOM), 0, PACKET_ROOM)
    with pytest.raises(ValueError):
        be.read_packets(seqpair[0].fileno(), buf, 0, len(buf) + 1)
    with pytest.raises(ValueError):
        be.read_packets(seqpair[0].fileno(), buf, 0, len(buf), -1)


def test_write_packets(be: Backend, seqpair) -> None:
    a, b = seqpair
    frames = [eth(46), eth(9018 - 14), FILL[:1]]
    buf = b"\x99" * 3 + encode_frames(frames) + b"\0\0\0\0" + wire(eth(47)) + b"\0\0\1"
    res = be.write_packets(a.fileno(), buf, 3, len(buf))
    assert res == (len(buf) - 3, 4, 1, 0)
    assert [b.recv(100_000) for _ in range(4)] == [bytes(10) + f for f in frames + [eth(47)]]
    b.close()
    assert be.write_packets(a.fileno(), buf, 3, len(buf)) == (3, 0, 0, errno.EPIPE)


def test_write_packets_eagain_resumes(be: Backend, seqpair) -> None:
    a, b = seqpair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    frames = [eth(1486 - i) for i in range(200)]
    buf = encode_frames(frames)
    pos = rounds = 0
    got: list[bytes] = []
    while pos < len(buf):
        pos, _n, nd, err = be.write_packets(a.fileno(), buf, pos, len(buf))
        assert (nd, err) == (0, 0)
        rounds += 1
        got += waiting(b)
    assert rounds > 1
    assert got == [bytes(10) + f for f in frames]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(offload_cases(), min_size=1, max_size=6))
def test_read_packets_agrees(cases) -> None:
    """The same datagrams through read_packets on both backends: same results."""
    outcomes = []
    for impl in (native.load_backend("python"), _native_backend()):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            a.setblocking(False)
            for vnet, frame, _tpid, _tci, _room in cases:
                b.send(vnet + frame)
            buf = bytearray(b"\x77" * (PACKET_ROOM + 80_000))
            res = impl.read_packets(a.fileno(), buf, 5, len(buf))
            outcomes.append((res, bytes(buf)))
        finally:
            a.close()
            b.close()
    assert outcomes[0] == outcomes[1]
    (pos, nframes, err, counters), buf = outcomes[0]
    assert err == 0
    assert len(split_frames(buf[5:pos])) == nframes
