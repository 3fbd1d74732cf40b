"""``xcon ctl top``: every link in one live view, as ``top`` shows processes.

Each refresh asks ``GET /`` (version, uptime) and ``GET /links`` (the rates
xcon measures each second) and draws one row per link, sorted by total rate
(keys change the sort, ``q`` quits).  Plain curses from the standard
library: no mouse, no colours needed, so it works over ssh and ``docker
exec -it``; a resize redraws, and a terminal too small for the view shows
one line saying so.  ``--once`` prints one frame without curses (scripts).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from xcon.control.render import _captures, _si, table
from xcon.control.transport import Client, Unreachable

#: Sort keys: the key pressed, what it sorts by, and the row's value for it.
SORTS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "r": ("rate", lambda r: (-r["fps"], r["name"])),
    "b": ("bits", lambda r: (-r["bps"], r["name"])),
    "d": ("drops", lambda r: (-r["drops"], r["name"])),
    "n": ("name", lambda r: r["name"]),
    "s": ("state", lambda r: (r["state"] == "up", r["name"])),
}
KEYS = "r rate, b bits, d drops, n name, s state, q quit"
#: The smallest terminal the view is drawn in (else one line says so).
MIN_WIDTH, MIN_HEIGHT = 40, 3
#: Seconds between two looks at the terminal's size, at most.
WAKE = 0.25
COLUMNS = [
    "LINK",
    "STATE",
    "ADMIN",
    "A>B f/s",
    "A>B bit/s",
    "B>A f/s",
    "B>A bit/s",
    "DROPS",
    "CARRIER",
    "IMPAIR",
    "CAPTURE",
]


def row(link: dict[str, Any]) -> dict[str, Any]:
    """What the view shows of one link (``GET /links``' entry).  A p2p
    link's A>B is what its first end sends, B>A what its second sends; a
    hub's A>B is all that goes into it, B>A all that goes out."""
    ends = link["ends"]
    if link["kind"] == "hub" or len(ends) != 2:
        ab = [(e["rx_frames_per_s"], e["rx_bits_per_s"]) for e in ends]
        ba = [(e["tx_frames_per_s"], e["tx_bits_per_s"]) for e in ends]
    else:
        ab = [(ends[0]["rx_frames_per_s"], ends[0]["rx_bits_per_s"])]
        ba = [(ends[1]["rx_frames_per_s"], ends[1]["rx_bits_per_s"])]
    a2b = (sum(f for f, _ in ab), sum(b for _, b in ab))
    b2a = (sum(f for f, _ in ba), sum(b for _, b in ba))
    drops = sum(
        n for e in ends for d in (e.get("rx_drops", {}), e.get("tx_drops", {})) for n in d.values()
    )
    carriers = [e["carrier"]["carrier"] for e in ends if e.get("carrier")]
    impair = [f"{d} {w}" for d, w in (link.get("impair") or {}).items() if w]
    return {
        "name": link["name"],
        "state": link["state"],
        "admin": link["admin"],
        "a2b": a2b,
        "b2a": b2a,
        "fps": a2b[0] + b2a[0],
        "bps": a2b[1] + b2a[1],
        "drops": drops,
        "carrier": "/".join(carriers) or "-",
        "impair": "; ".join(impair) or "-",
        "capture": _captures(link),
    }


def frame(status: dict[str, Any], links: list[dict[str, Any]], sort: str = "r") -> list[str]:
    """The view's lines: a header, then the table sorted by ``sort``."""
    by, key = SORTS[sort]
    rows = sorted((row(link) for link in links), key=key)
    up = int(status.get("uptime_s", 0))
    uptime = f"{up // 86400}d " * (up >= 86400) + time.strftime("%H:%M:%S", time.gmtime(up))
    head = (
        f"xcon {status.get('xcon', '?')}  up {uptime}  {len(links)} links  "
        f"{sum(r['fps'] for r in rows):.0f} frames/s  sorted by {by}  ({KEYS})"
    )
    cells = [COLUMNS] + [
        [
            r["name"],
            r["state"],
            r["admin"],
            _si(r["a2b"][0], ""),
            _si(r["a2b"][1], ""),
            _si(r["b2a"][0], ""),
            _si(r["b2a"][1], ""),
            str(r["drops"]),
            r["carrier"],
            r["impair"],
            r["capture"],
        ]
        for r in rows
    ]
    return [head, "", *table(cells).splitlines()] if rows else [head, "", "no links"]


class Refused(Exception):
    """xcon answered no (or not JSON): the message for the user."""


def fetch(client: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``GET /`` and ``GET /links``; raises Unreachable, or Refused."""
    docs = []
    for path in ("/", "/links"):
        status, data, _ctype = client.request("GET", path)
        try:
            doc = json.loads(data)
        except ValueError:
            raise Refused(f"xcon answered {status} with something that is not JSON") from None
        if status >= 400:
            raise Refused(str(doc.get("error", f"HTTP {status}")))
        docs.append(doc)
    return docs[0], docs[1]["links"]


def once(client: Client) -> str:
    """One frame, for ``--once``."""
    status, links = fetch(client)
    return "\n".join(frame(status, links)) + "\n"


def run(client: Client, interval: float) -> None:
    """The live view until ``q`` (raises Unreachable when xcon goes away)."""
    import curses

    curses.use_env(False)  # the terminal's size, not a stale $COLUMNS/$LINES
    curses.wrapper(lambda screen: _loop(screen, client, interval))


def _loop(screen: Any, client: Client, interval: float) -> None:
    import curses

    try:
        curses.curs_set(0)
    except curses.error:  # a terminal that cannot hide its cursor
        pass
    screen.timeout(int(interval * 1000))
    sort = "r"
    lines: list[str] = []
    due = 0.0
    while True:
        if time.monotonic() >= due:
            lines = frame(*fetch(client), sort=sort)
            due = time.monotonic() + interval
        _draw(screen, lines)
        # A resize is seen within WAKE s even where no SIGWINCH reaches curses.
        screen.timeout(max(1, int(min(due - time.monotonic(), WAKE) * 1000)))
        key = screen.getch()
        if key == -1 or key == curses.KEY_RESIZE:
            continue
        ch = chr(key) if 0 <= key < 256 else ""
        if ch in ("q", "Q"):
            return
        if ch in SORTS and ch != sort:
            sort = ch
            due = 0.0  # redraw at once, sorted anew
        elif ch == " ":
            due = 0.0


def _draw(screen: Any, lines: list[str]) -> None:
    import curses

    try:
        width, height = os.get_terminal_size(1)  # curses draws on stdout
    except OSError:
        height, width = screen.getmaxyx()
    if (height, width) != screen.getmaxyx():
        curses.resizeterm(height, width)
    screen.erase()
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        shown = [f"terminal too small ({width}x{height}): {MIN_WIDTH}x{MIN_HEIGHT} at least"]
    else:
        shown = lines[:height]
    for y, text in enumerate(shown):
        try:  # the last cell of the screen cannot be written without an error
            screen.addnstr(y, 0, text, max(0, width - 1))
        except curses.error:
            pass
    screen.refresh()


__all__ = ["SORTS", "Refused", "Unreachable", "fetch", "frame", "once", "row", "run"]
