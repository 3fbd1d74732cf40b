"""Fixtures of the adversarial tests: the control API in process (a real app
and engine, a p2p link between two fake qemu NICs, requests handed to
:class:`~xcon.control.api.ControlAPI` as the server hands them: late answers
waited for on the loop, streams ended), and small filesystems to fill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from xcon.app import Xcon
from xcon.control.api import ControlAPI
from xcon.control.config import ConfigReloader
from xcon.control.server import Pending, Request, Response, Streaming
from xcon.testing.fakeqemu import endpoint
from xcon.testing.loop import run_until


class InProcessAPI:
    """Requests to a :class:`ControlAPI` on ``app``; ``link`` is the p2p link
    every test may change, put back as it was by :meth:`restore`."""

    def __init__(self, app: Xcon, api: ControlAPI, link: str) -> None:
        self.app, self.api, self.link = app, api, link

    def call(
        self,
        method: str,
        path: str,
        body: bytes | Any = b"",
        query: dict[str, list[str]] | None = None,
    ) -> tuple[int, Any]:
        """The answer's status and its JSON (None for a stream).  An exception
        escaping the handler fails the test (the server would answer 500)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = self.api(Request(method, path, query or {}, {}, raw))
        if isinstance(answer, Pending):  # a late answer may be a stream too
            got: list[Response | Streaming] = []
            answer._then(got.append)
            run_until(self.app.engine, lambda: bool(got), f"the answer to {method} {path}")
            answer = got[0]
        if isinstance(answer, Streaming):
            answer.body.gone()
            return answer.status, None
        doc = json.loads(answer.body) if answer.content_type == "application/json" else None
        return answer.status, doc

    def restore(self) -> None:
        """Only the test's link, as it was: no capture, no impairment, cable in."""
        from xcon.capture.manager import captures_of

        for name in [n for n in self.app.links if n != self.link]:
            self.app.remove_link(name)
        if self.link not in self.app.links:
            self.app.add_link(self.link)
        caps = captures_of(self.app)
        for cap in caps.for_link(self.link):
            caps.stop_one(cap, "stopped")
        for direction in ("a2b", "b2a"):
            self.app.set_impair(self.link, direction, None)
        self.app.set_admin(self.link, True)


@pytest.fixture
def inproc(peers, tmp_path, monkeypatch) -> Iterator[InProcessAPI]:
    """An :class:`InProcessAPI` whose working directory (so every relative
    capture file) is ``tmp_path``, with ``--config`` reload of an empty file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "xcon.toml").write_text("links = []\n")
    a, b = peers(), peers()
    app = Xcon(health_path=str(tmp_path / "health"))
    reloader = ConfigReloader(app, str(tmp_path / "xcon.toml"))
    api = ControlAPI(app, "epoll", reload=reloader.reload)
    link = f"{endpoint(a)}--{endpoint(b)}"
    app.add_link(link)
    try:
        yield InProcessAPI(app, api, link)
    finally:
        from xcon.capture.manager import captures_of

        captures_of(app).close()
        api.close()
        app.close()


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[..., Path]]:
    """Factory: ``tmpfs("256k", mode="0700")`` mounts a tmpfs of that size under
    ``tmp_path`` (root only: the test skips, saying why, otherwise); each is
    unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str, mode: str | None = None) -> Path:
        if os.geteuid() != 0:
            pytest.skip("needs root: mounts a small tmpfs to fill it")
        if shutil.which("mount") is None:
            pytest.skip("needs mount(8)")
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (f",mode={mode}" if mode else "")
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "xcon-test", str(where)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)
