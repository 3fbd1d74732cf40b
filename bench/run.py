"""``python -m bench``: run the scenarios, print the table, write JSON and PNG."""

from __future__ import annotations

import argparse
import atexit
import importlib
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness, report, scenarios
from bench.scenarios import Progress, Settings

NAMES = [f"p2p-{n}" for n, _ in scenarios.SIZES] + [
    "vlan",
    "hub",
    "links",
    "scale-lowrate",
    "reconnect",
    "down",
    "carrier",
    "restart",
    "flood",
    "tap",
    "unix",
    "udp",
    "vxlan",
    "engines",
    "control",
    "abuse",
    "capture",
    "impair",
    "scale",
    "qemu",
    "qemu-bridged",
]


#: Scenarios run by a function of a module of their own: name -> (module, function).
MODULES = {
    "down": ("down", "run"),
    "carrier": ("carrier", "run"),
    "restart": ("restart", "run"),
    "flood": ("flood", "run"),
    "unix": ("ends", "unix"),
    "udp": ("ends", "udp"),
    "vxlan": ("ends", "vxlan"),
    "control": ("control", "run"),
    "abuse": ("control", "run_abuse"),
    "capture": ("capture", "run"),
    "impair": ("impair", "run"),
    "scale": ("scale", "run"),
    "scale-lowrate": ("lowrate", "run"),
}


def run_scenario(
    name: str, s: Settings, progress: Progress, rows: list[dict[str, Any]], na: dict[str, str]
) -> list[dict[str, Any]]:
    """The rows of one scenario (``rows``: those measured before it)."""
    if name.startswith("p2p-"):
        return scenarios.p2p_size(name[4:], dict(scenarios.SIZES)[name[4:]], s, progress, na)
    if name == "vlan":
        return scenarios.vlan(s, progress, rows)
    if name in ("hub", "links", "reconnect", "tap", "engines"):
        return getattr(scenarios, name)(s, progress)
    if name in ("qemu", "qemu-bridged"):
        from bench import qemu

        return qemu.run(s, progress, bridged=name == "qemu-bridged")
    module, function = MODULES[name]
    return getattr(importlib.import_module(f"bench.{module}"), function)(s, progress)


def raise_nofile(want: int = 8192) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def selected(only: list[str] | None) -> list[str]:
    if not only:
        return NAMES
    out = []
    for name in NAMES:
        if any(name == o or name.startswith(o + "-") or name.startswith(o) for o in only):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short run: 1 repetition, short windows")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these scenarios (repeatable; prefix match): {', '.join(NAMES)}",
    )
    p.add_argument("--out", type=Path, default=report.RESULTS, help="results directory")
    p.add_argument("--no-save", action="store_true", help="print only, write no files")
    p.add_argument(
        "--profile", action="store_true", help="also profile xcon with py-spy at 64 and 1500 B"
    )
    args = p.parse_args(argv)
    names = selected(args.only)
    if not names:
        p.error(f"--only matches nothing; scenarios: {', '.join(NAMES)}")

    atexit.register(harness.kill_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nofile = raise_nofile()
    s = Settings(quick=args.quick)
    progress = Progress()
    info = report.machine_info()
    print(
        f"xcon bench: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}, "
        f"python {info['python']}, fast path {info['xcon_backend']}, commit {info['git_commit']}"
        f"{' (quick)' if args.quick else ''}",
        file=sys.stderr,
    )
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    na: dict[str, str] = {}
    profiles: list[dict[str, Any]] = []
    try:
        for name in names:
            rows += run_scenario(name, s, progress, rows, na)
        if args.profile:
            for size in (64, 1500):
                prof = scenarios.profile_xcon(5 if args.quick else 10, size, progress)
                if prof:
                    profiles.append(prof)
    finally:
        progress.done()
        harness.kill_all()
        shutil.rmtree(harness.TMP, ignore_errors=True)
    elapsed = time.monotonic() - t0
    ts = report.targets(rows)
    print(report.table(rows))
    print()
    print(report.targets_text(ts))
    for prof in profiles:
        print(f"\npy-spy profile of xcon, saturated {prof['size']} B ({prof['samples']} samples):")
        for pct, frame in prof["self_pct"][:8]:
            print(f"  {pct:5.1f}% self  {frame}")
    cmd = "python -m bench" + (" " + " ".join(sys.argv[1:]) if argv is None else "")
    doc = {
        "command": cmd.strip(),
        "quick": args.quick,
        "scenarios": names,
        "elapsed_s": round(elapsed, 1),
        "machine": info,
        "settings": {
            "repetitions": s.reps,
            "saturated_window_s": s.duration,
            "delay_window_s": s.delay_duration,
            "warmup_s": s.warmup,
            "idle_rate_fps": scenarios.IDLE_FPS,
            "nofile_limit": nofile,
        },
        "targets": ts,
        "results": rows,
        "profiles": profiles,
    }
    if not args.no_save:
        path = report.write_json(doc, args.out)
        png = report.write_png(rows, path.with_suffix(".png"))
        print(f"\nresults: {path}{f', plot: {png}' if png else ''}")
    print(f"elapsed {elapsed:.0f} s", file=sys.stderr)
    return 0
