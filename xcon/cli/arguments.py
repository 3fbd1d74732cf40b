"""xcon's arguments: the parser (every flag, its argparse type and its help)
and the usage line, which also lists the subcommands.

The flags keep vr-xcon's spelling and meaning; the types check what one value
can say on its own (a whole number in range, a number of seconds).  What
depends on several flags is checked in :mod:`xcon.cli.checks`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from xcon import __version__
from xcon.commands import SUBCOMMANDS
from xcon.control import DEFAULT_SOCKET
from xcon.errors import OneLineParser
from xcon.limits import (
    CAPTURE_FILES,
    CAPTURE_SECONDS,
    CAPTURE_SIZE_MB,
    MAX_NIC,
    MAX_VID,
    MIN_NIC,
    MIN_VID,
    MTU_MAX,
    MTU_MIN,
    ON_EXIT,
    SEED,
    SNAPLEN,
    TRACE_DEFAULT,
    TRACE_MAX,
    TRACE_MIN,
)
from xcon.linkspec import bounded_int, ends_help

DEFAULT_TAP_IF = "tap0"
DEFAULT_RAW_IF = "eth1"


def _whole(lo: int, hi: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: ASCII digits only, within ``lo..hi``."""

    def parse(text: str) -> int:
        n = bounded_int(text, lo, hi)
        if n is not None:
            return n
        if text.isascii() and text.isdigit():
            raise argparse.ArgumentTypeError(f"{text} is outside {lo}..{hi}{what}")
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({lo}..{hi}{what})")

    return parse


def trace_seconds(text: str) -> float:
    """``--trace SECONDS``: a finite number from TRACE_MIN to TRACE_MAX."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and TRACE_MIN <= value <= TRACE_MAX):
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside {TRACE_MIN:g}..{TRACE_MAX:g} seconds"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    from xcon import native

    p = OneLineParser(
        prog="xcon",
        description="Cross-connect qemu virtual router NICs (vrnetlab socket netdevs): "
        "p2p links, a hub, a local tap or a raw interface.  'xcon demo' runs a "
        "self-contained demonstration.  A usage error is one line on stderr and exit code 2.",
    )
    nic = _whole(MIN_NIC, MAX_NIC, " (TCP port 10000+N)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--p2p",
        nargs="+",
        action="extend",
        metavar="LINK",
        help=f"point-to-point links END--END; an END is {ends_help()}; may be repeated",
    )
    mode.add_argument(
        "--hub",
        nargs="+",
        action="extend",
        metavar="END",
        help="join ends (HOST/N or any kind --p2p takes) in a hub (flood); may be repeated",
    )
    mode.add_argument(
        "--tap-listen", type=nic, metavar="N", help="listen on TCP 10000+N and bridge to a tap"
    )
    mode.add_argument(
        "--raw-listen",
        type=nic,
        metavar="N",
        help="listen on TCP 10000+N and bridge to an interface",
    )
    p.add_argument(
        "--tap-if",
        metavar="NAME",
        help=f"tap interface name (default {DEFAULT_TAP_IF}; 1 to 15 bytes, "
        "no '/', ':', '%%' or whitespace)",
    )
    p.add_argument(
        "--raw-if",
        metavar="NAME",
        help=f"interface for --raw-listen (default {DEFAULT_RAW_IF})",
    )
    p.add_argument(
        "--listen-address",
        metavar="ADDR",
        help="--tap-listen/--raw-listen: listen on this IPv4 or IPv6 address only "
        "(default: every address, IPv4 and IPv6)",
    )
    p.add_argument("--ipv4-address", metavar="ADDR/LEN", help="IPv4 address for the tap interface")
    p.add_argument(
        "--ipv4-route", metavar="NEXTHOP", help="IPv4 default route via NEXTHOP (needs the address)"
    )
    p.add_argument("--ipv6-address", metavar="ADDR/LEN", help="IPv6 address for the tap interface")
    p.add_argument(
        "--ipv6-route", metavar="NEXTHOP", help="IPv6 default route via NEXTHOP (needs the address)"
    )
    p.add_argument(
        "--vlan",
        type=_whole(MIN_VID, MAX_VID),
        metavar="VID",
        help=f"put the tap addresses on VLAN VID ({MIN_VID}..{MAX_VID})",
    )
    p.add_argument(
        "--mtu",
        type=_whole(MTU_MIN, MTU_MAX),
        metavar="BYTES",
        help=f"set the tap's MTU ({MTU_MIN}..{MTU_MAX}; default: leave it as the kernel made it)",
    )
    p.add_argument("--debug", action="store_true", help="log every frame (one line and a hexdump)")
    p.add_argument(
        "--trace",
        nargs="?",
        const=TRACE_DEFAULT,
        type=trace_seconds,
        metavar="SECONDS",
        help=f"log per-link frame/byte counters every SECONDS (default {TRACE_DEFAULT:g}; "
        f"{TRACE_MIN:g} to {TRACE_MAX:g})",
    )
    p.add_argument(
        "--health-file", default="health", metavar="PATH", help="health file (default ./health)"
    )
    p.add_argument(
        "--control",
        metavar="PATH",
        help=f"control API on this unix socket (mode 0600; default ./{DEFAULT_SOCKET}, "
        "'none' for no control socket); 'xcon ctl' talks to it",
    )
    p.add_argument(
        "--control-listen",
        metavar="ADDR:PORT",
        help="also serve the control API and /metrics on TCP (a loopback address, e.g. "
        "127.0.0.1:9810, unless --control-listen-any)",
    )
    p.add_argument(
        "--control-listen-any",
        action="store_true",
        help="allow --control-listen on a non-loopback address (anyone reaching it reads the "
        "links and metrics)",
    )
    p.add_argument(
        "--control-token-file",
        metavar="FILE",
        help="changes on the --control-listen address need the token in FILE (mode 0600; "
        "made if missing); without it that address is read-only (docs/security.md)",
    )
    p.add_argument(
        "--control-group",
        metavar="GROUP",
        help="the control socket is mode 0660 of GROUP: its members may change links but not "
        "add them or name monitors (root and xcon's user may do everything)",
    )
    p.add_argument(
        "--control-allow-ends",
        metavar="KINDS",
        help="end kinds that --control-group members and token holders may add links with "
        "(comma-separated from qemu,tcp,unix,udp,vxlan,tap,raw,listen; default none)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="p2p links (and their options) from a TOML file; SIGHUP or 'xcon ctl reload' "
        "applies the file's changes while running",
    )
    topo = p.add_argument_group(
        "topology file (docs/topology.md)",
        "p2p links and hubs from vrnetlab's lltopo.json or a containerlab file; SIGHUP or "
        "'xcon ctl reload' applies the file's changes while running",
    )
    topo.add_argument(
        "--topology",
        metavar="FILE",
        help="the links and hubs of FILE: topo --build's lltopo.json, or a containerlab "
        "topology (its links between vrnetlab routers)",
    )
    topo.add_argument(
        "--topology-format",
        choices=["lltopo", "clab"],
        help="what FILE is (default: .json is lltopo, .yml/.yaml clab, else by its content)",
    )
    topo.add_argument(
        "--topology-prefix",
        metavar="PREFIX",
        help="lltopo: router R is the container PREFIX+R, as 'topo --run --prefix PREFIX' "
        "names it (default: none, as topo's)",
    )
    cap = p.add_argument_group(
        "capture", "frames of p2p links to pcapng files (docs/capture.md; live: 'xcon ctl capture')"
    )
    cap.add_argument(
        "--capture",
        action="append",
        metavar="LINK=FILE|DIR",
        help="capture LINK (as given to --p2p or the config) to FILE, or every p2p link to "
        "DIR/<link>.pcapng; may be repeated",
    )
    cap.add_argument(
        "--capture-dir",
        metavar="DIR",
        help="where captures asked for through the control API ('xcon ctl capture -w NAME') "
        "are written (default: captures/ in the working directory, made mode 0700 when "
        "first needed)",
    )
    cap.add_argument(
        "--snaplen",
        type=SNAPLEN.arg_type(text_out=True),
        metavar="BYTES",
        help=f"keep at most BYTES of each frame ({SNAPLEN}; the original length is recorded; "
        "default 0: whole frames)",
    )
    cap.add_argument(
        "--capture-filter",
        metavar="EXPR",
        help="only frames matching this tcpdump (BPF) expression; needs libpcap",
    )
    cap.add_argument(
        "--capture-no-drops",
        action="store_true",
        help="do not record the frames xcon drops (by default they are, with the reason)",
    )
    cap.add_argument(
        "--capture-size",
        type=CAPTURE_SIZE_MB.arg_type(text_out=True),
        metavar="MB",
        help="ring: a new file before one exceeds MB million bytes (FILE-00001.pcapng, ...; "
        f"{CAPTURE_SIZE_MB}, 0: no size limit)",
    )
    cap.add_argument(
        "--capture-seconds",
        type=CAPTURE_SECONDS.arg_type(text_out=True),
        metavar="S",
        help=f"ring: a new file every S seconds ({CAPTURE_SECONDS}, 0: no time limit)",
    )
    cap.add_argument(
        "--capture-files",
        type=CAPTURE_FILES.arg_type(text_out=True),
        metavar="N",
        help="ring: keep the newest N files (with --capture-size or --capture-seconds; "
        f"{CAPTURE_FILES}, 0: all)",
    )
    p.add_argument(
        "--impair",
        action="append",
        metavar="LINK[:a2b|b2a]=NETEM",
        help="impair a p2p link (both directions, or the one named) with tc-netem's words, "
        "e.g. 'vr1/1--vr2/1:a2b=delay 10ms 2ms loss 1%%' (repeatable)",
    )
    p.add_argument(
        "--seed",
        type=SEED.arg_type(),
        metavar="N",
        help=f"seed of the impairments' random draws, to replay a run ({SEED}; "
        "default: random, logged)",
    )
    mon = p.add_argument_group(
        "carrier (the routers' NICs follow the link, through their qemu monitors: docs/carrier.md)"
    )
    mon.add_argument(
        "--monitor",
        action="append",
        metavar="END=HOST:PORT[,NETDEV]",
        help="the qemu monitor of the router at END (a HOST/N end's NETDEV defaults to "
        "vrnetlab's pNN; unix:PATH,NETDEV for a monitor on a unix socket); repeatable; "
        "wins over --monitors",
    )
    mon.add_argument(
        "--monitors",
        choices=["vrnetlab"],
        help="vrnetlab: every HOST/N end's router has its monitor at HOST:4000, NIC N is pNN",
    )
    mon.add_argument(
        "--on-exit",
        choices=ON_EXIT,
        default="down",
        help="when xcon stops: set the routers' NICs off (down, the default) or leave them (keep)",
    )
    p.add_argument(
        "--takeover",
        action="store_true",
        help="take the connections of the xcon running on the same control socket, "
        "without a frame lost or a disconnect the routers see; it exits once they are "
        "handed over (docs/restart.md)",
    )
    p.add_argument(
        "--workers",
        default="1",
        metavar="N|auto",
        help="spread the links over N worker processes, each its own reactor on its own "
        "core (auto: one per core, at most one per link; default 1: one process); "
        "one control socket, /metrics and health file for all (docs/workers.md)",
    )
    p.add_argument(
        "--engine",
        default="epoll",
        help="event loop: epoll (default) or uvloop (asyncio on uvloop)",
    )
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="log level (default info); --debug adds the per-frame lines at any level",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"xcon {__version__} (fast path: {native.BACKEND})",
    )
    p.usage = _usage(p)
    return p


def _usage(p: argparse.ArgumentParser) -> str:
    """The usage argparse makes of the flags, then one line per subcommand."""
    prefix = "usage: "
    flags = p.format_usage().removeprefix(prefix).rstrip("\n")
    lines = [flags] + [
        f"{' ' * len(prefix)}{p.prog} {name} {usage}" for name, (_, usage) in SUBCOMMANDS.items()
    ]
    return "\n".join(lines).replace("%", "%%")  # argparse fills in %(prog)s
