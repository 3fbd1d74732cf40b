"""The checks: a parsed command line becomes :class:`Setup`, plain values the
builders of :mod:`xcon.modes` take, or one line for the user.

Every argument is checked here before anything is created: no engine, port,
device or file exists yet when a usage error is reported
(:class:`UsageError`, :class:`~xcon.linkspec.SpecError` or a
:class:`~xcon.errors.ModeError` with exit code 2).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xcon.cli.arguments import DEFAULT_RAW_IF, DEFAULT_TAP_IF
from xcon.control import ControlSettings, parse_listen
from xcon.limits import qemu_tcp_port
from xcon.linkspec import (
    End,
    LinkSpec,
    SpecError,
    check_distinct,
    check_hub,
    parse_end,
    parse_link,
)

if TYPE_CHECKING:
    from xcon import netconf
    from xcon.capture.options import CaptureOptions
    from xcon.control.config import Config, ConfigHub, ConfigLink
    from xcon.impair.spec import Impairment
    from xcon.monitor import Monitor

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
    #: ``--config FILE`` (or ``--topology FILE``) and the links it held when checked.
    config: str | None = None
    config_links: list[ConfigLink] = field(default_factory=list)
    #: ``--topology FILE``: its hubs, what reading it passed over (logged at
    #: start), its format and the lltopo routers' prefix.
    config_hubs: list[ConfigHub] = field(default_factory=list)
    config_notes: list[str] = field(default_factory=list)
    topology_format: str | None = None
    topology_prefix: str = ""
    #: ``--impair``: (link, direction, impairment).
    impairs: list[tuple[str, str, Impairment]] = field(default_factory=list)
    seed: int | None = None
    #: ``--monitor``: monitors by end name; ``--monitors vrnetlab``; ``--on-exit``.
    monitors: dict[str, Monitor] = field(default_factory=dict)
    vrnetlab_monitors: bool = False
    on_exit: str = "down"
    #: ``--takeover``: the running xcon's connections are handed to this one.
    takeover: bool = False
    #: ``--workers``: worker processes (1: this process forwards); the command
    #: line the workers run (set by :func:`xcon.cli.main`).
    workers: int = 1
    argv: list[str] = field(default_factory=list)
    #: In a worker of ``--workers``: (its index, the supervisor's directory).
    worker: tuple[int, str] | None = None

    @property
    def sockets(self) -> int:
        """Long-lived descriptors the mode needs."""
        if self.mode == "p2p":
            hubs = sum(len(h.ends) for h in self.config_hubs)
            return 2 * (len(self.links) + len(self.config_links)) + hubs
        if self.mode == "hub":
            return len(self.hub)
        return 2

    def describe(self) -> str:
        if self.mode == "p2p":
            text = f"{len(self.links)} p2p link(s)"
            if self.config is not None:
                hubs = f" and {len(self.config_hubs)} hub(s)" if self.config_hubs else ""
                text += f" and {len(self.config_links)}{hubs} from {self.config}"
            return text
        if self.mode == "hub":
            return f"hub of {len(self.hub)} ports: {' '.join(map(str, self.hub))}"
        assert self.nic is not None
        what = "tap" if self.mode == "tap" else "interface"
        return f"{what} {self.ifname} <-> TCP {qemu_tcp_port(self.nic)}"


def check(args: argparse.Namespace) -> Setup:
    """Validate a parsed command line; raises :class:`UsageError`, :class:`SpecError`
    or :class:`ModeError` (exit 2).  Touches nothing."""
    files = args.config is not None or args.topology is not None
    if not (args.p2p or args.hub or files) and (
        args.tap_listen is None and args.raw_listen is None
    ):
        raise UsageError(
            "one of the arguments --p2p --hub --tap-listen --raw-listen is required "
            "(or --config FILE, or --topology FILE)"
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
    from xcon.engines import ENGINES  # the engines themselves are imported to run

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
        from xcon import netconf

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
        from xcon import netconf

        setup.nic = args.raw_listen
        setup.ifname = args.raw_if if args.raw_if is not None else DEFAULT_RAW_IF
        netconf.check_ifname(setup.ifname, "--raw-if")
    if args.listen_address is not None:
        setup.listen_host = listen_address(args.listen_address)
    if args.impair and mode != "p2p":
        raise UsageError(f"--impair applies to p2p links only (not {mode_flag})")
    setup.impairs = [impair_arg(text) for text in args.impair or ()]
    setup.seed = args.seed
    if (args.monitor or args.monitors) and mode != "p2p":
        raise UsageError(f"--monitor and --monitors apply to p2p links only (not {mode_flag})")
    setup.monitors = dict(monitor_arg(text) for text in args.monitor or ())
    setup.vrnetlab_monitors = args.monitors == "vrnetlab"
    setup.on_exit = args.on_exit
    config_file(args, setup)
    check_capture(args, setup)
    if args.takeover:
        check_takeover(setup)
    check_workers(args.workers, setup)
    return setup


def check_workers(text: str, setup: Setup) -> None:
    """``--workers N|auto``: a count from 1 to :data:`xcon.workers.MAX_WORKERS`,
    or ``auto`` (one per usable core, at most one per link or hub)."""
    if text == "1":
        return  # the default: nothing to load
    from xcon.limits import MAX_WORKERS, auto_workers, usable_cpus

    if text == "auto":
        units = len(setup.links) + len(setup.config_links) + len(setup.config_hubs)
        n = auto_workers(units, usable_cpus()) if setup.mode == "p2p" else 1
    else:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WORKERS:
            raise UsageError(
                f"--workers {text!r}: expected a number from 1 to {MAX_WORKERS}, or auto"
            )
        n = int(text)
    if n > 1 and setup.mode != "p2p":
        raise UsageError("--workers applies to --p2p, --config and --topology links only")
    setup.workers = n


#: End kinds whose connections a handover passes on (docs/restart.md).
HANDED_KINDS = ("qemu", "tcp", "unix", "udp")


def check_takeover(setup: Setup) -> None:
    """``--takeover``: ends xcon would bind are still the running xcon's (its
    sockets, devices): only links between router connections can be taken."""
    if setup.mode not in ("p2p", "hub"):
        raise UsageError("--takeover applies to --p2p, --hub and --config links only")
    if setup.control.path is None:
        raise UsageError("--takeover finds the running xcon through its control socket: not 'none'")
    ends = [e for spec in setup.links for e in (spec.left, spec.right)] + list(setup.hub)
    ends += [e for cl in setup.config_links for e in (cl.spec.left, cl.spec.right)]
    for end in ends:
        kind = end.kind
        if kind not in HANDED_KINDS:
            raise UsageError(
                f"--takeover: {end} is a {kind} end; only {', '.join(HANDED_KINDS)} ends "
                "are handed over: restart xcon instead"
            )
    setup.takeover = True


def config_file(args: argparse.Namespace, setup: Setup) -> None:
    """``--config FILE`` or ``--topology FILE``: read and checked whole, then
    against the command line's links."""
    if args.topology is None:
        for flag in ("--topology-format", "--topology-prefix"):
            if getattr(args, flag[2:].replace("-", "_")) is not None:
                raise UsageError(f"{flag} applies to --topology only")
    if args.config is None and args.topology is None:
        return
    if args.config is not None and args.topology is not None:
        raise UsageError("--config and --topology: one file of links at a time")
    from xcon.control.config import ConfigError, load_config

    path = args.config if args.config is not None else args.topology
    try:
        if args.topology is None:
            config = load_config(path)
        else:
            config = _topology(args, setup)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    setup.config = path
    setup.config_links = config.links
    setup.config_hubs = config.hubs
    setup.config_notes = config.notes
    if setup.seed is None:
        setup.seed = config.seed
    setup.vrnetlab_monitors = setup.vrnetlab_monitors or config.monitors == "vrnetlab"
    try:
        check_distinct(setup.links + [cl.spec for cl in setup.config_links])
        held = {
            key: spec
            for spec in setup.links
            for e in (spec.left, spec.right)
            for key in e.resources
        }
        for hub in setup.config_hubs:
            for end in hub.ends:
                for key in end.resources:
                    if key in held:
                        raise SpecError(f"{end} is in hub {hub.name} and in link '{held[key]}'")
    except SpecError as e:
        raise UsageError(f"{path} and the command line: {e}") from None


def _topology(args: argparse.Namespace, setup: Setup) -> Config:
    """``--topology FILE``: its format found out (or ``--topology-format``)."""
    from xcon.control.config import ConfigError, read_config
    from xcon.control.topology import detect_format, load_topology

    fmt = args.topology_format or detect_format(args.topology, read_config(args.topology))
    if fmt == "clab" and args.topology_prefix is not None:
        raise ConfigError(
            "--topology-prefix applies to lltopo files (a containerlab file names its "
            "containers: its name and prefix)"
        )
    setup.topology_format = fmt
    setup.topology_prefix = args.topology_prefix or ""
    return load_topology(args.topology, fmt, setup.topology_prefix)


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
    if args.capture_dir is not None:
        setup.capture_dir = capture_dir_arg(args.capture_dir)
    if not args.capture:
        for dest, flag in CAPTURE_FLAGS:
            if getattr(args, dest) not in (None, False):
                raise UsageError(f"{flag} applies to --capture only")
        return
    if setup.mode != "p2p":
        raise UsageError("--capture applies to p2p links (--p2p or --config) only")
    from xcon.capture.options import checked_options

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
    path = os.path.abspath(text) if text else ""
    if not path:
        raise UsageError("--capture-dir needs a directory")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"--capture-dir {text!r}: not a directory")
    elif not os.path.isdir(os.path.dirname(path)):
        raise UsageError(f"--capture-dir {text!r}: {os.path.dirname(path)} does not exist")
    return path


def monitor_arg(text: str) -> tuple[str, Monitor]:
    """``--monitor END=HOST:PORT[,NETDEV]`` (or ``END=unix:PATH,NETDEV``), checked."""
    from xcon.links import end_name
    from xcon.linkspec import Endpoint, parse_end
    from xcon.monitor import default_netdev, parse_monitor

    end_text, sep, where = text.partition("=")
    if not sep or not end_text.strip() or not where.strip():
        raise UsageError(f"--monitor {text!r}: use END=HOST:PORT[,NETDEV], e.g. vr1/1=vr1:4000")
    try:
        end = parse_end(end_text.strip())
        nic = end.nic if isinstance(end, Endpoint) else None
        return end_name(end), parse_monitor(where.strip(), default_netdev(nic))
    except SpecError as e:
        raise UsageError(f"--monitor {end_text.strip()}: {e}") from None


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
    try:
        if args.control_group is not None:
            from xcon.control.access import parse_group

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
            from xcon.control.access import parse_allow_ends

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
