"""Real qemu end to end: two qemu NICs (socket netdev bridged to a tap in a namespace),
joined by xcon, by socat, or directly (qemu ``connect=``); ping and iperf3 across them."""

from __future__ import annotations

import atexit
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import TMP, Relay, hosts, reap, spawn
from bench.scenarios import Progress, Row, Settings, na_row
from xcon.testing.qemu import QemuRouter, sh
from xcon.testing.qemu import missing as qemu_missing

NET = ("10.77.0.1", "10.77.0.2")
ADDR = tuple(h.rsplit(".", 1)[0] + x for h, x in zip(hosts(), (".11", ".12"), strict=True))
BRIDGED_NET = "172.31.77"
BRIDGED_ADDR = (f"{BRIDGED_NET}.2", f"{BRIDGED_NET}.3")


def missing() -> str | None:
    return qemu_missing(("iperf3", "iperf3"))


class Lab:
    """Two qemu "routers" whose NIC 1 is bridged to a tap inside a namespace of ours."""

    def __init__(self, direct: bool, bridged: bool = False) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = (f"xcb-{tag}-a", f"xcb-{tag}-b")
        self.taps = (f"xq{tag}a", f"xq{tag}b")
        self.dir = Path(TMP) / f"qemu-{tag}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.routers: list[QemuRouter] = []
        self.direct = direct
        # bridged: each qemu runs inside its namespace and listens on a veth there; the
        # relay runs in a third namespace and reaches both through a Linux bridge
        # (MTU 1500), as between containers on docker's network.
        self.bridged = bridged
        self.relay_ns = f"xcb-{tag}-x" if bridged else None
        self.addr = BRIDGED_ADDR if bridged else ADDR
        self._closed = False
        atexit.register(self.close)

    def _bridge_up(self) -> None:
        x = self.relay_ns
        assert x is not None
        sh("ip", "netns", "add", x)
        sh("ip", "-n", x, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", x, "addr", "add", f"{BRIDGED_NET}.1/24", "dev", "br0")
        sh("ip", "-n", x, "link", "set", "br0", "up")
        sh("ip", "-n", x, "link", "set", "lo", "up")
        for i, ns in enumerate(self.ns):
            host, peer = f"{self.taps[i]}h", f"{self.taps[i]}v"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", peer, "netns", ns)
            sh("ip", "link", "set", host, "netns", x)
            sh("ip", "-n", x, "link", "set", host, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr[i]}/24", "dev", peer)
            sh("ip", "-n", ns, "link", "set", peer, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def start(self) -> None:
        if self.bridged:
            self._bridge_up()
        for i in range(2):
            ns = self.ns[i]
            if not self.bridged:
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            direct = i == 1 and self.direct
            router = QemuRouter(
                self.dir,
                tap=self.taps[i],
                host=self.addr[0] if direct else self.addr[i],
                netns=ns,
                address=f"{NET[i]}/24",
                run_netns=ns if self.bridged else None,
                connect=direct,
            )
            self.routers.append(router.start())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for router in self.routers:
            router.stop()
        for ns in (*self.ns, self.relay_ns):
            if ns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def ping_ok(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(
                ["ip", "netns", "exec", self.ns[0], "ping", "-c", "1", "-W", "1", NET[1]],
                capture_output=True,
            )
            if r.returncode == 0:
                return True
        return False

    def ping(self, count: int) -> dict[str, float]:
        r = sh(
            "ip",
            "netns",
            "exec",
            self.ns[0],
            "ping",
            "-q",
            "-c",
            str(count),
            "-i",
            "0.01",
            "-W",
            "1",
            NET[1],
            check=False,
            timeout=count * 0.05 + 30,
        )
        out: dict[str, float] = {"count": count}
        m = re.search(r"([\d.]+)% packet loss", r.stdout)
        if m:
            out["loss_pct"] = float(m.group(1))
        m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
        if m:
            mn, avg, mx, mdev = (float(x) for x in m.groups())
            out.update(min_ms=mn, avg_ms=avg, max_ms=mx, mdev_ms=mdev)
        return out

    def iperf(self, seconds: float, udp_rate: str | None = None) -> dict[str, Any]:
        server = spawn(
            ["ip", "netns", "exec", self.ns[1], "iperf3", "-s", "-B", NET[1]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ss = subprocess.run(
                    ["ip", "netns", "exec", self.ns[1], "ss", "-Hltn", "sport", "= :5201"],
                    capture_output=True,
                    text=True,
                )
                if ss.stdout.strip() or server.poll() is not None:
                    break
                time.sleep(0.05)
            cmd = ["ip", "netns", "exec", self.ns[0], "iperf3", "-c", NET[1], "-J"]
            cmd += ["-t", str(seconds)]
            if udp_rate:
                cmd += ["-u", "-b", udp_rate, "-l", "1400"]
            r = None
            for _ in range(3):
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
                if r.returncode == 0:
                    break
                time.sleep(0.5)
            assert r is not None
            doc = json.loads(r.stdout)
            if "error" in doc:
                raise RuntimeError(f"iperf3: {doc['error']}")
            end = doc["end"]
            if udp_rate:
                s = end["sum"]
                return {
                    "udp_mbps": end.get("sum_received", s)["bits_per_second"] / 1e6
                    if "sum_received" in end
                    else s["bits_per_second"] / 1e6,
                    "udp_jitter_ms": s["jitter_ms"],
                    "udp_loss_pct": s["lost_percent"],
                }
            return {
                "tcp_gbps": end["sum_received"]["bits_per_second"] / 1e9,
                "tcp_retransmits": end["sum_sent"].get("retransmits"),
                # the sender's smoothed RTT under load (kernel tcp_info), microseconds
                "tcp_mean_rtt_us": (end.get("streams") or [{}])[0]
                .get("sender", {})
                .get("mean_rtt"),
            }
        finally:
            reap(server)


def run(s: Settings, progress: Progress, bridged: bool = False) -> list[Row]:
    """``qemu``: the routers' sockets on loopback (docs/TESTING.md's recipe).  ``qemu-bridged``:
    each router in its own namespace behind a veth on a Linux bridge, the relay in a third
    namespace, as with containers on docker's network (MTU 1500 instead of 65536)."""
    scn = "qemu-bridged" if bridged else "qemu"
    reason = missing()
    if reason:
        return [na_row("qemu", scn, r, reason) for r in ("direct", "splice", "socat", "xcon")]
    rows: list[Row] = []
    pings = 200 if s.quick else 1000
    secs = 2 if s.quick else 5
    # below what each path carries (qemu alone moves ~0.4 Gbit/s over the bridge here)
    udp_rate = "200M" if bridged else "500M"
    for name in ("direct", "splice", "socat", "xcon"):
        if name == "socat" and shutil.which("socat") is None:
            rows.append(na_row("qemu", scn, name, "socat not installed"))
            continue
        lab = Lab(direct=name == "direct", bridged=bridged)
        relay = Relay(name, name)
        try:
            progress(f"{scn}: {name}: starting two qemu and their namespaces")
            lab.start()
            if name != "direct":
                relay.start("p2p", [f"{lab.addr[0]}/1--{lab.addr[1]}/1"], lab.relay_ns)
            if not lab.ping_ok():
                raise RuntimeError("no ping reply across the link within 10 s")
            row: Row = {"group": "qemu", "scenario": scn, "relay": name, "status": "ok"}
            progress(f"{scn}: {name}: {pings} pings every 10 ms")
            row["ping"] = lab.ping(pings)
            progress(f"{scn}: {name}: iperf3 TCP {secs}s")
            c0 = relay.cpu()
            row.update(lab.iperf(secs))
            row["cpu_pct_tcp"] = 100 * (relay.cpu() - c0) / secs if relay.procs else None
            progress(f"{scn}: {name}: iperf3 UDP {udp_rate}bit/s {secs}s")
            row.update(lab.iperf(secs, udp_rate))
            row["udp_offered"] = udp_rate
            rows.append(row)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
            rows.append(na_row("qemu", scn, name, f"failed: {e}"))
        finally:
            relay.stop()
            lab.close()
    by = {r["relay"]: r for r in rows if r["status"] == "ok"}
    if "xcon" in by:
        x = by["xcon"]
        x["ratios"] = {
            k: x["tcp_gbps"] / by[k]["tcp_gbps"]
            for k in ("socat", "splice", "direct")
            if k in by and by[k].get("tcp_gbps")
        }
    for k in ("splice", "socat"):
        if k in by and "direct" in by and by["direct"].get("tcp_gbps"):
            by[k]["ratios"] = {"direct": by[k]["tcp_gbps"] / by["direct"]["tcp_gbps"]}
    return rows
