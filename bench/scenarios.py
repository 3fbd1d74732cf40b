"""The scenarios: each one runs measurements and returns result rows."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import TMP, NotAvailable, Peer, Peers, Relay, hosts, reap, spawn
from bench.metrics import cdf_points, delay_stats, median, median_runs

Row = dict[str, Any]

IDLE_FPS = 2000.0
SIZES = [("64", 64), ("512", 512), ("1500", 1500), ("9000", 9000), ("imix", 0)]
LINK_COUNTS = [1, 10, 100, 500]


@dataclass
class Settings:
    quick: bool = False

    @property
    def reps(self) -> int:
        return 1 if self.quick else 3

    @property
    def duration(self) -> float:
        return 0.8 if self.quick else 2.0

    @property
    def delay_duration(self) -> float:
        return 1.0 if self.quick else 2.5

    @property
    def warmup(self) -> float:
        return 0.2 if self.quick else 0.4


class Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.n = 0
        self.tty = sys.stderr.isatty()

    def __call__(self, what: str) -> None:
        self.n += 1
        line = f"[{time.monotonic() - self.t0:6.1f}s #{self.n:3d}] {what}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:150])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def relays() -> list[Relay]:
    return [
        Relay("direct", "direct"),
        Relay("splice", "splice"),
        Relay("socat", "socat"),
        Relay("xcon", "xcon"),
        Relay("xcon-python", "xcon", native=False),
        Relay("xcon-uvloop", "xcon", engine="uvloop"),
    ]


def fresh(r: Relay) -> Relay:
    return dataclasses.replace(r, procs=[], workdir=None)


# -- one measurement --------------------------------------------------------------------------
@dataclass
class Wiring:
    """Who connects where, for scenarios other than TCP p2p/hub (``run_flow(wiring=...)``).

    ``relay_args``: per relay kind, what ``Relay.start(mode, args)`` gets (``mode`` is
    ``p2p`` for xcon, ``socat`` for socat's whole argument list); ``direct_send``: the
    sender's endpoints when there is no relay; ``*_netns``: where each process runs;
    ``counters``: drop counters read around the window (the deltas go in the row's
    ``drops``, with the receiving peer's own socket drops); ``probe``: numbers read
    from the running relay around the window (the deltas go in the row's ``probe``)."""

    send_eps: list[str]
    recv_eps: list[str]
    relay_args: dict[str, tuple[str, list[str]]]
    direct_send: list[str]
    n_tx: int = 1
    n_rx: int = 1
    tx_netns: str | None = None
    rx_netns: str | None = None
    relay_netns: str | None = None
    counters: Callable[[], dict[str, int]] | None = None
    probe: Callable[[Relay], dict[str, float]] | None = None


def run_flow(
    relay: Relay,
    s: Settings,
    *,
    mode: str = "p2p",
    nlinks: int = 1,
    size: int = 1500,
    rate: float = 0.0,
    send_vid: int | None = None,
    access: str | None = None,
    vid: int = 123,
    hub_ports: int = 3,
    record: bool = False,
    duration: float | None = None,
    wiring: Wiring | None = None,
    peer_per_link: bool = False,
) -> tuple[Row, np.ndarray]:
    """Sender peer -> relay -> receiver peer; returns metrics and the delay sample (ns).
    ``peer_per_link``: p2p links, each with a sender and a receiver process of its own."""
    relay = fresh(relay)
    sh, rh = hosts()
    tx_ns = rx_ns = relay_ns = None
    args: list[str]
    if wiring is not None:
        n_tx, n_rx = wiring.n_tx, wiring.n_rx
        recv_eps = wiring.recv_eps
        tx_ns, rx_ns, relay_ns = wiring.tx_netns, wiring.rx_netns, wiring.relay_netns
        if relay.kind == "direct":
            send_eps, args = wiring.direct_send, []
        else:
            if relay.kind not in wiring.relay_args:
                raise NotAvailable(f"{relay.name} cannot relay this link")
            send_eps = wiring.send_eps
            mode, args = wiring.relay_args[relay.kind]
    elif relay.kind == "direct":
        n_rx = nlinks
        send_eps = [f"c:{rh}:{10001 + k}:s" for k in range(nlinks)]
        recv_eps = [f"L:{rh}:10001:{nlinks}:r"]
        args = []
    elif mode == "hub":
        n_rx = hub_ports - 1
        send_eps = [f"l:{sh}:10001:s"]
        recv_eps = [f"L:{rh}:10001:{n_rx}:r"]
        args = [f"{sh}/1", *(f"{rh}/{k + 1}" for k in range(n_rx))]
    else:
        n_rx = nlinks
        send_eps = [f"L:{sh}:10001:{nlinks}:s"]
        recv_eps = [f"L:{rh}:10001:{nlinks}:r"]
        args = []
        for k in range(nlinks):
            if access == "rx":
                args.append(f"{sh}/{k + 1}--{rh}/{k + 1}:{vid}")
            elif access == "tx":
                args.append(f"{rh}/{k + 1}--{sh}/{k + 1}:{vid}")
            else:
                args.append(f"{sh}/{k + 1}--{rh}/{k + 1}")
    if peer_per_link:
        recv_eps = [f"l:{rh}:{10001 + k}:r" for k in range(nlinks)]
        if relay.kind != "direct":
            send_eps = [f"l:{sh}:{10001 + k}:s" for k in range(nlinks)]
    buf = 64 if nlinks > 8 and not peer_per_link else None
    if wiring is None:
        n_tx = 1 if mode == "hub" else nlinks
    side = Peers if peer_per_link else Peer
    rx = tx = None
    try:
        rx = side(recv_eps, size=size, record=record, buf_kib=buf, netns=rx_ns)
        rx.wait("ready", 5)
        tx = side(send_eps, size=size, rate=rate, vid=send_vid, buf_kib=buf, netns=tx_ns)
        if relay.kind != "direct":
            tx.wait("ready", 5)
            relay.start(mode, args, netns=relay_ns)
        setup = 10 + nlinks * 0.05
        tx.wait_up(n_tx, setup)
        rx.wait_up(n_rx, setup)
        rx.wait("first", 5)
        time.sleep(s.warmup)
        k0 = wiring.counters() if wiring and wiring.counters else {}
        p0 = wiring.probe(relay) if wiring and wiring.probe else {}
        c0 = relay.cpu()
        s0 = rx.snap()
        time.sleep(duration if duration is not None else s.duration)
        s1 = rx.snap()
        c1 = relay.cpu()
        k1 = wiring.counters() if wiring and wiring.counters else {}
        p1 = wiring.probe(relay) if wiring and wiring.probe else {}
        rss, hwm = relay.mem()
        if relay.kind != "direct" and not relay.alive():
            raise RuntimeError(f"{relay.name} died: {relay.log()[-1000:]}")
        dt = (s1.t_ns - s0.t_ns) / 1e9
        frames = s1.frames - s0.frames
        lost = s1.lost - s0.lost
        row: Row = {
            "fps": frames / dt,
            "gbps": (s1.bytes - s0.bytes) * 8 / dt / 1e9,
            "lost": lost,
            "loss_pct": 100.0 * lost / (lost + frames) if lost + frames else 0.0,
            "reorder": s1.reorder - s0.reorder,
            "bad": s1.bad - s0.bad,
            "tagged_frac": (s1.tagged - s0.tagged) / frames if frames else 0.0,
            "active_links": s1.active,
            "cpu_pct": 100.0 * (c1 - c0) / dt if relay.kind != "direct" else None,
            "rss_mib": rss / 1024 if rss else None,
            "hwm_mib": hwm / 1024 if hwm else None,
        }
        if wiring is not None:
            drops = {k: v - k0.get(k, 0) for k, v in k1.items()}
            drops["receiver_socket"] = s1.sockdrops - s0.sockdrops
            row["drops"] = drops
            if p1:
                row["probe"] = {k: v - p0.get(k, 0) for k, v in p1.items()}
        d = rx.delays() if record else np.zeros(0, dtype=np.int64)
        return row, d
    finally:
        relay.stop()
        for p in (tx, rx):
            if p is not None:
                p.stop()


def sat_runs(relay: Relay, s: Settings, progress: Progress, label: str, **kw: Any) -> Row:
    return sat_interleaved([relay], s, progress, label, **kw)[relay.name]


def sat_interleaved(
    rs: list[Relay], s: Settings, progress: Progress, label: str, reps: int = 0, **kw: Any
) -> dict[str, Row]:
    """Saturated runs, repetitions interleaved across relays (A B C A B C ...), so a
    busy spell on the shared machine hits every relay alike; medians per relay."""
    reps = reps or s.reps
    runs: dict[str, list[Row]] = {r.name: [] for r in rs}
    for i in range(reps):
        for r in rs:
            progress(f"{label}: {r.name} saturated, run {i + 1}/{reps}")
            row, _ = run_flow(r, s, **kw)
            runs[r.name].append(row)
    out: dict[str, Row] = {}
    for name, rr in runs.items():
        med: Row = dict(median_runs(rr))
        med["runs"] = [{k: r[k] for k in ("fps", "gbps", "cpu_pct")} for r in rr]
        out[name] = med
    return out


def delay_run(
    relay: Relay, s: Settings, progress: Progress, label: str, rate: float, **kw: Any
) -> tuple[Row | None, np.ndarray]:
    progress(f"{label}: {relay.name} delay at {rate:,.0f} frames/s")
    row, d = run_flow(relay, s, rate=rate, record=True, duration=s.delay_duration, **kw)
    st = delay_stats(d)
    if st is not None:
        st["offered_fps"] = rate
        st["fps"] = row["fps"]
        st["lost"] = row["lost"]
    return st, d


def na_row(group: str, scenario: str, relay: str, reason: str, **extra: Any) -> Row:
    return {
        "group": group,
        "scenario": scenario,
        "relay": relay,
        "status": "n/a",
        "reason": reason,
        **extra,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# -- p2p frame sizes, all relays ------------------------------------------------------------------
def p2p_size(
    name: str, size: int, s: Settings, progress: Progress, na: dict[str, str]
) -> list[Row]:
    label = f"p2p-{name}"
    rows: dict[str, Row] = {}
    delays: dict[str, np.ndarray] = {}
    usable = []
    for r in relays():
        reason = na.get(r.name) or r.available()
        if not reason and r.kind == "xcon":
            try:
                run_flow(r, s, size=size, duration=0.1)
            except NotAvailable as e:
                reason = na[r.name] = str(e)
        if reason:
            rows[r.name] = na_row("p2p", label, r.name, reason, size=size)
        else:
            usable.append(r)
    reps = s.reps + (2 if not s.quick and size in (64, 1500) else 0)
    for name, row in sat_interleaved(usable, s, progress, label, reps=reps, size=size).items():
        row.update(group="p2p", scenario=label, relay=name, status="ok", size=size)
        rows[name] = row
    rows = {r.name: rows[r.name] for r in relays()}
    ok = {k: v for k, v in rows.items() if v["status"] == "ok"}
    ref = [ok[k]["fps"] for k in ("splice", "socat", "xcon") if k in ok]
    load = 0.5 * min(ref) if ref else 0.0
    for r in relays():
        row = rows[r.name]
        if row["status"] != "ok":
            continue
        idle, _ = delay_run(r, s, progress, label, IDLE_FPS, size=size)
        rate = min(load, 0.5 * row["fps"]) if load else 0.5 * row["fps"]
        loaded, d = delay_run(r, s, progress, label, rate, size=size)
        row["idle"] = idle
        row["load"] = loaded
        row["load_cdf"] = cdf_points(d)
        delays[r.name] = d
    for name, row in rows.items():
        if row["status"] != "ok":
            continue
        ratios: dict[str, float | None] = {}
        if name.startswith("xcon"):
            for base in ("socat", "splice", "direct"):
                if base in ok:
                    ratios[base] = _ratio(row["fps"], ok[base]["fps"])
            if name != "xcon" and "xcon" in ok:
                ratios["xcon"] = _ratio(row["fps"], ok["xcon"]["fps"])
            if "socat" in ok and row.get("load") and ok["socat"].get("load"):
                ratios["pdv_p99_vs_socat"] = _ratio(
                    row["load"]["pdv_p99_us"], ok["socat"]["load"]["pdv_p99_us"]
                )
        elif name in ("socat", "splice") and "direct" in ok:
            ratios["direct"] = _ratio(row["fps"], ok["direct"]["fps"])
        row["ratios"] = ratios
    return list(rows.values())


# -- engines head to head --------------------------------------------------------------------
ENGINE_SIZES = (64, 512, 1500)


def engines(s: Settings, progress: Progress) -> list[Row]:
    """epoll against uvloop alone: paired runs, the order swapped every pair, and the median
    of the per-pair ratios (a busy spell on the shared machine hits both runs of a pair)."""
    ep, uv = Relay("xcon", "xcon"), Relay("xcon-uvloop", "xcon", engine="uvloop")
    try:
        run_flow(uv, s, size=64, duration=0.1)
    except NotAvailable as e:
        return [na_row("engines", "engines", "xcon-uvloop", str(e))]
    pairs = 3 if s.quick else 9
    rows: list[Row] = []
    for size in ENGINE_SIZES:
        label = f"engines-{size}"
        runs: dict[str, list[Row]] = {"xcon": [], "xcon-uvloop": []}
        ratios = []
        for i in range(pairs):
            order = (ep, uv) if i % 2 == 0 else (uv, ep)
            got = {}
            for r in order:
                progress(f"{label}: {r.name} saturated, pair {i + 1}/{pairs}")
                got[r.name], _ = run_flow(r, s, size=size)
                runs[r.name].append(got[r.name])
            ratios.append(got["xcon-uvloop"]["fps"] / got["xcon"]["fps"])
        for r in (ep, uv):
            row: Row = dict(median_runs(runs[r.name]))
            row["runs"] = [{k: x[k] for k in ("fps", "gbps", "cpu_pct")} for x in runs[r.name]]
            row.update(group="engines", scenario=label, relay=r.name, status="ok", size=size)
            row["idle"], _ = delay_run(r, s, progress, label, IDLE_FPS, size=size)
            if r is uv:
                row["pair_ratios"] = ratios
                row["ratios"] = {"xcon": median(ratios)}
            rows.append(row)
    return rows


# -- VLAN access port -----------------------------------------------------------------------------
def vlan(s: Settings, progress: Progress, p2p_rows: list[Row]) -> list[Row]:
    out = []
    plain = {r["size"]: r for r in p2p_rows if r["relay"] == "xcon" and r["status"] == "ok"}
    for size in (64, 1500):
        for direction, access, send_vid in (("strip", "rx", 123), ("insert", "tx", None)):
            label = f"vlan-{direction}-{size}"
            r = Relay("xcon", "xcon")
            row = sat_runs(r, s, progress, label, size=size, access=access, send_vid=send_vid)
            row.update(group="vlan", scenario=label, relay="xcon", status="ok", size=size)
            expect = 0.0 if direction == "strip" else 1.0
            row["tags_ok"] = abs(row["tagged_frac"] - expect) < 1e-9 and not row["bad"]
            if size in plain:
                row["ratios"] = {"xcon-p2p": _ratio(row["fps"], plain[size]["fps"])}
            out.append(row)
    return out


# -- hub of 3 -------------------------------------------------------------------------------------
def hub(s: Settings, progress: Progress) -> list[Row]:
    out = []
    for r in (Relay("xcon", "xcon"), Relay("xcon-python", "xcon", native=False)):
        label = "hub3-1500"
        try:
            row = sat_runs(r, s, progress, label, mode="hub", size=1500)
        except NotAvailable as e:
            out.append(na_row("hub", label, r.name, str(e), size=1500))
            continue
        row.update(group="hub", scenario=label, relay=r.name, status="ok", size=1500)
        rate = 0.5 * row["fps"] / 2
        loaded, d = delay_run(r, s, progress, label, rate, mode="hub", size=1500)
        idle, _ = delay_run(r, s, progress, label, IDLE_FPS, mode="hub", size=1500)
        row["idle"], row["load"], row["load_cdf"] = idle, loaded, cdf_points(d)
        out.append(row)
    return out


# -- many links in one process ---------------------------------------------------------------------
def links(s: Settings, progress: Progress) -> list[Row]:
    out = []
    for n in LINK_COUNTS:
        label = f"links-{n}"
        r = Relay("xcon", "xcon")
        row = sat_runs(r, s, progress, label, nlinks=n, size=512)
        row.update(group="links", scenario=label, relay="xcon", status="ok", size=512, links=n)
        out.append(row)
    return out


# -- a link forwards again after its peer restarts ----------------------------------------------------
def reconnect(s: Settings, progress: Progress) -> list[Row]:
    out = []
    trials = 2 if s.quick else 5
    down_s = 1.0
    sh, rh = hosts()
    for r in (Relay("xcon", "xcon"), Relay("socat", "socat")):
        if r.available():
            out.append(na_row("reconnect", "reconnect", r.name, r.available() or ""))
            continue
        times: list[float] = []
        note = ""
        tx = rx = None
        try:
            rx = Peer([f"l:{rh}:10001:r"], size=512)
            rx.wait("ready", 5)
            tx = Peer([f"l:{sh}:10001:s"], size=512, rate=20000)
            tx.wait("ready", 5)
            r.start("p2p", [f"{sh}/1--{rh}/1"])
            tx.wait_up(1, 10)
            rx.wait("first", 5)
            for i in range(trials):
                progress(f"reconnect: {r.name} trial {i + 1}/{trials} (peer down {down_s:.1f}s)")
                rx.stop()
                rx = None
                time.sleep(down_s)
                if r.kind != "xcon" and not r.alive():
                    note = f"{r.name} exits when a peer closes: the link never comes back"
                    break
                rx = Peer([f"l:{rh}:10001:r"], size=512)
                ready = int(rx.wait("ready", 5)[1])
                try:
                    first = int(rx.wait("first", 10)[1])
                except RuntimeError:
                    note = "no frame within 10 s after the peer came back"
                    break
                times.append((first - ready) / 1e6)
        finally:
            r.stop()
            for p in (tx, rx):
                if p is not None:
                    p.stop()
        if not times:
            out.append(na_row("reconnect", "reconnect", r.name, note or "no measurement"))
            continue
        out.append(
            {
                "group": "reconnect",
                "scenario": "reconnect",
                "relay": r.name,
                "status": "ok",
                "down_s": down_s,
                "reconnect_ms": median(times),
                "reconnect_max_ms": max(times),
                "reconnect_all_ms": times,
                "note": note,
            }
        )
    return out


# -- tap mode -------------------------------------------------------------------------------------------
def tap(s: Settings, progress: Progress) -> list[Row]:
    label = "tap-512"
    if os.geteuid() != 0:
        return [na_row("tap", label, "xcon", "needs root (tap device)")]
    ns = f"xcb-tap-{uuid.uuid4().hex[:6]}"
    ifname = f"xbt{uuid.uuid4().hex[:6]}"
    r = Relay("xcon", "xcon")
    tx = None
    progress(f"{label}: xcon --tap-listen")
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        try:
            r.start_xcon(
                ["--tap-listen", "1", "--tap-if", ifname, "--ipv4-address", "10.78.0.1/24"],
                netns=ns,
            )
        except NotAvailable as e:
            return [na_row("tap", label, "xcon", str(e))]
        tx = Peer(["c:127.0.0.1:10001:s"], size=512, netns=ns)
        tx.wait_up(1, 10)
        stat = f"/sys/class/net/{ifname}/statistics/rx_packets"

        def rx_packets() -> int:
            res = subprocess.run(
                ["ip", "netns", "exec", ns, "cat", stat], capture_output=True, text=True
            )
            return int(res.stdout.strip() or 0)

        time.sleep(s.warmup)
        runs = []
        for _ in range(s.reps):
            a, t0 = rx_packets(), time.monotonic()
            c0 = r.cpu()
            time.sleep(s.duration)
            b, t1 = rx_packets(), time.monotonic()
            runs.append({"fps": (b - a) / (t1 - t0), "cpu_pct": 100 * (r.cpu() - c0) / (t1 - t0)})
        row: Row = dict(median_runs(runs))
        row["gbps"] = row["fps"] * 512 * 8 / 1e9
        rss, hwm = r.mem()
        row.update(group="tap", scenario=label, relay="xcon", status="ok", size=512)
        row.update(rss_mib=rss / 1024, hwm_mib=hwm / 1024, note="frames/s the tap received")
        return [row]
    except RuntimeError as e:
        return [na_row("tap", label, "xcon", f"failed: {e}")]
    finally:
        r.stop()
        if tx is not None:
            tx.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def summarize_profile(path: str, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares of a py-spy ``raw`` (collapsed stacks) profile."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n_s = line.rstrip("\n").rpartition(" ")
            if not stack or not n_s.isdigit():
                continue
            n = int(n_s)
            total += n
            frames = stack.split(";")
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for fr in set(frames):
                incl[fr] = incl.get(fr, 0) + n

    def best(d: dict[str, int]) -> list[list[Any]]:
        items = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [[round(100 * v / total, 1), k] for k, v in items]

    return {"samples": total, "self_pct": best(own), "inclusive_pct": best(incl)}


def profile_xcon(seconds: float, size: int, progress: Progress) -> dict[str, Any] | None:
    """py-spy profile (Python and native frames) of xcon forwarding saturated frames."""
    import shutil

    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(pyspy):
        return None
    progress(f"profile: py-spy on xcon forwarding {size} B frames for {seconds:.0f}s")
    sh, rh = hosts()
    out_path = str(TMP / f"profile-{size}.txt")
    r = Relay("xcon", "xcon")
    rx = Peer([f"l:{rh}:10001:r"], size=size)
    tx = Peer([f"l:{sh}:10001:s"], size=size)
    prof = None
    try:
        rx.wait("ready", 5)
        tx.wait("ready", 5)
        r.start("p2p", [f"{sh}/1--{rh}/1"])
        rx.wait("first", 10)
        cmd = [pyspy, "record", "--native", "-d", str(int(seconds)), "-f", "raw", "-o", out_path]
        prof = spawn([*cmd, "-p", str(r.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prof.wait(seconds + 30)
        summary = summarize_profile(out_path)
        summary["size"] = size
        return summary
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    finally:
        if prof is not None:
            reap(prof)
        r.stop()
        tx.stop()
        rx.stop()
