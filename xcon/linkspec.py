"""Parsing of vr-xcon's endpoint and link syntax.

``host/N`` is qemu NIC N of ``host`` (TCP port 10000+N); ``host`` is a name,
an IPv4 address or a bracketed IPv6 address (``[::1]/1``).  A p2p link is
``host/N--host/N`` with an optional ``:VID`` on one side, which makes that
side an access port of VLAN VID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_NIC, MAX_NIC = 1, 55535
MIN_VID, MAX_VID = 1, 4094

_ENDPOINT = re.compile(r"^(?P<host>\[[^\[\]]*\]|[^/\[\]]+)/(?P<nic>[0-9]+)(?::(?P<vid>[0-9]+))?$")


class SpecError(ValueError):
    """A malformed endpoint or link; the message is meant for the user."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    nic: int
    vid: int | None = None

    @property
    def tcp_port(self) -> int:
        return 10000 + self.nic

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}/{self.nic}" + (f":{self.vid}" if self.vid is not None else "")


@dataclass(frozen=True)
class LinkSpec:
    left: Endpoint
    right: Endpoint

    @property
    def vid(self) -> int | None:
        return self.left.vid if self.left.vid is not None else self.right.vid

    def __str__(self) -> str:
        return f"{self.left}--{self.right}"


def parse_endpoint(text: str, allow_vid: bool = True) -> Endpoint:
    m = _ENDPOINT.match(text)
    if not m:
        if "/" not in text:
            raise SpecError(f"{text!r}: expected HOST/N (qemu NIC N of HOST), e.g. vr1/1")
        raise SpecError(f"{text!r}: expected HOST/N or [IPv6]/N, e.g. vr1/1 or [::1]/1")
    host = m["host"]
    if ":" in host and not host.startswith("["):
        raise SpecError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]/1")
    if host.startswith("["):
        host = host[1:-1]
        if ":" not in host:
            raise SpecError(f"{text!r}: brackets are for IPv6 addresses only")
    if not host:
        raise SpecError(f"{text!r}: empty host name")
    nic = int(m["nic"])
    if not MIN_NIC <= nic <= MAX_NIC:
        raise SpecError(
            f"{text!r}: interface {nic} is outside {MIN_NIC}..{MAX_NIC} (TCP port 10000+N)"
        )
    vid = None
    if m["vid"] is not None:
        if not allow_vid:
            raise SpecError(f"{text!r}: a VLAN id is only allowed on --p2p links")
        vid = int(m["vid"])
        if not MIN_VID <= vid <= MAX_VID:
            raise SpecError(f"{text!r}: VLAN id {vid} is outside {MIN_VID}..{MAX_VID}")
    return Endpoint(host, nic, vid)


def parse_link(text: str) -> LinkSpec:
    parts = text.split("--")
    if len(parts) == 1:
        raise SpecError(f"{text!r}: a p2p link is HOST/N--HOST/N (missing '--')")
    if len(parts) > 2:
        raise SpecError(f"{text!r}: '--' separates the two ends, so it cannot appear in a name")
    left = parse_endpoint(parts[0])
    right = parse_endpoint(parts[1])
    if left.vid is not None and right.vid is not None:
        raise SpecError(
            f"{text!r}: a VLAN id on both sides (changing the VLAN id) is not supported"
        )
    return LinkSpec(left, right)


def check_distinct(links: list[LinkSpec]) -> None:
    """Each qemu NIC serves one connection at a time, so a NIC can be in one link only.

    A second link to the same NIC would wait in qemu's listen backlog forever (and
    look connected); catch that typo at start."""
    seen: dict[tuple[str, int], LinkSpec] = {}
    for link in links:
        a, b = ((e.host.lower(), e.nic) for e in (link.left, link.right))
        if a == b:
            raise SpecError(f"'{link}': both ends are the same NIC")
        for key, end in ((a, link.left), (b, link.right)):
            other = seen.get(key)
            if other is not None:
                raise SpecError(
                    f"{Endpoint(end.host, end.nic)} is in two links ('{other}' and '{link}'): a qemu NIC serves "
                    "one connection at a time; join three or more NICs with --hub"
                )
            seen[key] = link
