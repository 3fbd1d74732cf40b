"""Command line: vr-xcon's flags with the same spelling and meaning, plus a few new ones.

``xcon demo`` runs the built-in demonstration instead (see :mod:`xcon.demo`).

Every argument is checked (:func:`check`) before anything is created: no
engine, port, device or file exists yet when a usage error is reported.  A
usage error is one line on stderr (``xcon: error: ...``) and exit code 2; a
failure to start (a missing privilege or kernel feature) is one line and
exit code 1.  The checked arguments (:class:`Setup`) are plain values, handed
to the builders of :mod:`xcon.modes`.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xcon import __version__
from xcon.capture.options import CaptureOptions, checked_options
from xcon.control import DEFAULT_SOCKET, ControlSettings, parse_listen
from xcon.control.config import ConfigLink
from xcon.errors import LinkError, ModeError, OneLineParser, one_line
from xcon.impair.spec import Impairment
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
    SEED,
    SNAPLEN,
    TRACE_DEFAULT,
    TRACE_MAX,
    TRACE_MIN,
    qemu_tcp_port,
)
from xcon.linkspec import (
    End,
    LinkSpec,
    SpecError,
    bounded_int,
    check_distinct,
    check_hub,
    parse_end,
    parse_link,
)

if TYPE_CHECKING:
    from xcon import netconf

log = logging.getLogger("xcon")

ENGINES = ("epoll", "uvloop")
DEFAULT_TAP_IF = "tap0"
DEFAULT_RAW_IF = "eth1"

#: Flags that only mean something with one mode: (namespace attribute, flag, mode flag).
_MODE_ONLY = (
    ("tap_if", "--tap-if", "--tap-listen"),
    ("ipv4_address", "--ipv4-address", "--tap-listen"),
    ("ipv4_route", "--ipv4-route", "--tap-listen"),
    ("ipv6_address", "--ipv6-address", "--tap-listen"),
    ("ipv6_route", "--ipv6-route", "--tap-listen"),
    ("vlan", "--vlan", "--tap-listen"),
    ("mtu", "--mtu", "--tap-listen"),
    ("raw_if", "--raw-if", "--raw-listen"),
)


class UsageError(Exception):
    """Bad command-line input: one line for the user, exit code 2."""


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
        help="point-to-point links END--END; an END is HOST/N[:VID] (qemu NIC N, TCP port "
        "10000+N; ':VID' makes that side an access port of VLAN VID), tcp:HOST:PORT, "
        "unix:PATH, udp:RHOST:RPORT@[LHOST:]LPORT, vxlan:REMOTE[:PORT]/VNI[@[LHOST:]LPORT], "
        "tap:NAME, raw:IFNAME, listen:[HOST:]PORT or listen:unix:PATH; may be repeated",
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
    cap = p.add_argument_group(
        "capture", "frames of p2p links to pcapng files (README, Capture; live: 'xcon ctl capture')"
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
    return p


@dataclass
class Setup:
    """The checked command line, as plain values."""

    mode: str  # "p2p", "hub", "tap" or "raw"
    links: list[LinkSpec] = field(default_factory=list)
    hub: list[End] = field(default_factory=list)
    nic: int | None = None
    ifname: str | None = None
    plan: netconf.NetPlan | None = None
    engine: str = "epoll"
    trace: float | None = None
    health_file: str | None = "health"
    debug: bool = False
    log_level: str = "info"
    #: Address a listening mode binds ("::": every address, IPv4 and IPv6).
    listen_host: str = "::"
    control: ControlSettings = field(default_factory=ControlSettings)
    #: ``--capture``: (link name, file) pairs; a directory for every link.
    captures: list[tuple[str, str]] = field(default_factory=list)
    capture_all_dir: str | None = None
    #: ``--capture-dir``: where the API's captures go (None: the default).
    capture_dir: str | None = None
    capture_options: CaptureOptions | None = None
    #: ``--config FILE`` and the links it held when checked.
    config: str | None = None
    config_links: list[ConfigLink] = field(default_factory=list)
    #: ``--impair``: (link, direction, impairment).
    impairs: list[tuple[str, str, Impairment]] = field(default_factory=list)
    seed: int | None = None

    @property
    def sockets(self) -> int:
        """Long-lived descriptors the mode needs."""
        if self.mode == "p2p":
            return 2 * (len(self.links) + len(self.config_links))
        if self.mode == "hub":
            return len(self.hub)
        return 2

    def describe(self) -> str:
        if self.mode == "p2p":
            text = f"{len(self.links)} p2p link(s)"
            if self.config is not None:
                text += f" and {len(self.config_links)} from {self.config}"
            return text
        if self.mode == "hub":
            return f"hub of {len(self.hub)} ports: {' '.join(map(str, self.hub))}"
        assert self.nic is not None
        what = "tap" if self.mode == "tap" else "interface"
        return f"{what} {self.ifname} <-> TCP {qemu_tcp_port(self.nic)}"


def check(args: argparse.Namespace) -> Setup:
    """Validate a parsed command line; raises :class:`UsageError`, :class:`SpecError`
    or :class:`ModeError` (exit 2).  Touches nothing."""
    from xcon import netconf

    if not (args.p2p or args.hub or args.config is not None) and (
        args.tap_listen is None and args.raw_listen is None
    ):
        raise UsageError(
            "one of the arguments --p2p --hub --tap-listen --raw-listen is required "
            "(or --config FILE)"
        )
    if args.p2p or not (args.hub or args.tap_listen is not None or args.raw_listen is not None):
        mode, mode_flag = "p2p", "--p2p"
    elif args.hub:
        mode, mode_flag = "hub", "--hub"
    elif args.tap_listen is not None:
        mode, mode_flag = "tap", "--tap-listen"
    else:
        mode, mode_flag = "raw", "--raw-listen"
    for dest, flag, owner in _MODE_ONLY:
        if getattr(args, dest) is not None and owner != mode_flag:
            raise UsageError(f"{flag} applies to {owner} only (not {mode_flag})")
    if args.listen_address is not None and mode not in ("tap", "raw"):
        raise UsageError(
            f"--listen-address applies to --tap-listen and --raw-listen only (not {mode_flag})"
        )
    if args.engine not in ENGINES:
        raise UsageError(f"unknown engine {args.engine!r} (choose from {', '.join(ENGINES)})")
    setup = Setup(
        mode,
        engine=args.engine,
        trace=args.trace,
        health_file=args.health_file or None,
        debug=args.debug,
        log_level=args.log_level or "info",
    )
    setup.control = control_settings(args)
    if mode == "p2p":
        setup.links = [parse_link(s) for s in args.p2p or ()]
        check_distinct(setup.links)
    elif mode == "hub":
        setup.hub = [parse_end(s, allow_vid=False) for s in args.hub]
        check_hub(setup.hub)
    elif mode == "tap":
        setup.nic = args.tap_listen
        setup.ifname = args.tap_if if args.tap_if is not None else DEFAULT_TAP_IF
        setup.plan = netconf.make_plan(
            setup.ifname,
            mtu=args.mtu,
            vlan=args.vlan,
            ipv4_address=args.ipv4_address,
            ipv4_route=args.ipv4_route,
            ipv6_address=args.ipv6_address,
            ipv6_route=args.ipv6_route,
        )
    else:
        setup.nic = args.raw_listen
        setup.ifname = args.raw_if if args.raw_if is not None else DEFAULT_RAW_IF
        netconf.check_ifname(setup.ifname, "--raw-if")
    if args.listen_address is not None:
        setup.listen_host = listen_address(args.listen_address)
    if args.impair and mode != "p2p":
        raise UsageError(f"--impair applies to p2p links only (not {mode_flag})")
    setup.impairs = [impair_arg(text) for text in args.impair or ()]
    setup.seed = args.seed
    if args.config is not None:
        from xcon.control.config import ConfigError, load_config

        try:
            config = load_config(args.config)
            setup.config_links = config.links
            if setup.seed is None:
                setup.seed = config.seed
        except ConfigError as e:
            raise UsageError(str(e)) from None
        setup.config = args.config
        try:
            check_distinct(setup.links + [cl.spec for cl in setup.config_links])
        except SpecError as e:
            raise UsageError(f"{args.config} and the command line: {e}") from None
    check_capture(args, setup)
    return setup


CAPTURE_FLAGS = (
    ("snaplen", "--snaplen"),
    ("capture_filter", "--capture-filter"),
    ("capture_no_drops", "--capture-no-drops"),
    ("capture_size", "--capture-size"),
    ("capture_seconds", "--capture-seconds"),
    ("capture_files", "--capture-files"),
)


def check_capture(args: argparse.Namespace, setup: Setup) -> None:
    """``--capture`` and its options: links named must be p2p links of the
    command line or the config file; a directory must exist; a filter must
    compile (libpcap)."""
    import os

    if args.capture_dir is not None:
        setup.capture_dir = capture_dir_arg(args.capture_dir)
    if not args.capture:
        for dest, flag in CAPTURE_FLAGS:
            if getattr(args, dest) not in (None, False):
                raise UsageError(f"{flag} applies to --capture only")
        return
    if setup.mode != "p2p":
        raise UsageError("--capture applies to p2p links (--p2p or --config) only")
    options = checked_options(  # checked by their argparse types: exact here
        snaplen=args.snaplen or 0,
        size_mb=args.capture_size or 0,
        seconds=args.capture_seconds or 0,
        files=args.capture_files or 0,
        filter=args.capture_filter or None,
        drops=not args.capture_no_drops,
    )
    if options.files and not options.ring:
        raise UsageError("--capture-files needs --capture-size or --capture-seconds")
    if options.filter is not None:
        from xcon.capture.bpf import FilterError, compile_filter

        try:
            compile_filter(options.filter)
        except FilterError as e:
            raise UsageError(f"--capture-filter: {e}") from None
    names = {str(spec) for spec in setup.links} | {cl.name for cl in setup.config_links}
    seen: set[str] = set()
    for text in args.capture:
        link, eq, path = text.partition("=")
        if not eq:
            if not os.path.isdir(text):
                raise UsageError(
                    f"--capture {text!r}: not a directory (LINK=FILE captures one link)"
                )
            if setup.capture_all_dir is not None:
                raise UsageError("--capture DIR given twice")
            setup.capture_all_dir = text
            continue
        if not path:
            raise UsageError(f"--capture {text!r}: no file after '='")
        try:
            name = str(parse_link(link))
        except SpecError as e:
            raise UsageError(f"--capture {text!r}: {e}") from None
        if name not in names:
            raise UsageError(f"--capture {text!r}: no p2p link {name} (links: --p2p, --config)")
        if name in seen:
            raise UsageError(f"--capture: link {name} given twice")
        seen.add(name)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UsageError(f"--capture {text!r}: directory {parent} does not exist")
        setup.captures.append((name, path))
    if setup.capture_all_dir is not None and setup.captures:
        raise UsageError("--capture DIR captures every link: no LINK=FILE beside it")
    setup.capture_options = options


def capture_dir_arg(text: str) -> str:
    """``--capture-dir``: a directory, or a name for one in a directory that
    exists (made when first needed); returned absolute."""
    import os

    path = os.path.abspath(text) if text else ""
    if not path:
        raise UsageError("--capture-dir needs a directory")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"--capture-dir {text!r}: not a directory")
    elif not os.path.isdir(os.path.dirname(path)):
        raise UsageError(f"--capture-dir {text!r}: {os.path.dirname(path)} does not exist")
    return path


def impair_arg(text: str) -> tuple[str, str, Impairment]:
    """``--impair 'LINK[:a2b|b2a|both]=NETEM WORDS'``, checked."""
    from xcon.impair.spec import ImpairError, parse_netem

    link, sep, words = text.partition("=")
    if not sep or not link.strip():
        raise UsageError(f"--impair {text!r}: use LINK[:a2b|b2a]=NETEM, e.g. 'a/1--b/1=delay 10ms'")
    link, direction = link.strip(), "both"
    for d in ("a2b", "b2a", "both"):
        if link.endswith(":" + d):
            link, direction = link[: -len(d) - 1], d
    try:
        return link, direction, parse_netem(words)
    except ImpairError as e:
        raise UsageError(f"--impair {link}: {e}") from None


def control_settings(args: argparse.Namespace) -> ControlSettings:
    """``--control``, ``--control-listen`` and ``--control-listen-any``, checked."""
    settings = ControlSettings()
    if args.control is not None:
        if not args.control:
            raise UsageError("--control needs a path (or 'none')")
        settings.path = None if args.control == "none" else args.control
        settings.path_given = True
    if args.control_listen is not None:
        try:
            settings.tcp = parse_listen(args.control_listen, args.control_listen_any)
        except ValueError as e:
            raise UsageError(str(e)) from None
    elif args.control_listen_any:
        raise UsageError("--control-listen-any applies to --control-listen only")
    from xcon.control.access import parse_allow_ends, parse_group

    try:
        if args.control_group is not None:
            if settings.path is None:
                raise ValueError("--control-group applies to the control socket (not 'none')")
            settings.group = parse_group(args.control_group)
        if args.control_token_file is not None:
            if settings.tcp is None:
                raise ValueError("--control-token-file applies to --control-listen only")
            if not args.control_token_file:
                raise ValueError("--control-token-file needs a path")
            settings.token_file = os.path.abspath(args.control_token_file)
        if args.control_allow_ends is not None:
            settings.allow_ends = parse_allow_ends(args.control_allow_ends)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return settings


def listen_address(text: str) -> str:
    """``--listen-address``: one IPv4 or IPv6 address (no brackets, no zone)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(
            f"--listen-address {text!r} is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1)"
        ) from None
    if ip.is_multicast:
        raise UsageError(f"--listen-address {text!r} is a multicast address")
    return str(ip)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def _error(message: str, code: int) -> int:
    print(f"xcon: error: {one_line(message)}", file=sys.stderr)
    return code


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


def run(setup: Setup) -> int:
    """Build the mode on an engine and run it; returns the exit code."""
    from xcon import modes, native

    setup_logging(setup.log_level)
    if setup.debug:
        logging.getLogger("xcon.frames").setLevel(logging.DEBUG)
    from xcon.app import Xcon
    from xcon.control import start_control
    from xcon.engines import EngineUnavailable, make_engine
    from xcon.rlimit import ensure_nofile

    try:
        engine = make_engine(setup.engine)
    except EngineUnavailable as e:
        return _error(str(e), 2)
    app = Xcon(
        engine=engine, health_path=setup.health_file, trace_interval=setup.trace, debug=setup.debug
    )
    try:
        ensure_nofile(setup.sockets)
        if setup.mode == "p2p":
            modes.p2p(app, setup.links, debug=setup.debug)
        elif setup.mode == "hub":
            modes.hub(app, setup.hub, debug=setup.debug)
        elif setup.mode == "tap":
            assert setup.nic is not None and setup.ifname and setup.plan is not None
            modes.tap_listen(
                app,
                setup.nic,
                setup.ifname,
                setup.plan,
                debug=setup.debug,
                listen_host=setup.listen_host,
            )
        else:
            assert setup.nic is not None and setup.ifname
            modes.raw_listen(
                app, setup.nic, setup.ifname, debug=setup.debug, listen_host=setup.listen_host
            )
        if setup.seed is not None:  # before the config file's impairments are applied
            app.seed = setup.seed
        reload = None
        if setup.config is not None:
            from xcon.control.config import ConfigReloader

            reloader = ConfigReloader(app, setup.config)
            reloader.apply_initial(setup.config_links)
            app.on_hangup = reloader.on_signal
            reload = reloader.reload
        start_captures(app, setup)
        for name, direction, imp in setup.impairs:
            try:
                app.set_impair(name, direction, imp)
            except LinkError as e:
                raise ModeError(f"--impair {name}: {e}", exit_code=2) from None
        start_control(app, setup.control, setup.engine, reload=reload)
    except ModeError as e:
        app.close()
        return _error(str(e), e.exit_code)
    log.info(
        "xcon %s (fast path: %s, engine: %s): %s",
        __version__,
        native.BACKEND,
        setup.engine,
        setup.describe(),
    )
    for spec in setup.links:
        log.info("p2p link %s", spec)
    return app.run()


def start_captures(app: object, setup: Setup) -> None:
    """``--capture``: open the files now (a file that cannot be written is
    exit 1); ``--capture-dir``: the API's captures go there."""
    from xcon.capture.manager import captures_of

    if setup.capture_dir is not None:
        captures_of(app).capture_dir = setup.capture_dir  # type: ignore[arg-type]
    if setup.capture_options is None:
        return
    from xcon.errors import LinkError

    caps = captures_of(app)  # type: ignore[arg-type]
    try:
        for name, path in setup.captures:
            caps.start_file(name, path, setup.capture_options, source="command line")
        if setup.capture_all_dir is not None:
            caps.capture_all(setup.capture_all_dir, setup.capture_options)
    except LinkError as e:
        raise ModeError(f"--capture: {e}", exit_code=1) from None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        from xcon.demo import main as demo_main

        return demo_main(args_list[1:])
    if args_list[:1] == ["ctl"]:
        from xcon.control.client import main as ctl_main

        return ctl_main(args_list[1:])
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return _exit_code(e)
    try:
        setup = check(args)
    except ModeError as e:
        return _error(str(e), e.exit_code)
    except (SpecError, UsageError) as e:
        return _error(str(e), 2)
    return run(setup)


if __name__ == "__main__":
    raise SystemExit(main())
