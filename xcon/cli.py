"""Command line: vr-xcon's flags with the same spelling and meaning, plus a few new ones.

``xcon demo`` runs the built-in demonstration instead (see :mod:`xcon.demo`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from xcon import __version__, modes, native, netconf
from xcon.errors import ModeError
from xcon.limits import qemu_tcp_port
from xcon.linkspec import SpecError, check_distinct, parse_endpoint, parse_link

log = logging.getLogger("xcon")

ENGINES = ("epoll", "uvloop")
_TAP_ONLY = ("ipv4_address", "ipv4_route", "ipv6_address", "ipv6_route", "vlan", "mtu")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"xcon: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="xcon",
        description="Cross-connect qemu virtual router NICs (vrnetlab socket netdevs): "
        "p2p links, a hub, a local tap or a raw interface.  'xcon demo' runs a "
        "self-contained demonstration.",
    )
    modes = p.add_mutually_exclusive_group(required=True)
    modes.add_argument(
        "--p2p",
        nargs="+",
        metavar="LINK",
        help="point-to-point links HOST/N--HOST/N[:VID] (N = NIC, TCP port 10000+N); "
        "':VID' makes that side an access port of VLAN VID",
    )
    modes.add_argument("--hub", nargs="+", metavar="HOST/N", help="join NICs in a hub (flood)")
    modes.add_argument(
        "--tap-listen", type=int, metavar="N", help="listen on TCP 10000+N and bridge to a tap"
    )
    modes.add_argument(
        "--raw-listen",
        type=int,
        metavar="N",
        help="listen on TCP 10000+N and bridge to an interface",
    )
    p.add_argument("--tap-if", default="tap0", help="tap interface name (default tap0)")
    p.add_argument("--raw-if", default="eth1", help="interface for --raw-listen (default eth1)")
    p.add_argument("--ipv4-address", metavar="ADDR/LEN", help="IPv4 address for the tap interface")
    p.add_argument("--ipv4-route", metavar="NEXTHOP", help="IPv4 default route via NEXTHOP")
    p.add_argument("--ipv6-address", metavar="ADDR/LEN", help="IPv6 address for the tap interface")
    p.add_argument("--ipv6-route", metavar="NEXTHOP", help="IPv6 default route via NEXTHOP")
    p.add_argument("--vlan", type=int, metavar="VID", help="put the tap addresses on VLAN VID")
    p.add_argument(
        "--mtu",
        type=int,
        metavar="BYTES",
        help="set the tap's MTU (default: leave it as the kernel made it)",
    )
    p.add_argument("--debug", action="store_true", help="log every frame (one line and a hexdump)")
    p.add_argument(
        "--trace",
        nargs="?",
        const=1.0,
        type=float,
        metavar="SECONDS",
        help="log per-link frame/byte counters every SECONDS (default 1)",
    )
    p.add_argument(
        "--health-file", default="health", metavar="PATH", help="health file (default ./health)"
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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        from xcon.demo import main as demo_main

        return demo_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)

    def fail(msg: str) -> int:
        parser.print_usage(sys.stderr)
        print(f"xcon: error: {msg}", file=sys.stderr)
        return 2

    if args.engine not in ENGINES:
        return fail(f"unknown engine {args.engine!r} (choose from {', '.join(ENGINES)})")
    try:
        links = [parse_link(s) for s in args.p2p] if args.p2p else []
        check_distinct(links)
        hub = [parse_endpoint(s, allow_vid=False) for s in args.hub] if args.hub else []
    except SpecError as e:
        return fail(str(e))
    for n in (args.tap_listen, args.raw_listen):
        if n is not None and not 1 <= n <= 55535:
            return fail(f"interface {n} is outside 1..55535 (TCP port 10000+N)")
    if args.vlan is not None and not 1 <= args.vlan <= 4094:
        return fail(f"VLAN id {args.vlan} is outside 1..4094")

    setup_logging(args.log_level or "info")
    if args.debug:
        logging.getLogger("xcon.frames").setLevel(logging.DEBUG)
    from xcon.app import Xcon
    from xcon.engines import EngineUnavailable, make_engine
    from xcon.rlimit import ensure_nofile

    try:
        engine = make_engine(args.engine)
    except EngineUnavailable as e:
        print(f"xcon: error: {e}", file=sys.stderr)
        return 2
    app = Xcon(engine=engine, health_path=args.health_file or None, trace_interval=args.trace)
    try:
        ensure_nofile(2 * len(links) if links else len(hub) if hub else 2)
        if links:
            modes.p2p(app, links, debug=args.debug)
            what = f"{len(links)} p2p link(s)"
        elif hub:
            modes.hub(app, hub, debug=args.debug)
            what = f"hub of {len(hub)} ports"
        elif args.tap_listen is not None:
            netconf.check_ifname(args.tap_if, "--tap-if")
            plan = netconf.plan_from_args(args)
            modes.tap_listen(app, args.tap_listen, args.tap_if, plan, debug=args.debug)
            what = f"tap {args.tap_if} <-> TCP {qemu_tcp_port(args.tap_listen)}"
        else:
            netconf.check_ifname(args.raw_if, "--raw-if")
            for opt in _TAP_ONLY:
                if getattr(args, opt, None) is not None:
                    flag = "--" + opt.replace("_", "-")
                    raise ModeError(f"{flag} applies to --tap-listen only", exit_code=2)
            modes.raw_listen(app, args.raw_listen, args.raw_if, debug=args.debug)
            what = f"interface {args.raw_if} <-> TCP {qemu_tcp_port(args.raw_listen)}"
    except ModeError as e:
        app.close()
        print(f"xcon: error: {e}", file=sys.stderr)
        return e.exit_code
    log.info(
        "xcon %s (fast path: %s, engine: %s): %s", __version__, native.BACKEND, args.engine, what
    )
    return app.run()


if __name__ == "__main__":
    raise SystemExit(main())
