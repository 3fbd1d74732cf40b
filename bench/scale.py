"""``scale``: how xcon scales with links and cores (``--only scale``).

For each count N of links (1, 2, 4, 6 and, on a machine with more cores, up to
half its cores, at most 12; ``XCON_BENCH_SCALE_LINKS=1,2`` sets them), N p2p
links, each with a saturated sender process and a receiver process of its own
(``bench/peer.c``), through each relay below, the relays interleaved in every
round (2 rounds with ``--quick``, 3 otherwise), medians per relay:

* ``xcon-w1``: one xcon carrying the N links, ``--workers 1``;
* ``xcon-auto``: one xcon, ``--workers auto``;
* ``xcon-per-link``: N xcon processes, a link each (``--workers 1``);
* ``splice``: N splice relays; ``socat``: N socats; ``direct``: no relay.

At 1500 and 64 B.  Each row: frames/s received over all links, and the CPU of
the relay's processes and of every process below them (xcon's workers) as
cores used and µs per frame.  An xcon without ``--workers`` runs its rows
without the option and ``xcon-auto`` is n/a.  The xcon rows say which fast
path xcon ran on (``backend``): the native one where it loads here, else the
pure-Python one.
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench.harness import NotAvailable, Relay
from bench.metrics import median
from bench.scenarios import Progress, Row, Settings, _ratio, na_row, sat_interleaved

SIZES = (1500, 64)
LINKS_ENV = "XCON_BENCH_SCALE_LINKS"
NO_WORKERS = "this xcon has no --workers"


def link_counts(cores: int | None = None, env: str | None = None) -> list[int]:
    """The link counts to run: ``env`` (``XCON_BENCH_SCALE_LINKS``, comma-separated)
    where set, else 1, 2, 4, 6 and half the cores (rounded, at most 12) with the
    even counts up to it."""
    env = os.environ.get(LINKS_ENV, "") if env is None else env
    if env.strip():
        try:
            counts = sorted({int(x) for x in env.split(",") if x.strip()})
        except ValueError:
            counts = []
        if not counts or counts[0] < 1:
            raise SystemExit(f"{LINKS_ENV}: expected link counts such as 1,2,4 (got {env!r})")
        return counts
    top = min(12, round((cores or os.cpu_count() or 1) / 2))
    return [1, 2, 4, 6, *range(8, top + 1, 2), *([top] if top > 6 and top % 2 else [])]


def has_workers(python: str = sys.executable) -> bool:
    """Whether this xcon takes ``--workers`` (its ``--help`` names it)."""
    res = subprocess.run(
        [python, "-m", "xcon", "--help"], capture_output=True, text=True, timeout=60
    )
    return "--workers" in res.stdout


def backend() -> str:
    """The fast path the xcon rows run on: native where it loads here, else Python."""
    from xcon import native

    return native.BACKEND


def relays(workers: bool, native: bool) -> list[Relay]:
    one = ["--workers", "1"] if workers else []
    out = [
        Relay("xcon-w1", "xcon", native=native, xargs=one),
        Relay("xcon-auto", "xcon", native=native, xargs=["--workers", "auto"]),
        Relay("xcon-per-link", "xcon", native=native, xargs=one, per_link=True),
        Relay("splice", "splice"),
        Relay("socat", "socat"),
        Relay("direct", "direct"),
    ]
    return [r for r in out if workers or r.name != "xcon-auto"]


def _spread(runs: list[Row]) -> float:
    """(max - min) / median of the runs' frames/s."""
    fps = [r["fps"] for r in runs]
    mid = median(fps)
    return (max(fps) - min(fps)) / mid if mid else 0.0


def _cpu_figures(row: Row) -> Row:
    runs = row["runs"]
    per_frame = [
        r["cpu_pct"] / 100 / r["fps"] * 1e6 for r in runs if r["cpu_pct"] is not None and r["fps"]
    ]
    cpu = row.get("cpu_pct")
    row.update(
        cores_used=cpu / 100 if cpu is not None else None,
        us_per_frame=median(per_frame),
        spread=_spread(runs),
    )
    return row


def group(
    n: int, size: int, s: Settings, progress: Progress, workers: bool, fast_path: str
) -> list[Row]:
    """The rows of N links at one frame size."""
    label = f"scale-{size}-n{n}"
    common = {"size": size, "links": n, "cores": os.cpu_count()}
    rows: dict[str, Row] = {}
    usable = []
    chosen = relays(workers, fast_path == "native")
    for r in chosen:
        reason = r.available()
        if reason:
            rows[r.name] = na_row("scale", label, r.name, reason, **common)
        else:
            usable.append(r)
    if not workers:
        rows["xcon-auto"] = na_row("scale", label, "xcon-auto", NO_WORKERS, **common)
    try:
        got = sat_interleaved(
            usable,
            s,
            progress,
            label,
            reps=2 if s.quick else 3,
            nlinks=n,
            size=size,
            peer_per_link=True,
        )
    except (NotAvailable, RuntimeError) as e:
        for r in usable:
            rows[r.name] = na_row("scale", label, r.name, f"failed: {e}", **common)
        got = {}
    for name, row in got.items():
        row.update(group="scale", scenario=label, relay=name, status="ok", **common)
        if name.startswith("xcon"):
            xargs = next(r.xargs for r in chosen if r.name == name)
            row.update(backend=fast_path, workers=xargs[1] if xargs else None)
            if not workers:
                row["note"] = f"run without --workers ({NO_WORKERS})"
        rows[name] = _cpu_figures(row)
    ok = {k: v for k, v in rows.items() if v["status"] == "ok"}
    for name, row in ok.items():
        bases = ("splice", "direct")
        if name == "xcon-auto":
            bases = ("xcon-per-link", "splice", "xcon-w1", "direct")
        elif name in ("socat", "splice"):
            bases = ("direct",)
        elif name == "direct":
            continue
        row["ratios"] = {b: _ratio(row["fps"], ok[b]["fps"]) for b in bases if b in ok}
    order = ["xcon-w1", "xcon-auto", "xcon-per-link", "splice", "socat", "direct"]
    return [rows[k] for k in order if k in rows]


def run(s: Settings, progress: Progress) -> list[Row]:
    counts = link_counts()
    workers = has_workers()
    fast_path = backend()
    rows: list[Row] = []
    for size in SIZES:
        for n in counts:
            rows += group(n, size, s, progress, workers, fast_path)
    return rows
