"""The built image on its own: entrypoints, fast path, tools, pinned versions, health check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xcon.testing.dockerlab import IMAGE, docker, inspect, requires_docker

pytestmark = [*requires_docker(), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, entrypoint: str | None = None, caps: bool = False) -> str:
    """The image run once with no network (and no capability unless ``caps``)."""
    opts = ["--entrypoint", entrypoint] if entrypoint else []
    opts += [] if caps else ["--cap-drop", "ALL"]
    r = docker("run", "--rm", "--network", "none", *opts, IMAGE, *args)
    return r.stdout + r.stderr


@pytest.mark.parametrize("entrypoint", [None, "/xcon", "xcon"])
def test_version_says_native_fast_path(entrypoint):
    """``/xcon.py`` (the image's entrypoint), ``/xcon`` and the console script ``xcon``."""
    out = run("--version", entrypoint=entrypoint)
    assert re.fullmatch(r"xcon \S+ \(fast path: native\)\n", out), out


def test_tools_users_exec_into():
    """With docker's default capabilities: ping has a file capability (cap_net_raw)."""
    out = run("-c", "ip -V && ping -V && tcpdump --version", entrypoint="/bin/sh", caps=True)
    assert "iproute2" in out and "iputils" in out and "tcpdump version" in out, out


def test_no_compiler_and_no_pip_in_the_runtime_image():
    out = run("-c", "command -v gcc cc pip pip3 || echo none", entrypoint="/bin/sh")
    assert out.strip() == "none", out


def pinned() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "docker" / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_installed_versions_are_the_pinned_ones():
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    installed = json.loads(run("-c", code, entrypoint="python3"))
    pins = pinned()
    for name, version in installed.items():
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key != "xcon":
            assert pins.get(key) == version, f"{name} {version} is not pinned ({pins.get(key)})"
    assert {"cffi", "pyroute2", "uvloop"} <= {n.lower() for n in installed}


def test_image_config(record_property):
    """The health check is the Dockerfile's, the health file /health, and the size reported."""
    config = inspect(IMAGE)["Config"]
    assert config["Entrypoint"] == ["/xcon.py"] and not config.get("Cmd")
    assert config["WorkingDir"] == "/"
    check = config["Healthcheck"]
    assert check["Test"][0] == "CMD" and "/health" in check["Test"][-1], check
    assert check["Interval"] == 5 * 10**9 and check["Retries"] == 3, check
    size = inspect(IMAGE)["Size"]
    record_property("image_size_bytes", size)
    print(f"[docker] {IMAGE}: {size / 1e6:.0f} MB")
    assert size < 400e6, f"{size / 1e6:.0f} MB"
