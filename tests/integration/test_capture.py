"""Capture of p2p links to pcapng, against an xcon process between fake qemu
NICs, on both engines: files read back by tcpdump and tshark (Debian's, from
TEST_DEBS) and by a strict reader of the format, live streaming into
``tcpdump -r -``, ring files, a reader that never reads, filters, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from xcon.control.client import link_path
from xcon.testing import pcapng
from xcon.testing.control import call, ctl, ctl_argv, wait_api
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, numbered, tagged
from xcon.testing.pcaptools import TCPDUMP, TSHARK, tcpdump_lines, tshark_env, tshark_fields
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

need_tcpdump = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed (Debian tcpdump)")
need_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian tshark)")


def libpcap() -> bool:
    from xcon.capture import bpf

    return bpf.available()


@pytest.fixture
def captured(peers, xcon):
    """Factory: xcon with one p2p link (VLAN suffix ``vid``) between two new fake
    NICs, captured to ``path`` (``ARGS`` after), both connected; returns ``(xc, a, b, name)``."""

    def make(path: str, *args: str, vid: str = ""):
        a, b = peers(), peers()
        name = f"{endpoint(a)}--{endpoint(b)}{vid}"
        xc = xcon("--p2p", name, "--capture", f"{name}={path}", *args)
        xc.wait_health("0", contains="All 2 sockets connected")
        return xc, a, b, name

    return make


# -- a known sequence, read back three ways ---------------------------------------------


@need_tcpdump
@need_tshark
def test_known_frames_read_back_by_tcpdump_tshark_and_the_reader(captured, tmp_path):
    path = str(tmp_path / "cap.pcapng")
    xc, trunk, access, name = captured(path, "--snaplen", "200", vid=":10")
    # trunk -> access: VLAN 10 frames lose their tag; others are dropped
    to_access = [tagged(numbered(0, 100), 10), tagged(numbered(1, 1500), 10)]
    mismatch = tagged(numbered(2, 300), 11)
    untagged = numbered(3, 80)
    trunk.send_frames([to_access[0], mismatch, to_access[1], untagged])
    access.wait_frames(2)
    # access -> trunk: the tag is inserted
    to_trunk = [numbered(10, 64), numbered(11, 1000)]
    access.send_frames(to_trunk)
    trunk.wait_frames(2)
    assert xc.terminate() == 0  # the capture ends with its statistics
    cap = pcapng.read_file(path)
    a_name, b_name = endpoint(trunk), endpoint(access)
    assert [i["name"] for i in cap.interfaces] == [a_name, b_name]
    assert all(i["tsresol"] == 9 and i["linktype"] == 1 for i in cap.interfaces)
    assert all(i["snaplen"] == 200 for i in cap.interfaces)
    # (interface, flags, original frame as recorded, comment) in order
    stripped = [numbered(0, 100), numbered(1, 1500)]
    expect = [
        (1, 2, stripped[0], None),
        (0, 1, mismatch, "dropped by xcon: other_vlan"),
        (1, 2, stripped[1], None),
        (0, 1, untagged, "dropped by xcon: untagged"),
        (0, 2, tagged(to_trunk[0], 10), None),
        (0, 2, tagged(to_trunk[1], 10), None),
    ]
    got = [(p.interface, p.flags, p.orig_len, p.data, p.comment) for p in cap.packets]
    assert got == [(i, f, len(fr), fr[:200], c) for i, f, fr, c in expect]
    assert cap.packets[2].caplen == 200 and cap.packets[2].orig_len == 1500
    stats = {s.fields["interface"]: s.fields for s in cap.statistics}
    assert stats[0]["ifrecv"] == 4 and stats[0]["usrdeliv"] == 4 and stats[0]["osdrop"] == 0
    assert stats[1]["ifrecv"] == 2 and stats[1]["osdrop"] == 0
    # tcpdump: every frame, its length (original) and captured length
    lines = tcpdump_lines(path)
    assert len(lines) == 6, lines
    for line, (_i, _f, fr, _c) in zip(lines, expect, strict=True):
        assert f"length {len(fr)}" in line, line
    # tshark: interface name, direction, lengths, comment, bytes
    rows = tshark_fields(
        path,
        "frame.interface_name",
        "frame.packet_flags_direction",
        "frame.len",
        "frame.cap_len",
        "frame.comment",
        "eth.src",
    )
    assert len(rows) == 6, rows
    names = [a_name, b_name]
    for row, (i, f, fr, c) in zip(rows, expect, strict=True):
        assert row[0] == names[i]
        assert int(row[1], 0) == f
        assert int(row[2]) == len(fr) and int(row[3]) == min(len(fr), 200)
        assert row[4] == (c or "")
    dump = subprocess.run(
        [TSHARK, "-r", path, "-T", "json", "-x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=tshark_env(),
    )
    assert dump.returncode == 0, dump.stderr
    raw = [bytes.fromhex(p["_source"]["layers"]["frame_raw"][0]) for p in json.loads(dump.stdout)]
    assert raw == [fr[:200] for _i, _f, fr, _c in expect]  # exact bytes, cut at the snaplen


# -- live -----------------------------------------------------------------------------------


@need_tcpdump
def test_live_stream_into_tcpdump_and_killing_the_reader_leaves_the_link_alone(p2p):
    xc, a, b, name = p2p()
    stream = Stream(a, b, size=200)
    producer = subprocess.Popen(
        ctl_argv(xc, "capture", name, "-w", "-"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert producer.stdout is not None
    reader = subprocess.Popen(
        [TCPDUMP, "-r", "-", "-nn", "-l"],
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    producer.stdout.close()  # the reader holds the pipe now
    try:
        assert reader.stdout is not None
        seen = 0
        deadline = time.monotonic() + 20
        while seen < 200 and time.monotonic() < deadline:
            line = reader.stdout.readline()
            assert line, "tcpdump ended early"
            seen += 1
        assert seen >= 200, "tcpdump did not print frames while they flowed"
        status, doc = call(xc, "GET", link_path(name))
        assert status == 200 and len(doc["captures"]) == 1
        assert doc["captures"][0]["frames"] >= 200
        reader.kill()
        reader.wait(10)
        assert producer.wait(10) == 0
        wait_until(
            lambda: call(xc, "GET", link_path(name))[1]["captures"] == [],
            10,
            "the capture to stop once its reader went",
        )
        time.sleep(0.2)
    finally:
        for p in (reader, producer):
            if p.poll() is None:
                p.kill()
                p.wait()
    stream.finish()  # every numbered frame arrived, in order
    assert a.accepted == 1 and b.accepted == 1
    assert "the reader went away" in xc.log()
    assert xc.terminate() == 0


def test_a_reader_that_never_reads_makes_the_capture_drop_not_the_link(p2p):
    xc, a, b, name = p2p()
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(os.path.join(xc.workdir, "xcon.sock"))
    stalled.sendall(f"GET {link_path(name, 'capture')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        wait_until(
            lambda: len(call(xc, "GET", link_path(name))[1]["captures"]) == 1, 10, "the capture"
        )
        n, size = 0, 1400
        total = 40_000  # 56 MB: far more than the capture's buffer and the socket's
        while n < total:
            a.send_frames([numbered(n + i, size) for i in range(200)])
            n += 200
        b.wait_frames(total, timeout=60)
        assert [check_numbered(f) for f in b.frames] == list(range(total))
        doc = call(xc, "GET", link_path(name))[1]
        cap = doc["captures"][0]
        assert cap["drops"] > 0, cap
        assert cap["frames"] + cap["drops"] == total
        assert doc["ends"][0]["rx_frames"] == total and doc["ends"][0]["rx_drops"] == {}
        text = ctl(xc, "links").stdout
        assert f"1 (drops {cap['drops']})" in text
        metrics = call(xc, "GET", "/metrics")[1]
        assert f'xcon_capture_drops_total{{link="{name}"}} {float(cap["drops"])}' in metrics
    finally:
        stalled.close()
    wait_until(
        lambda: call(xc, "GET", link_path(name))[1]["captures"] == [], 10, "the capture to end"
    )
    assert xc.terminate() == 0


# -- ring files ---------------------------------------------------------------------------


@need_tcpdump
def test_ring_files_rotate_by_size_and_each_is_valid_alone(captured, tmp_path):
    base = str(tmp_path / "ring.pcapng")
    xc, a, b, name = captured(base, "--capture-size", "1", "--capture-files", "3")
    total, size = 6000, 1000  # about 6.2 MB of blocks: 7 files written, 3 kept
    for i in range(0, total, 100):
        a.send_frames([numbered(i + k, size) for k in range(100)])
        b.wait_frames(i + 100, timeout=20)
        time.sleep(0.01)  # let the writer keep up: this test is about rotation
    assert xc.terminate() == 0
    files = sorted(os.listdir(tmp_path))
    files = [f for f in files if f.startswith("ring-")]
    assert len(files) == 3, files
    seqs = [int(f[len("ring-") : -len(".pcapng")]) for f in files]
    assert seqs == list(range(seqs[0], seqs[0] + 3)) and seqs[0] >= 4, files
    seen: list[int] = []
    for f in files:
        p = str(tmp_path / f)
        assert os.path.getsize(p) <= 1_000_000
        cap = pcapng.read_file(p)
        assert cap.sections == 1 and [i["name"] for i in cap.interfaces] == [
            endpoint(a),
            endpoint(b),
        ]
        assert len(cap.statistics) == 2  # each file ends with its statistics
        seqs_here = [check_numbered(pk.data) for pk in cap.packets]
        assert seqs_here == sorted(seqs_here)
        assert len(tcpdump_lines(p)) == len(cap.packets)
        seen += seqs_here
    assert seen == list(range(seen[0], total))  # the newest frames, none missing


def test_ring_files_rotate_by_time(captured, tmp_path):
    base = str(tmp_path / "t.pcapng")
    xc, a, b, name = captured(base, "--capture-seconds", "1")
    a.send_frames([numbered(0, 100)])
    b.wait_frames(1)
    wait_until(lambda: os.path.exists(str(tmp_path / "t-00003.pcapng")), 10, "a third file")
    assert xc.terminate() == 0
    caps = [pcapng.read_file(str(tmp_path / f"t-{i:05d}.pcapng")) for i in (1, 2, 3)]
    assert [len(c.packets) for c in caps] == [1, 0, 0]
    assert all(len(c.statistics) == 2 for c in caps)


# -- the API and xcon ctl -------------------------------------------------------------------


@pytest.mark.skipif(not libpcap(), reason="libpcap not installed (Debian libpcap0.8)")
def test_file_capture_through_ctl_with_a_filter_and_stop(p2p, tmp_path):
    xc, a, b, name = p2p()
    # a path: files go into xcon's capture directory, so the client says so
    out = ctl(xc, "capture", name, "-w", str(tmp_path / "ctl.pcapng"))
    assert out.returncode == 2 and "--capture-dir" in out.stderr and "-w -" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = ctl(xc, "capture", name, "-w", "ctl.pcapng", "--filter", "greater 500")
    assert out.returncode == 0, out.stderr
    capdir = os.path.join(xc.workdir, "captures")  # the default, made when first needed
    path = os.path.join(capdir, "ctl.pcapng")
    assert out.stdout.startswith(f"capturing capture 1 of {name} to {path}:"), out.stdout
    assert os.stat(capdir).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600
    frames = [numbered(i, 100 if i % 2 else 1000) for i in range(20)]
    a.send_frames(frames)
    b.wait_frames(20)
    wait_until(lambda: "1 (drops 0)" in ctl(xc, "links").stdout, 5, "the capture listed")
    out = ctl(xc, "capture", name, "--stop")
    assert out.returncode == 0 and "stopped capture 1" in out.stdout, out
    wait_until(lambda: len(pcapng.read_file(path).statistics) == 2, 5, "the file's statistics")
    cap = pcapng.read_file(path)
    assert [p.data for p in cap.packets] == frames[0::2]
    st = {s.fields["interface"]: s.fields for s in cap.statistics}
    assert st[1]["ifrecv"] == 20 and st[1]["filteraccept"] == 10 and st[1]["usrdeliv"] == 10
    # stopping again: nothing to stop
    again = ctl(xc, "capture", name, "--stop")
    assert again.returncode == 1 and "no capture on link" in again.stderr
    # the file exists: a new capture to it is refused, unless told to replace it
    out = ctl(xc, "capture", name, "-w", "ctl.pcapng")
    assert out.returncode == 1, out
    assert "ctl.pcapng exists" in out.stderr and '"overwrite": true' in out.stderr
    out = ctl(xc, "capture", name, "-w", "ctl.pcapng", "--overwrite")
    assert out.returncode == 0, out.stderr
    assert ctl(xc, "capture", name, "--stop").returncode == 0
    wait_until(lambda: len(pcapng.read_file(path).statistics) == 2, 5, "the new file's statistics")
    assert pcapng.read_file(path).packets == []  # replaced: the frames before are gone
    assert xc.terminate() == 0


def test_capture_errors_are_one_line(p2p, tmp_path):
    xc, a, b, name = p2p()
    cases = [
        ("POST", link_path(name, "capture"), {}, 400, "needs"),
        ("POST", link_path(name, "capture"), {"file": "/tmp/x"}, 400, "capture directory"),
        ("POST", link_path(name, "capture"), {"file": "x", "overwrite": 1}, 400, "overwrite"),
        ("POST", link_path(name, "capture"), {"file": "x", "snaplen": -1}, 400, "snaplen"),
        ("POST", link_path(name, "capture"), {"file": "x", "bogus": 1}, 400, "unknown"),
        ("POST", link_path(name, "capture"), {"file": "x", "files": 2}, 400, "files"),
        ("POST", link_path("nosuch/1--other/1", "capture"), {"file": "x"}, 404, "no link"),
        ("DELETE", link_path(name, "capture"), None, 404, "no capture"),
        ("GET", link_path(name, "capture") + "?snaplen=abc", None, 400, "not a whole number"),
    ]
    if libpcap():
        cases.append(
            ("POST", link_path(name, "capture"), {"file": "x", "filter": "tcp port"}, 400, "filter")
        )
    for method, path, body, status, words in cases:
        got, doc = call(xc, method, path, body)
        assert got == status, (method, path, body, doc)
        assert words in doc["error"] and "\n" not in doc["error"]
    assert call(xc, "GET", link_path(name))[1]["captures"] == []
    assert xc.terminate() == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--capture", "nosuchdir"], "not a directory"),
        (["--capture", "{other}=x.pcapng"], "no p2p link"),
        (["--capture", "{name}="], "no file"),
        (["--snaplen", "100"], "applies to --capture only"),
        (["--capture", "{name}=x", "--capture-files", "3"], "needs --capture-size"),
        (["--capture", "{name}=x", "--snaplen", "-5"], "snaplen"),
        (["--capture", "{name}=/nonexistent/x"], "does not exist"),
    ],
)
def test_command_line_capture_errors_exit_2(args, words, tmp_path):
    name = "127.0.0.1/1--127.0.0.2/1"
    argv = [a.format(name=name, other="127.0.0.3/1--127.0.0.4/1") for a in args]
    out = subprocess.run(
        [sys.executable, "-m", "xcon", "--p2p", name, "--control", "none", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_capture_dir_captures_every_link_and_links_added_later(peers, xcon, tmp_path):
    a, b, c, d = peers(), peers(), peers(), peers()
    first = f"{endpoint(a)}--{endpoint(b)}"
    second = f"{endpoint(c)}--{endpoint(d)}"
    capdir = tmp_path / "caps"
    capdir.mkdir()
    xc = xcon("--p2p", first, "--capture", str(capdir))
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    assert call(xc, "POST", "/links", {"spec": second})[0] == 201
    xc.wait_health("0", contains="All 4 sockets connected")
    a.send_frames([numbered(1, 100)])
    c.send_frames([numbered(2, 100)])
    b.wait_frames(1)
    d.wait_frames(1)
    status, _doc = call(xc, "DELETE", link_path(second))
    assert status == 200
    assert xc.terminate() == 0
    from xcon.capture.manager import file_name

    for link, seq in ((first, 1), (second, 2)):
        cap = pcapng.read_file(str(capdir / file_name(link)))
        assert [check_numbered(p.data) for p in cap.packets] == [seq]
        assert len(cap.statistics) == 2


def test_sigterm_while_streaming_ends_the_stream_cleanly(p2p):
    xc, a, b, name = p2p()
    out = subprocess.Popen(
        ctl_argv(xc, "capture", name, "-w", "-"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: len(call(xc, "GET", link_path(name))[1]["captures"]) == 1, 10, "the capture"
        )
        a.send_frames([numbered(i, 100) for i in range(5)])
        b.wait_frames(5)
        xc.proc.send_signal(signal.SIGTERM)
        data, err = out.communicate(timeout=20)
    finally:
        if out.poll() is None:
            out.kill()
            out.wait()
    assert out.returncode == 0, err
    cap = pcapng.read(data)
    assert [check_numbered(p.data) for p in cap.packets] == list(range(5))
    assert len(cap.statistics) == 2
    assert xc.proc.wait(10) == 0


def test_config_capture_and_reload_restart_only_a_changed_capture(peers, configured, tmp_path):
    a, b, c, d = peers(), peers(), peers(), peers()
    l1 = f"{endpoint(a)}--{endpoint(b)}"
    l2 = f"{endpoint(c)}--{endpoint(d)}"
    f1, f2, f3 = (str(tmp_path / f"{n}.pcapng") for n in ("one", "two", "three"))
    xc, cfg = configured(
        f'[[link]]\nspec = "{l1}"\ncapture = "{f1}"\n'
        f'[[link]]\nspec = "{l2}"\ncapture = {{ file = "{f2}", snaplen = 30 }}\n',
        sockets=4,
    )
    a.send_frames([numbered(1, 100)])
    b.wait_frames(1)
    first = call(xc, "GET", link_path(l1))[1]["captures"]
    assert [(x["file"], x["source"]) for x in first] == [(f1, "config")]
    assert call(xc, "GET", link_path(l2))[1]["captures"][0]["snaplen"] == 30
    # l1's capture unchanged (keeps running), l2's moves to another file
    cfg.write_text(
        f'[[link]]\nspec = "{l1}"\ncapture = "{f1}"\n[[link]]\nspec = "{l2}"\ncapture = "{f3}"\n'
    )
    status, doc = call(xc, "POST", "/reload")
    assert status == 200 and doc["changed"] == [l2] and doc["unchanged"] == 1, doc
    again = call(xc, "GET", link_path(l1))[1]["captures"]
    assert [x["id"] for x in again] == [first[0]["id"]]
    assert [x["file"] for x in call(xc, "GET", link_path(l2))[1]["captures"]] == [f3]
    wait_until(lambda: len(pcapng.read_file(f2).statistics) == 2, 5, "the old capture's end")
    # a bad capture entry changes nothing
    cfg.write_text(f'[[link]]\nspec = "{l1}"\ncapture = {{ file = "{f1}", snaplen = "x" }}\n')
    status, doc = call(xc, "POST", "/reload")
    assert status == 400 and "capture" in doc["error"], doc
    assert xc.terminate() == 0
    assert [check_numbered(p.data) for p in pcapng.read_file(f1).packets] == [1]


@need_tshark
def test_live_stream_into_tshark_as_a_pipe_interface(p2p):
    """``xcon ctl capture LINK -w - | wireshark -k -i -``: the same pipe
    interface, read by tshark (Wireshark's engine) while frames flow."""
    xc, a, b, name = p2p()
    sock = os.path.join(xc.workdir, "xcon.sock")
    pipeline = (
        f"{sys.executable} -m xcon ctl --control {sock} capture '{name}' -w - "
        f"| {TSHARK} -i - -c 30 -l -T fields -e frame.interface_name -e frame.len"
    )
    shark = subprocess.Popen(
        ["sh", "-c", pipeline],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=tshark_env(),
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: len(call(xc, "GET", link_path(name))[1]["captures"]) == 1, 20, "the capture"
        )
        time.sleep(1.0)  # tshark has read the section header and the interfaces
        for i in range(30):
            a.send_frames([numbered(i, 100 + i)])
            time.sleep(0.005)
        out, _ = shark.communicate(timeout=60)
    finally:
        if shark.poll() is None:
            os.killpg(shark.pid, signal.SIGKILL)
            shark.wait()
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows == [[endpoint(b), str(100 + i)] for i in range(30)]
    wait_until(
        lambda: call(xc, "GET", link_path(name))[1]["captures"] == [],
        10,
        "the capture to end with its reader",
    )
    assert xc.terminate() == 0


def test_a_stalled_disk_drops_capture_frames_only_and_a_reader_gone_stops_it(peers, xcon, tmp_path):
    """A FIFO whose reader never reads is a disk that stopped: the writer
    thread blocks, the capture drops, the link loses nothing; the reader
    going away (EPIPE) ends that capture only, with one log line, and the
    capture stays listed with its error.  (A FIFO is the operator's: the
    command line's --capture; the API writes regular files only.)"""
    a, b = peers(), peers()
    name = f"{endpoint(a)}--{endpoint(b)}"
    fifo = str(tmp_path / "disk")
    os.mkfifo(fifo)
    no_reader = xcon("--p2p", name, "--capture", f"{name}={fifo}")
    assert no_reader.proc.wait(10) == 1 and "a FIFO with no reader" in no_reader.log()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # holds it open, never reads
    try:
        xc = xcon("--p2p", name, "--capture", f"{name}={fifo}")
        xc.wait_health("0", contains="All 2 sockets connected")
        wait_api(xc)
        total = 30_000  # 42 MB: far more than the pool and the pipe
        for i in range(0, total, 200):
            a.send_frames([numbered(i + k, 1400) for k in range(200)])
        b.wait_frames(total, timeout=60)
        assert [check_numbered(f) for f in b.frames] == list(range(total))
        cap = call(xc, "GET", link_path(name))[1]["captures"][0]
        assert cap["drops"] > 0 and cap["frames"] + cap["drops"] == total, cap
        t0 = time.monotonic()
        status, _doc = call(xc, "GET", "/health")
        assert status == 200 and time.monotonic() - t0 < 1.0  # the loop is not waiting
    finally:
        os.close(reader)
    xc.wait_log("Broken pipe", timeout=10)
    wait_until(
        lambda: call(xc, "GET", link_path(name))[1]["captures"][0]["state"] == "failed",
        10,
        "the capture to fail",
    )
    cap = call(xc, "GET", link_path(name))[1]["captures"][0]
    assert cap["error"] == f"writing {fifo}: Broken pipe", cap
    assert xc.log().count("Broken pipe") == 1
    a.send_frames([numbered(total, 100)])
    b.wait_frames(total + 1)
    assert xc.terminate() == 0


@pytest.mark.skipif(not libpcap(), reason="libpcap not installed (Debian libpcap0.8)")
def test_live_stream_with_a_filter_compiled_on_a_worker(p2p):
    """A stream whose filter is new: the answer comes once a worker compiled
    it (a pending answer that turns into the stream)."""
    import h11

    xc, a, b, name = p2p()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(os.path.join(xc.workdir, "xcon.sock"))
    conn = h11.Connection(h11.CLIENT)
    target = link_path(name, "capture") + "?filter=greater%20500"
    sock.sendall(conn.send(h11.Request(method="GET", target=target, headers=[("Host", "x")])))
    sock.sendall(conn.send(h11.EndOfMessage()))
    body = bytearray()
    status = 0
    try:
        wait_until(lambda: len(call(xc, "GET", link_path(name))[1]["captures"]) == 1, 5, "it")
        frames = [numbered(i, 100 if i % 2 else 1000) for i in range(20)]
        a.send_frames(frames)
        b.wait_frames(20)

        def got_all() -> bool:
            nonlocal status
            conn.receive_data(sock.recv(65536))
            while (event := conn.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body.extend(event.data)
            try:
                return len(pcapng.read(bytes(body)).packets) == 10
            except pcapng.PcapngError:
                return False

        wait_until(got_all, 10, "the matching frames through the stream")
    finally:
        sock.close()
    assert status == 200
    assert [p.data for p in pcapng.read(bytes(body)).packets] == frames[0::2]
    wait_until(lambda: call(xc, "GET", link_path(name))[1]["captures"] == [], 5, "its end")
    assert xc.terminate() == 0
