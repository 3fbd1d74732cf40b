"""vrnetlab style: routers in containers on a user-defined network, xcon linked to them by name.

A router container here is a container of the image running ``sleep``, whose
network namespace holds real qemu NICs (:mod:`xcon.testing.qemu`, run from the
host inside that namespace: ``ip netns attach``): NIC N listens on the
container's port 10000+N, its tap is in a namespace of the test's.  That is all
of a vrnetlab router xcon can see: a container reached by its ``--link`` name
or network alias through docker's DNS, a qemu socket on its address.

    ns a1 ─ tap ═ qemu vr1/1 ─┐                ┌─ qemu vr2/1 ═ tap ─ ns b1
                              └─ xcon --p2p ───┘
    ns a2 ─ tap ═ qemu vr1/2 ──── (same) ──── app: xcon --tap-listen 1, tap0

The app container is the image itself as ``--tap-listen 1 --ipv4-address ...``
with only NET_ADMIN, NET_RAW and /dev/net/tun (every other capability dropped);
the cross-connect containers have no capability at all.
"""

from __future__ import annotations

import pytest

from xcon.testing.dockerlab import (
    FAST_HEALTH,
    TAP_PRIVILEGE,
    docker,
    inspect,
    ping_count,
    requires_docker,
    wait_health,
)
from xcon.testing.ping import wait_ping

pytestmark = [*requires_docker(qemu=True), pytest.mark.timeout(180)]


def docker_ping(container: str, dst: str, count: int) -> int:
    """Replies to ``count`` pings sent from inside a container (``docker exec``)."""
    r = docker(
        "exec",
        container,
        "ping",
        "-n",
        "-q",
        "-c",
        str(count),
        "-i",
        "0.05",
        "-W",
        "1",
        "-w",
        "5",
        dst,
        check=False,
    )
    line = next((x for x in r.stdout.splitlines() if "packets transmitted" in x), "")
    return int(line.split(",")[1].split()[0]) if line else 0


def test_p2p_by_link_and_by_alias_with_tap_app(dlab):
    net = dlab.network()
    alias = {role: f"{dlab.tag}-{role}-alias" for role in ("vr1", "vr2", "app")}
    box = {}
    for role in ("vr1", "vr2"):
        box[role] = dlab.run(
            role,
            f"--network={net}",
            f"--network-alias={alias[role]}",
            "--cap-drop=ALL",
            "--entrypoint=sleep",
            "--",
            "infinity",
        )
    vr1_ns = dlab.container_netns(box["vr1"])
    vr2_ns = dlab.container_netns(box["vr2"])
    vr1_1 = dlab.router("a1", 1, host="0.0.0.0", nic=1, run_netns=vr1_ns)
    vr2_1 = dlab.router("b1", 2, host="0.0.0.0", nic=1, run_netns=vr2_ns)
    vr1_2 = dlab.router("a2", 1, host="0.0.0.0", nic=2, run_netns=vr1_ns, subnet=1)
    app_ip = f"{dlab.subnets[1]}.100"
    app = dlab.run(
        "app",
        f"--network={net}",
        f"--network-alias={alias['app']}",
        *TAP_PRIVILEGE,
        *FAST_HEALTH,
        "--",
        "--tap-listen",
        "1",
        "--ipv4-address",
        f"{app_ip}/24",
    )
    wait_health(app, "healthy", "listening for a client")

    # By --link name, as vrnetlab's README runs it (upstream adds --privileged).
    x = dlab.run(
        "xcon-link",
        f"--network={net}",
        f"--link={box['vr1']}:vr1",
        f"--link={box['vr2']}:vr2",
        f"--link={app}:app",
        "--cap-drop=ALL",
        *FAST_HEALTH,
        "--",
        "--p2p",
        "vr1/1--vr2/1",
        "vr1/2--app/1",
    )
    wait_health(x, "healthy", "All 4 sockets connected")
    wait_ping(vr1_1.netns, vr2_1.ip)
    assert ping_count(vr1_1.netns, vr2_1.ip, 20) >= 20
    wait_ping(vr1_2.netns, app_ip)
    assert ping_count(vr1_2.netns, app_ip, 20) >= 20
    assert docker_ping(app, vr1_2.ip, 5) >= 5, "the app pings the router from its own tap"
    wait_health(app, "healthy", "All 2 sockets connected")
    assert docker("stop", x).returncode == 0
    assert inspect(x)["State"]["ExitCode"] == 0
    wait_health(app, "healthy", "listening for a client")
    assert ping_count(vr1_1.netns, vr2_1.ip, 1) == 0, "no cross-connect, no link"

    # By network alias, no --link at all.
    y = dlab.run(
        "xcon-alias",
        f"--network={net}",
        "--cap-drop=ALL",
        *FAST_HEALTH,
        "--",
        "--p2p",
        f"{alias['vr1']}/1--{alias['vr2']}/1",
        f"{alias['vr1']}/2--{alias['app']}/1",
    )
    wait_health(y, "healthy", "All 4 sockets connected")
    wait_ping(vr1_1.netns, vr2_1.ip)
    assert ping_count(vr2_1.netns, vr1_1.ip, 20) >= 20
    wait_ping(vr1_2.netns, app_ip)
    assert docker_ping(app, vr1_2.ip, 20) >= 20
    assert docker("stop", y).returncode == 0
    assert inspect(y)["State"]["ExitCode"] == 0
