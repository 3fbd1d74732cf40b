"""``xcon fake-router``: fake routers as their own processes, a real xcon between
them.  What the routers print (ping's lines, a line per other frame) is read
back; the frames they make are checked by tshark from xcon's capture, and the
answers to a fake qemu NIC by the test kit's independent checker."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys

import pytest

from xcon.testing.control import ctl, wait_api
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import numbered, tagged
from xcon.testing.loopback import free_udp_port, new_host
from xcon.testing.packets import (
    ARP_REPLY,
    ARP_REQUEST,
    arp,
    arp_fields,
    check_frame,
    echo_fields,
    icmp_echo,
    locate,
    udp_packet,
)
from xcon.testing.pcaptools import TSHARK, tshark_fields
from xcon.testing.ping import parse_ping
from xcon.testing.process import REPLY, FakeRouterProcess
from xcon.testing.wait import wait_until


@pytest.fixture
def router(tmp_path):
    """Factory of fake router processes; all killed after the test."""
    made: list[FakeRouterProcess] = []

    def make(*args: str) -> FakeRouterProcess:
        r = FakeRouterProcess(str(tmp_path), *args)
        made.append(r)
        r.wait_for(r"listening on|UDP .*sending to")
        return r

    yield make
    for r in made:
        r.kill()


def pinging_pair(
    router, interval: str = "0.05"
) -> tuple[str, FakeRouterProcess, FakeRouterProcess]:
    """Router b (10.0.0.2) and router a (10.0.0.1) pinging it; returns ``(link, a, b)``."""
    ha, hb = new_host(), new_host()
    b = router(f"{hb}/1=10.0.0.2/24")
    a = router(f"{ha}/1=10.0.0.1/24", "--ping", "10.0.0.2", "--interval", interval)
    return f"{ha}/1--{hb}/1", a, b


def test_ping_through_xcon_and_delay_adds_to_the_rtt(router, xcon):
    link, a, b = pinging_pair(router)
    xc = xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    a.wait_for(REPLY.pattern, count=10)
    plain = list(a.replies().values())
    assert statistics.median(plain) < 10, plain  # loopback and Python: well under the delay
    out = b.output()
    assert "ARP request who-has 10.0.0.2 tell 10.0.0.1" in out
    assert re.search(r"IPv4 10\.0\.0\.1 > 10\.0\.0\.2 ICMP echo request id \d+ seq \d+", out)

    for direction in ("a2b", "b2a"):
        r = ctl(xc, "impair", link, "--direction", direction, "delay", "10ms")
        assert r.returncode == 0, r.stderr
    # echo requests sent from now on cross both delays; one may have been on its way
    first = max(a.replies()) + 3
    wait_until(lambda: len([s for s in a.replies() if s >= first]) >= 8, 10, "delayed replies")
    delayed = [ms for seq, ms in a.replies().items() if seq >= first]
    assert min(delayed) >= 19.5, delayed  # 10 ms each way, at least
    assert a.stop() == 0
    stats = parse_ping(a.output())
    assert stats.received == len(a.replies()) and stats.transmitted >= stats.received
    assert stats.rtt is not None and stats.rtt[2] >= 19.5
    assert b.stop() == 0


def test_xcon_restarted_pings_resume(router, xcon):
    link, a, b = pinging_pair(router)
    first = xcon("--p2p", link)
    first.wait_health("0", contains="All 2 sockets connected")
    a.wait_for(REPLY.pattern, count=3)
    assert first.terminate() == 0
    for r in (a, b):
        r.wait_for(r": disconnected$")
    before = max(a.replies())
    again = xcon("--p2p", link)
    again.wait_health("0", contains="All 2 sockets connected")
    for r in (a, b):
        r.wait_for(r": connection from ", count=2)
    wait_until(lambda: max(a.replies()) > before + 3, 10, lambda: f"pings again:\n{a.output()}")
    assert a.stop() == 0 and b.stop() == 0


@pytest.mark.parametrize("engine", ["epoll"])  # the routers are under test here, not the engines
def test_answers_a_qemu_nic_and_prints_other_frames(peers, router, xcon):
    q = peers()
    hr = new_host()
    r = router(f"{hr}/1=10.0.0.2/24")
    xc = xcon("--p2p", f"{endpoint(q)}--{hr}/1")
    xc.wait_health("0", contains="All 2 sockets connected")
    mine = bytes.fromhex("020000000001")
    q.send(arp(ARP_REQUEST, mine, "10.0.0.1", "10.0.0.2"))
    q.wait_frames(1)
    op, smac, sip, tmac, tip = arp_fields(q.frames[0], 14) or (0, b"", "", b"", "")
    assert (op, sip, tmac, tip) == (ARP_REPLY, "10.0.0.2", mine, "10.0.0.1")
    assert q.frames[0][:6] == mine and q.frames[0][6:12] == smac == bytes.fromhex("02000a000002")

    data = bytes(range(200)) * 3
    q.send(icmp_echo("10.0.0.1", "10.0.0.2", 77, 5, data, src_mac=mine, dst_mac=smac))
    q.wait_frames(2)
    reply = q.frames[1]
    assert check_frame(reply) == []  # every length and checksum right
    p = locate(reply)
    assert p is not None and echo_fields(p) == (0, 77, 5, data)
    assert reply[:12] == mine + smac

    others = [
        udp_packet(4, b"hello").frame,
        numbered(1, 80),
        tagged(icmp_echo("10.0.0.1", "10.0.0.2", 77, 6, b"x", src_mac=mine, dst_mac=smac), 5),
        icmp_echo("10.0.0.1", "10.0.0.9", 77, 7, b"x", src_mac=mine, dst_mac=smac),
        icmp_echo("10.0.0.1", "10.0.0.2", 77, 7, b"x", src_mac=mine, dst_mac=smac)[:-1] + b"y",
    ]
    q.send_frames(
        [*others, icmp_echo("10.0.0.1", "10.0.0.2", 77, 8, b"y", src_mac=mine, dst_mac=smac)]
    )
    # frames are answered in order: once seq 8 is, neither the other VLAN's echo
    # request (6), the one for another address (7) nor the corrupt one (7) was
    q.wait_frames(3)
    assert [echo_fields(locate(f)) for f in q.frames[1:]] == [(0, 77, 5, data), (0, 77, 8, b"y")]
    out = r.wait_for(r"ICMP echo request id 77 seq 8")
    assert f"{hr}/1: IPv4 10.9.0.1 > 10.9.0.2 UDP 40001 > 5202, 47 bytes" in out
    assert f"{hr}/1: ethertype 0x88b5 52:54:00:00:00:01 > 52:54:00:00:00:02, 80 bytes" in out
    assert f"{hr}/1: vlan 5 IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request id 77 seq 6" in out
    assert f"{hr}/1: IPv4 10.0.0.1 > 10.0.0.9 ICMP echo request id 77 seq 7" in out
    assert (
        f"{hr}/1: IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request id 77 seq 7, 43 bytes, "
        "bad: ICMP checksum" in out
    )
    assert r.stop() == 0


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed (Debian tshark)")
@pytest.mark.parametrize("engine", ["epoll"])
def test_tshark_reads_the_arp_and_echo_frames_right(router, xcon, tmp_path):
    link, a, b = pinging_pair(router, interval="0.1")
    cap = str(tmp_path / "link.pcapng")
    xc = xcon("--p2p", link, "--capture", f"{link}={cap}")
    xc.wait_health("0", contains="All 2 sockets connected")
    a.wait_for(REPLY.pattern, count=3)
    assert a.stop() == 0
    assert xc.terminate() == 0
    assert b.stop() == 0
    rows = tshark_fields(
        cap,
        "arp.opcode",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
        "icmp.type",
        "icmp.seq",
        "icmp.checksum.status",
        "ip.checksum.status",
        "_ws.expert.message",
        options={"ip.check_checksum": "TRUE"},
    )
    # Frames a sent before xcon connected to it never crossed: the first to is
    # the ARP request that resolved b.  (The file holds each direction's frames
    # in order, the two directions interleaved as the capture wrote them.)
    arps = sorted(r[:3] for r in rows if r[0])
    assert arps == [["1", "10.0.0.1", "10.0.0.2"], ["2", "10.0.0.2", "10.0.0.1"]], rows
    requests = [int(r[4]) for r in rows if r[3] == "8"]
    replies = [int(r[4]) for r in rows if r[3] == "0"]
    assert len(requests) >= 3 and requests == list(range(requests[0], requests[0] + len(requests)))
    assert replies == requests[: len(replies)] and len(replies) >= len(requests) - 1, rows
    # every checksum good (1), nothing tshark's expert info flags
    assert all(r[5:] == ["1", "1", ""] for r in rows if r[3]), rows


@pytest.mark.parametrize("engine", ["epoll"])
def test_vlan_trunk_and_udp_nics(router, xcon, tmp_path):
    """``HOST/N:VID`` is the trunk side of xcon's access port; a udp: NIC is the
    mirror of xcon's udp: end.  One router with both NICs pings across each."""
    ha, hb = new_host(), new_host()
    port_r, port_x = free_udp_port(ha), free_udp_port(ha)
    b = router(f"{hb}/1=10.0.1.2/24", f"udp:{ha}:{port_x}@{ha}:{port_r}=10.0.2.2/24")
    xc = xcon("--p2p", f"{ha}/1--{hb}/1:123", f"{ha}/2--udp:{ha}:{port_r}@{ha}:{port_x}")
    a = router(f"{ha}/1:123=10.0.1.1/24", f"{ha}/2=10.0.2.1/24", "--ping", "10.0.1.2")
    out = a.wait_for(r"^64 bytes from 10\.0\.1\.2: ", count=2)
    assert f"{ha}/1:123: 10.0.1.1/24, MAC 02:00:0a:00:01:01, listening on {ha}:10001" in out
    assert b.wait_for(r"IPv4 10\.0\.1\.1 > 10\.0\.1\.2 ICMP echo request")
    assert a.stop() == 0
    a = router(f"{ha}/2=10.0.2.1/24", "--ping", "10.0.2.2", "--interval", "0.1")
    a.wait_for(r"^64 bytes from 10\.0\.2\.2: ", count=2)
    assert b.wait_for(r"udp:.*: IPv4 10\.0\.2\.1 > 10\.0\.2\.2 ICMP echo request")
    assert a.stop() == 0
    assert xc.terminate() == 0
    assert b.stop() == 0


def test_sigterm_ends_a_router_whose_pings_go_unanswered(router):
    """Each ping waits up to 1 s for ARP, longer than the interval: the signal is
    still taken between two."""
    a = router(f"{new_host()}/1=10.0.0.1/24", "--ping", "10.0.0.2", "--interval", "0.1")
    a.wait_for(r"^From 10\.0\.0\.1 icmp_seq=\d+ Destination Host Unreachable$", count=2)
    assert a.stop() == 0
    stats = parse_ping(a.output())
    assert stats.transmitted >= 2 and stats.received == 0


def run_router(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xcon", "fake-router", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "the following arguments are required: END=ADDRESS/PREFIX"),
        (("vr1/1",), "'vr1/1': expected END=ADDRESS/PREFIX, e.g. vr1/1=10.0.0.1/24"),
        (("vr1/x=10.0.0.1/24",), "'vr1/x': expected HOST/N or [IPv6]/N, e.g. vr1/1 or [::1]/1"),
        (
            ("tap:fr0=10.0.0.1/24",),
            "'tap:fr0': a fake router's NIC is HOST/N[:VID], tcp:HOST:PORT, unix:PATH "
            "or udp:RHOST:RPORT@[LHOST:]LPORT",
        ),
        (("vr1/1=10.0.0.0/24",), "'10.0.0.0/24': 10.0.0.0 is the network address of 10.0.0.0/24"),
        (("vr1/1=2001:db8::1/64",), "'2001:db8::1/64' is not an IPv4 address"),
        (("vr1/1=10.0.0.1/24", "tcp:vr1:10001=10.0.1.1/24"), "are the same NIC"),
        (("vr1/1=10.0.0.1/24", "--ping", "10.0.9.1"), "--ping 10.0.9.1: not in the network"),
        (("vr1/1=10.0.0.1/24", "--ping", "10.0.0.1"), "that is the router's own address"),
        (("vr1/1=10.0.0.1/24", "--ping", "vr2"), "--ping 'vr2' is not an IPv4 address"),
        (("vr1/1=10.0.0.1/24", "--count", "3"), "--count and --interval apply to --ping only"),
        (("vr1/1=10.0.0.1/24", "--ping", "10.0.0.2", "--interval", "0"), "0 is outside 0.01"),
        (("vr1/1=10.0.0.1/24", "--ping", "10.0.0.2", "--count", "0"), "0 is outside 1.."),
    ],
)
def test_bad_arguments_one_line_exit_2(args, message):
    r = run_router(*args)
    assert r.returncode == 2, r
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("xcon fake-router: error: ") and message in r.stderr


def test_port_in_use_one_line_exit_1():
    host = new_host()
    with socket.socket() as s:
        s.bind((host, 10001))
        s.listen()
        r = run_router(f"{host}/1=10.0.0.1/24")
    assert r.returncode == 1
    assert r.stderr == (
        f"xcon fake-router: error: {host}/1: cannot listen on {host}:10001: Address already in use\n"
    )
