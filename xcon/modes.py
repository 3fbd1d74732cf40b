"""Building each mode from plain values: ports, the bridge joining them, and the
start-up checks that must pass before the loop runs.

The command line (:mod:`xcon.cli`) parses and validates flags, then calls one
of these with plain values and the link table (:class:`xcon.links.LinkTable`)
the links go into; nothing here sees an argparse namespace.  A p2p link is
built in one place, :func:`p2p_bridges`, for the command line and for a link
added while xcon runs (:meth:`~xcon.links.LinkTable.add_link`).  Every
failure here is a :class:`~xcon.errors.ModeError` with one line for the user:
exit 2 for a bad combination of arguments, 1 for a missing privilege or kernel
feature.  A failure releases whatever was already opened.

``--tap-listen``/``--raw-listen`` are one :class:`~xcon.bridges.p2p.P2PLink`
between a :class:`~xcon.ports.listen.ListenPort` (``[::]:10000+N``, one qemu
client at a time) and a :class:`~xcon.ports.tap.TapPort` /
:class:`~xcon.ports.raw.RawPort`,
so forwarding, backpressure (the device is not read while TCP is blocked) and
counters are those of p2p.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from xcon.bridges.hub import Hub
from xcon.bridges.p2p import P2PLink
from xcon.limits import MAX_FRAME, qemu_tcp_port
from xcon.linkspec import End, LinkSpec, ListenEnd, RawEnd, TapEnd

if TYPE_CHECKING:
    from xcon import netconf
    from xcon.links import LinkTable
    from xcon.ports.device import DevicePort

log = logging.getLogger("xcon")


def p2p_bridges(table: LinkTable, links: Sequence[LinkSpec], debug: bool = False) -> list[P2PLink]:
    """One :class:`P2PLink` per spec, between any two kinds of end (checked by
    the caller: :func:`xcon.linkspec.check_distinct`), not yet in ``table``.
    Their ports are made by ``table.make_port`` and opened together by
    ``table.open_ports``: one that fails closes them all."""
    services = table.port_services
    pairs = [(table.make_port(services, s.left), table.make_port(services, s.right)) for s in links]
    table.open_ports([p for pair in pairs for p in pair])
    made = []
    for spec, (a, b) in zip(links, pairs, strict=True):
        access = a if spec.left.vid is not None else b if spec.right.vid is not None else None
        made.append(
            P2PLink(a, b, vlan=spec.vid, access=access, debug=debug, on_state=table.health_soon)
        )
    return made


def p2p(table: LinkTable, links: Sequence[LinkSpec], debug: bool = False) -> list[P2PLink]:
    """``--p2p``: the links of :func:`p2p_bridges`, added to ``table``."""
    made = p2p_bridges(table, links, debug)
    for spec, link in zip(links, made, strict=True):
        table.add_bridge(link, name=str(spec), ends=(spec.left, spec.right), spec=spec)
    return made


def hub(
    table: LinkTable,
    endpoints: Sequence[End],
    debug: bool = False,
    name: str | None = None,
    source: str = "command line",
) -> Hub:
    """One :class:`Hub` joining any kinds of end (checked by the caller:
    :func:`xcon.linkspec.check_hub`), added to ``table`` as ``name`` (default:
    the hub's own name, its ends)."""
    ports = [table.make_port(table.port_services, e) for e in endpoints]
    table.open_ports(ports)
    bridge = Hub(ports, debug=debug, on_state=table.health_soon)
    table.add_bridge(bridge, name=name, ends=endpoints, source=source)
    return bridge


def _device_link(
    table: LinkTable,
    nic: int,
    device: DevicePort,
    configure: Callable[[], str] | None,
    debug: bool,
    listen_host: str,
) -> P2PLink:
    """A listening qemu-side port linked to ``device``; everything opened first
    (device, its configuration, the listening socket) or nothing is left open."""
    from xcon.ports.device import interface_mtu
    from xcon.ports.listen import ListenPort
    from xcon.ports.tap import TapPort

    listen = ListenPort(table.engine, qemu_tcp_port(nic), host=listen_host)
    try:
        device.open()
        target = configure() if configure is not None else device.ifname
        listen.bind()
    except BaseException:
        device.close()
        listen.close()
        raise
    device.mtu = interface_mtu(device.ifname)
    log.info(
        "%s: MTU %d%s (reads take any frame up to %d bytes)",
        device.ifname,
        device.mtu,
        f", addresses on {target}" if target != device.ifname else "",
        MAX_FRAME,
    )
    link = P2PLink(listen, device, debug=debug, on_state=table.health_soon)
    ends: list[End] = [ListenEnd(qemu_tcp_port(nic), "" if listen_host == "::" else listen_host)]
    ends.append(TapEnd(device.ifname) if isinstance(device, TapPort) else RawEnd(device.ifname))
    table.add_bridge(link, ends=ends)
    return link


def tap_listen(
    table: LinkTable,
    nic: int,
    ifname: str,
    plan: netconf.NetPlan,
    debug: bool = False,
    listen_host: str = "::",
) -> P2PLink:
    """``--tap-listen N``: listen on TCP 10000+N, bridge to the tap ``ifname``
    configured as ``plan`` says (validated beforehand)."""
    from xcon import netconf
    from xcon.ports.tap import TapPort

    tap = TapPort(table.engine, ifname)

    def configure() -> str:
        return netconf.apply(plan, ifname)

    link = _device_link(table, nic, tap, configure, debug, listen_host)
    tap.on_open = configure  # a re-created tap has lost its addressing
    return link


def raw_listen(
    table: LinkTable, nic: int, ifname: str, debug: bool = False, listen_host: str = "::"
) -> P2PLink:
    """``--raw-listen N``: listen on TCP 10000+N, bridge to interface ``ifname``."""
    from xcon.ports.raw import RawPort

    raw = RawPort(table.engine, ifname)
    link = _device_link(table, nic, raw, None, debug, listen_host)
    log.info("%s: %s", ifname, raw.handling())
    return link
