"""Results: the stdout table, target checks, JSON and the PNG."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

Row = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "xcon", "native"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    from xcon import __version__, native

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "xcon_version": __version__,
        "xcon_backend": native.BACKEND,
        "git_commit": commit + ("+dirty" if dirty else ""),
        "loadavg_at_start": [round(x, 2) for x in load],
        "root": os.geteuid() == 0,
    }


# -- formatting ------------------------------------------------------------------------------------
def _f(x: Any, fmt: str = "{:.2f}", na: str = "-") -> str:
    if x is None:
        return na
    return fmt.format(x)


def _rate(fps: float | None) -> str:
    if fps is None:
        return "-"
    if fps >= 1e6:
        return f"{fps / 1e6:.2f}M"
    if fps >= 1e3:
        return f"{fps / 1e3:.1f}k"
    return f"{fps:.0f}"


def _ratios(r: Row) -> str:
    parts = []
    for k, v in (r.get("ratios") or {}).items():
        if v is None or k.startswith("pdv"):
            continue
        parts.append(f"{v:.2f}×{k}")
    return " ".join(parts)


def table(rows: list[Row]) -> str:
    head = (
        f"{'scenario':<17} {'relay':<12} {'frames/s':>9} {'Gbit/s':>7} {'CPU%':>5} "
        f"{'RSS/HWM MiB':>12} {'idle µs':>8} {'load µs':>8} "
        f"{'PDV p50/p99/p99.9/max µs (load)':>32} {'loss':>6}  ratios"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["group"] in (
            "qemu",
            "reconnect",
            "down",
            "flood",
            "control",
            "capture",
            "scale",
            "lowrate",
        ):
            continue
        if r["status"] != "ok":
            lines.append(f"{r['scenario']:<17} {r['relay']:<12} n/a ({r['reason']})")
            continue
        idle, load = r.get("idle") or {}, r.get("load") or {}
        pdv = (
            "/".join(
                f"{load[k]:.0f}" for k in ("pdv_p50_us", "pdv_p99_us", "pdv_p999_us", "pdv_max_us")
            )
            if load
            else "-"
        )
        mem = f"{_f(r.get('rss_mib'), '{:.1f}')}/{_f(r.get('hwm_mib'), '{:.1f}')}"
        if r.get("rss_mib") is None:
            mem = "-"
        extra = _ratios(r)
        if r["group"] == "links":
            extra += f" active={r.get('active_links', 0):.0f}/{r['links']}"
        if r["group"] == "vlan":
            extra += " tags ok" if r.get("tags_ok") else " TAGS WRONG"
        for ld in r.get("loads") or []:
            extra += f" | {ld['lost']:.0f} lost at {_rate(ld['offered_fps'])} offered"
            where = [f"{k} {v}" for k, v in (ld.get("drops") or {}).items() if v]
            if ld["lost"] and where:
                extra += f" (dropped: {', '.join(where)})"
        lines.append(
            f"{r['scenario']:<17} {r['relay']:<12} {_rate(r.get('fps')):>9} "
            f"{_f(r.get('gbps')):>7} {_f(r.get('cpu_pct'), '{:.0f}'):>5} {mem:>12} "
            f"{_f(idle.get('p50_us'), '{:.0f}'):>8} {_f(load.get('p50_us'), '{:.0f}'):>8} "
            f"{pdv:>32} {_f(r.get('loss_pct'), '{:.2f}%'):>6}  {extra}"
        )
    rec = [r for r in rows if r["group"] == "reconnect"]
    if rec:
        lines += ["", "link forwards again after its receiving peer restarts (peer down 1 s):"]
        for r in rec:
            if r["status"] == "ok":
                allv = ", ".join(f"{x:.0f}" for x in r["reconnect_all_ms"])
                lines.append(
                    f"  {r['relay']:<12} median {r['reconnect_ms']:.0f} ms, "
                    f"max {r['reconnect_max_ms']:.0f} ms ({allv})"
                )
            else:
                lines.append(f"  {r['relay']:<12} n/a ({r['reason']})")
    down = [r for r in rows if r["group"] == "down"]
    if down:
        lines += ["", "1000 links, every router down (a lab still booting); then routers come up:"]
        for r in down:
            if r["status"] != "ok":
                lines.append(f"  {r['scenario']:<20} {r['relay']:<9} n/a ({r['reason']})")
                continue
            back = (
                f", back {r['back_ms']:.0f} ms median, {r['back_max_ms']:.0f} max after listening"
                if "back_ms" in r
                else ""
            )
            lines.append(
                f"  {r['scenario']:<20} {r['relay']:<9} CPU {r['cpu_pct']:5.1f} %, RSS {r['rss_mib']:.0f} MiB{back}"
            )
    car = [r for r in rows if r["group"] == "carrier"]
    if car:
        lines += [
            "",
            "carrier: the far router stops -> near NIC off; back -> on after the link forwards:",
        ]
        for r in car:
            if r["status"] != "ok":
                lines.append(f"  {r['relay']:<12} n/a ({r['reason']})")
                continue
            if r["scenario"] == "carrier-guest":
                lines.append(
                    f"  real guests ({r['accel']}): far qemu killed -> near guest reads carrier 0 "
                    f"after {r['off_ms']:.0f} ms median ({r['off_max_ms']:.0f} max, polled on "
                    f"its console); far qemu started again -> near guest reads 1 "
                    f"{r['on_after_start_ms']:.0f} ms median after the far guest booted "
                    f"({r['rounds']} rounds)"
                )
                continue
            lines.append(
                f"  {r['relay']:<12} off {_f(r['off_ms'], '{:.1f}')} ms median "
                f"({_f(r['off_max_ms'], '{:.1f}')} max, {r['off_never']} never), on "
                f"{_f(r['on_ms'], '{:.1f}')} ms median ({_f(r['on_max_ms'], '{:.1f}')} max, "
                f"{r['on_never']} never; {_f(r.get('on_after_listen_ms'), '{:.1f}')} ms after "
                f"listening again) over {r['rounds']} rounds; frames leaked to a NIC "
                f"set off {r['leaked']}; changes on the other link {r['other_changes']}"
            )
    for r in rows:
        if r["group"] != "flood":
            continue
        lines += ["", f"listening port under a flood of {r.get('flood', 500)} idle connections:"]
        if r["status"] != "ok":
            lines.append(f"  n/a ({r['reason']})")
            continue
        lines.append(
            f"  real client served after {r['served_s']:.2f} s (alone: {r['served_alone_s']:.2f} s);"
            f" p2p link beside it {_rate(r['p2p_fps_flood'])} frames/s"
            f" (without the flood {_rate(r['p2p_fps_quiet'])})"
        )
    lines += _lowrate_lines([r for r in rows if r["group"] == "lowrate"])
    lines += _control_lines([r for r in rows if r["group"] == "control"])
    lines += _capture_lines([r for r in rows if r["group"] == "capture"])
    lines += _scale_lines([r for r in rows if r["group"] == "scale"])
    for scn, title in (
        ("qemu", "real qemu end to end (two qemu NICs bridged to taps in namespaces):"),
        ("qemu-bridged", "the same with each qemu in a namespace behind a Linux bridge:"),
    ):
        lines += _qemu_table([r for r in rows if r["scenario"] == scn], title)
    return "\n".join(lines)


def _capture_lines(rows: list[Row]) -> list[str]:
    if not rows:
        return []
    lines = ["", "capture:"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"  {r['scenario']:<14} n/a ({r['reason']})")
        elif r["scenario"] == "capture-paced":
            lines.append(
                f"  capture-paced  {r['size']} B offered {_rate(r['offered_fps'])}: carried "
                f"{_rate(r['fps'])}, capture drops {r['capture_drops']}, lost {r['lost']}"
            )
        elif r["scenario"] == "capture-micro":
            lines.append(
                f"  capture-micro  {r['size']} B frames ({r['backend']}): capture_frames "
                f"{_rate(r['c_fps'])}, Capture.record {_rate(r['record_fps'])}"
            )
        else:
            f = r["variant_fps"]
            text = (
                f"  {r['scenario']:<14} 1 saturated link: off {_rate(f['off'])}, to a file "
                f"{_rate(f['file'])} ({r['ratio_file']:.3f}×), capture drops "
                f"{r['capture_drops']}"
            )
            if r.get("ratio_off_vs_baseline") is not None:
                text += (
                    f"; baseline build {_rate(f['baseline'])}, off/baseline "
                    f"{r['ratio_off_vs_baseline']:.3f}×"
                )
            lines.append(text)
    return lines


def _scale_lines(rows: list[Row]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "scaling over cores: N links, a sender and a receiver process each; frames/s over "
        "all links, CPU of the relay's processes and those below them:",
        f"  {'size':>5} {'links':>5}  {'relay':<14} {'frames/s':>9} {'Gbit/s':>7} "
        f"{'cores':>6} {'µs/frame':>9}  ratios",
    ]
    for r in rows:
        head = f"  {r['size']:>5} {r['links']:>5}  {r['relay']:<14}"
        if r["status"] != "ok":
            lines.append(f"{head} n/a ({r['reason']})")
            continue
        lines.append(
            f"{head} {_rate(r['fps']):>9} {_f(r.get('gbps')):>7} "
            f"{_f(r.get('cores_used')):>6} {_f(r.get('us_per_frame'), '{:.3f}'):>9}  "
            f"{_ratios(r)}"
        )
    return lines


def _lowrate_lines(rows: list[Row]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "lab rates, 100 B frames one per wake-up: the relay's CPU (user+system) per frame:",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"  {r['scenario']:<22} {r['relay']:<12} n/a ({r['reason']})")
            continue
        each = ", ".join(_f(x["us_per_frame"], "{:.1f}") for x in r["runs"])
        lines.append(
            f"  {r['scenario']:<22} {r['relay']:<12} {_rate(r['fps']):>6} frames/s "
            f"(offered {_rate(r['offered_fps'])}), CPU {r['cpu_pct']:5.2f} %, "
            f"{_f(r['us_per_frame'], '{:.1f}')} µs/frame ({each}; /proc/PID/stat: "
            f"{_f(r['stat_us_per_frame'], '{:.1f}')}), lost {r['lost']}"
        )
    return lines


def _control_lines(rows: list[Row]) -> list[str]:
    if not rows:
        return []
    lines = ["", "control plane:"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"  {r['scenario']:<14} n/a ({r['reason']})")
        elif r["scenario"] == "control-cost":
            f = r["variant_fps"]
            lines.append(
                f"  control-cost   1 saturated link {r['size']} B: --control none "
                f"{_rate(f['none'])}, idle socket {_rate(f['idle'])} "
                f"({r['ratio_idle']:.3f}×), scraped every 1 s {_rate(f['scraped'])} "
                f"({r['ratio_scraped']:.3f}×)"
            )
        elif r["scenario"] == "control-abuse":
            f = r["variant_fps"]
            lines.append(
                f"  control-abuse  1 saturated link {r['size']} B: alone {_rate(f['none'])}, "
                f"control plane attacked {_rate(f['attacked'])} ({r['ratio_attacked']:.3f}×, "
                f"rounds {', '.join(f'{x:.2f}' for x in r['ratio_rounds'])}); lost "
                f"{sum(r['lost']['attacked'])} attacked, {sum(r['lost']['none'])} alone"
            )
        elif r["scenario"] == "control-churn":
            d = r["add_to_forwarding_ms"]
            lines.append(
                f"  control-churn  {r['cycles']} add/remove cycles: added link forwards after "
                f"{d['median']:.1f} ms median, p99 {d['p99']:.1f}, max {d['max']:.1f}; untouched "
                f"link {r['untouched_frames']} frames, {r['untouched_lost']} lost, "
                f"{r['untouched_reconnects']} reconnects"
            )
        else:
            m, k, c = r["metrics_ms"], r["links_ms"], r["ctl_links_ms"]
            lines.append(
                f"  {r['scenario']:<14} {r['links']} links ({r['active_links']} forwarding, "
                f"{_rate(r['fps'])} frames/s): GET /metrics {m['median']:.1f} ms median "
                f"(p95 {m['p95']:.1f}, {r['metrics_bytes'] / 1024:.0f} KiB), GET /links "
                f"{k['median']:.1f} ms, xcon ctl links {c['median']:.0f} ms (max {c['max']:.0f})"
            )
    return lines


def _qemu_table(q: list[Row], title: str) -> list[str]:
    lines: list[str] = []
    if q:
        lines += ["", title]
        lines.append(
            f"  {'path':<8} {'ping avg/mdev/max ms':>22} {'loss':>5} {'TCP Gbit/s':>10} "
            f"{'UDP Mbit/s':>10} {'jitter ms':>9} {'UDP loss':>8}  ratios"
        )
        for r in q:
            if r["status"] != "ok":
                lines.append(f"  {r['relay']:<8} n/a ({r['reason']})")
                continue
            p = r.get("ping") or {}
            ping = (
                f"{p.get('avg_ms', 0):.3f}/{p.get('mdev_ms', 0):.3f}/{p.get('max_ms', 0):.3f}"
                if p
                else "-"
            )
            lines.append(
                f"  {r['relay']:<8} {ping:>22} {_f(p.get('loss_pct'), '{:.1f}%'):>5} "
                f"{_f(r.get('tcp_gbps')):>10} {_f(r.get('udp_mbps'), '{:.0f}'):>10} "
                f"{_f(r.get('udp_jitter_ms'), '{:.3f}'):>9} "
                f"{_f(r.get('udp_loss_pct'), '{:.2f}%'):>8}  {_ratios(r)}"
            )
    return lines


# -- targets -----------------------------------------------------------------------------------------
def _find(rows: list[Row], scenario: str, relay: str) -> Row | None:
    for r in rows:
        if r["scenario"] == scenario and r["relay"] == relay and r["status"] == "ok":
            return r
    return None


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, higher: bool, unit: str = "") -> None:
        if value is None:
            out.append({"target": name, "value": None, "limit": limit, "met": None})
            return
        met = value >= limit if higher else value <= limit
        out.append(
            {"target": name, "value": round(value, 3), "limit": limit, "met": met, "unit": unit}
        )

    def ratio(scn: str, base: str, key: str = "fps") -> float | None:
        a, b = _find(rows, scn, "xcon"), _find(rows, scn, base)
        return a[key] / b[key] if a and b and b.get(key) else None

    if any(r["group"] == "p2p" for r in rows):
        add("p2p 1500 B Gbit/s ≥ 2× socat", ratio("p2p-1500", "socat", "gbps"), 2.0, True, "×")
        add("p2p 64 B frames/s ≥ 2× socat", ratio("p2p-64", "socat"), 2.0, True, "×")
        add("p2p 1500 B ≥ 0.8× splice ceiling", ratio("p2p-1500", "splice", "gbps"), 0.8, True, "×")
        add("p2p 64 B ≥ 0.6× splice ceiling", ratio("p2p-64", "splice"), 0.6, True, "×")
        for name, _ in (("64", 0), ("512", 0), ("1500", 0), ("9000", 0), ("imix", 0)):
            x, s = _find(rows, f"p2p-{name}", "xcon"), _find(rows, f"p2p-{name}", "socat")
            if x and s and x.get("load") and s.get("load"):
                add(
                    f"p2p {name}: PDV p99 under load ≤ socat's (µs, socat "
                    f"{s['load']['pdv_p99_us']:.0f})",
                    x["load"]["pdv_p99_us"],
                    round(s["load"]["pdv_p99_us"], 1),
                    False,
                    "µs",
                )
    d = _find(rows, "impair-delay", "xcon-delay10ms")
    if d:
        add("impair: 10 ms delay line carries ≥ 1 Gbit/s of 1500 B", d.get("gbps"), 1.0, True)
        add(
            "impair: 10 ms delay, end to end p99 |delay - 10 ms| ≤ 200 µs at that load "
            "(includes the path's own delay)",
            d.get("err_p99_us"),
            200.0,
            False,
            "µs",
        )
        add(
            "impair: 10 ms delay, share of frames leaving the delay line ≤ 200 µs late "
            "≥ 0.99 (its p99 within 200 µs)",
            d.get("line_within_200us"),
            0.99,
            True,
        )
    lo = _find(rows, "impair-loss", "xcon-loss1%")
    if lo:
        add("impair: loss-only link frames/s ≥ 0.8× unimpaired", lo.get("ratio"), 0.8, True, "×")
    nb = _find(rows, "impair-neighbour", "xcon-beside-impaired")
    if nb:
        add(
            "impair: unimpaired link beside an impaired one ≥ 0.98×",
            nb.get("ratio"),
            0.98,
            True,
            "×",
        )
    if any(r["group"] == "scale" for r in rows):
        for size in (1500, 64):
            _scale_targets(rows, size, add)
    for size in (64, 1500):
        u = _find(rows, f"unix-{size}", "xcon-unix")
        if u:
            add(
                f"unix-stream link {size} B frames/s ≥ 1.0× TCP link (median of pair ratios)",
                (u.get("ratios") or {}).get("xcon-tcp"),
                1.0,
                True,
                "×",
            )
    if _find(rows, "udp-64", "socat"):
        add("UDP↔UDP link 64 B frames/s ≥ 2× socat", ratio("udp-64", "socat"), 2.0, True, "×")
    for scn, what in (("udp-64", "UDP↔UDP 64 B"), ("vxlan-1500", "TCP↔VXLAN 1500 B")):
        x = _find(rows, scn, "xcon")
        for ld in (x or {}).get("loads") or []:
            if ld.get("under_capacity"):
                add(
                    f"{what}: 0 lost at {ld['offered_fps']:,.0f} frames/s offered (under capacity)",
                    ld["lost"],
                    0,
                    False,
                    " lost",
                )
    c500 = _find(rows, "control-500", "xcon")
    if c500:
        add(
            "500 links: GET /metrics ≤ 50 ms (median)",
            c500["metrics_ms"]["median"],
            50,
            False,
            " ms",
        )
        add(
            "500 links: xcon ctl links ≤ 200 ms (median)",
            c500["ctl_links_ms"]["median"],
            200,
            False,
            " ms",
        )
    cost = _find(rows, "control-cost", "xcon")
    if cost:
        add(
            "control socket idle: p2p frames/s ≥ 0.98× --control none",
            cost["ratio_idle"],
            0.98,
            True,
            "×",
        )
        add(
            "/metrics scraped every 1 s: p2p frames/s ≥ 0.95× --control none",
            cost["ratio_scraped"],
            0.95,
            True,
            "×",
        )
    ab = _find(rows, "control-abuse", "xcon")
    if ab:
        add(
            "control plane attacked: p2p frames/s ≥ 0.9× alone",
            ab["ratio_attacked"],
            0.9,
            True,
            "×",
        )
        add(
            "control plane attacked: frames lost = 0",
            sum(ab["lost"]["attacked"]),
            0,
            False,
            "",
        )
    cm = _find(rows, "capture-micro", "xcon")
    if cm:
        add(
            "capture 64 B frames ≥ 5 M frames/s (capture_frames)",
            cm["c_fps"] / 1e6,
            5,
            True,
            " M/s",
        )
        add(
            "capture 64 B frames ≥ 5 M frames/s (Capture.record)",
            cm["record_fps"] / 1e6,
            5,
            True,
            " M/s",
        )
    cp = _find(rows, "capture-paced", "xcon")
    if cp:
        add(
            f"capture to a file, {cp['offered_fps'] / 1e3:.0f}k frames/s of {cp['size']} B "
            "(the disk keeps up): 0 capture drops and 0 lost, every round",
            max(cp["capture_drops"]) + max(cp["lost"]),
            0,
            False,
            " drops+lost",
        )
    c1500 = _find(rows, "capture-1500", "xcon")
    if c1500:
        add("capture to a file: p2p 1500 B ≥ 0.7× without", c1500["ratio_file"], 0.7, True, "×")
        add(
            "capture off: p2p 1500 B ≥ 0.98× the build without capture (XCON_BENCH_BASELINE)",
            c1500.get("ratio_off_vs_baseline"),
            0.98,
            True,
            "×",
        )
    churn = _find(rows, "control-churn", "xcon")
    if churn:
        add(
            "link added: forwarding p99 ≤ 100 ms",
            churn["add_to_forwarding_ms"]["p99"],
            100,
            False,
            " ms",
        )
        add(
            f"untouched link through {churn['cycles']} add/remove cycles: 0 lost",
            churn["untouched_lost"] + churn["untouched_reorder"] + churn["untouched_reconnects"],
            0,
            False,
            " lost/reordered/reconnects",
        )
    lx, ls = _find(rows, "scale-lowrate-30x40", "xcon"), _find(rows, "scale-lowrate-30x40", "socat")
    if lx and ls:
        add(
            f"30 links x 40 frames/s: xcon µs/frame ≤ socat's (socat {ls['us_per_frame']:.1f})",
            lx["us_per_frame"],
            round(ls["us_per_frame"], 1),
            False,
            " µs",
        )
    lm = _find(rows, "scale-lowrate-1000x10", "xcon")
    if lm:
        add("1000 links x 10 frames/s: xcon ≤ 25 % of a core", lm["cpu_pct"], 25, False, "%")
    one, many = _find(rows, "links-1", "xcon"), _find(rows, "links-500", "xcon")
    if one:
        add("RSS (VmHWM) with 1 link ≤ 40 MB", one.get("hwm_mib"), 40, False, "MiB")
    if many:
        add("RSS (VmHWM) with 500 links ≤ 150 MB", many.get("hwm_mib"), 150, False, "MiB")
    for r in rows:
        if r["group"] == "down" and r["status"] == "ok" and r["relay"] == "xcon":
            add(f"{r['scenario']}: 1000 down links ≤ 5 % CPU", r["cpu_pct"], 5, False, "%")
            if "back_max_ms" in r:
                add(f"{r['scenario']}: back ≤ 250 ms after listening", r["back_max_ms"], 250, False)
    cr = _find(rows, "carrier", "xcon")
    if cr and cr["status"] == "ok":
        add("carrier: far end gone -> near NIC off ≤ 50 ms (median)", cr["off_ms"], 50, False)
        add(
            "carrier: back -> near NIC on ≤ 100 ms after it forwards (median)",
            cr["on_ms"],
            100,
            False,
        )
        add("carrier: frames to a NIC set off = 0", cr["leaked"], 0, False, "")
        add("carrier: changes on an untouched link = 0", cr["other_changes"], 0, False, "")
    cg = _find(rows, "carrier-guest", "xcon")
    if cg and cg["status"] == "ok":
        add(
            "carrier, real guest: far end gone -> carrier 0 ≤ 50 ms (median)",
            cg["off_ms"],
            50,
            False,
        )
    fl = _find(rows, "flood", "xcon")
    if fl and fl["status"] == "ok":
        add(
            "real client served ≤ 1 s under a 500-connection flood",
            fl["served_s"],
            1.0,
            False,
            " s",
        )
        add(
            "p2p link beside the flood ≥ 0.9× its rate without",
            fl["p2p_fps_flood"] / fl["p2p_fps_quiet"] if fl["p2p_fps_quiet"] else None,
            0.9,
            True,
            "×",
        )
    rec = _find(rows, "reconnect", "xcon")
    if rec:
        add("forwards again ≤ 250 ms after peer is back (max)", rec["reconnect_max_ms"], 250, False)
    for scn in ("qemu", "qemu-bridged"):
        qx, qs, qd = (_find(rows, scn, k) for k in ("xcon", "socat", "direct"))
        if qx and qs:
            add(
                f"{scn} iperf3 TCP via xcon ≥ 1.0× socat",
                qx["tcp_gbps"] / qs["tcp_gbps"] if qs.get("tcp_gbps") else None,
                1.0,
                True,
                "×",
            )
        if qx and qd:
            add(
                f"{scn} iperf3 TCP via xcon ≥ 90% of direct",
                qx["tcp_gbps"] / qd["tcp_gbps"] if qd.get("tcp_gbps") else None,
                0.9,
                True,
                "×",
            )
    return out


def _scale_targets(rows: list[Row], size: int, add: Any) -> None:
    """``scale``: xcon --workers auto against one process, a process per link and splice."""

    def auto_vs(n: int, base: str) -> tuple[float | None, Row | None, str]:
        """(xcon-auto's frames/s over ``base``'s, ``base``'s row, why there is none)."""
        scn = f"scale-{size}-n{n}"
        a, b = _find(rows, scn, "xcon-auto"), _find(rows, scn, base)
        why = next(
            (
                f" (n/a: {r['reason']})"
                for r in rows
                if r["scenario"] == scn and r["relay"] == "xcon-auto" and r["status"] != "ok"
            ),
            "",
        )
        return (a["fps"] / b["fps"] if a and b and b["fps"] else None), b, why

    value, w1, why = auto_vs(1, "xcon-w1")
    if w1:
        auto = _find(rows, f"scale-{size}-n1", "xcon-auto")
        spread = max(w1["spread"], auto["spread"] if auto else 0.0)
        add(
            f"scale {size} B, 1 link: xcon --workers auto no slower than --workers 1 "
            f"(within the runs' spread, {spread:.0%}){why}",
            value,
            round(1 - spread, 3),
            True,
            "×",
        )
    value, w1, why = auto_vs(2, "xcon-w1")
    if w1 and w1["cores"] >= 2:
        add(
            f"scale {size} B, 2 links: --workers auto ≥ 1.3× --workers 1{why}",
            value,
            1.3,
            True,
            "×",
        )
    if _find(rows, f"scale-{size}-n6", "xcon-w1") is None:
        return
    for base, limit in (
        ("xcon-per-link", 0.9),
        ("splice", 0.55 if size == 1500 else 0.65),
        ("xcon-w1", 5.0),
    ):
        value, b, why = auto_vs(6, base)
        cores = b["cores"] if b else None
        if not why and not (cores and cores >= 12):
            why = f" (n/a: {cores or '?'} cores)"
        add(
            f"scale {size} B, 6 links, ≥ 12 cores: --workers auto ≥ {limit}× {base}{why}",
            None if why else value,
            limit,
            True,
            "×",
        )


def targets_text(ts: list[dict[str, Any]]) -> str:
    lines = ["targets:"]
    for t in ts:
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[t["met"]]
        val = "-" if t["value"] is None else f"{t['value']:g}{t.get('unit', '')}"
        lines.append(f"  [{mark}] {t['target']}: {val}")
    return "\n".join(lines)


# -- files -----------------------------------------------------------------------------------------------
def write_json(doc: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"{stamp}.json"
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False, default=str) + "\n"
    path.write_text(text)
    return path


def write_png(rows: list[Row], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG (pip install -e '.[bench]')", file=sys.stderr)
        return None
    scale = [r for r in rows if r["group"] == "scale" and r["status"] == "ok"]
    if scale and not any(r["group"] == "p2p" for r in rows):
        sizes = sorted({r["size"] for r in scale}, reverse=True)
        fig, axes = plt.subplots(1, len(sizes), figsize=(8 * len(sizes), 5.5), squeeze=False)
        for ax, size in zip(axes[0], sizes, strict=True):
            _scale_panel(ax, [r for r in scale if r["size"] == size], size)
        return _save(plt, fig, path)
    ends = [r for r in rows if r["group"] in ENDS_GROUPS and r["status"] == "ok"]
    if ends and not any(r["group"] == "p2p" for r in rows):
        fig, ax = plt.subplots(1, 1, figsize=(8, 5.5))
        _ends_panel(ax, ends)
        return _save(plt, fig, path)
    fig, axes = plt.subplots(1, 4 if ends else 3, figsize=(24 if ends else 18, 5.5))
    if ends:
        _ends_panel(axes[3], ends)
    ax = axes[0]
    for r in rows:
        if r["scenario"] == "p2p-1500" and r["status"] == "ok" and r.get("load_cdf"):
            xs = [p[0] for p in r["load_cdf"]]
            ys = [p[1] for p in r["load_cdf"]]
            ax.plot(xs, ys, label=f"{r['relay']} @ {r['load']['offered_fps'] / 1e3:.0f}k fps")
    ax.set_xscale("log")
    ax.set_xlabel("one-way delay (µs), log scale")
    ax.set_ylabel("fraction of frames")
    ax.set_title("p2p 1500 B one-way delay CDF under load")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    for ax, key, title, scale in (
        (axes[1], "gbps", "p2p throughput (Gbit/s)", 1.0),
        (axes[2], "fps", "p2p frame rate (Mframes/s)", 1e-6),
    ):
        sizes = [r["scenario"] for r in rows if r["group"] == "p2p" and r["relay"] == "direct"]
        relays = []
        for r in rows:
            if r["group"] == "p2p" and r["relay"] not in relays and r["relay"] != "direct":
                relays.append(r["relay"])
        width = 0.8 / max(len(relays), 1)
        for i, rel in enumerate(relays):
            vals = []
            for scn in sizes:
                row = _find(rows, scn, rel)
                vals.append((row.get(key) or 0) * scale if row else 0)
            ax.bar([j + i * width for j in range(len(sizes))], vals, width, label=rel)
        ax.set_xticks([j + width * (len(relays) - 1) / 2 for j in range(len(sizes))])
        ax.set_xticklabels([s.replace("p2p-", "") for s in sizes])
        ax.set_xlabel("frame size (bytes)")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


ENDS_GROUPS = ("unix", "udp", "vxlan")


def _ends_panel(ax: Any, ends: list[Row]) -> None:
    """Frames/s of the links between other kinds of end, each scenario with its baselines."""
    x = 0.0
    labels: list[str] = []
    colors: dict[str, str] = {}
    palette = ["tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple"]
    ticks: list[float] = []
    for scn in dict.fromkeys(r["scenario"] for r in ends):
        for r in (r for r in ends if r["scenario"] == scn):
            color = colors.setdefault(r["relay"], palette[len(colors) % len(palette)])
            ax.bar(x, r["fps"] / 1e6, 0.8, color=color)
            ax.annotate(_rate(r["fps"]), (x, r["fps"] / 1e6), ha="center", va="bottom", fontsize=8)
            ticks.append(x)
            labels.append(f"{scn}\n{r['relay']}")
            x += 1
        x += 0.6
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=9, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_title("link ends: frame rate (Mframes/s), saturated")
    ax.grid(True, axis="y", which="both", alpha=0.3)


def _scale_panel(ax: Any, rows: list[Row], size: int) -> None:
    """Frames/s over all links against the number of links, a line per relay."""
    for relay in dict.fromkeys(r["relay"] for r in rows):
        pts = sorted((r["links"], r["fps"] / 1e6) for r in rows if r["relay"] == relay)
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=relay)
    ax.set_xticks(sorted({r["links"] for r in rows}))
    ax.set_xlabel("links (a sender and a receiver process each)")
    ax.set_ylabel("Mframes/s over all links")
    ax.set_title(f"scale: {size} B frames, saturated")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RUN.json``: draw (again) the PNG of a saved run, beside it."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    ap.add_argument("run", type=Path, help="a results JSON written by python -m bench")
    args = ap.parse_args(argv)
    doc = json.loads(args.run.read_text())
    png = write_png(doc["results"], args.run.with_suffix(".png"))
    if png is None:
        return 1
    print(png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
