"""Links whose ends are not qemu TCP NICs: ``unix``, ``udp`` and ``vxlan``.

* ``unix``: a p2p link whose far end is ``unix:PATH`` (the receiving peer listens
  on a unix stream socket, same length-prefixed framing) against the same link
  with both ends TCP, at 64 and 1500 B: 9 pairs of saturated runs (3 with
  ``--quick``), the order swapped every pair, median of the per-pair ratios.
* ``udp``: ``udp:…@…--udp:…@…`` between two datagram peers at 64 B, next to
  socat's one-way UDP relay (``socat -u UDP4-RECV UDP4-SENDTO``: one datagram per
  read and per write, no fork) and to the sender talking to the receiver
  directly.  Saturated frames/s (what reaches the receiver while the sender sends
  as fast as it can), then every relay at the same paced load under capacity
  (half the lower of socat's and xcon's rates), where nothing may be lost.
* ``vxlan``: ``HOST/N--vxlan:…`` at 1500 B with a Linux VXLAN device on the far
  side, in two namespaces the scenario makes (A and B, joined by a veth with MTU
  1600, so a VXLAN datagram of a 1500-byte frame is not fragmented); the
  receiving peer counts the frames the device ``vx0`` in B decapsulates (packet
  socket).  Reference: the kernel path, frames written into a tap in A bridged
  to a kernel VXLAN device in A.  Saturated, then both at the same paced load
  under capacity.  Needs root; the namespaces are deleted afterwards, also on
  failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import uuid
from typing import Any

from bench.harness import TMP, NotAvailable, Relay, hosts
from bench.metrics import delay_stats, median, median_runs
from bench.scenarios import Progress, Row, Settings, Wiring, na_row, run_flow

UNIX_SIZES = (64, 1500)
UDP_SIZE = 64
VXLAN_SIZE = 1500
#: Paced load of the loss runs, as a fraction of the lower saturated rate.
LOAD_FRACTION = 0.5
VNI = 100
UNDERLAY_MTU = 1600
SOCK_BUF = 4 << 20


def dgram_missing() -> str | None:
    """Why xcon cannot run a ``udp:``/``vxlan:`` end in this build, or None."""
    from xcon import native

    gone = [f for f in ("recv_datagrams", "send_datagrams") if not hasattr(native, f)]
    if gone:
        return f"xcon's datagram ends need native.{' and native.'.join(gone)}, not in this build"
    return None


def _saturated(
    variants: list[tuple[str, Relay, Wiring]],
    s: Settings,
    progress: Progress,
    label: str,
    reps: int,
    size: int,
) -> dict[str, list[Row]]:
    """Saturated runs of every variant, interleaved, the order reversed every round."""
    runs: dict[str, list[Row]] = {name: [] for name, _, _ in variants}
    for i in range(reps):
        order = variants if i % 2 == 0 else variants[::-1]
        for name, relay, wiring in order:
            progress(f"{label}: {name} saturated, run {i + 1}/{reps}")
            row, _ = run_flow(relay, s, size=size, wiring=wiring)
            runs[name].append(row)
    return runs


def _summary(rr: list[Row]) -> Row:
    med: Row = dict(median_runs(rr))
    med["runs"] = [
        {k: r[k] for k in ("fps", "gbps", "cpu_pct", "lost", "loss_pct", "drops") if k in r}
        for r in rr
    ]
    return med


def _paced(
    relay: Relay, wiring: Wiring, s: Settings, progress: Progress, label: str, name: str, **kw: Any
) -> Row:
    """One paced run with delays recorded: frames, loss and one-way delay."""
    rate = kw["rate"]
    progress(f"{label}: {name} at {rate:,.0f} frames/s offered")
    duration = 1.0 if s.quick else 4.0
    row, d = run_flow(relay, s, record=True, duration=duration, wiring=wiring, **kw)
    out: Row = {
        "offered_fps": rate,
        "fps": row["fps"],
        "lost": row["lost"],
        "loss_pct": row["loss_pct"],
        "reorder": row["reorder"],
        "window_s": duration,
        "cpu_pct": row["cpu_pct"],
        "drops": row.get("drops"),
    }
    st = delay_stats(d)
    if st is not None:
        out.update(st)
    return out


# -- unix stream against TCP ---------------------------------------------------------------------
def unix(s: Settings, progress: Progress) -> list[Row]:
    sh, rh = hosts()
    path = str(TMP / f"far-{uuid.uuid4().hex[:8]}.sock")
    tcp = Wiring(
        send_eps=[f"l:{sh}:10001:s"],
        recv_eps=[f"l:{rh}:10001:r"],
        relay_args={"xcon": ("p2p", [f"{sh}/1--{rh}/1"])},
        direct_send=[f"c:{rh}:10001:s"],
    )
    unx = Wiring(
        send_eps=[f"l:{sh}:10001:s"],
        recv_eps=[f"lu:{path}:r"],
        relay_args={"xcon": ("p2p", [f"{sh}/1--unix:{path}"])},
        direct_send=[f"cu:{path}:s"],
    )
    variants = [("xcon-tcp", Relay("xcon", "xcon"), tcp), ("xcon-unix", Relay("xcon", "xcon"), unx)]
    pairs = 3 if s.quick else 9
    rows: list[Row] = []
    for size in UNIX_SIZES:
        label = f"unix-{size}"
        try:
            runs = _saturated(variants, s, progress, label, pairs, size)
        except (NotAvailable, RuntimeError) as e:
            rows += [na_row("unix", label, name, str(e), size=size) for name, _, _ in variants]
            continue
        ratios = [
            u["fps"] / t["fps"]
            for t, u in zip(runs["xcon-tcp"], runs["xcon-unix"], strict=True)
            if t["fps"]
        ]
        for name, relay, wiring in variants:
            row = _summary(runs[name])
            row.update(group="unix", scenario=label, relay=name, status="ok", size=size)
            idle_d = _paced(relay, wiring, s, progress, label, name, size=size, rate=2000.0)
            row["idle"] = idle_d if "p50_us" in idle_d else None
            if name == "xcon-unix":
                row["pair_ratios"] = ratios
                row["ratios"] = {"xcon-tcp": median(ratios)}
            rows.append(row)
    return rows


# -- UDP to UDP against socat ---------------------------------------------------------------------
def _read(path: str, ns: str | None) -> str:
    if ns is None:
        with open(path) as f:
            return f.read()
    cmd = ["ip", "netns", "exec", ns, "cat", path]
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def udp_socket_drops(socks: dict[str, tuple[str, int]], ns: str | None = None) -> dict[str, int]:
    """Datagrams dropped at full receive queues of UDP sockets, by local address
    (``/proc/net/udp``, last column; address ``0.0.0.0`` matches any)."""
    out = dict.fromkeys(socks, 0)
    for line in _read("/proc/net/udp", ns).splitlines()[1:]:
        f = line.split()
        hexip, hexport = f[1].split(":")
        ip = socket.inet_ntoa(struct.pack("=I", int(hexip, 16)))
        for name, (want_ip, want_port) in socks.items():
            if int(hexport, 16) == want_port and want_ip in (ip, "0.0.0.0"):
                out[name] += int(f[-1])
    return out


def udp_wiring() -> Wiring:
    """Sender SH:40001 -> relay SH:40002 ... RH:40003 -> receiver RH:40001 (xcon holds a
    local UDP port once, whatever the address)."""
    sh, rh = hosts()
    # 4 MiB socket buffers as xcon's datagram ends ask (socat's are capped at
    # net.core.rmem_max/wmem_max: its setsockopt-int is ignored on UDP-RECV).
    socat = [
        "-u",
        "-b",
        "65536",
        f"UDP4-RECV:40002,bind={sh},rcvbuf={SOCK_BUF}",
        f"UDP4-SENDTO:{rh}:40001,bind={rh}:40003,sndbuf={SOCK_BUF}",
    ]
    return Wiring(
        send_eps=[f"d:{sh}:40001:{sh}:40002:s"],
        recv_eps=[f"d:{rh}:40001:0.0.0.0:0:r"],
        relay_args={
            "xcon": ("p2p", [f"udp:{sh}:40001@{sh}:40002--udp:{rh}:40001@{rh}:40003"]),
            "socat": ("socat", socat),
        },
        direct_send=[f"d:{sh}:40001:{rh}:40001:s"],
        counters=lambda: udp_socket_drops({"relay_socket": (sh, 40002)}),
    )


def udp(s: Settings, progress: Progress) -> list[Row]:
    label = f"udp-{UDP_SIZE}"
    wiring = udp_wiring()
    candidates = [Relay("direct", "direct"), Relay("socat", "socat"), Relay("xcon", "xcon")]
    missing = {"xcon": dgram_missing(), "socat": Relay("socat", "socat").available()}
    rows: dict[str, Row] = {}
    variants = []
    for r in candidates:
        reason = missing.get(r.name)
        if reason:
            rows[r.name] = na_row("udp", label, r.name, reason, size=UDP_SIZE)
        else:
            variants.append((r.name, r, wiring))
    try:
        return _datagram_rows("udp", label, UDP_SIZE, variants, rows, s, progress)
    except (NotAvailable, RuntimeError) as e:
        return [na_row("udp", label, r.name, f"failed: {e}", size=UDP_SIZE) for r in candidates]


def _datagram_rows(
    group: str,
    label: str,
    size: int,
    variants: list[tuple[str, Relay, Wiring]],
    rows: dict[str, Row],
    s: Settings,
    progress: Progress,
) -> list[Row]:
    """Saturated rates, then every variant at one paced load under the lowest relay's rate."""
    runs = _saturated(variants, s, progress, label, s.reps + (0 if s.quick else 2), size)
    for name, _, _ in variants:
        row = _summary(runs[name])
        row.update(group=group, scenario=label, relay=name, status="ok", size=size)
        rows[name] = row
    relayed = [rows[n]["fps"] for n, _, _ in variants if n != "direct" and rows[n].get("fps")]
    if relayed:
        # Half the slowest relay's rate, so every relay runs under its capacity; and
        # half the fastest's too when that is well apart (the slower ones overloaded).
        loads = [LOAD_FRACTION * min(relayed)]
        if max(relayed) > 1.5 * min(relayed):
            loads.append(LOAD_FRACTION * max(relayed))
        for load in loads:
            for name, relay, wiring in variants:
                got = _paced(relay, wiring, s, progress, label, name, size=size, rate=load)
                got["under_capacity"] = name == "direct" or load < rows[name]["fps"]
                rows[name].setdefault("loads", []).append(got)
        for name, _, _ in variants:
            rows[name]["load"] = rows[name]["loads"][0]
    for name in rows:
        row = rows[name]
        if row["status"] != "ok":
            continue
        ratios: dict[str, float | None] = {}
        for base in ("socat", "kernel", "direct"):
            if name == "xcon" and rows.get(base, {}).get("status") == "ok" and rows[base]["fps"]:
                ratios[base] = row["fps"] / rows[base]["fps"]
        if name == "socat" and rows.get("direct", {}).get("status") == "ok":
            ratios["direct"] = row["fps"] / rows["direct"]["fps"]
        row["ratios"] = ratios
    return [rows[n] for n in ("direct", "kernel", "socat", "xcon") if n in rows]


# -- TCP to VXLAN, a kernel VXLAN device on the far side -----------------------------------------
def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")


def _sysctl(ns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], capture_output=True)


def vxlan_setup(a: str, b: str) -> None:
    """Namespaces A and B joined by a veth (10.79.0.1 and .2); in B the kernel VXLAN
    device vx0 (VNI 100, port 4789, remote A); in A the reference path: tap ``tapa``
    and a kernel VXLAN device ``vxa`` on bridge ``br0``.  IPv6 off, so nothing but the
    benchmark's frames crosses."""
    for ns in (a, b):
        _ip("netns", "add", ns)
        _sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _ip("link", "set", "lo", "up", ns=ns)
    _ip("link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b, ns=a)
    for ns, dev, me, other in (
        (a, "va", "10.79.0.1", "10.79.0.2"),
        (b, "vb", "10.79.0.2", "10.79.0.1"),
    ):
        _ip("link", "set", dev, "mtu", str(UNDERLAY_MTU), "up", ns=ns)
        _ip("addr", "add", f"{me}/24", "dev", dev, ns=ns)
        vx = "vx0" if ns == b else "vxa"
        _ip("link", "add", vx, "type", "vxlan", "id", str(VNI), "local", me, "remote", other,
            "dstport", "4789", "nolearning", ns=ns)  # fmt: skip
        _ip("link", "set", vx, "up", ns=ns)
    _ip("tuntap", "add", "dev", "tapa", "mode", "tap", ns=a)
    _ip("link", "add", "br0", "type", "bridge", ns=a)
    for dev in ("tapa", "vxa"):
        _ip("link", "set", dev, "master", "br0", "up", ns=a)
    _ip("link", "set", "br0", "up", ns=a)


def _dev_dropped(ns: str, dev: str, way: str) -> int:
    res = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", dev], capture_output=True)
    try:
        return int(json.loads(res.stdout)[0]["stats64"][way]["dropped"])
    except (ValueError, LookupError):
        return 0


def _backlog_dropped() -> int:
    """Frames dropped at full per-CPU input backlogs (``netif_rx``: veth, loopback)."""
    lines = _read("/proc/net/softnet_stat", None).splitlines()
    return sum(int(line.split()[1], 16) for line in lines if line.strip())


def vxlan_counters(a: str, b: str) -> dict[str, int]:
    return {
        "veth_a_tx": _dev_dropped(a, "va", "tx"),
        "veth_b_rx": _dev_dropped(b, "vb", "rx"),
        "vx0_rx": _dev_dropped(b, "vx0", "rx"),
        "backlog": _backlog_dropped(),
        **udp_socket_drops({"xcon_socket": ("0.0.0.0", 4790)}, a),
    }


def vxlan_wiring(a: str, b: str) -> Wiring:
    return Wiring(
        send_eps=["l:127.0.0.1:10001:s"],
        recv_eps=["p:vx0:r"],
        # xcon sends from 4790: the reference path's device holds 4789 in A.
        relay_args={"xcon": ("p2p", [f"127.0.0.1/1--vxlan:10.79.0.2/{VNI}@4790"])},
        direct_send=["t:tapa:s"],
        tx_netns=a,
        rx_netns=b,
        relay_netns=a,
        counters=lambda: vxlan_counters(a, b),
    )


def vxlan(s: Settings, progress: Progress) -> list[Row]:
    label = f"vxlan-{VXLAN_SIZE}"
    if os.geteuid() != 0:
        reason = "needs root (network namespaces, veth, tap and kernel VXLAN devices)"
        return [na_row("vxlan", label, n, reason, size=VXLAN_SIZE) for n in ("kernel", "xcon")]
    if shutil.which("ip") is None:
        reason = "ip not found (Debian package iproute2)"
        return [na_row("vxlan", label, n, reason, size=VXLAN_SIZE) for n in ("kernel", "xcon")]
    tag = uuid.uuid4().hex[:6]
    a, b = f"xcb-vxa-{tag}", f"xcb-vxb-{tag}"
    try:
        progress(f"{label}: namespaces, veth, kernel VXLAN devices")
        vxlan_setup(a, b)
        wiring = vxlan_wiring(a, b)
        rows: dict[str, Row] = {}
        variants = [("kernel", Relay("kernel", "direct"), wiring)]
        missing = dgram_missing()
        if missing:
            rows["xcon"] = na_row("vxlan", label, "xcon", missing, size=VXLAN_SIZE)
        else:
            variants.append(("xcon", Relay("xcon", "xcon"), wiring))
        out = _datagram_rows("vxlan", label, VXLAN_SIZE, variants, rows, s, progress)
        for row in out:
            if row["relay"] == "kernel":
                row["note"] = "frames written into a tap bridged to a kernel VXLAN device"
        return out
    except (RuntimeError, OSError) as e:
        return [
            na_row("vxlan", label, n, f"failed: {e}", size=VXLAN_SIZE) for n in ("kernel", "xcon")
        ]
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
