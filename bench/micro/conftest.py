"""Summary of the micro benchmarks in frames per second, with native/python ratios."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    rows: dict[tuple[str, int, int], dict[str, float]] = {}
    for bench in session.benchmarks:
        info = bench.extra_info
        if "frames" not in info or not bench.stats or bench.has_error:
            continue
        median = bench.stats.median
        if median <= 0:
            continue
        key = (info["op"], info["size"], info["frames"])
        rows.setdefault(key, {})[info["backend"]] = info["frames"] / median
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("-", "frame functions: frames/s (median)")
    tr.write_line(f"{'op':<12}{'size':>6}{'frames':>8}{'native':>16}{'python':>16}{'speedup':>10}")
    for (op, size, frames), fps in sorted(rows.items()):
        nat = fps.get("native")
        py = fps.get("python")
        ratio = f"{nat / py:9.1f}x" if nat and py else f"{'-':>10}"
        tr.write_line(
            f"{op:<12}{size:>6}{frames:>8}"
            f"{(f'{nat:,.0f}' if nat else '-'):>16}{(f'{py:,.0f}' if py else '-'):>16}{ratio}"
        )
