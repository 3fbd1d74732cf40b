"""Capture's cost and speed (``--only capture``).

* ``capture-1500``: one saturated p2p link (1500 B, C peers) through xcon
  without a capture (``off``) and with ``--capture LINK=FILE`` (``file``: a
  ring of two 200 MB files in a tmpfs, ``/dev/shm``, so the disk keeps up);
  with ``XCON_BENCH_BASELINE=/path/to/python`` naming an interpreter that
  runs xcon without the capture feature (a checkout of the commit before
  it), that build too (``baseline``).  Rounds interleaved, the order rotated
  each round; the median of the per-round ratios.  Targets: file ≥ 0.7× off
  (saturated: capture drops are reported, this machine's tmpfs takes about
  2 GB/s on one core, a saturated 1500 B link carries as much); off ≥ 0.98×
  baseline (when given).
* ``capture-paced``: 1500 B frames offered at 100k frames/s (1.2 Gbit/s),
  captured to the file ring: a rate the disk (and the CPU the peers leave)
  keeps up with.  Target: 0
  capture drops and 0 frames lost, every round.
* ``capture-64``: the same at 64 B (end to end: the link's own rate bounds
  it; capture drops reported).
* ``capture-micro``: ``native.capture_frames`` alone over a 256 KiB batch of
  qemu-framed 64-byte frames into a 256 KiB chunk, and the whole recording
  path (``Capture.record`` with a sink that gives chunks straight back), in
  process; the median of rounds of frames/s.  Target: ≥ 5 M frames/s.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Peer, Relay, hosts
from bench.metrics import median
from bench.scenarios import Progress, Row, Settings
from xcon.control.client import Client, link_path

RING_MB = 200
#: capture-paced: 1500-byte frames offered at this rate (1.2 Gbit/s, 150 MB/s of
#: pcapng).  On the 2-core bench machine the two C peers, xcon and the writer
#: share the CPU: at 200k frames/s the writer is short of CPU, not of disk.
PACED_FPS = 100_000.0


def _capture_dir() -> Path:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix="xcon-bench-capture-", dir=base))


def _saturated(
    variant: str, s: Settings, size: int, python: str, rate: float = 0.0
) -> tuple[float, dict[str, Any]]:
    """(frames/s, capture counters) of one link in ``variant``, saturated (or
    offered ``rate`` frames/s; then the counters include ``lost``)."""
    sh, rh = hosts()
    rx = Peer([f"l:{rh}:10001:r"], size=size)
    tx = Peer([f"l:{sh}:10001:s"], size=size, rate=rate)
    relay = Relay("xcon", "xcon", python=python)
    spec = f"{sh}/1--{rh}/1"
    capdir = _capture_dir() if variant == "file" else None
    try:
        rx.wait("ready", 5)
        tx.wait("ready", 5)
        extra: list[str] = []
        if capdir is not None:
            extra = [
                "--capture",
                f"{spec}={capdir / 'cap.pcapng'}",
                "--capture-size",
                str(RING_MB),
                "--capture-files",
                "2",
            ]
        relay.start("p2p", [spec, *extra])
        tx.wait_up(1, 10)
        rx.wait_up(1, 10)
        rx.wait("first", 5)
        time.sleep(s.warmup)
        client = Client(path=str(relay.workdir / "xcon.sock")) if relay.workdir else None
        c0 = _capture_counters(client, spec) if capdir is not None else {}
        s0 = rx.snap()
        time.sleep(s.duration * 1.5)
        s1 = rx.snap()
        c1 = _capture_counters(client, spec) if capdir is not None else {}
        fps = (s1.frames - s0.frames) / ((s1.t_ns - s0.t_ns) / 1e9)
        counters: dict[str, Any] = {"lost": s1.lost - s0.lost}
        if c0 and c1:  # within the measured window, as the frames
            counters.update(frames=c1["frames"] - c0["frames"], drops=c1["drops"] - c0["drops"])
        return fps, counters
    finally:
        relay.stop()
        tx.stop()
        rx.stop()
        if capdir is not None:
            shutil.rmtree(capdir, ignore_errors=True)


def _capture_counters(client: Client | None, spec: str) -> dict[str, int]:
    if client is None:
        return {}
    st, data, _ = client.request("GET", link_path(spec))
    if st != 200:
        return {}
    caps = json.loads(data)["captures"]
    return {"frames": caps[0]["frames"], "drops": caps[0]["drops"]} if caps else {}


def end_to_end(s: Settings, progress: Progress, size: int) -> Row:
    rounds = 3 if s.quick else 7
    variants = ["off", "file"]
    baseline = os.environ.get("XCON_BENCH_BASELINE")
    if baseline:
        variants.append("baseline")
    fps: dict[str, list[float]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {"file": [], "off_vs_baseline": []}
    drops: list[int] = []
    recorded: list[int] = []
    for i in range(rounds):
        k = i % len(variants)
        order = variants[k:] + variants[:k]
        got: dict[str, float] = {}
        for v in order:
            progress(f"capture-{size}: {v}, round {i + 1}/{rounds}")
            python = baseline if v == "baseline" and baseline else sys.executable
            got[v], counters = _saturated(v, s, size, python)
            fps[v].append(got[v])
            if v == "file":
                drops.append(int(counters.get("drops", -1)))
                recorded.append(int(counters.get("frames", 0)))
        ratios["file"].append(got["file"] / got["off"])
        if "baseline" in got:
            ratios["off_vs_baseline"].append(got["off"] / got["baseline"])
    return {
        "group": "capture",
        "scenario": f"capture-{size}",
        "relay": "xcon",
        "status": "ok",
        "size": size,
        "variant_fps": {v: median(x) for v, x in fps.items()},
        "ratio_file": median(ratios["file"]),
        "ratio_off_vs_baseline": median(ratios["off_vs_baseline"])
        if ratios["off_vs_baseline"]
        else None,
        "capture_drops": drops,
        "capture_frames": recorded,
        "ratio_rounds": ratios,
    }


def paced(s: Settings, progress: Progress, size: int = 1500, rate: float = PACED_FPS) -> Row:
    """A link offered ``rate`` frames/s, captured to a file: what the disk keeps up with."""
    rounds = 2 if s.quick else 3
    got = []
    for i in range(rounds):
        progress(f"capture-paced: {rate:.0f} frames/s of {size} B, round {i + 1}/{rounds}")
        fps, counters = _saturated("file", s, size, sys.executable, rate=rate)
        got.append({"fps": fps, **{k: v for k, v in counters.items() if k != "files"}})
    return {
        "group": "capture",
        "scenario": "capture-paced",
        "relay": "xcon",
        "status": "ok",
        "size": size,
        "offered_fps": rate,
        "fps": median([g["fps"] for g in got]),
        "capture_drops": [g.get("drops", -1) for g in got],
        "lost": [g["lost"] for g in got],
        "rounds": got,
    }


def micro(s: Settings, progress: Progress, size: int = 64) -> Row:
    """In process: the C function alone, and the whole recording path."""
    from xcon import native
    from xcon.capture.capture import Capture
    from xcon.capture.options import CaptureOptions
    from xcon.testing.fakeport import FakeEngine
    from xcon.testing.frames import encode_frames, numbered

    frame = numbered(0, size)
    per_batch = (256 * 1024) // (len(frame) + 4)
    src = bytearray(encode_frames([frame] * per_batch))
    dst = bytearray(256 * 1024)
    end = len(src)

    class Returning:
        def attach(self, capture: Capture) -> None:
            self.capture = capture

        def put(self, chunk: bytearray, n: int) -> None:
            self.capture.release(chunk)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

        def describe(self) -> dict[str, Any]:
            return {}

    rounds = 3 if s.quick else 9
    window = 0.3 if s.quick else 1.0
    c_fps: list[float] = []
    rec_fps: list[float] = []
    mv = memoryview(src)
    for r in range(rounds):
        progress(f"capture-micro: round {r + 1}/{rounds}")
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < window:
            pos = 0
            while pos < end:
                pos, _w, k = native.capture_frames(mv, pos, end, dst, 0, len(dst), 1, 2, 0, 0)
                n += k
        c_fps.append(n / (time.perf_counter() - t0))
        cap = Capture(FakeEngine(), "bench", ["a", "b"], CaptureOptions(), Returning())  # type: ignore[arg-type]
        # a read's worth of frames per call, as a flow's tap sees a batch
        batch = 64 * 1024 // (len(frame) + 4) * (len(frame) + 4)
        t0 = time.perf_counter()
        calls = 0
        while time.perf_counter() - t0 < window:
            for off in range(0, end - batch + 1, batch):
                cap.record(1, 2, mv, off, off + batch)
                calls += 1
        dt = time.perf_counter() - t0
        rec_fps.append(cap.frames / dt)
        assert cap.drops == 0
        cap.stop()
    return {
        "group": "capture",
        "scenario": "capture-micro",
        "relay": "xcon",
        "status": "ok",
        "size": size,
        "backend": native.BACKEND,
        "c_fps": median(c_fps),
        "record_fps": median(rec_fps),
        "rounds": {"c_fps": c_fps, "record_fps": rec_fps},
    }


def run(s: Settings, progress: Progress) -> list[Row]:
    return [
        micro(s, progress),
        paced(s, progress),
        end_to_end(s, progress, 1500),
        end_to_end(s, progress, 64),
    ]
