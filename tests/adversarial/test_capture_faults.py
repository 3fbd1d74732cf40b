"""Captures against a hostile API client, a full disk, a reader that goes and
a filter that takes libpcap seconds to compile, on an xcon process between
fake qemu NICs (both engines):

* a file named through the API goes into the capture directory only, never
  through a symbolic link, never over a file unless asked, and the errors
  name nothing outside it;
* one capture per file, across links and sources;
* a write error (ENOSPC on a small tmpfs, EPIPE from a FIFO) ends the capture
  with a file cut to whole blocks, its error kept in the API and counted in
  the metrics, one log line;
* a slow filter is refused after the time cap, compiled off the loop: the
  link loses nothing and ``/health`` answers at once meanwhile.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from xcon.capture import bpf
from xcon.control.client import link_path
from xcon.testing.control import call, timed_health, wait_api
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered, numbered
from xcon.testing.pcapng import read_file
from xcon.testing.pcaptools import TSHARK, tshark_fields
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]


def post(xc, name: str, body: dict) -> tuple[int, dict]:
    status, doc = call(xc, "POST", link_path(name, "capture"), body)
    assert isinstance(doc, dict) and (status < 300 or "\n" not in doc["error"]), doc
    return status, doc


def captures(xc, name: str) -> list[dict]:
    return call(xc, "GET", link_path(name))[1]["captures"]


def capture_errors(xc, name: str) -> float | None:
    """``xcon_capture_errors_total`` of the link (None: no such sample)."""
    text = call(xc, "GET", "/metrics")[1]
    for line in text.splitlines():
        if line.startswith(f'xcon_capture_errors_total{{link="{name}"}} '):
            return float(line.split()[-1])
    return None


# -- 1. where files go --------------------------------------------------------------------


def test_api_files_go_only_into_the_capture_directory(peers, xcon, tmp_path):
    a, b = peers(), peers()
    name = f"{endpoint(a)}--{endpoint(b)}"
    capdir = tmp_path / "caps"
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep me")
    planted = f"/etc/xcon-capture-test-{os.getpid()}"
    xc = xcon("--p2p", name, "--capture-dir", str(capdir))
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    try:
        for file in [
            planted,
            "/etc/passwd",
            str(outside),
            "../outside",
            "x/../../outside",
            "/root/.ssh/authorized_keys",
            ".hidden",
            "",
            "a" * 300,
        ]:
            status, doc = post(xc, name, {"file": file, "overwrite": True})
            assert status == 400, (file, doc)
            # no probe: the message is the rule, whatever the path
            assert "denied" not in doc["error"] and "No such" not in doc["error"]
            assert not file or file not in doc["error"]
        assert not os.path.lexists(planted)
    finally:
        if os.path.lexists(planted):
            os.unlink(planted)
    assert outside.read_bytes() == b"keep me"
    assert not capdir.exists()  # made only when a capture needs it

    # a name: in the directory (made 0700), the file 0600, the full path shown
    status, doc = post(xc, name, {"file": "ok.pcapng"})
    assert status == 201 and doc["file"] == str(capdir / "ok.pcapng"), doc
    assert [c["file"] for c in captures(xc, name)] == [str(capdir / "ok.pcapng")]
    assert os.stat(capdir).st_mode & 0o777 == 0o700
    assert os.stat(capdir / "ok.pcapng").st_mode & 0o777 == 0o600

    # an existing file is refused unless the request says overwrite
    (capdir / "old.pcapng").write_bytes(b"old")
    status, doc = post(xc, name, {"file": "old.pcapng"})
    assert status == 409 and doc["error"] == (
        'old.pcapng exists in the capture directory ("overwrite": true replaces it)'
    )
    assert (capdir / "old.pcapng").read_bytes() == b"old"
    status, doc = post(xc, name, {"file": "old.pcapng", "overwrite": True})
    assert status == 201 and oct(os.stat(capdir / "old.pcapng").st_mode & 0o777) == "0o600"

    # a symbolic link planted in the directory is never written through
    (capdir / "link.pcapng").symlink_to(outside)
    for overwrite, words in [(False, "exists"), (True, "not a regular file")]:
        status, doc = post(xc, name, {"file": "link.pcapng", "overwrite": overwrite})
        assert status == 409 and words in doc["error"] and str(tmp_path) not in doc["error"]
    os.mkfifo(capdir / "fifo")
    status, doc = post(xc, name, {"file": "fifo", "overwrite": True})
    assert status == 409 and "not a regular file" in doc["error"], doc
    assert outside.read_bytes() == b"keep me"

    # ring files follow the same rules: a link where the next file goes ends
    # the capture at its rotation, with the error kept, and writes nothing there
    (capdir / "ring-00002.pcapng").symlink_to(outside)
    status, doc = post(xc, name, {"file": "ring.pcapng", "seconds": 1})
    assert status == 201 and doc["files"] == [str(capdir / "ring-00001.pcapng")], doc
    ring_id = doc["id"]

    def ring() -> dict:
        return next(c for c in captures(xc, name) if c["id"] == ring_id)

    wait_until(lambda: ring()["state"] == "failed", 10, "the ring capture to fail")
    assert ring()["error"] == "writing ring-00002.pcapng: File exists"
    assert outside.read_bytes() == b"keep me"
    assert len(read_file(str(capdir / "ring-00001.pcapng")).statistics) == 2
    assert oct(os.stat(capdir / "ring-00001.pcapng").st_mode & 0o777) == "0o600"
    assert xc.terminate() == 0


# -- 2. one capture per file --------------------------------------------------------------


def test_one_capture_per_file_across_links_and_sources(peers, xcon, tmp_path):
    a, b, c, d = peers(), peers(), peers(), peers()
    l1, l2 = f"{endpoint(a)}--{endpoint(b)}", f"{endpoint(c)}--{endpoint(d)}"
    capdir = tmp_path / "caps"
    capdir.mkdir(mode=0o700)
    op = capdir / "op.pcapng"
    xc = xcon("--p2p", l1, l2, "--capture-dir", str(capdir), "--capture", f"{l1}={op}")
    xc.wait_health("0", contains="All 4 sockets connected")
    wait_api(xc)
    status, doc = post(xc, l1, {"file": "same.pcapng"})
    assert status == 201
    first = doc["id"]
    for file, words in [
        ("same.pcapng", f"same.pcapng is being written by capture {first} of {l1}"),
        ("op.pcapng", f"op.pcapng is being written by capture 1 of {l1}"),  # the operator's
    ]:
        status, doc = post(xc, l2, {"file": file, "overwrite": True})
        assert status == 409 and doc["error"] == words, doc
    a.send_frames([numbered(i, 200) for i in range(20)])
    b.wait_frames(20)
    c.send_frames([numbered(100 + i, 300) for i in range(5)])
    d.wait_frames(5)
    assert call(xc, "DELETE", link_path(l1, "capture"))[0] == 200
    for path in (capdir / "same.pcapng", op):
        wait_until(lambda p=path: len(read_file(str(p)).statistics) == 2, 5, "the statistics")
        got = read_file(str(path))
        assert [check_numbered(p.data) for p in got.packets] == list(range(20))
        if TSHARK:
            assert len(tshark_fields(str(path), "frame.len")) == 20
    # the file is free again once its capture ended
    status, doc = post(xc, l2, {"file": "same.pcapng", "overwrite": True})
    assert status == 201, doc
    assert xc.terminate() == 0


# -- 3. write errors end the capture, and stay seen -----------------------------------------


@pytest.fixture
def small_fs(tmpfs):
    """A 256 KiB tmpfs (64 pages), unmounted after the test."""
    return tmpfs("256k", mode="0700")


def test_a_full_disk_ends_the_capture_with_whole_blocks_statistics_and_its_error(p2p, small_fs):
    xc, a, b, name = p2p("--capture-dir", str(small_fs))
    status, doc = post(xc, name, {"file": "full.pcapng"})
    assert status == 201, doc
    assert capture_errors(xc, name) == 0
    # 980-byte frames are 1024-byte blocks: every page ends at the same place
    # in a block, so the cut frees room for the statistics in the last page
    sent = 0
    while captures(xc, name)[0]["state"] == "running":
        assert sent < 2000, "the capture never failed"
        a.send_frames([numbered(sent + i, 980) for i in range(50)])
        sent += 50
        b.wait_frames(sent)
        time.sleep(0.06)  # the capture's flush timer: a chunk per batch
    cap = captures(xc, name)[0]
    assert (
        cap["state"] == "failed" and cap["error"] == "writing full.pcapng: No space left on device"
    )
    assert capture_errors(xc, name) == 1
    wait_until(lambda: "No space left" in xc.log(), 5, "the log line")
    assert xc.log().count("No space left") == 1
    got = read_file(str(small_fs / "full.pcapng"))  # strict: whole blocks, no partial one
    assert len(got.statistics) == 2 and len(got.packets) > 200
    seqs = [check_numbered(p.data) for p in got.packets]
    assert seqs == list(range(len(seqs)))
    if TSHARK:
        assert len(tshark_fields(str(small_fs / "full.pcapng"), "frame.len")) == len(seqs)
    # the link went on; the failed capture stays listed until cleared
    a.send_frames([numbered(sent, 100)])
    b.wait_frames(sent + 1)
    assert [check_numbered(f) for f in b.frames] == list(range(sent + 1))
    status, doc = call(xc, "DELETE", link_path(name, "capture"))
    assert status == 200 and [c["state"] for c in doc["stopped"]] == ["failed"]
    assert captures(xc, name) == [] and capture_errors(xc, name) == 1  # a counter
    assert call(xc, "DELETE", link_path(name, "capture"))[0] == 404
    assert xc.terminate() == 0


def test_a_reader_gone_ends_a_fifo_capture_kept_with_its_error(peers, xcon, tmp_path):
    a, b = peers(), peers()
    name = f"{endpoint(a)}--{endpoint(b)}"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        xc = xcon("--p2p", name, "--capture", f"{name}={fifo}")
        xc.wait_health("0", contains="All 2 sockets connected")
        wait_api(xc)
        a.send_frames([numbered(i, 200) for i in range(10)])
        b.wait_frames(10)
        got = bytearray()

        def some() -> bool:
            try:
                got.extend(os.read(reader, 65536))
            except BlockingIOError:
                pass
            return len(got) > 0

        wait_until(some, 5, "the header through the FIFO")
    finally:
        os.close(reader)
    a.send_frames([numbered(10 + i, 200) for i in range(10)])  # written into a closed pipe
    b.wait_frames(20)
    wait_until(lambda: captures(xc, name)[0]["state"] == "failed", 5, "the capture to fail")
    assert captures(xc, name)[0]["error"] == f"writing {fifo}: Broken pipe"
    assert capture_errors(xc, name) == 1 and xc.log().count("Broken pipe") == 1
    assert [check_numbered(f) for f in b.frames] == list(range(20))
    status, doc = call(xc, "DELETE", link_path(name, "capture"))
    assert status == 200 and doc["stopped"][0]["error"].endswith("Broken pipe")
    assert captures(xc, name) == []
    assert xc.terminate() == 0


# -- 4. a filter that takes libpcap seconds ---------------------------------------------------


@pytest.mark.skipif(not bpf.available(), reason="libpcap not installed (Debian libpcap0.8)")
def test_a_slow_filter_is_refused_in_time_and_never_stalls_the_loop(peers, xcon):
    a, b = peers(record=True), peers()
    name = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", name)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    slow = " or ".join(f"port {i}" for i in range(1, 351))  # 4088 characters: ~6 s to compile
    assert len(slow) < bpf.MAX_EXPRESSION
    stream = Stream(a, b, size=200, fps=4000)
    answer: dict[str, object] = {}

    def ask() -> None:
        t0 = time.monotonic()
        answer["reply"] = post(xc, name, {"file": "slow.pcapng", "filter": slow})
        answer["seconds"] = time.monotonic() - t0

    asker = threading.Thread(target=ask, daemon=True)
    health: list[float] = []
    lags: list[int] = []
    try:
        asker.start()
        while asker.is_alive() or len(health) < 10:
            health.append(timed_health(xc))
            lags.append(stream.sent - b.frame_count)
            time.sleep(0.1)
        asker.join(10)
        status, doc = answer["reply"]  # type: ignore[misc]
        assert status == 400 and "over 2 s to compile" in doc["error"], doc
        assert 1.9 < answer["seconds"] < 4.0, answer  # type: ignore[operator]
        # asked again: refused at once, as a file or a stream
        t0 = time.monotonic()
        assert post(xc, name, {"file": "slow.pcapng", "filter": slow})[0] == 400
        query = link_path(name, "capture") + "?filter=" + slow.replace(" ", "%20")
        assert call(xc, "GET", query)[0] == 400
        assert time.monotonic() - t0 < 0.5
    finally:
        stream.stop()
    assert max(health) < 0.5, health
    assert max(lags) < stream.fps / 2, lags
    stream.finish()
    assert captures(xc, name) == []
    assert not os.path.exists(os.path.join(xc.workdir, "captures", "slow.pcapng"))
    assert xc.terminate() == 0
