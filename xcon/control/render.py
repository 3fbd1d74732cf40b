"""What ``xcon ctl`` prints: the API's JSON answers as tables and lines for
people (``--json`` prints the JSON itself)."""

from __future__ import annotations

import time
from typing import Any


def _si(x: float, unit: str) -> str:
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.1f}{prefix}{unit}"
    return f"{x:.0f}{unit}"


def _drops(end: dict[str, Any]) -> str:
    d = {**end.get("rx_drops", {}), **end.get("tx_drops", {})}
    return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "0"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def links_table(links: list[dict[str, Any]]) -> str:
    if not links:
        return "no links\n"
    rows = [
        [
            "LINK",
            "ADMIN",
            "END",
            "STATE",
            "PEER",
            "RX/s",
            "TX/s",
            "RX",
            "TX",
            "DROPS",
            "IMPAIR",
            "CAPTURE",
        ]
    ]
    workers = any("worker" in link for link in links)  # --workers N: each link's worker
    if workers:
        rows[0].append("WORKER")
    for link in links:
        impair = link.get("impair") or {}
        for i, end in enumerate(link["ends"]):
            # the impairment of what this end sends (a2b leaves a p2p link's
            # first end; a hub's ends are keyed END:a2b)
            if "a2b" in impair:
                words = impair.get("a2b" if i == 0 else "b2a")
            else:
                words = impair.get(f"{end['name']}:a2b")
            rows.append(
                [
                    link["name"] if i == 0 else "",
                    link["admin"] if i == 0 else "",
                    end["name"],
                    end["state"],
                    end["peer"] or "-",
                    _si(end["rx_frames_per_s"], "f"),
                    _si(end["tx_frames_per_s"], "f"),
                    str(end["rx_frames"]),
                    str(end["tx_frames"]),
                    _drops(end),
                    words or "-",
                    _captures(link) if i == 0 else "",
                ]
            )
            if workers:
                rows[-1].append(f"w{link.get('worker', '?')}" if i == 0 else "")
    return table(rows)


def _captures(link: dict[str, Any]) -> str:
    """``2 (drops 5)``: the link's running captures and their drops, and
    ``1 failed`` for those that failed; ``-`` for none."""
    caps = link.get("captures") or []
    running = [c for c in caps if c.get("state", "running") == "running"]
    failed = len(caps) - len(running)
    text = f"{len(running)} (drops {sum(c['drops'] for c in running)})" if running else ""
    if failed:
        text += f"{', ' if text else ''}{failed} failed"
    return text or "-"


def link_detail(link: dict[str, Any]) -> str:
    lines = [
        f"link {link['name']} ({link['kind']}, from {link['source']}): admin {link['admin']}, "
        f"{link['state']}"
        + (f", VLAN {link['vlan']} access port" if link.get("vlan") else "")
        + (f", worker w{link['worker']}" if "worker" in link else "")
    ]
    for end in link["ends"]:
        lines.append(
            f"  end {end['name']}: {end['state']}"
            + (f", peer {end['peer']}" if end["peer"] else "")
            + (f", monitor {end['monitor']}" if end.get("monitor") else "")
        )
        lines.append(
            f"    rx {end['rx_frames']} frames {end['rx_bytes']} bytes "
            f"({_si(end['rx_frames_per_s'], 'f/s')}, {_si(end['rx_bits_per_s'], 'bit/s')}); "
            f"tx {end['tx_frames']} frames {end['tx_bytes']} bytes "
            f"({_si(end['tx_frames_per_s'], 'f/s')}, {_si(end['tx_bits_per_s'], 'bit/s')})"
        )
        lines.append(
            f"    drops {_drops(end)}; connects {end['connects']}, reconnects "
            f"{end['reconnects']}, disconnects {end['disconnects']}"
            + (f", last error: {end['last_error']}" if end.get("last_error") else "")
        )
        if end.get("carrier"):
            lines.append("    " + carrier_line(end["carrier"]))
    flap = link.get("flap")
    if flap:
        count = f"{flap['done']} of {flap['count']}" if flap["count"] else f"{flap['done']}"
        lines.append(
            f"  flap: down {flap['down']:g}s, up {flap['up']:g}s, pulls {count}, "
            f"next change in {flap['next_in']:g}s"
        )
    for c in link.get("captures", []):
        lines.append("  " + capture_line(c).rstrip())
    for d, words in (link.get("impair") or {}).items():
        if words:
            lines.append(f"  impair {d}: {words}")
    for direction in link.get("directions", []):
        events = direction.get("events") or {}
        if events:
            lines.append(
                f"  {direction['name']}: "
                + ", ".join(f"{k} {v}" for k, v in sorted(events.items()))
            )
        late = direction.get("late")
        if late and late.get("frames"):
            lines.append(f"  {direction['name']}: {late_line(late)}")
    return "\n".join(lines) + "\n"


def carrier_line(c: dict[str, Any]) -> str:
    """``carrier off since 12:01:02 (vr2/1 is not connected); 2 changes, 1 monitor error: ...``."""
    since = time.strftime("%H:%M:%S", time.localtime(c["since"])) if c.get("since") else "start"
    text = f"carrier {c['carrier']} since {since}"
    if c.get("want") and c["want"] != c["carrier"]:
        text += f", going {c['want']}"
    if c.get("why"):
        text += f" ({c['why']})"
    text += f"; set {c['changes']} times"
    if c.get("errors"):
        text += f", {c['errors']} monitor errors"
    if c.get("error"):
        text += f", last: {c['error']}"
    return text


def late_line(late: dict[str, Any]) -> str:
    """``delay line: 1000 frames released, mean 41 us late, 99.2% within 200 us``."""
    n = late["frames"]
    at_most = late.get("at_most_us") or {}
    within = at_most.get("200", n)
    return (
        f"delay line: {n} frames released, mean {late['mean_us']:g} us late, "
        f"{100.0 * within / n:.1f}% within 200 us"
    )


def capture_line(c: dict[str, Any], verb: str = "") -> str:
    if not verb and c.get("state") == "failed":
        verb = "failed "
    where = c.get("file") or "stream"
    files = c.get("files") or []
    if c.get("ring") and files:
        where += f" ({len(files)} file(s), last {files[-1]})"
    extra = "".join(f", {k} {c[k]}" for k in ("snaplen", "filter") if c.get(k) not in (None, 0, ""))
    err = f", error: {c['error']}" if c.get("error") else ""
    return (
        f"{verb}capture {c['id']} of {c['link']} to {where}: {c['frames']} frames, "
        f"{c['drops']} dropped{extra}{err}\n"
    )


def render(cmd: str, doc: dict[str, Any]) -> str:
    if cmd == "links":
        return links_table(doc["links"])
    if cmd in ("link", "add", "down", "up", "impair", "flap"):
        return link_detail(doc)
    if cmd == "remove":
        return f"removed {doc['removed']}\n"
    if cmd == "capture":
        if "stopped" in doc:
            return "".join(
                capture_line(c, "cleared " if c.get("state") == "failed" else "stopped ")
                for c in doc["stopped"]
            )
        if "ends" in doc:
            return "".join(capture_line(c) for c in doc.get("captures", [])) or "no captures\n"
        return capture_line(doc, "capturing ")
    if cmd == "reset":
        return f"counters reset: {len(doc['reset'])} link(s)\n"
    if cmd == "health":
        text = f"{doc['code']}\n{doc['message']}\n"
        if doc.get("file_error"):
            text += f"health file: {doc['file_error']}\n"
        return text
    if cmd == "reload":
        text = (
            f"added {len(doc['added'])}, removed {len(doc['removed'])}, changed "
            f"{len(doc['changed'])}, unchanged {doc['unchanged']}"
        )
        for what in ("added", "removed", "changed"):
            for name in doc[what]:
                text += f"\n  {what} {name}"
        for f in doc.get("failed", []):
            text += f"\n  failed {f['link']}: {f['error']}"
        return text + "\n"
    # status
    return "".join(f"{k}: {v}\n" for k, v in doc.items() if k != "routes")
