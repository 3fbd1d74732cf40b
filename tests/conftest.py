"""Shared fixtures: unique loopback addresses, fake qemu peers, xcon processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from xcon.testing.control import wait_api, write
from xcon.testing.fakedgram import FakeDgram
from xcon.testing.fakemonitor import FakeMonitor
from xcon.testing.fakeqemu import FakeQemu, endpoint, stop_all
from xcon.testing.loopback import free_udp_port, new_host
from xcon.testing.process import XconProcess

# Property tests run at their full example counts under ``--hypothesis-profile
# thorough`` (make test) and at a quarter of them otherwise: the counts are
# scaled by xcon.testing.strategies.examples, relative to the thorough profile's
# 100 (hypothesis' own default).  Nothing here may import that module: its
# settings are computed when it is imported, after the profile is chosen.
settings.register_profile("thorough", max_examples=100)
settings.register_profile("quick", max_examples=25)
settings.load_profile("quick")


@pytest.fixture
def peers():
    """Factory of started fake qemu NICs, each on its own loopback address; all stopped after."""
    made: list[FakeQemu] = []

    def make(nic: int = 1, start: bool = True, **kw) -> FakeQemu:
        q = FakeQemu(new_host(), nic, **kw)
        if start:
            q.start()
        made.append(q)
        return q

    yield make
    stop_all(made)


@pytest.fixture
def udp_peer():
    """Factory of fake UDP peers, each on its own loopback address, and the
    ``udp:`` end xcon reaches it by (on a free local port); all closed after."""
    made: list[FakeDgram] = []

    def make() -> tuple[FakeDgram, str]:
        host = new_host()
        d = FakeDgram(host, 0)
        made.append(d)
        lport = free_udp_port(host)
        d.xcon_addr = (host, lport)
        return d, f"udp:{host}:{d.port}@{host}:{lport}"

    yield make
    for d in made:
        d.close()


def _uvloop_missing() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return True
    return False


ENGINES = [
    "epoll",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            _uvloop_missing(), reason="uvloop is not installed (pip install 'xcon[uvloop]')"
        ),
    ),
]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Every integration test runs once per engine."""
    return request.param


@pytest.fixture
def xcon(tmp_path, engine):
    """Factory of xcon processes (``python -m xcon --engine ENGINE``); all killed after."""
    made: list[XconProcess] = []

    def run(*args: str, **kw) -> XconProcess:
        d = tmp_path / f"x{len(made)}"
        d.mkdir()
        p = XconProcess([*args, "--engine", engine], cwd=str(d), **kw)
        made.append(p)
        return p

    yield run
    for p in made:
        p.kill()


@pytest.fixture
def p2p(peers, xcon):
    """Factory: xcon (``ARGS`` after the link) with one p2p link between two new
    fake NICs, both connected and the control API up; returns ``(xc, a, b, link)``."""

    def make(*args: str) -> tuple[XconProcess, FakeQemu, FakeQemu, str]:
        a, b = peers(), peers()
        link = f"{endpoint(a)}--{endpoint(b)}"
        xc = xcon("--p2p", link, *args)
        xc.wait_health("0", contains="All 2 sockets connected")
        wait_api(xc)
        return xc, a, b, link

    return make


@pytest.fixture
def configured(xcon, tmp_path):
    """Factory: xcon started with ``--config`` from a file holding ``text``, its
    ``sockets`` all connected and the control API up; returns ``(xc, config path)``."""

    def make(text: str, sockets: int = 2) -> tuple[XconProcess, Path]:
        cfg = tmp_path / "xcon.toml"
        write(cfg, text)
        xc = xcon("--config", str(cfg))
        xc.wait_health("0", contains=f"All {sockets} sockets connected")
        wait_api(xc)
        return xc, cfg

    return make


@pytest.fixture
def monitors():
    """Factory of fake qemu monitors (``FakeMonitor(**kw)``); all closed after."""
    made: list[FakeMonitor] = []

    def make(**kw) -> FakeMonitor:
        m = FakeMonitor(**kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()
