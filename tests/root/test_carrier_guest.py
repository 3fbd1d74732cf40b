"""Carrier follows the link, seen from inside real Linux guests.

Two guests (Debian's kernel, a busybox initramfs: ``xcon.testing.guest``)
started as vrnetlab starts routers (NIC 1 a virtio-net on ``-netdev
socket,id=p01,listen=HOST:10001``, the monitor on ``HOST:4000``), joined by
xcon with ``--monitors vrnetlab``.  The far guest's qemu killed: the near
guest's ``/sys/class/net/eth0/carrier`` reads 0; booted again: 1, and ping
works again; xcon stopped: 0 on both.
"""

from __future__ import annotations

import time

import pytest

from xcon.testing import guest as guest_kit
from xcon.testing.process import XconProcess

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(600),
    pytest.mark.skipif(guest_kit.missing() is not None, reason=str(guest_kit.missing())),
]


@pytest.fixture
def guests():
    made: list[guest_kit.Guest] = []

    def make(host: str, address: str, mac: str) -> guest_kit.Guest:
        g = guest_kit.Guest(host, address, mac)
        made.append(g)
        return g.start()

    yield make
    for g in made:
        g.close()


def test_the_guests_see_carrier_follow_the_link(guests, tmp_path):
    a = guests("127.78.0.1", "10.78.0.1/24", "52:54:00:78:00:01")
    b = guests("127.78.0.2", "10.78.0.2/24", "52:54:00:78:00:02")
    print(f"guests booted in {a.boot_seconds:.1f} s and {b.boot_seconds:.1f} s ({a.accel})")
    link = f"{a.endpoint}--{b.endpoint}"
    with XconProcess(["--p2p", link, "--monitors", "vrnetlab"], cwd=str(tmp_path)) as xc:
        xc.wait_health("0", contains="All 2 sockets connected")
        assert a.ping("10.78.0.2", count=3), "ping across xcon"
        assert a.carrier() == 1 and b.carrier() == 1

        b.stop()  # the far router dies: its socket closes
        gone = time.monotonic()
        seen = a.wait_carrier(0)
        print(f"far qemu killed -> near guest reads carrier 0 after {(seen - gone) * 1000:.0f} ms")

        b.start()  # the far router boots again; xcon reconnects
        xc.wait_health("0", contains="All 2 sockets connected", timeout=60)
        a.wait_carrier(1)
        assert b.carrier() == 1
        assert a.ping("10.78.0.2", count=3), "ping across xcon again"

        assert xc.terminate() == 0  # --on-exit down
        assert a.carrier() == 0 and b.carrier() == 0
        assert f"{a.endpoint}'s NIC carrier off ({b.endpoint} is not connected)" in xc.log()
