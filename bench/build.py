"""Builds the C helpers (load generator, splice relay) with gcc into a cache directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = {"peer": HERE / "peer.c", "splice_relay": HERE / "splice_relay.c"}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xcon-bench"


def build(name: str) -> Path:
    """Path of the compiled helper ``name``; compiled once per source content."""
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise RuntimeError(f"{cc} not found: the benchmark builds its load generator with it")
    src = SOURCES[name]
    digest = hashlib.sha256(src.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = cache_dir() / f"{name}-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(src)], check=True)
        tmp.replace(out)
    return out
