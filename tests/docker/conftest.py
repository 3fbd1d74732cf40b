"""Fixtures of the container tests: the image under test and a lab that cleans up after itself."""

from __future__ import annotations

from contextlib import closing

import pytest

from xcon.testing.dockerlab import DockerLab


@pytest.fixture
def dlab(tmp_path):
    """Containers, networks, namespaces and qemu routers of one test; all removed after it."""
    with closing(DockerLab(tmp_path)) as lab:
        yield lab
