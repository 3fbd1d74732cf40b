"""End to end with real qemu "routers": pings between network namespaces through xcon.

Each router is a qemu with no machine and no guest (:mod:`xcon.testing.qemu`,
docs/TESTING.md): its socket netdev listens on a loopback address like a vrnetlab
router's NIC, and qemu's hub bridges it to a tap moved into a network
namespace of its own, with an address there.  A ping from one namespace to
another crosses qemu, xcon and qemu again, exactly the path of a lab.

Everything is made with a random suffix and removed afterwards, also on
failure: xcon processes, qemu processes (by their pidfiles), taps, namespaces.
Addresses exist only inside the namespaces made here.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time

import pytest

from xcon.testing.ping import Pinger, ping, wait_ping
from xcon.testing.qemu import Lab, QemuRouter, qemu_marks, report

pytestmark = qemu_marks()


# -- tests ----------------------------------------------------------------------------


def test_ping_across_p2p(lab, record_property):
    ra, rb = lab.router("ra"), lab.router("rb")
    xc = lab.xcon("--p2p", f"{ra.endpoint}--{rb.endpoint}")
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(ra.netns, rb.ip, timeout=10)
    there = ping(ra.netns, rb.ip, count=50, interval=0.02)
    back = ping(rb.netns, ra.ip, count=20, interval=0.02)
    assert there.received >= 50, there.output
    assert back.received >= 20, back.output
    report(record_property, lab, "p2p_ping_a_to_b", there.figures())
    report(record_property, lab, "p2p_ping_b_to_a", back.figures())
    assert xc.terminate() == 0


def test_router_restart_link_recovers(lab, record_property):
    ra, rb = lab.router("ra"), lab.router("rb")
    xc = lab.xcon("--p2p", f"{ra.endpoint}--{rb.endpoint}")
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(ra.netns, rb.ip, timeout=10)

    rb.stop()
    xc.wait_health("1", contains="Expected 2 sockets but only 1 connected")
    assert ping(ra.netns, rb.ip, wait=0.5).received == 0, "the far router is down"
    assert xc.proc.poll() is None, "a router going away does not stop xcon"

    rb.start()
    took = wait_ping(ra.netns, rb.ip, timeout=5)
    report(record_property, lab, "router_restart_to_first_reply_s", round(took, 3))
    xc.wait_health("0", contains="All 2 sockets connected")
    after = ping(rb.netns, ra.ip, count=10, interval=0.02)
    assert after.received >= 10, after.output
    assert xc.terminate() == 0


def test_hub_of_three_routers(lab):
    routers = [lab.router(f"r{c}") for c in "abc"]
    xc = lab.xcon("--hub", *[r.endpoint for r in routers])
    xc.wait_health("0", contains="All 3 sockets connected")
    for src in routers:
        for dst in routers:
            if src is dst:
                continue
            wait_ping(src.netns, dst.ip, timeout=10)
            p = ping(src.netns, dst.ip, count=5, interval=0.02)
            assert p.received >= 5, f"{src.netns} -> {dst.ip}: {p.output}"
    assert xc.terminate() == 0


@pytest.mark.parametrize("order", ["stop_then_start", "start_then_stop"])
def test_xcon_restart_outage_while_pinging(lab, record_property, order):
    """Replace xcon three times under a 10 ms ping; the link comes back each time.

    stop_then_start: SIGTERM the running xcon, then start a new one (docker stop;
    docker run).  start_then_stop: start the new one first; qemu serves one
    client at a time, so its connections wait in qemu's backlog until the old
    xcon exits on SIGTERM, and are served at once.
    """
    interval, restarts = 0.01, 3
    ra, rb = lab.router("ra"), lab.router("rb")
    link = f"{ra.endpoint}--{rb.endpoint}"
    xc = lab.xcon("--p2p", link)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(ra.netns, rb.ip, timeout=10)

    with Pinger(ra.netns, rb.ip, interval) as pinger:
        handovers = []
        time.sleep(1.0)
        for _ in range(restarts):
            if order == "stop_then_start":
                t0 = time.monotonic()
                assert xc.terminate() == 0, xc.log()
                xc = lab.xcon("--p2p", link)
                xc.wait_health("0", contains="All 2 sockets connected")
            else:
                new = lab.xcon("--p2p", link)
                new.wait_health("0", contains="All 2 sockets connected")
                t0 = time.monotonic()
                assert xc.terminate() == 0, xc.log()
                xc = new
            handovers.append(time.monotonic() - t0)
            time.sleep(1.0)
        p = pinger.stop()
    out = p.output
    assert p.replies, out
    outages = sorted(p.gaps(), reverse=True)[:restarts]
    lost = p.transmitted - p.received
    report(record_property, lab, f"{order}_handover_s", [round(h, 3) for h in handovers])
    report(
        record_property,
        lab,
        f"{order}_outage_ms_by_reply_gap",
        sorted(round((gap - interval) * 1000) for gap, _ in outages),
    )
    report(record_property, lab, f"{order}_lost_pings_per_outage", sorted(n for _, n in outages))
    report(
        record_property,
        lab,
        f"{order}_total",
        f"{p.transmitted} sent, {lost} lost over {restarts} restarts "
        f"= {lost * interval * 1000 / restarts:.0f} ms per restart at {interval * 1000:.0f} ms",
    )
    # The link came back after every restart: replies keep arriving up to the end
    # of the run, and the pings lost are few next to the ones answered.
    last_seq = p.replies[-1][1]
    assert last_seq > p.transmitted - 50, f"replies stopped at icmp_seq {last_seq}\n{out[-2000:]}"
    assert lost < p.received, out[-2000:]
    assert max(gap for gap, _ in outages) < 5, "each outage is short"
    assert ping(ra.netns, rb.ip, count=10, interval=0.02).received >= 10
    assert xc.terminate() == 0


def test_tap_listen_against_qemu_router(lab):
    """A router's NIC joined to xcon's tap (upstream's Tcp2Tap usage), in one namespace 'rt'.

    In rt: the qemu router listening on 127.0.0.1:10001, ``xcon --tap-listen 2``
    (its tap carries subnet.100), and ``xcon --p2p 127.0.0.1/1--127.0.0.1/2``
    between them, as ``docker run vr-xcon --p2p r1/1--app/1`` does in a lab.
    """
    rt = lab.netns("rt")
    tap_if = f"xt{lab.tag}"
    tap_ip = f"{lab.subnet}.100"
    tap = lab.xcon(
        "--tap-listen", "2", "--tap-if", tap_if, "--ipv4-address", f"{tap_ip}/24", netns=rt
    )
    deadline = time.monotonic() + 10
    while tap.proc.poll() is None and "fast path" not in tap.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"xcon --tap-listen did not start:\n{tap.log()}")
        time.sleep(0.02)
    if tap.proc.poll() is not None:
        text = tap.log()
        if "not implemented" in text:
            pytest.skip("tap mode not implemented")
        raise AssertionError(f"xcon --tap-listen exited {tap.proc.returncode}:\n{text}")

    router = lab.router("ra", host="127.0.0.1", nic=1, run_netns=rt)
    xc = lab.xcon("--p2p", "127.0.0.1/1--127.0.0.1/2", netns=rt)
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(router.netns, tap_ip, timeout=10)
    there = ping(router.netns, tap_ip, count=20, interval=0.02)
    back = ping(rt, router.ip, count=20, interval=0.02)
    assert there.received >= 20, there.output
    assert back.received >= 20, back.output
    assert xc.terminate() == 0
    assert tap.terminate() == 0


# -- other kinds of NIC: qemu stream (unix socket) and dgram (UDP) ------------------------


def iperf3(lab: Lab, server: QemuRouter, client: QemuRouter, seconds: int = 2) -> float:
    """TCP through the link with iperf3; returns the bits/s the receiver counted."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server.netns, "iperf3", "-s", "-1", "-B", server.ip],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        r = subprocess.run(
            ["ip", "netns", "exec", client.netns, "iperf3", "-J", "-c", server.ip]
            + ["-t", str(seconds), "--connect-timeout", "3000"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

        return float(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        srv.kill()
        srv.wait()


need_iperf3 = pytest.mark.skipif(
    shutil.which("iperf3") is None, reason="iperf3 not found (Debian package iperf3)"
)


@need_iperf3
def test_stream_router_on_a_unix_socket(lab, record_property):
    path = str(lab.tmp / "rb-nic1.sock")
    ra = lab.router("ra")
    rb = lab.router("rb", netdev=f"stream,server=on,addr.type=unix,addr.path={path}")
    xc = lab.xcon("--p2p", f"{ra.endpoint}--unix:{path}")
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_ping(ra.netns, rb.ip, timeout=10)
    bps = iperf3(lab, rb, ra)
    report(record_property, lab, "unix_stream_iperf3_mbps", round(bps / 1e6))
    assert bps > 1e6
    # the stream router restarts: xcon reconnects to its new socket
    rb.stop()
    xc.wait_health("1", contains="only 1 connected")
    rb.start()
    xc.wait_health("0", contains="All 2 sockets connected", timeout=10)
    wait_ping(ra.netns, rb.ip, timeout=10)
    assert xc.terminate() == 0


@need_iperf3
def test_dgram_router_over_udp(lab, record_property):
    host = lab.loopback + ".9"
    rb_port, xcon_port = 40000 + random.randrange(1000), 41000 + random.randrange(1000)
    ra = lab.router("ra")
    rb = lab.router(
        "rb",
        netdev=f"dgram,local.type=inet,local.host={host},local.port={rb_port},"
        f"remote.type=inet,remote.host={host},remote.port={xcon_port}",
    )
    xc = lab.xcon("--p2p", f"{ra.endpoint}--udp:{host}:{rb_port}@{host}:{xcon_port}")
    xc.wait_health("0")
    wait_ping(ra.netns, rb.ip, timeout=10)
    xc.wait_health("0", contains="All 2 sockets connected")
    bps = iperf3(lab, rb, ra)
    report(record_property, lab, "udp_dgram_iperf3_mbps", round(bps / 1e6))
    assert bps > 1e6
    assert xc.terminate() == 0
