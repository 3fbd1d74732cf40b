"""Numbers that define the wire and the command line, in one place.

Everything that validates input or sizes a buffer takes its bounds from here,
so the parser, the ports, the fast path and the error messages agree.
"""

from __future__ import annotations

#: qemu's socket/stream netdev: every frame is a 4-byte big-endian length,
#: then that many bytes of Ethernet frame (no FCS).
FRAME_HEADER = 4
#: The longest frame qemu accepts (NET_BUFSIZE = 4096 + 65536); one byte more
#: and qemu closes the connection.  Lengths above it are a protocol error.
MAX_FRAME = 69632

#: ``host/N`` is qemu NIC N, listening on TCP ``QEMU_BASE_PORT + N``.
QEMU_BASE_PORT = 10000
MIN_NIC = 1
MAX_NIC = 65535 - QEMU_BASE_PORT

#: VXLAN (RFC 7348): a 24-bit network identifier, and the UDP port IANA
#: assigned (4789; containerlab uses 14789, Linux's own default is 8472).
MAX_VNI = (1 << 24) - 1
VXLAN_PORT = 4789
#: VXLAN's header before the inner Ethernet frame.
VXLAN_HEADER = 8

#: ``sun_path`` of a unix socket address holds 108 bytes with the final NUL.
UNIX_PATH_MAX = 107

#: TCP and UDP port numbers.
MIN_PORT = 1
MAX_PORT = 65535

#: 802.1Q VLAN ids usable on an access port (0 and 4095 are reserved).
MIN_VID = 1
MAX_VID = 4094

#: A tap's MTU (``--mtu``): Linux's limits for an Ethernet device, the
#: largest being the kernel's limit for tun/tap.
MTU_MIN = 68
MTU_MAX = 65521

#: Linux interface names: IFNAMSIZ is 16 including the terminating NUL, so a
#: name has at most ``IFNAMSIZ - 1`` bytes.
IFNAMSIZ = 16

#: ``--trace SECONDS``: the default, and the bounds (a tenth of a second, a day).
TRACE_DEFAULT = 1.0
TRACE_MIN = 0.1
TRACE_MAX = 86400.0

#: DNS names (RFC 1035/1123): a name has at most 253 characters (without a
#: trailing dot), a label 1 to 63.
MAX_HOSTNAME = 253
MAX_LABEL = 63


def qemu_tcp_port(nic: int) -> int:
    """The TCP port of qemu NIC ``nic`` (``-netdev socket,listen=:100NN``)."""
    return QEMU_BASE_PORT + nic
