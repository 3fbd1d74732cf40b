"""Impaired links (``--only impair``).

* ``impair-delay``: a p2p link with ``delay 10ms`` carrying paced 1500-byte
  frames at 85 000 frames/s (1.02 Gbit/s); the receiving peer records every
  frame's one-way delay (a timestamp inside the frame, one clock).  Target:
  the added delay within ±200 µs of its target at p99, nothing lost, nothing
  reordered.  Two figures: end to end, p99 of |delay - 10 ms| (which holds
  the path's own delay: the same link unimpaired at the same load is
  measured beside it), and the delay line's own, read from xcon
  (``late`` of the direction, ``xcon_link_delay_lateness_seconds``): how
  late each frame left the line, sent minus due, over the same window; its
  share within 200 µs is exact (a bucket bound), its p99 is given as the
  bucket bound it falls under.
* ``impair-loss``: saturated 1500-byte runs of a link with ``loss 1%`` and of
  the same link unimpaired, interleaved, the order reversed every round;
  target: frames/s delivered ≥ 0.8× the unimpaired link's (median of the
  per-round ratios; delivered, so the 1 % the impairment drops counts
  against it).
* ``impair-neighbour``: a saturated unimpaired link in one process with a
  second link carrying a paced 20 000 frames/s, the second link impaired
  (``delay 1ms loss 1%``) or not, interleaved rounds; target: the saturated
  link's frames/s ≥ 0.98× (median of per-round ratios).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bench.harness import NotAvailable, Peer, Relay, hosts
from bench.metrics import median
from bench.scenarios import Progress, Row, Settings, Wiring, na_row, run_flow

DELAY_S = 0.010
DELAY_FPS = 85000.0  # 1500-byte frames: 1.02 Gbit/s
SIZE = 1500


def _link() -> tuple[str, str, str]:
    sh, rh = hosts()
    return sh, rh, f"{sh}/1--{rh}/1"


def _wiring(extra: list[str], probe: Any = None) -> Wiring:
    sh, rh, link = _link()
    return Wiring(
        send_eps=[f"l:{sh}:10001:s"],
        recv_eps=[f"l:{rh}:10001:r"],
        relay_args={"xcon": ("p2p", [link, *extra])},
        direct_send=[f"c:{rh}:10001:s"],
        probe=probe,
    )


def _lateness(relay: Relay) -> dict[str, float]:
    """The a2b direction's delay-line lateness, cumulative counts per bucket (µs)."""
    from xcon.control.client import Client, link_path

    _sh, _rh, link = _link()
    if relay.workdir is None:
        return {}
    st, data, _ = Client(path=str(relay.workdir / "xcon.sock")).request("GET", link_path(link))
    if st != 200:
        return {}
    for d in json.loads(data)["directions"]:
        late = d.get("late")
        if late and d["name"].endswith(f"->{_rh}/1"):
            return {f"le_{k}": float(v) for k, v in late["at_most_us"].items()}
    return {}


def _late_row(probe: dict[str, float]) -> Row:
    total = probe.get("le_inf", 0.0)
    if not total:
        return {}
    bounds = sorted((float(k[3:]), v) for k, v in probe.items() if k != "le_inf")
    p99 = next((b for b, v in bounds if v / total >= 0.99), float("inf"))
    p50 = next((b for b, v in bounds if v / total >= 0.50), float("inf"))
    return {
        "line_frames": int(total),
        "line_within_200us": probe.get("le_200", 0.0) / total,
        "line_p50_at_most_us": p50,
        "line_p99_at_most_us": p99,
    }


def delay(s: Settings, progress: Progress) -> list[Row]:
    label = "impair-delay"
    _sh, _rh, link = _link()
    duration = 1.5 if s.quick else 4.0
    rows: list[Row] = []
    variants = [
        ("xcon-delay10ms", ["--impair", f"{link}:a2b=delay 10ms limit 100000"], DELAY_S),
        ("xcon", [], 0.0),
    ]
    for name, extra, target in variants:
        progress(f"{label}: {name} at {DELAY_FPS:,.0f} frames/s of {SIZE} B")
        try:
            row, d = run_flow(
                Relay(name, "xcon"),
                s,
                size=SIZE,
                rate=DELAY_FPS,
                record=True,
                duration=duration,
                wiring=_wiring(extra, probe=_lateness if target else None),
            )
        except (NotAvailable, RuntimeError) as e:
            rows.append(na_row("impair", label, name, str(e), size=SIZE))
            continue
        us = d.astype(np.float64) / 1e3
        err = np.abs(us - target * 1e6)
        out: Row = {
            "group": "impair",
            "scenario": label,
            "relay": name,
            "status": "ok",
            "size": SIZE,
            "offered_fps": DELAY_FPS,
            "fps": row["fps"],
            "gbps": row["gbps"],
            "lost": row["lost"],
            "reorder": row["reorder"],
            "cpu_pct": row["cpu_pct"],
            "frames_recorded": int(d.size),
        }
        out.update(_late_row(row.get("probe") or {}))
        if d.size:
            out.update(
                delay_p50_us=float(np.percentile(us, 50)),
                delay_p99_us=float(np.percentile(us, 99)),
                err_p50_us=float(np.percentile(err, 50)),
                err_p99_us=float(np.percentile(err, 99)),
                err_max_us=float(err.max()),
            )
        rows.append(out)
    return rows


def _interleaved(
    variants: list[tuple[str, list[str]]],
    s: Settings,
    progress: Progress,
    label: str,
    extra_peers: Any = None,
) -> dict[str, list[Row]]:
    reps = 3 if s.quick else 7
    runs: dict[str, list[Row]] = {name: [] for name, _ in variants}
    for i in range(reps):
        order = variants if i % 2 == 0 else variants[::-1]
        for name, extra in order:
            progress(f"{label}: {name} saturated, round {i + 1}/{reps}")
            side = extra_peers() if extra_peers else []
            try:
                row, _ = run_flow(Relay(name, "xcon"), s, size=SIZE, wiring=_wiring(extra))
            finally:
                for p in side:
                    p.stop()
            runs[name].append(row)
    return runs


def _rows(label: str, runs: dict[str, list[Row]], base: str, ratio_name: str) -> list[Row]:
    rows = []
    ratios = [
        r["fps"] / b["fps"] for b, r in zip(runs[base], runs[ratio_name], strict=True) if b["fps"]
    ]
    for name, rr in runs.items():
        row: Row = {
            "group": "impair",
            "scenario": label,
            "relay": name,
            "status": "ok",
            "size": SIZE,
            "fps": median([r["fps"] for r in rr]),
            "gbps": median([r["gbps"] for r in rr]),
            "loss_pct": median([r["loss_pct"] for r in rr]),
            "cpu_pct": median([r["cpu_pct"] for r in rr]),
            "runs": [{k: r[k] for k in ("fps", "gbps", "lost", "cpu_pct")} for r in rr],
        }
        if name == ratio_name:
            row["round_ratios"] = ratios
            row["ratio"] = median(ratios)
        rows.append(row)
    return rows


def loss(s: Settings, progress: Progress) -> list[Row]:
    label = "impair-loss"
    _sh, _rh, link = _link()
    variants = [("xcon", []), ("xcon-loss1%", ["--impair", f"{link}:a2b=loss 1%"])]
    try:
        runs = _interleaved(variants, s, progress, label)
    except (NotAvailable, RuntimeError) as e:
        return [na_row("impair", label, name, str(e), size=SIZE) for name, _ in variants]
    return _rows(label, runs, "xcon", "xcon-loss1%")


def neighbour(s: Settings, progress: Progress) -> list[Row]:
    label = "impair-neighbour"
    _sh, _rh, _link1 = _link()
    a, b = hosts()
    # the second link's peers: loopback addresses of their own (x.x.x.3 and .4)
    h2s, h2r = a[:-1] + "3", b[:-1] + "4"
    link2 = f"{h2s}/1--{h2r}/1"

    def side() -> list[Peer]:
        rx = Peer([f"l:{h2r}:10001:r"], size=SIZE)
        rx.wait("ready", 5)
        tx = Peer([f"l:{h2s}:10001:s"], size=SIZE, rate=20000.0)
        tx.wait("ready", 5)
        return [tx, rx]

    variants = [
        ("xcon-beside-plain", [link2]),
        ("xcon-beside-impaired", [link2, "--impair", f"{link2}=delay 1ms loss 1%"]),
    ]
    try:
        runs = _interleaved(variants, s, progress, label, extra_peers=side)
    except (NotAvailable, RuntimeError) as e:
        return [na_row("impair", label, name, str(e), size=SIZE) for name, _ in variants]
    return _rows(label, runs, "xcon-beside-plain", "xcon-beside-impaired")


def run(s: Settings, progress: Progress) -> list[Row]:
    return delay(s, progress) + loss(s, progress) + neighbour(s, progress)
