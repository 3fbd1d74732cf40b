"""Capture without sockets: the pcapng blocks field by field against the
format, ``capture_frames`` on both backends (and against the independent
Python encoder), the recording model through P2PLink with fake ports, the
bounded buffer (drops counted, the link untouched), filters, ring files, the
manager's taps."""

from __future__ import annotations

import errno
import os
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcon.app import Xcon
from xcon.bridges.p2p import P2PLink
from xcon.capture import bpf, pcapng, sinks
from xcon.capture.capture import Capture, CaptureTap
from xcon.capture.manager import MAX_FAILED, Captures, file_name
from xcon.capture.options import CaptureOptions
from xcon.capture.sinks import FileSink, ring_name
from xcon.errors import BadRequest, Conflict, NotFound
from xcon.framing import iter_frames
from xcon.limits import MAX_FRAME
from xcon.linkspec import parse_end
from xcon.native.abi import EPB_FIXED
from xcon.testing import pcapng as reader
from xcon.testing.backends import get_backend
from xcon.testing.errors import one_line_error
from xcon.testing.fakeport import FakeEngine, FakePort
from xcon.testing.frames import encode_frames, ether, numbered, tagged
from xcon.testing.strategies import PROPERTY, frame_streams

BACKENDS = pytest.mark.parametrize("backend", ["python", "native"])
need_libpcap = pytest.mark.skipif(
    not bpf.available(), reason="libpcap not installed (Debian libpcap0.8)"
)


# -- the blocks, field by field -----------------------------------------------------------


def test_section_header_block_fields():
    b = pcapng.section_header("xcon 1")
    btype, total, magic, major, minor, length = struct.unpack_from("<IIIHHq", b)
    assert (btype, total, magic, major, minor, length) == (
        0x0A0D0D0A,
        len(b),
        0x1A2B3C4D,
        1,
        0,
        -1,
    )
    assert b[24:28] == struct.pack("<HH", 4, 6) and b[28:34] == b"xcon 1" and b[34:36] == b"\0\0"
    assert b[36:40] == b"\0\0\0\0"  # opt_endofopt
    assert struct.unpack_from("<I", b, len(b) - 4)[0] == len(b) and len(b) % 4 == 0


def test_interface_description_block_fields():
    b = pcapng.interface_description("vr1/1", 128)
    btype, total, link, reserved, snaplen = struct.unpack_from("<IIHHI", b)
    assert (btype, total, link, reserved, snaplen) == (1, len(b), 1, 0, 128)
    # if_name: code 2, 5 bytes, padded to 8
    assert b[16:20] == struct.pack("<HH", 2, 5) and b[20:25] == b"vr1/1" and b[25:28] == b"\0" * 3
    # if_tsresol: code 9, 1 byte: 9 (10^-9 s)
    assert b[28:32] == struct.pack("<HH", 9, 1) and b[32:36] == b"\x09\0\0\0"
    assert b[36:40] == b"\0" * 4 and struct.unpack_from("<I", b, 40)[0] == len(b) == 44
    assert pcapng.interface_description("x")[12:16] == struct.pack("<I", pcapng.NO_SNAPLEN)


def test_enhanced_packet_block_fields():
    frame = bytes(range(61))
    ts = 0x0123456789ABCDEF
    b = pcapng.enhanced_packet(3, ts, frame, 1500, pcapng.INBOUND, "dropped by xcon: runt")
    btype, total, if_id, hi, lo, cap, orig = struct.unpack_from("<7I", b)
    assert (btype, total, if_id, cap, orig) == (6, len(b), 3, 61, 1500)
    assert (hi << 32) | lo == ts
    assert b[28:89] == frame and b[89:92] == b"\0\0\0"
    c = b"dropped by xcon: runt"
    assert b[92:96] == struct.pack("<HH", 1, len(c)) and b[96 : 96 + len(c)] == c
    o = 96 + ((len(c) + 3) & ~3)
    assert b[o : o + 8] == struct.pack("<HHI", 2, 4, 1)
    assert b[o + 8 : o + 12] == b"\0" * 4 and struct.unpack_from("<I", b, o + 12)[0] == len(b)


def test_interface_statistics_block_fields():
    b = pcapng.interface_statistics(
        1, 5 << 32 | 7, start_ns=3, received=10, delivered=6, dropped=3, accepted=9
    )
    btype, total, if_id, hi, lo = struct.unpack_from("<5I", b)
    assert (btype, total, if_id, hi, lo) == (5, len(b), 1, 5, 7)
    opts = {}
    pos = 20
    while True:
        code, n = struct.unpack_from("<HH", b, pos)
        if code == 0:
            break
        opts[code] = b[pos + 4 : pos + 4 + n]
        pos += 4 + ((n + 3) & ~3)
    assert opts[2] == struct.pack("<II", 0, 3) and opts[3] == struct.pack("<II", 5, 7)
    u64 = {k: struct.unpack("<Q", v)[0] for k, v in opts.items() if k in (4, 6, 7, 8)}
    assert u64 == {4: 10, 6: 9, 7: 3, 8: 6}


# -- capture_frames: both backends ----------------------------------------------------------


def run_capture(be, case):
    buf, start, end, dst_start, dst_size, flags, snaplen, ts = case
    dst = bytearray(b"\xa5" * dst_size)
    res = be.capture_frames(
        memoryview(buf), start, end, dst, dst_start, dst_size, 2, flags, ts, snaplen
    )
    return res, bytes(dst)


@st.composite
def capture_cases(draw):
    buf, start, end = draw(frame_streams())
    dst_start = draw(st.integers(0, 16))
    plenty = dst_start + 2 * (end - start) + 64 * 64
    dst_size = plenty if draw(st.booleans()) else draw(st.integers(dst_start, plenty))
    flags = draw(st.sampled_from([0, 1, 2, 0xFFFFFFFF]))
    snaplen = draw(st.sampled_from([0, 1, 14, 63, 64, 65, 1500, MAX_FRAME]))
    ts = draw(st.integers(0, (1 << 64) - 1))
    return buf, start, end, dst_start, dst_size, flags, snaplen, ts


@PROPERTY
@given(case=capture_cases())
def test_capture_frames_backends_agree(case):
    assert run_capture(get_backend("native"), case) == run_capture(get_backend("python"), case)


@BACKENDS
@PROPERTY
@given(case=capture_cases())
def test_capture_frames_match_the_independent_encoder(backend, case):
    buf, start, end, dst_start, dst_size, flags, snaplen, ts = case
    (consumed, written, n), dst = run_capture(get_backend(backend), case)
    want = b""
    pos = start
    count = 0
    for off, length in iter_frames(buf, start, end):
        cap = min(length, snaplen) if snaplen else length
        blk = pcapng.enhanced_packet(2, ts, buf[off : off + cap], length, flags)
        if dst_start + len(want) + len(blk) > dst_size:
            break
        assert (
            len(blk)
            == pcapng.epb_size(cap, flags)
            == EPB_FIXED + ((cap + 3) & ~3) + (12 if flags else 0)
        )
        want += blk
        pos = off + length
        count += 1
    assert (consumed, written, n) == (pos, dst_start + len(want), count)
    assert dst[dst_start:written] == want
    assert dst[:dst_start] == b"\xa5" * dst_start and dst[written:] == b"\xa5" * (
        dst_size - written
    )


@BACKENDS
def test_capture_frames_checks_its_arguments(backend):
    be = get_backend(backend)
    src = encode_frames([ether(b"x" * 50)])
    with pytest.raises(ValueError):
        be.capture_frames(src, 0, len(src) + 1, bytearray(100), 0, 100, 0, 0, 0)
    with pytest.raises(ValueError):
        be.capture_frames(src, 0, len(src), bytearray(100), 0, 101, 0, 0, 0)
    with pytest.raises(ValueError):
        be.capture_frames(src, 0, len(src), bytearray(100), 0, 100, 1 << 32, 0, 0)
    with pytest.raises(ValueError):
        be.capture_frames(src, 0, len(src), bytearray(100), 0, 100, 0, 0, -1)
    with pytest.raises(BufferError):
        be.capture_frames(src, 0, len(src), bytes(100), 0, 100, 0, 0, 0)


# -- the recording model through a link -------------------------------------------------------


class MemorySink:
    """A sink keeping everything in memory; ``hold`` keeps the chunks (a stalled disk)."""

    def __init__(self, hold: bool = False) -> None:
        self.data = bytearray()
        self.hold = hold
        self.held: list[bytearray] = []
        self.closed = False

    def attach(self, capture):
        self.capture = capture
        self.data += capture.header()

    def put(self, chunk, n):
        self.data += chunk[:n]
        if self.hold:
            self.held.append(chunk)
        else:
            self.capture.release(chunk)

    def flush(self):
        pass

    def close(self):
        self.data += self.capture.statistics()
        self.closed = True

    def describe(self):
        return {"target": "memory"}


def captured(engine, link, options=None, sink=None, **kw):
    options = options or CaptureOptions()
    sink = sink or MemorySink()
    cap = Capture(engine, "a--b", ["a", "b"], options, sink, **kw)
    caps = [cap]
    for d in link.directions():
        d.flow.set_tap(CaptureTap(caps, out_if=d.to_end, in_if=d.from_end))
    return cap, sink


@pytest.fixture
def engine():
    return FakeEngine()


def test_forwarded_frames_are_recorded_on_the_receiving_end_outbound(engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    cap, sink = captured(engine, link)
    fa = [numbered(i, 64 + i) for i in range(5)]
    fb = [numbered(100 + i, 1500) for i in range(3)]
    a.feed_frames(fa)
    b.feed_frames(fb)
    a.feed_frames(fa[:1])
    cap.stop()
    got = reader.read(bytes(sink.data))
    assert [i["name"] for i in got.interfaces] == ["a", "b"]
    seen = [(p.interface, p.flags, p.data, p.orig_len) for p in got.packets]
    assert seen == (
        [(1, 2, f, len(f)) for f in fa] + [(0, 2, f, len(f)) for f in fb] + [(1, 2, fa[0], 64)]
    )
    assert b.sent_frames() == fa + fa[:1] and a.sent_frames() == fb
    ts = [p.ts for p in got.packets]
    assert ts == sorted(ts)
    assert len(set(ts[:5])) == 1  # one batch, one timestamp
    st = {s.fields["interface"]: s.fields for s in got.statistics}
    assert st[1]["ifrecv"] == st[1]["usrdeliv"] == 6 and st[0]["usrdeliv"] == 3
    assert "filteraccept" not in st[0]


def test_vlan_rewrite_recorded_after_it_and_drops_with_their_reason_in_order(engine):
    trunk, access = FakePort(engine, "trunk"), FakePort(engine, "access")
    link = P2PLink(trunk, access, vlan=7, access=access)
    link.start()
    cap, sink = captured(engine, link)
    plain = ether(b"p" * 50)
    trunk.feed_frames([tagged(plain, 7), plain, tagged(plain, 8), plain[:10], tagged(plain, 7)])
    access.feed_frames([plain, b"tiny"])
    cap.stop()
    got = reader.read(bytes(sink.data))
    seen = [(p.interface, p.flags, p.data, p.comment) for p in got.packets]
    assert seen == [
        (1, 2, plain, None),
        (0, 1, plain, "dropped by xcon: untagged"),
        (0, 1, tagged(plain, 8), "dropped by xcon: other_vlan"),
        (0, 1, plain[:10], "dropped by xcon: runt"),
        (1, 2, plain, None),
        (0, 2, tagged(plain, 7), None),
        (1, 1, b"tiny", "dropped by xcon: runt"),
    ]


def test_drops_of_a_pulled_link_and_a_down_port_are_recorded_unless_off(engine):
    for drops in (True, False):
        a, b = FakePort(engine, "a"), FakePort(engine, "b")
        link = P2PLink(a, b)
        link.start()
        cap, sink = captured(engine, link, CaptureOptions(drops=drops))
        link.set_admin(False)
        a.feed_frames([numbered(1, 80)])
        link.set_admin(True)
        b.set_down()
        engine.run_soon()
        a.feed_frames([numbered(2, 90)])
        cap.stop()
        got = reader.read(bytes(sink.data))
        comments = [(p.interface, p.comment) for p in got.packets]
        if drops:
            assert comments == [
                (0, "dropped by xcon: admin_down"),
                (0, "dropped by xcon: port_down"),
            ]
        else:
            assert comments == []


def test_snaplen_cuts_frames_and_keeps_their_length(engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    cap, sink = captured(engine, link, CaptureOptions(snaplen=64))
    frames = [numbered(1, 60), numbered(2, 64), numbered(3, 65), numbered(4, 9000)]
    a.feed_frames(frames)
    cap.stop()
    got = reader.read(bytes(sink.data))
    assert [(p.caplen, p.orig_len, p.data) for p in got.packets] == [
        (min(len(f), 64), len(f), f[:64]) for f in frames
    ]
    assert got.interfaces[0]["snaplen"] == 64


def test_a_stalled_sink_makes_the_capture_drop_and_the_link_lose_nothing(engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    sink = MemorySink(hold=True)
    cap, _ = captured(engine, link, sink=sink, chunks=2, chunk=16 * 1024)
    frames = [numbered(i, 1000) for i in range(100)]
    for i in range(0, 100, 10):
        a.feed_frames(frames[i : i + 10])
    assert b.sent_frames() == frames  # forwarding untouched
    assert cap.kept[1] + cap.lost[1] == 100 and cap.lost[1] > 0
    assert len(sink.held) == 2 and not cap.free and not cap.spare  # the pool's bound
    # the writer catches up: chunks come back and recording resumes
    for chunk in sink.held:
        cap.release(chunk)
    sink.hold = False
    a.feed_frames([numbered(500, 100)])
    before = cap.kept[1]
    cap.stop()
    assert cap.kept[1] == before
    got = reader.read(bytes(sink.data))
    assert got.packets[-1].data == numbered(500, 100)
    st = {s.fields["interface"]: s.fields for s in got.statistics}
    assert st[1]["osdrop"] == cap.lost[1] and st[1]["ifrecv"] == 101


def test_a_partly_filled_chunk_goes_out_on_the_flush_timer(engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    cap, sink = captured(engine, link)
    header = len(sink.data)
    a.feed_frames([numbered(1, 100)])
    assert len(sink.data) == header  # still in the current chunk
    engine.advance(0.06)
    assert len(sink.data) == header + pcapng.epb_size(100, pcapng.OUTBOUND)
    cap.stop()
    engine.advance(1)  # the timer is gone with the capture
    assert sink.closed


@need_libpcap
def test_filter_keeps_matching_frames_and_counts_the_rest(engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    cap, sink = captured(engine, link, CaptureOptions(filter="greater 500"))
    frames = [numbered(i, 100 if i % 3 else 600) for i in range(9)]
    a.feed_frames(frames)
    cap.stop()
    got = reader.read(bytes(sink.data))
    assert [p.data for p in got.packets] == frames[0::3]
    st = {s.fields["interface"]: s.fields for s in got.statistics}
    assert (st[1]["ifrecv"], st[1]["filteraccept"], st[1]["usrdeliv"]) == (9, 3, 3)


@need_libpcap
def test_bad_filter_is_one_line_from_libpcap():
    assert "tcp port" in one_line_error(bpf.FilterError, bpf.compile_filter, "tcp port")


def test_no_libpcap_refuses_filters_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(bpf, "_lib", None)
    monkeypatch.setattr(bpf, "_cache", type(bpf._cache)())
    monkeypatch.setattr(bpf, "LIBPCAP_NAMES", ("libpcap-not-here.so.9",))
    with pytest.raises(bpf.FilterUnavailable) as e:
        bpf.compile_filter("tcp")
    assert "libpcap0.8" in str(e.value)
    assert not bpf.available()


# -- files -------------------------------------------------------------------------------


def test_ring_names():
    assert ring_name("/d/cap.pcapng", 3) == "/d/cap-00003.pcapng"
    assert ring_name("/d/cap", 12) == "/d/cap-00012"
    assert ring_name("/d/.hidden", 1) == "/d/.hidden-00001"
    assert file_name("vr1/1--vr2/1:10") == "vr1_1--vr2_1_10.pcapng"


def test_file_sink_rotates_by_size_keeps_n_and_each_file_stands_alone(tmp_path, engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    sink = FileSink(str(tmp_path / "r.pcapng"), size=40_000, files=2)
    cap, _ = captured(engine, link, CaptureOptions(size=40_000, files=2), sink=sink, chunk=16384)
    n = 0
    for _ in range(20):
        a.feed_frames([numbered(n + i, 1000) for i in range(10)])
        n += 10
        engine.advance(0.06)
        # the writer thread gives chunks back: wait for it so nothing is dropped
        for _ in range(200):
            if len(cap.free) + cap.spare + (cap.cur is not None) == 64:
                break
            time.sleep(0.005)
    cap.stop()
    assert sink.join(5)
    assert cap.drops == 0
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names == [os.path.basename(p) for p in sink.files]
    seqs: list[int] = []
    for name in names:
        assert os.path.getsize(tmp_path / name) <= 40_000
        got = reader.read((tmp_path / name).read_bytes())
        assert len(got.interfaces) == 2 and len(got.statistics) == 2
        seqs += [int.from_bytes(p.data[14:22], "big") for p in got.packets]
    assert seqs == list(range(seqs[0], 200))


def test_file_sink_wakes_its_writer_per_batch_and_writes_the_rest_on_flush(tmp_path, engine):
    """Full chunks wait on the loop's side until WAKE_CHUNKS of them or the
    capture's flush timer; nothing is lost either way, and the order is kept."""
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    sink = FileSink(str(tmp_path / "f.pcapng"))
    handed: list[int] = []  # chunks per wake-up of the writer thread
    q = sink._q

    class Counting:
        def put(self, item):
            if item is not None:
                handed.append(len(item))
            q.put(item)

        def get(self, timeout=None):
            return q.get(timeout=timeout)

        def get_nowait(self):
            return q.get_nowait()

    sink._q = Counting()  # type: ignore[assignment]
    cap, _ = captured(engine, link, sink=sink, chunk=16384)
    per_chunk = 16384 // pcapng.epb_size(1000, pcapng.OUTBOUND)
    # two full chunks: they wait for the flush timer
    a.feed_frames([numbered(i, 1000) for i in range(2 * per_chunk + 1)])
    assert handed == [] and len(sink._pending) == 2
    engine.advance(0.06)
    assert handed == [3] and not sink._pending  # with the partly filled one
    # many full chunks: handed over WAKE_CHUNKS at a time, without the timer
    first = 2 * per_chunk + 1
    more = per_chunk * (2 * sinks.WAKE_CHUNKS + 1)
    a.feed_frames([numbered(first + i, 1000) for i in range(more)])
    assert handed == [3, sinks.WAKE_CHUNKS, sinks.WAKE_CHUNKS]
    cap.stop()
    assert sink.join(5)
    got = reader.read((tmp_path / "f.pcapng").read_bytes())
    seqs = [int.from_bytes(p.data[14:22], "big") for p in got.packets]
    assert seqs == list(range(first + more)) and cap.drops == 0


def test_the_chunk_given_back_last_is_used_first(engine):
    """Reusing the chunk freed last keeps the capture's working set in the cache."""
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    cap, _ = captured(engine, link, sink=MemorySink(hold=True))
    spare = bytearray(cap.chunk_size)
    cap.release(spare)
    a.feed_frames([numbered(1, 100)])
    assert cap.cur is spare
    cap.stop()


# -- the manager ---------------------------------------------------------------------------


@pytest.fixture
def app(engine):
    x = Xcon(engine=engine, health_path=None)  # type: ignore[arg-type]
    x.make_port = lambda services, end: FakePort(services.engine, str(end))
    x.open_ports = lambda ports: None
    x.running = True
    return x


def test_manager_sets_taps_only_while_a_capture_runs(app, tmp_path):
    caps = Captures(app)
    link = app.add_link("vr1/1--vr2/1:5")
    flows = list(link.bridge.flows.values())
    assert all(f.tap is None for f in flows)
    c1 = caps.start_file(link.name, str(tmp_path / "1.pcapng"), CaptureOptions())
    c2 = caps.start_file("vr1/1--vr2/1:5", str(tmp_path / "2.pcapng"), CaptureOptions(snaplen=9))
    assert c1.interfaces == ["vr1/1", "vr2/1"]
    assert all(f.tap is not None for f in flows)
    assert [c.ident for c in caps.stop(link.name)] == [c1.ident, c2.ident]
    assert all(f.tap is None for f in flows)
    with pytest.raises(NotFound):
        caps.stop(link.name)
    c3 = caps.start_file(link.name, str(tmp_path / "3.pcapng"), CaptureOptions())
    app.remove_link(link.name)
    assert not c3.active and caps.all() == []
    for c in (c1, c2, c3):
        assert c.sink.join(5)
        assert len(reader.read(open(c.sink.path, "rb").read()).statistics) == 2


def test_manager_refuses_bad_requests(app, tmp_path):
    caps = Captures(app)
    link = app.add_link("vr1/1--vr2/1")
    with pytest.raises(Conflict):
        caps.start_file(link.name, "/nonexistent/dir/f", CaptureOptions())
    with pytest.raises(BadRequest):
        caps.start_file(link.name, str(tmp_path / "f"), CaptureOptions(snaplen=-1))
    with pytest.raises(BadRequest):
        caps.start_file(link.name, str(tmp_path / "f"), CaptureOptions(files=3))
    with pytest.raises(BadRequest):
        caps.start_stream(link.name, CaptureOptions(size=10))
    with pytest.raises(NotFound):
        caps.start_file("vr9/9--vr8/8", str(tmp_path / "f"), CaptureOptions())
    for _ in range(8):
        caps.start_stream(link.name, CaptureOptions())
    with pytest.raises(Conflict):
        caps.start_stream(link.name, CaptureOptions())
    caps.close()
    assert caps.all() == []


def test_a_hub_capture_records_each_frame_where_it_leaves_the_hub(engine):
    from xcon.bridges.hub import Hub

    ports = [FakePort(engine, n) for n in ("h1", "h2", "h3")]
    hub = Hub(ports, queue_bytes=4096)
    hub.start()
    cap = Capture(engine, "hub", ["h1", "h2", "h3"], CaptureOptions(), sink := MemorySink())
    for d in hub.directions():
        d.flow.set_tap(CaptureTap([cap], out_if=d.to_end, in_if=d.from_end))
    ports[2].capacity = 0  # h3 takes nothing: its queue fills, then drops
    frames = [numbered(i, 1000) for i in range(6)]
    ports[0].feed_frames(frames[:3])
    ports[0].feed_frames(frames[3:])
    ports[1].feed_frames(frames[:1])
    cap.stop()
    got = reader.read(bytes(sink.data))
    assert [i["name"] for i in got.interfaces] == ["h1", "h2", "h3"]

    def on(i, outbound=True):
        return [p.data for p in got.packets if p.interface == i and (p.flags == 2) == outbound]

    # h1's six to h2 and h3 (four fit h3's queue), then h2's one to h1 and h3 (full).
    assert on(0) == frames[:1] and on(1) == frames and on(2) == frames[:4]
    assert on(2, outbound=False) == frames[4:] + frames[:1] and not on(0, False) + on(1, False)
    assert all("queue_full" in (p.comment or "") for p in got.packets if p.flags != 2)
    assert ports[1].sent_frames() == frames and ports[0].sent_frames() == frames[:1]


def test_manager_captures_a_hub(app, tmp_path):
    from xcon.bridges.hub import Hub

    caps = Captures(app)
    hub = Hub([FakePort(app.engine, "h1"), FakePort(app.engine, "h2")])
    app.add_bridge(hub, name="hub", ends=tuple(parse_end(e) for e in ("h1/1", "h2/1")))
    cap = caps.start_file("hub", str(tmp_path / "f"), CaptureOptions())
    assert cap.interfaces == ["h1/1", "h2/1"]
    assert all(d.flow.tap is not None for d in hub.directions())
    caps.stop("hub")
    assert all(d.flow.tap is None for d in hub.directions())


# -- options from the API, the config file and xcon ctl ---------------------------------------


def test_capture_options_from_a_body_and_a_query():
    from xcon.control.api import capture_options

    body = {"file": "f", "snaplen": 96, "filter": "icmp", "drops": False, "size_mb": 1.5}
    body |= {"seconds": 30, "files": 4}
    assert capture_options(body, file=True) == CaptureOptions(
        snaplen=96, filter="icmp", drops=False, size=1_500_000, seconds=30.0, files=4
    )
    query = {"snaplen": "64", "drops": "no", "filter": "vlan 5"}
    assert capture_options(query, file=False) == CaptureOptions(
        snaplen=64, filter="vlan 5", drops=False
    )
    for bad, words in [
        ({"snaplen": "x"}, "snaplen: 'x' is not a whole number in 0..262144 bytes"),
        ({"snaplen": 1.5}, "whole number"),
        ({"snaplen": True}, "number"),
        ({"snaplen": -1}, "snaplen: -1 is outside 0..262144 bytes"),
        ({"drops": "maybe"}, "true or false"),
        ({"filter": 5}, "tcpdump expression"),
        ({"size_mb": 1}, "unknown capture option"),  # file options only with a file
    ]:
        with pytest.raises(BadRequest) as e:
            capture_options(bad, file=False)
        assert words in str(e.value)


def test_config_capture_entries():
    from xcon.control.config import ConfigError, parse_config

    doc = {
        "link": [
            {"spec": "a/1--b/1", "capture": "/c/ab.pcapng"},
            {
                "spec": "c/1--d/1",
                "capture": {"file": "cd.pcapng", "snaplen": 64, "files": 3, "seconds": 60},
            },
            {"spec": "e/1--f/1"},
        ]
    }
    links = parse_config(doc, "lab.toml").links
    assert links[0].capture == ("/c/ab.pcapng", CaptureOptions())
    assert links[1].capture == ("cd.pcapng", CaptureOptions(snaplen=64, files=3, seconds=60.0))
    assert links[2].capture is None
    for capture, words in [
        (5, '"capture" is a file'),
        ({"snaplen": 5}, '"capture" is a file'),
        ({"file": "x", "files": 2}, "needs size or seconds"),
        ({"file": "x", "colour": 1}, "unknown capture option"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse_config({"link": [{"spec": "a/1--b/1", "capture": capture}]}, "lab.toml")
        assert str(e.value).startswith("lab.toml: [[link]] 1: ") and words in str(e.value)


def test_ctl_capture_lines():
    from xcon.control.client import capture_line

    c = {"id": 3, "link": "a/1--b/1", "file": "/c/x.pcapng", "frames": 10, "drops": 2}
    c |= {"snaplen": 64, "filter": None, "ring": None, "files": ["/c/x.pcapng"], "error": None}
    assert capture_line(c, "capturing ") == (
        "capturing capture 3 of a/1--b/1 to /c/x.pcapng: 10 frames, 2 dropped, snaplen 64\n"
    )
    s = {**c, "file": None, "snaplen": 0, "files": [], "error": "writing /c: No space left"}
    assert capture_line(s) == (
        "capture 3 of a/1--b/1 to stream: 10 frames, 2 dropped, error: writing /c: No space left\n"
    )


# -- files where the operator or the API said, and failures that stay seen ---------------------


def test_whole_blocks_finds_the_last_block_boundary_at_every_cut():
    blocks = [
        pcapng.section_header("xcon t"),
        pcapng.interface_description("a"),
        pcapng.enhanced_packet(0, 1, numbered(1, 61), flags=pcapng.OUTBOUND),
        pcapng.enhanced_packet(0, 2, numbered(2, 100), comment="dropped by xcon: runt"),
        pcapng.interface_statistics(0, 3, start_ns=1, received=2, delivered=2, dropped=0),
    ]
    data = b"".join(blocks)
    ends = [0]
    for blk in blocks:
        ends.append(ends[-1] + len(blk))
    for cut in range(len(data) + 1):
        assert pcapng.whole_blocks(data, cut) == max(e for e in ends if e <= cut), cut
    assert pcapng.whole_blocks(b"\0" * 16, 16) == 0  # a length under 12: not a block


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "file name"),
        (5, "file name"),
        ("/etc/x", 'without "/"'),
        ("a/b", 'without "/"'),
        ("..", 'without "/"'),
        ("x..y", 'without "/"'),
        (".hidden", 'not starting with "."'),
        ("a" * 201, "at most 200"),
        ("a\nb", "control character"),
    ],
)
def test_api_file_names_are_plain_names(name, words):
    from xcon.capture.manager import check_name

    assert words in one_line_error(BadRequest, check_name, name)
    assert check_name("r1-r2_x.pcapng") == "r1-r2_x.pcapng"


def _dir(path):
    return str(path), os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)


def test_named_files_are_new_0600_never_through_a_link_and_replaced_only_when_regular(tmp_path):
    d = tmp_path / "caps"
    d.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep me")
    (d / "link").symlink_to(outside)
    (d / "old").write_bytes(b"old")
    os.mkfifo(d / "fifo")
    sink = FileSink("new.pcapng", directory=_dir(d), overwrite=False)
    assert sink.path == str(d / "new.pcapng") and sink.files == [sink.path]
    assert os.stat(sink.path).st_mode & 0o777 == 0o600
    os.close(sink._fd)
    sink._close_dir()
    for name, overwrite, errno_, kind in [
        ("old", False, errno.EEXIST, OSError),
        ("link", False, errno.EEXIST, OSError),  # O_EXCL: a link is an existing name
        ("link", True, errno.EEXIST, sinks.NotRegularFile),
        ("fifo", True, errno.EEXIST, sinks.NotRegularFile),
    ]:
        with pytest.raises(kind) as e:
            FileSink(name, directory=_dir(d), overwrite=overwrite)
        assert e.value.errno == errno_, name
    assert outside.read_bytes() == b"keep me" and (d / "old").read_bytes() == b"old"
    sink = FileSink("old", directory=_dir(d), overwrite=True)
    assert (d / "old").read_bytes() == b""  # replaced: a regular file
    os.close(sink._fd)
    sink._close_dir()
    # the operator's path: as given, but not through a link either
    with pytest.raises(OSError) as e:
        FileSink(str(d / "link"))
    assert e.value.errno == errno.ELOOP and outside.read_bytes() == b"keep me"
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        FileSink("old", directory=_dir(d), overwrite=False)
    assert len(os.listdir("/proc/self/fd")) == fds  # the directory's fd closed with it


def _drive(engine, cap, link, port, frames=60, size=1000):
    """Frames through the link until the capture ends (its writer thread
    reports on the 'loop', which the test turns)."""
    n = 0

    def ended():
        nonlocal n
        if n < frames:
            port.feed_frames([numbered(n + i, size) for i in range(10)])
            n += 10
        engine.advance(0.06)
        return not cap.active

    from xcon.testing.wait import wait_until

    wait_until(ended, 5, "the capture to end")
    return n


def test_a_write_error_cuts_the_file_to_whole_blocks_adds_statistics_and_stays_seen(
    tmp_path, engine, monkeypatch
):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    path = tmp_path / "f.pcapng"
    sink = FileSink(str(path))
    calls = []

    def short_then_full(fd, views):  # the disk fills in the middle of a block
        calls.append(fd)
        if len(calls) == 1:
            return os.write(fd, views[0][: len(views[0]) // 2 + 5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", short_then_full)
    cap, _ = captured(engine, link, sink=sink, chunk=16384)
    _drive(engine, cap, link, a)
    assert sink.join(5)
    assert cap.state == "failed"
    assert cap.error == f"writing {path}: No space left on device"
    got = reader.read(path.read_bytes())  # strict: whole blocks only
    assert len(got.statistics) == 2 and 0 < len(got.packets) < 16
    assert [int.from_bytes(p.data[14:22], "big") for p in got.packets] == list(
        range(len(got.packets))
    )
    assert len(cap.free) + (cap.cur is not None) == 64 - cap.spare  # every chunk came back


def test_a_writer_thread_that_raises_ends_the_capture_with_its_error(tmp_path, engine):
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b)
    link.start()
    path = tmp_path / "f.pcapng"
    sink = FileSink(str(path))

    def boom(batch):
        raise RuntimeError("boom")

    sink._write_batch = boom  # type: ignore[method-assign]
    cap, _ = captured(engine, link, sink=sink, chunk=16384)
    _drive(engine, cap, link, a)
    assert sink.join(5)
    assert cap.error == "the capture's writer failed: RuntimeError: boom"
    got = reader.read(path.read_bytes())
    assert got.packets == [] and len(got.statistics) == 2  # the header, then the statistics
    assert len(cap.free) + (cap.cur is not None) == 64 - cap.spare


def test_the_manager_keeps_failed_captures_until_cleared_and_counts_them(app, tmp_path):
    from xcon.capture.manager import captures_of
    from xcon.control.api import link_captures
    from xcon.control.metrics import snapshot

    caps = captures_of(app)
    link = app.add_link("vr1/1--vr2/1")
    cap = caps.start_file(link.name, str(tmp_path / "f.pcapng"), CaptureOptions())
    running = caps.start_stream(link.name, CaptureOptions())[0]
    cap.fail("writing f.pcapng: No space left on device")
    assert cap.sink.join(5)
    assert caps.for_link(link.name) == [running, cap]
    assert [c["state"] for c in link_captures(link, caps)] == ["running", "failed"]
    assert [c["state"] for c in link_captures(link)] == ["running"]  # the metrics' view
    snap = snapshot(app, "fake")
    assert snap.capture_errors == [(link.name, 1)] and snap.captures[0][1] == 1
    cap.fail("again")  # a second report of the same capture counts once
    assert caps.errors == {link.name: 1} and cap.error.startswith("writing")
    # a failure after the capture stopped (its last write) is kept too
    late = caps.start_file(link.name, str(tmp_path / "g.pcapng"), CaptureOptions())
    late.stop()
    late.fail("writing g.pcapng: Input/output error")
    assert caps.failed_of(link.name) == [cap, late] and caps.errors[link.name] == 2
    for i in range(MAX_FAILED + 2):
        extra = caps.start_stream(link.name, CaptureOptions())[0]
        extra.fail(f"failure {i}")
    assert len(caps.failed_of(link.name)) == MAX_FAILED
    assert caps.failed_of(link.name)[-1].error == f"failure {MAX_FAILED + 1}"
    stopped = caps.stop(link.name)
    assert stopped[0] is running and len(stopped) == 1 + MAX_FAILED
    assert caps.for_link(link.name) == [] and caps.errors[link.name] == MAX_FAILED + 4
    with pytest.raises(NotFound):
        caps.stop(link.name)
    caps.start_stream(link.name, CaptureOptions())[0].fail("x")
    app.remove_link(link.name)
    assert caps.failed == {} and caps.errors == {}


def test_one_capture_per_file_across_links_and_sources(app, tmp_path):
    caps = Captures(app, capture_dir=str(tmp_path / "caps"))
    l1, l2 = app.add_link("vr1/1--vr2/1"), app.add_link("vr1/2--vr3/1")
    first = caps.start_named(l1.name, "x.pcapng", CaptureOptions())
    assert first.sink.path == str(tmp_path / "caps" / "x.pcapng")
    assert os.stat(tmp_path / "caps").st_mode & 0o777 == 0o700
    with pytest.raises(Conflict) as e:
        caps.start_named(l2.name, "x.pcapng", CaptureOptions(), overwrite=True)
    assert str(e.value) == f"x.pcapng is being written by capture {first.ident} of {l1.name}"
    (tmp_path / "alias").symlink_to(tmp_path / "caps")
    with pytest.raises(Conflict):  # the same file by another path: the real paths match
        caps.start_file(l2.name, str(tmp_path / "alias" / "x.pcapng"), CaptureOptions())
    ring = caps.start_named(l2.name, "r.pcapng", CaptureOptions(size=100_000))
    with pytest.raises(Conflict):  # a ring's current file
        caps.start_named(l1.name, "r-00001.pcapng", CaptureOptions(), overwrite=True)
    caps.stop(l1.name)
    assert first.sink.join(5)
    again = caps.start_named(l2.name, "x.pcapng", CaptureOptions(), overwrite=True)
    assert again.active
    caps.close()
    assert ring.sink.join(5)
    assert len(reader.read((tmp_path / "caps" / "x.pcapng").read_bytes()).statistics) == 2


class DeferredEngine(FakeEngine):
    """A fake engine whose worker threads run only when the test says (a slow compile)."""

    def __init__(self):
        super().__init__()
        self.jobs = []

    def run_in_thread(self, fn, done):
        self.jobs.append((fn, done))

    def finish(self):
        fn, done = self.jobs.pop(0)
        try:
            result, err = fn(), None
        except BaseException as e:  # noqa: BLE001
            result, err = None, e
        self.soon.append(lambda: done(result, err))
        self.run_soon()


def _answers():
    got = []
    return got, lambda program, err: got.append((program, err))


@need_libpcap
def test_filters_compile_off_the_loop_one_at_a_time_within_the_time_cap(monkeypatch):
    from xcon.capture.manager import FILTER_SECONDS, FilterCompiler

    monkeypatch.setattr(bpf, "_cache", type(bpf._cache)())
    engine = DeferredEngine()
    filters = FilterCompiler(engine)
    # two requests for one expression share one compile; in time: kept
    assert filters.ready("icmp") is None
    first, done1 = _answers()
    second, done2 = _answers()
    filters.compile("icmp", done1)
    filters.compile("icmp", done2)
    assert len(engine.jobs) == 1 and first == second == []
    engine.finish()
    assert first[0][0] is second[0][0] is filters.ready("icmp") and first[0][1] is None
    # too slow: refused when the time is up, the late program discarded
    slow, done_slow = _answers()
    queued, done_queued = _answers()
    filters.compile("tcp", done_slow)
    filters.compile("udp", done_queued)  # waits: one compile at a time
    assert len(engine.jobs) == 1
    engine.advance(FILTER_SECONDS + 0.1)
    assert slow[0][0] is None and slow[0][1].status == 400 and "over 2 s" in str(slow[0][1])
    assert queued[0][1].status == 409 and "busy" in str(queued[0][1])
    engine.finish()
    assert bpf.cached("tcp") is None and len(slow) == 1 and engine.jobs == []
    with pytest.raises(BadRequest):  # remembered: refused at once
        filters.ready("tcp")
    # a bad expression: 400 with libpcap's words
    bad, done_bad = _answers()
    filters.compile("tcp port", done_bad)
    engine.finish()
    assert bad[0][1].status == 400 and "tcp port" in str(bad[0][1])
    # a full queue is refused at once
    from xcon.capture.manager import FILTER_QUEUE

    refused, done_refused = _answers()
    for i in range(FILTER_QUEUE + 2):  # one compiles, FILTER_QUEUE wait
        filters.compile(f"port {i}", done_refused)
    assert len(refused) == 1 and refused[0][1].status == 409
    filters.close()


@need_libpcap
def test_an_api_filter_is_compiled_once_on_a_worker(app, tmp_path, monkeypatch):
    from xcon.control.api import ControlAPI
    from xcon.control.server import Pending, Request

    monkeypatch.setattr(bpf, "_cache", type(bpf._cache)())
    compiled = []
    real = bpf._compile
    monkeypatch.setattr(bpf, "_compile", lambda lib, e: compiled.append(e) or real(lib, e))
    threads = []
    run = app.engine.run_in_thread
    app.engine.run_in_thread = lambda fn, done: threads.append(fn) or run(fn, done)
    from xcon.capture.manager import captures_of

    caps = captures_of(app)
    caps.capture_dir = str(tmp_path / "caps")
    link = app.add_link("vr1/1--vr2/1")
    api = ControlAPI(app)
    body = b'{"file": "f.pcapng", "filter": "greater 500"}'
    req = Request("POST", f"/links/{link.name}/capture", {}, {}, body)
    answer = api(req)
    assert isinstance(answer, Pending) and compiled == ["greater 500"] and len(threads) == 1
    got = []
    answer._then(got.append)
    app.engine.run_soon()
    assert got[0].status == 201 and compiled == ["greater 500"]  # not again for the capture
    req = Request("POST", f"/links/{link.name}/capture", {}, {}, body.replace(b"f.", b"g."))
    assert api(req).status == 201 and compiled == ["greater 500"]  # kept: answered at once
    assert [c.bpf is not None for c in caps.for_link(link.name)] == [True, True]
    caps.close()
    api.close()
