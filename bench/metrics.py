"""Delay statistics (RFC 5481 PDV) and medians of repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np


def delay_stats(d: np.ndarray) -> dict[str, float] | None:
    """One-way delay and packet delay variation of a sample, in microseconds.

    PDV as RFC 5481 defines it: PDV(i) = D(i) - D(min), with D(min) the smallest
    delay of the sample; reported at p50, p99, p99.9 and max.
    """
    if d.size == 0:
        return None
    us = d.astype(np.float64) / 1e3
    dmin = float(us.min())
    pdv = us - dmin
    q = np.percentile(pdv, [50, 99, 99.9])
    return {
        "samples": int(d.size),
        "min_us": dmin,
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "pdv_p50_us": float(q[0]),
        "pdv_p99_us": float(q[1]),
        "pdv_p999_us": float(q[2]),
        "pdv_max_us": float(pdv.max()),
    }


def median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def median_runs(runs: list[dict[str, float]]) -> dict[str, float | None]:
    """Per-key median over repeated runs (numbers only)."""
    keys = {k for r in runs for k, v in r.items() if isinstance(v, int | float)}
    out: dict[str, float | None] = {k: median([r.get(k) for r in runs]) for k in sorted(keys)}
    return out


def cdf_points(d: np.ndarray, n: int = 200) -> list[list[float]]:
    """A compact CDF of a delay sample: [microseconds, fraction] pairs."""
    if d.size == 0:
        return []
    qs = np.linspace(0, 100, n)
    vals = np.percentile(d.astype(np.float64) / 1e3, qs)
    return [[round(float(v), 2), round(float(q) / 100, 4)] for v, q in zip(vals, qs, strict=True)]
