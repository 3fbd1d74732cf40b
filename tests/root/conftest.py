"""Fixtures of the root tests: throw-away network namespaces and xcon run inside them.

Every name carries a random suffix, and everything is removed after the test
even when it fails.  Traffic stays inside the namespaces these tests create.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from xcon.testing import bird
from xcon.testing.netns import ROOT_REASON, ns_prefix, sh, suffix, workdir
from xcon.testing.process import XconProcess
from xcon.testing.qemu import Lab


def _can_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.fixture
def netns():
    """Factory of network namespaces (loopback up); all deleted after the test."""
    if not _can_netns():
        pytest.skip(ROOT_REASON + " and iproute2")
    made: list[str] = []

    def make() -> str:
        name = f"xct-{suffix()}"
        sh("ip", "netns", "add", name)
        made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    yield make
    for name in made:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def nsxcon(engine):
    """Factory of xcon processes inside a namespace, once per engine; all killed after the test."""
    made: list[XconProcess] = []

    def run(ns: str, *args: str, user: str | None = None) -> XconProcess:
        p = XconProcess([*args, "--engine", engine], cwd=workdir(), prefix=ns_prefix(ns, user))
        made.append(p)
        return p

    yield run
    for p in made:
        p.kill()
        shutil.rmtree(p.workdir, ignore_errors=True)


@pytest.fixture
def closing():
    """Register objects with a close() method; all closed after the test."""
    objs: list = []

    def add(obj):
        objs.append(obj)
        return obj

    yield add
    for o in reversed(objs):
        try:
            o.close()
        except Exception:
            pass


@pytest.fixture
def lab(tmp_path, engine):
    """Routers, namespaces and xcon processes (``--engine`` each engine in turn)."""
    with contextlib.closing(Lab(tmp_path, engine)) as lab:
        yield lab


@pytest.fixture
def routed_pair(lab):
    """Factory: :func:`xcon.testing.bird.routed_pair` on this test's lab (two
    qemu routers with BIRD, OSPF and BFD, joined by xcon and converged);
    skipped, naming the package, where BIRD is missing.  Everything it starts
    goes with the lab."""
    why = bird.missing()
    if why:
        pytest.skip(why)

    def make(**kw) -> bird.RoutedPair:
        return bird.routed_pair(lab, **kw)

    return make
