"""``xcon extcap`` against the real tshark (Debian's, from TEST_DEBS): the
launcher installed into a personal Wireshark folder made for the test, the
links of running xcons listed by ``tshark -D``, captured by ``tshark -i``
(both directions, a capture filter) and the capture in xcon ended when tshark
stops; and the extcap's own capture into a FIFO, ended by its reader or by
SIGTERM, on both engines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from xcon.control.client import link_path
from xcon.extcap import interface_value
from xcon.testing import pcapng
from xcon.testing.control import call, socket_path
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import check_numbered
from xcon.testing.pcaptools import TSHARK, tshark_fields
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

need_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian tshark)")

#: Numbers of the frames sent b -> a (a -> b start at 0).
B_FIRST = 1 << 40
A_SIZE, B_SIZE = 200, 300


def libpcap() -> bool:
    from xcon.capture import bpf

    return bpf.available()


@pytest.fixture
def wireshark(tmp_path):
    """The environment of a user whose personal Wireshark folders are in
    ``tmp_path`` (the real ones untouched), and who runs no xcon by default."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    for name in ("WIRESHARK_CONFIG_DIR", "XCON_EXTCAP_CONTROLS", "XCON_CONTROL"):
        env.pop(name, None)
    return env


def extcap(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``xcon extcap ARGS`` run to its end, in the user's home (no ./xcon.sock there)."""
    return subprocess.run(
        [sys.executable, "-m", "xcon", "extcap", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=env["HOME"],
    )


def tshark(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert TSHARK
    return subprocess.run(
        [TSHARK, *args], capture_output=True, text=True, timeout=60, env=env, cwd=env["HOME"]
    )


def tshark_capture(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """tshark capturing in the background (stop it with :func:`ended`)."""
    assert TSHARK
    return subprocess.Popen(
        [TSHARK, *args],
        env=env,
        cwd=env["HOME"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def ended(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def size(path: str) -> int:
    """The file's size (0 while tshark has not made it yet)."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def listed(env: dict[str, str]) -> dict[str, str]:
    """``tshark -D``'s xcon interfaces: value -> display."""
    out = tshark(env, "-D")
    assert out.returncode == 0, out.stderr
    found = (re.fullmatch(r"\d+\. (\S+) \((.*)\)", line) for line in out.stdout.splitlines())
    return {m[1]: m[2] for m in found if m and m[1].startswith("xcon-")}


def install(env: dict[str, str], *args: str) -> str:
    """``xcon extcap install ARGS``; the launcher's path."""
    out = extcap(env, "install", *args)
    launcher = os.path.join(env["XDG_CONFIG_HOME"], "wireshark", "extcap", "xcon")
    assert (out.returncode, out.stderr) == (0, ""), out
    assert out.stdout == f"installed {launcher}: restart Wireshark to see xcon's links\n"
    return launcher


def captures(xc, name: str) -> list[dict]:
    """The link's captures in xcon, as the API lists them."""
    status, doc = call(xc, "GET", link_path(name))
    assert status == 200 and isinstance(doc, dict), doc
    return doc["captures"]


@pytest.fixture
def both_ways(p2p):
    """A p2p link with numbered frames flowing both ways, one at a time, in
    two sizes (a -> b: A_SIZE from 0, b -> a: B_SIZE from B_FIRST); every frame
    is checked to have arrived, in order, afterwards.  (xc, a, b, name)."""
    xc, a, b, name = p2p()
    streams = [Stream(a, b, size=A_SIZE, batch=1, fps=300)]
    streams.append(Stream(b, a, size=B_SIZE, batch=1, fps=300, first=B_FIRST))
    try:
        yield xc, a, b, name
    finally:
        for s in streams:
            s.stop()
    for s in streams:
        s.finish()


@need_tshark
def test_tshark_lists_every_link_and_uninstall_takes_them_away(p2p, wireshark):
    xc, a, b, name = p2p()
    launcher = install(wireshark, "--control", socket_path(xc))
    assert os.access(launcher, os.X_OK)
    assert listed(wireshark) == {interface_value(socket_path(xc), name): f"xcon: {name}"}
    # a second xcon, found through $XCON_EXTCAP_CONTROLS: each link says whose it is
    xc2, c, d, name2 = p2p()
    wireshark["XCON_EXTCAP_CONTROLS"] = socket_path(xc2)
    assert listed(wireshark) == {
        interface_value(socket_path(xc), name): f"xcon: {name} ({socket_path(xc)})",
        interface_value(socket_path(xc2), name2): f"xcon: {name2} ({socket_path(xc2)})",
    }
    # xcons that are gone have no interfaces, and that is not an error
    assert xc.terminate() == 0 and xc2.terminate() == 0
    assert listed(wireshark) == {}
    out = extcap(wireshark, "--extcap-interfaces", "--extcap-version=4.0")
    assert (out.returncode, out.stderr) == (0, "") and out.stdout.startswith("extcap {version=")
    assert "interface" not in out.stdout
    out = extcap(wireshark, "uninstall")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"removed {launcher}\n", "")
    assert not os.path.exists(launcher)


@need_tshark
def test_tshark_captures_both_directions_of_a_link(both_ways, wireshark, tmp_path):
    xc, a, b, name = both_ways
    install(wireshark, "--control", socket_path(xc))
    path = str(tmp_path / "tshark.pcapng")
    iface = interface_value(socket_path(xc), name)
    out = tshark(wireshark, "-i", iface, "-c", "20", "-w", path)
    assert out.returncode == 0, out.stderr
    assert "20 packets captured" in out.stderr
    # tshark stopped after 20 frames: the capture in xcon is over too
    wait_until(lambda: captures(xc, name) == [], 10, "the capture to end with tshark")
    # tshark reads back what it wrote: the link's two interfaces, both directions
    rows = tshark_fields(path, "frame.interface_name", "frame.packet_flags_direction", "frame.len")
    assert len(rows) == 20, rows
    a_end, b_end = endpoint(a), endpoint(b)
    sent = {(b_end, "0x00000002", str(A_SIZE)), (a_end, "0x00000002", str(B_SIZE))}
    assert {tuple(r) for r in rows} == sent  # both, and nothing else
    # the frames as sent, each direction in order
    cap = pcapng.read_file(path)
    names = [i["name"] for i in cap.interfaces]
    seqs: dict[str, list[int]] = {a_end: [], b_end: []}
    for p in cap.packets:
        assert p.caplen == p.orig_len == len(p.data)
        seqs[names[p.interface]].append(check_numbered(p.data))
    assert seqs[b_end] == sorted(seqs[b_end]) and all(s < B_FIRST for s in seqs[b_end])
    assert seqs[a_end] == sorted(seqs[a_end]) and all(s >= B_FIRST for s in seqs[a_end])


@need_tshark
@pytest.mark.skipif(not libpcap(), reason="libpcap not installed (Debian libpcap0.8)")
def test_a_capture_filter_reaches_xcon(both_ways, wireshark, tmp_path):
    xc, a, b, name = both_ways
    install(wireshark, "--control", socket_path(xc))
    path = str(tmp_path / "filtered.pcapng")
    iface = interface_value(socket_path(xc), name)
    expr = f"len == {B_SIZE}"
    proc = tshark_capture(wireshark, "-i", iface, "-f", expr, "-c", "300", "-w", path)
    try:
        # xcon runs the filter (1 s of frames each way: time to look)
        wait_until(
            lambda: [c["filter"] for c in captures(xc, name)] == [expr],
            20,
            "tshark's capture, filtered, in xcon",
        )
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        ended(proc)
    rows = tshark_fields(path, "frame.interface_name", "frame.len")
    assert rows == [[endpoint(a), str(B_SIZE)]] * 300
    assert all(check_numbered(p.data) >= B_FIRST for p in pcapng.read_file(path).packets)


@need_tshark
def test_stopping_tshark_ends_the_capture_in_xcon(both_ways, wireshark, tmp_path):
    xc, a, b, name = both_ways
    install(wireshark, "--control", socket_path(xc))
    path = str(tmp_path / "stopped.pcapng")
    iface = interface_value(socket_path(xc), name)
    proc = tshark_capture(wireshark, "-i", iface, "-w", path)
    try:
        wait_until(lambda: len(captures(xc, name)) == 1, 20, "tshark's capture in xcon")
        # frames reach the file: tshark writes them as they come
        wait_until(lambda: size(path) > 10_000, 20, "frames in tshark's file")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        ended(proc)
    wait_until(lambda: captures(xc, name) == [], 10, "the capture to end with tshark")
    assert len(tshark_fields(path, "frame.len")) > 0


# -- the extcap's capture itself, no Wireshark needed ---------------------------------------


@pytest.mark.parametrize("stop", ["reader-goes", "sigterm"])
def test_the_capture_ends_when_its_fifo_closes_or_on_sigterm(p2p, wireshark, tmp_path, stop):
    xc, a, b, name = p2p()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xcon", "extcap", "--capture", "--fifo", fifo]
        + ["--extcap-interface", interface_value(socket_path(xc), name)],
        env=wireshark,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(captures(xc, name)) == 1, 10, "the extcap's capture in xcon")
        head = bytearray()

        def read() -> bool:
            try:
                head.extend(os.read(reader, 4096))
            except BlockingIOError:
                pass
            return len(head) >= 4

        wait_until(read, 10, "the pcapng section header in the FIFO")
        assert head[:4] == bytes.fromhex("0a0d0d0a")
        if stop == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.close(reader)  # Wireshark closed the FIFO; no frame flows to notice
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out, err) == (0, "", "")
    finally:
        ended(proc)
        if stop == "sigterm":
            os.close(reader)
    wait_until(lambda: captures(xc, name) == [], 10, "the capture to end")
    assert xc.terminate() == 0


def test_a_capture_xcon_cannot_give_is_one_line_on_stderr(p2p, wireshark, tmp_path):
    xc, a, b, name = p2p()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # as dumpcap holds it open
    gone = str(tmp_path / "gone.sock")
    try:
        for where, link, code, says in [
            (gone, name, 3, f"xcon extcap: cannot reach xcon at {gone}: No such file or directory"),
            (socket_path(xc), "x/1--y/1", 1, "xcon extcap: no link 'x/1--y/1'"),
        ]:
            iface = interface_value(where, link)
            out = extcap(wireshark, "--capture", "--extcap-interface", iface, "--fifo", fifo)
            assert (out.returncode, out.stdout) == (code, ""), out
            assert out.stderr.splitlines() == [says], out.stderr
    finally:
        os.close(reader)
    assert captures(xc, name) == []
    assert xc.terminate() == 0
