"""``--tap-listen N`` and ``--raw-listen N``: a listening TCP port bridged to a
tap device or to an interface through an AF_PACKET socket.

Both build one :class:`~xcon.bridge.P2PLink` between a
:class:`~xcon.listen.ListenPort` (``[::]:10000+N``, one qemu client at a
time) and a :class:`~xcon.tap.TapPort` / :class:`~xcon.tap.RawPort`, so the
forwarding, the backpressure (the device is not read while TCP is blocked)
and the counters are those of p2p.  Everything that can fail at start is done
here, before the loop runs: bad arguments exit 2, a missing privilege or
kernel feature exits 1, each with one line.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from xcon import netconf
from xcon.bridge import P2PLink
from xcon.errors import ModeError
from xcon.listen import ListenPort
from xcon.ports import QEMU_BASE_PORT
from xcon.tap import MAX_FRAME, RawPort, TapPort, interface_mtu

if TYPE_CHECKING:
    from xcon.app import Xcon

log = logging.getLogger("xcon")

_TAP_ONLY = ("ipv4_address", "ipv4_route", "ipv6_address", "ipv6_route", "vlan", "mtu")


def add_tap_listen(app: Xcon, args: argparse.Namespace) -> P2PLink:
    netconf.check_ifname(args.tap_if, "--tap-if")
    plan = netconf.plan_from_args(args)
    engine = app.engine
    listen = ListenPort(engine, QEMU_BASE_PORT + args.tap_listen)
    tap = TapPort(engine, args.tap_if)
    try:
        tap.open()
        target = netconf.apply(plan, tap.ifname)
        listen.bind()
    except BaseException:
        tap.close()
        listen.close()
        raise
    tap.mtu = interface_mtu(tap.ifname)
    log.info(
        "%s: MTU %d%s (reads take any frame up to %d bytes)",
        tap.ifname,
        tap.mtu,
        f", addresses on {target}" if target != tap.ifname else "",
        MAX_FRAME,
    )

    def reconfigure() -> None:
        netconf.apply(plan, tap.ifname)

    tap.on_open = reconfigure
    link = P2PLink(listen, tap, debug=args.debug, on_state=app.update_health)
    app.add_bridge(link)
    return link


def add_raw_listen(app: Xcon, args: argparse.Namespace) -> P2PLink:
    netconf.check_ifname(args.raw_if, "--raw-if")
    for opt in _TAP_ONLY:
        if getattr(args, opt, None) is not None:
            flag = "--" + opt.replace("_", "-")
            raise ModeError(f"{flag} applies to --tap-listen only", exit_code=2)
    engine = app.engine
    listen = ListenPort(engine, QEMU_BASE_PORT + args.raw_listen)
    raw = RawPort(engine, args.raw_if)
    try:
        raw.open()
        listen.bind()
    except BaseException:
        raw.close()
        listen.close()
        raise
    raw.mtu = interface_mtu(raw.ifname)
    log.info(
        "%s: MTU %d, promiscuous, outgoing frames ignored%s",
        raw.ifname,
        raw.mtu,
        " (filtered in user space)" if raw._userspace_outgoing_filter else "",
    )
    link = P2PLink(listen, raw, debug=args.debug, on_state=app.update_health)
    app.add_bridge(link)
    return link
