"""What a start loads before its links forward: only the data path.

A cold start's time is mostly imports (docs/performance.md, "Start-up"), so
a plain ``xcon --p2p`` must not load what it does not use: the control
server (loaded once the links forward), captures and their filter compiler,
impairments, the config file's parsers, netlink, the pure-Python twin of the
fast path.  Python's own import log (``PYTHONPROFILEIMPORTTIME``) says what
was imported, in order with xcon's log lines on the same stream."""

from __future__ import annotations

import pytest

from xcon.testing.control import wait_api
from xcon.testing.fakeqemu import endpoint

#: Never imported by a plain p2p start between TCP ends (module prefixes).
NOT_AT_START = (
    "xcon.capture",
    "xcon.impair",
    "xcon.control.config",
    "xcon.control.topology",
    "xcon.netconf",
    "xcon.ports.tap",
    "xcon.ports.raw",
    "xcon.ports.dgram",
    "xcon.native.backend_python",
    "tomllib",
    "yaml",
    "pyroute2",
    "cffi",
    "pycparser",
    "json",
)
#: Loaded only after every link has connected.
AFTER_THE_LINKS = ("h11", "xcon.control.server", "xcon.control.api", "xcon.control.access")


def imports(log: str) -> list[str]:
    """The modules of the import log, in order (each ``import time:`` line)."""
    return [
        line.rpartition("|")[2].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    ]


def test_a_plain_start_loads_only_the_data_path(peers, xcon, engine):
    if engine != "epoll":
        pytest.skip("the order of the first loop turn is the epoll engine's")
    a, b = peers(), peers()
    link = f"{endpoint(a)}--{endpoint(b)}"
    xc = xcon("--p2p", link, env={"PYTHONPROFILEIMPORTTIME": "1"})
    xc.wait_health("0", contains="All 2 sockets connected")
    wait_api(xc)
    log = xc.log()
    connected = max(log.index(f"{e}: connected to") for e in (endpoint(a), endpoint(b)))
    before = imports(log[:connected])
    assert "xcon.links" in before, log[-2000:]
    from xcon import native

    # the pure-Python twin is the fast path itself when that is the one chosen
    allowed = ("xcon.native.backend_python",) if native.BACKEND == "python" else ()
    early = [m for m in before if m.startswith(NOT_AT_START + AFTER_THE_LINKS) and m not in allowed]
    assert early == [], f"a plain start imports {early} before its links forward"
    assert "xcon.control.server" in imports(log[connected:]), "the control server loads after"


def test_no_control_loads_no_control_server(peers, xcon, engine):
    if engine != "epoll":
        pytest.skip("one engine is enough: the imports do not depend on it")
    a, b = peers(), peers()
    xc = xcon(
        "--p2p",
        f"{endpoint(a)}--{endpoint(b)}",
        "--control",
        "none",
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    xc.wait_health("0", contains="All 2 sockets connected")
    loaded = imports(xc.log())
    assert not [m for m in loaded if m.startswith(AFTER_THE_LINKS)]
