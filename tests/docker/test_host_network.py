"""The image with ``--network host`` between two real qemu routers on loopback.

Each router is a qemu with no guest (:mod:`xcon.testing.qemu`) whose NIC 1
listens on a loopback address of this host and whose tap is in a namespace of
its own; the container joins them with ``--p2p`` and no capability at all.
The run goes through what a lab sees: ping across, health in ``docker inspect``
following the routers, counters on SIGUSR1 in ``docker logs``, ``docker stop``.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from xcon.testing.dockerlab import (
    FAST_HEALTH,
    docker,
    inspect,
    logs,
    ping_count,
    requires_docker,
    wait_health,
)
from xcon.testing.ping import wait_ping
from xcon.testing.wait import wait_until

pytestmark = [*requires_docker(qemu=True), pytest.mark.timeout(180)]

#: vrnetlab's own health check, run in the container next to the image's.
UPSTREAM = "sed 1d /health; exit $(head -n1 /health)"


def upstream_says(container: str) -> tuple[int, str]:
    r = docker("exec", container, "sh", "-c", UPSTREAM, check=False)
    return r.returncode, r.stdout


def test_p2p_host_network_health_follows_routers(dlab, record_property):
    ra = dlab.router("ra", 1, host=f"{dlab.loopback}.1")
    rb = dlab.router("rb", 2, host=f"{dlab.loopback}.2")
    x = dlab.run(
        "xcon",
        "--network=host",
        "--cap-drop=ALL",
        *FAST_HEALTH,
        "--",
        "--p2p",
        f"{ra.endpoint}--{rb.endpoint}",
    )
    out = wait_health(x, "healthy", "All 2 sockets connected")
    assert upstream_says(x) == (0, out), "the same answer as vrnetlab's check"
    took = wait_ping(ra.netns, rb.ip)
    record_property("first_reply_s", round(took, 3))
    assert ping_count(ra.netns, rb.ip, 20) >= 20
    assert ping_count(rb.netns, ra.ip, 20) >= 20

    # the control API inside the container: docker exec ... xcon ctl
    link = f"{ra.endpoint}--{rb.endpoint}"
    r = docker("exec", x, "xcon", "ctl", "links", check=False)
    assert r.returncode == 0 and link in r.stdout, r
    r = docker("exec", x, "xcon", "ctl", "down", link, check=False)
    assert r.returncode == 0, r
    assert ping_count(ra.netns, rb.ip, 3) == 0, "the cable is pulled"
    r = docker("exec", x, "xcon", "ctl", "up", link, check=False)
    assert r.returncode == 0, r
    wait_ping(ra.netns, rb.ip)
    r = docker("exec", x, "xcon", "ctl", "metrics", check=False)
    assert r.returncode == 0 and "xcon_link_receive_frames_total" in r.stdout, r
    assert docker("exec", x, "xcon", "ctl", "link", "nope/1--nope/2", check=False).returncode == 1

    rb.stop()
    out = wait_health(x, "unhealthy", "Expected 2 sockets but only 1 connected")
    assert upstream_says(x) == (1, out)
    assert ping_count(ra.netns, rb.ip, 1) == 0, "the far router is down"
    assert inspect(x)["State"]["Running"], "a router going away does not stop xcon"

    rb.start()
    wait_health(x, "healthy", "All 2 sockets connected")
    wait_ping(ra.netns, rb.ip)
    assert ping_count(rb.netns, ra.ip, 20) >= 20, "ping resumes"

    docker("kill", "-s", "USR1", x)
    wait_until(lambda: "counters" in logs(x), 10, lambda: f"counters in docker logs:\n{logs(x)}")
    text = logs(x)
    assert f"{ra.endpoint}" in text and "counters" in text, text

    t0 = time.monotonic()
    r = docker("stop", x, check=False)
    took = time.monotonic() - t0
    state = inspect(x)["State"]
    assert r.returncode == 0, r.stderr
    assert state["ExitCode"] == 0, (state, logs(x))
    assert took < 5, f"docker stop took {took:.1f} s: SIGTERM was not a clean exit"
    record_property("docker_stop_s", round(took, 3))
    assert "received SIGTERM" in logs(x)


def test_container_needs_no_capability_and_no_network_for_version():
    """``docker run --rm IMAGE --version`` prints and exits 0 with nothing granted."""
    from xcon.testing.dockerlab import IMAGE

    r = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "--read-only",
            IMAGE,
            "--version",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "fast path: native" in r.stdout, r
