"""Helpers of the container tests: the image, docker run as a lab, health and ping checks.

``make test-docker`` (docker/test.sh) builds the image and runs these with
``XCON_DOCKER_IMAGE`` naming it.  Everything a test makes is labelled with a
random tag, named after it, and removed afterwards even when the test fails:
containers, the docker network, network namespaces (made or attached to a
container's), qemu routers and their taps.  Traffic goes only to loopback and
to addresses inside the containers and namespaces made here.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from xcon.testing.ping import ping
from xcon.testing.qemu import QemuRouter, missing, sh
from xcon.testing.wait import wait_until

IMAGE = os.environ.get("XCON_DOCKER_IMAGE", "")
LABEL = "xcon-test"
#: The image's own health check command, with timings for a test: checked every
#: second, one failure is enough (the image says every 5 s, 3 failures).
FAST_HEALTH = [
    "--health-interval=1s",
    "--health-timeout=3s",
    "--health-retries=1",
    "--health-start-period=0s",
]
#: The least privilege of a tap container, next to upstream's --privileged.
TAP_PRIVILEGE = [
    "--cap-drop=ALL",
    "--cap-add=NET_ADMIN",
    "--cap-add=NET_RAW",
    "--device=/dev/net/tun",
]


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _missing_docker() -> str | None:
    if not IMAGE:
        return "XCON_DOCKER_IMAGE is not set: `make test-docker` builds the image and runs these"
    if shutil.which("docker") is None:
        return "no docker command (Debian package docker.io)"
    try:
        r = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
    except subprocess.TimeoutExpired:
        return "the docker engine does not answer"
    if r.returncode != 0:
        return f"no docker engine answers: {r.stderr.strip()[:200]}"
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        return f"image {IMAGE} is not built (make docker)"
    return None


def missing_docker() -> str | None:
    """Why the container tests cannot run here, or None (computed once)."""
    global _why
    if _why is False:
        _why = _missing_docker()
    return _why  # type: ignore[return-value]


_why: str | None | bool = False


def requires_docker(qemu: bool = False) -> list[pytest.MarkDecorator]:
    """Marks of a module of container tests (``qemu``: it needs real qemu routers too)."""
    why = missing_docker() or (missing() if qemu else None)
    return [pytest.mark.docker, pytest.mark.skipif(why is not None, reason=str(why))]


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name).stdout)[0]


def health(name: str) -> tuple[str, str]:
    """The container's health status and the output of its last check."""
    state = inspect(name)["State"]
    h = state.get("Health") or {}
    log = h.get("Log") or []
    return h.get("Status", ""), (log[-1].get("Output", "") if log else "")


def wait_health(name: str, status: str, contains: str = "", timeout: float = 20) -> str:
    """Wait until docker says ``status`` with ``contains`` in the check's output; returns it."""
    seen: list[tuple[str, str]] = [("", "")]

    def ok() -> bool:
        seen[0] = health(name)
        return seen[0][0] == status and contains in seen[0][1]

    wait_until(
        ok,
        timeout,
        lambda: f"{name} health {status!r}/{contains!r}; seen {seen[0]!r}; logs:\n{logs(name)}",
        poll=0.2,
    )
    return seen[0][1]


def logs(name: str) -> str:
    r = docker("logs", name, check=False)
    return r.stdout + r.stderr


def ping_count(netns: str, dst: str, count: int, interval: float = 0.05) -> int:
    """Replies to ``count`` pings from a namespace."""
    return ping(netns, dst, count, interval, wait=2).received


class DockerLab:
    """What one test makes: containers, a network, namespaces, qemu routers."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = secrets.token_hex(3)
        rnd = random.Random()
        a, b = rnd.randrange(64, 250), rnd.randrange(0, 250)
        #: Two /24s for the routers' taps (and the app's tap), inside namespaces and containers.
        self.subnets = [f"10.{a}.{b}", f"10.{a}.{b + 1}"]
        self.loopback = f"127.{rnd.randrange(2, 255)}.{rnd.randrange(256)}"
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.namespaces: list[str] = []
        self.routers: list[QemuRouter] = []

    def name(self, role: str) -> str:
        return f"xct-{self.tag}-{role}"

    # -- docker ---------------------------------------------------------------------
    def run(self, role: str, *args: str, image: str = IMAGE) -> str:
        """``docker run -d --name xct-TAG-ROLE ARGS... IMAGE`` then the arguments after ``--``.

        ``args`` are docker's options, then ``"--"``, then the container's arguments.
        """
        i = args.index("--") if "--" in args else len(args)
        options, command = list(args[:i]), list(args[i + 1 :])
        name = self.name(role)
        self.containers.append(name)
        docker(
            "run", "-d", "--name", name, "--label", f"{LABEL}={self.tag}", *options, image, *command
        )
        return name

    def network(self) -> str:
        """A user-defined bridge network (``--link`` and aliases need one)."""
        name = self.name("net")
        self.networks.append(name)
        docker("network", "create", "--label", f"{LABEL}={self.tag}", name)
        return name

    # -- namespaces and routers -----------------------------------------------------
    def netns(self, role: str) -> str:
        name = self.name(role)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def container_netns(self, container: str) -> str:
        """The container's network namespace, named (``ip netns attach``) for ip and qemu."""
        pid = str(inspect(container)["State"]["Pid"])
        name = f"{container}-ns"
        sh("ip", "netns", "attach", name, pid)
        self.namespaces.append(name)
        return name

    def router(
        self,
        role: str,
        n: int,
        host: str,
        nic: int = 1,
        run_netns: str | None = None,
        subnet: int = 0,
    ) -> QemuRouter:
        """A started qemu router NIC on ``host`` (in ``run_netns``); its tap in a new
        namespace ``role`` at ``.n`` of ``subnets[subnet]``."""
        i = len(self.routers)
        r = QemuRouter(
            self.tmp,
            tap=f"xq{self.tag}{i}",
            host=host,
            nic=nic,
            netns=self.netns(role),
            address=f"{self.subnets[subnet]}.{n}/24",
            # Kept across a restart, like a router's: the neighbours' ARP entries stay right.
            mac=f"02:58:{self.tag[:2]}:{self.tag[2:4]}:{self.tag[4:]}:{i:02x}",
            run_netns=run_netns,
        )
        self.routers.append(r)
        return r.start()

    def close(self) -> None:
        """Remove everything, in the order that frees it: qemu, namespaces, containers, network."""
        errors: list[str] = []
        for router in self.routers:
            try:
                router.stop()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"qemu {router.tap}: {e}")
        for name in reversed(self.namespaces):
            r = sh("ip", "netns", "del", name, check=False)
            if r.returncode:
                errors.append(f"ip netns del {name}: {r.stderr.strip()}")
        for router in self.routers:
            sh("ip", "link", "del", router.tap, check=False)
        for name in reversed(self.containers):
            r = docker("rm", "-f", "-v", name, check=False)
            if r.returncode and "No such container" not in r.stderr:
                errors.append(f"docker rm {name}: {r.stderr.strip()}")
        for name in self.networks:
            r = docker("network", "rm", name, check=False)
            if r.returncode:
                errors.append(f"docker network rm {name}: {r.stderr.strip()}")
        left = docker("ps", "-aq", "--filter", f"label={LABEL}={self.tag}", check=False).stdout
        if left.strip():
            errors.append(f"containers left: {left.split()}")
        if errors:
            raise AssertionError("cleanup: " + "; ".join(errors))
