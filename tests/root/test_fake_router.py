"""``xcon fake-router`` against a real Linux stack: the router linked by xcon to
a tap in a throw-away namespace, pinged by the kernel's ping and pinging the
kernel (which answers only ARP and echo requests that are right)."""

from __future__ import annotations

import pytest

from xcon.testing.netns import ns_prefix, requires_root, requires_tool, sh
from xcon.testing.ping import ping
from xcon.testing.process import REPLY, FakeRouterProcess

pytestmark = requires_root


@requires_tool("ping", "iputils-ping")
@pytest.mark.parametrize("engine", ["epoll"])  # the router is under test here, not the engines
def test_the_kernel_and_the_fake_router_ping_each_other(netns, nsxcon, tmp_path):
    ns = netns()
    r = FakeRouterProcess(
        str(tmp_path),
        "127.0.0.1/1=10.0.12.1/24",
        "--ping",
        "10.0.12.9",
        "--interval",
        "0.1",
        prefix=ns_prefix(ns),
    )
    try:
        xc = nsxcon(ns, "--p2p", "127.0.0.1/1--tap:frt0")
        xc.wait_health("0", contains="All 2 sockets connected")
        sh("ip", "-n", ns, "addr", "add", "10.0.12.9/24", "dev", "frt0")
        sh("ip", "-n", ns, "link", "set", "frt0", "up")
        got = ping(ns, "10.0.12.1", count=3)
        assert got.received >= 3, got.output
        neigh = sh("ip", "-n", ns, "neigh", "show", "10.0.12.1", "dev", "frt0").stdout
        assert "lladdr 02:00:0a:00:0c:01" in neigh, neigh
        out = r.wait_for(REPLY.pattern, count=3)  # the kernel answered its ARP and pings
        assert "127.0.0.1/1: IPv4 10.0.12.9 > 10.0.12.1 ICMP echo request" in out
        assert r.stop() == 0
        assert xc.terminate() == 0
    finally:
        r.kill()
