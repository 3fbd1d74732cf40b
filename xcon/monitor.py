"""A router's qemu monitor (HMP over TCP), for pulling a cable at the router too.

vrnetlab starts each router's qemu with ``-monitor tcp:0.0.0.0:4000+N,server,nowait``
and its NIC N as ``-netdev socket,id=pNN,...`` (``p01`` for NIC 1).  qemu's
``set_link NETDEV off`` takes that netdev down and, when its peer is the
guest's NIC, the NIC too: the guest sees carrier loss, so BFD, LACP and the
IGP react at once instead of waiting for their timers.  ``set_link NETDEV on``
brings it back.  GNS3 pulls cables the same way.

The monitor is a line editor meant for a terminal: it greets with a banner
and the ``(qemu)`` prompt, echoes what is typed (with cursor movements), and
answers before the next prompt.  ``set_link`` answers nothing when it worked
and ``Error: ...`` otherwise.  qemu serves one monitor client at a time, so a
connection is held only for one command.

:func:`hmp` is blocking (a few milliseconds, at most :data:`TIMEOUT` seconds);
the control server runs it on a worker thread, never on the loop.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

from xcon.limits import MAX_PORT, MIN_PORT
from xcon.linkspec import SpecError, bounded_int, check_host, check_ipv6

__all__ = ["TIMEOUT", "Monitor", "MonitorError", "hmp", "parse_monitor"]

#: Seconds to connect, and to get each answer.
TIMEOUT = 3.0
PROMPT = b"(qemu) "
_ESCAPES = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_NETDEV = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


class MonitorError(Exception):
    """The monitor could not be reached, or refused the command (one line)."""


@dataclass(frozen=True)
class Monitor:
    """Where a router's monitor listens (``host``:``port``, or the unix
    socket ``host`` when ``port`` is 0) and the netdev of the NIC at this end."""

    host: str
    port: int
    netdev: str

    def __str__(self) -> str:
        if self.port == 0:
            return f"unix:{self.host},{self.netdev}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port},{self.netdev}"

    def set_link(self, up: bool, timeout: float = TIMEOUT) -> None:
        """``set_link NETDEV on|off``; raises :class:`MonitorError`."""
        command = f"set_link {self.netdev} {'on' if up else 'off'}"
        output = hmp(self.host, self.port, command, timeout)
        if output:  # set_link says nothing when it worked
            raise MonitorError(f"monitor {self}: {command!r}: {output.splitlines()[0]}")


def default_netdev(nic: int | None) -> str | None:
    """vrnetlab's netdev id of NIC ``nic`` (``p01``), or None when unknown."""
    return f"p{nic:02d}" if nic is not None else None


def parse_monitor(text: str, default_netdev: str | None = None) -> Monitor:
    """``HOST:PORT[,NETDEV]`` (``[V6]:PORT`` for IPv6), or ``unix:PATH[,NETDEV]``
    (``-monitor unix:PATH,server,nowait``); NETDEV defaults to
    ``default_netdev`` (vrnetlab's ``pNN`` for a ``HOST/N`` end).  Raises
    :class:`~xcon.linkspec.SpecError`."""
    if text.startswith("unix:"):
        path, _, netdev = text[5:].partition(",")
        if not path.startswith("/") or "\0" in path or len(path) > 107:
            raise SpecError(
                f"monitor {text!r}: unix:PATH takes an absolute path (at most 107 bytes)"
            )
        return Monitor(path, 0, _netdev(text, netdev or default_netdev or ""))
    addr, _, netdev = text.partition(",")
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host:
        raise SpecError(f"monitor {text!r}: expected HOST:PORT[,NETDEV], e.g. vr1:4000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        check_ipv6(host, text)
    elif ":" in host:
        raise SpecError(f"monitor {text!r}: write an IPv6 address in brackets, e.g. [::1]:4000")
    else:
        check_host(host, text)
    port = bounded_int(port_text, MIN_PORT, MAX_PORT)
    if port is None:
        raise SpecError(f"monitor {text!r}: port {port_text!r} is not in {MIN_PORT}..{MAX_PORT}")
    return Monitor(host, port, _netdev(text, netdev or default_netdev or ""))


def _netdev(text: str, netdev: str) -> str:
    if not netdev:
        raise SpecError(
            f"monitor {text!r}: name the NIC's netdev (HOST:PORT,NETDEV); only a HOST/N end "
            "has a default (vrnetlab's pNN)"
        )
    if not _NETDEV.fullmatch(netdev):
        raise SpecError(f"monitor {text!r}: {netdev!r} is not a qemu netdev id")
    return netdev


def hmp(host: str, port: int, command: str, timeout: float = TIMEOUT) -> str:
    """Run one HMP ``command``; returns its output.  Output starting with
    ``Error`` (or a monitor that cannot be reached) raises :class:`MonitorError`."""
    where = f"monitor {host}:{port}" if port else f"monitor unix:{host}"
    deadline = time.monotonic() + timeout
    try:
        if port:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(host)
            except OSError:
                sock.close()
                raise
    except OSError as e:
        raise MonitorError(f"{where}: {e.strerror or e}") from None
    with sock:
        try:
            _read_prompt(sock, deadline, where)  # the banner
            sock.sendall(command.encode() + b"\n")
            answer = _read_prompt(sock, deadline, where)
        except OSError as e:
            raise MonitorError(f"{where}: {e.strerror or e}") from None
    text = _ESCAPES.sub(b"", answer).decode(errors="replace").replace("\r", "")
    lines = text.split("\n")
    # The first line is the echo of the command (the line editor's redraws).
    output = "\n".join(line for line in lines[1:] if line.strip()).strip()
    if output.startswith(("Error", "unknown command")):
        raise MonitorError(f"{where}: {command!r}: {output.splitlines()[0]}")
    return output


def _read_prompt(sock: socket.socket, deadline: float, where: str) -> bytes:
    """Read until the ``(qemu)`` prompt; returns what came before it."""
    data = bytearray()
    while not data.endswith(PROMPT):
        left = deadline - time.monotonic()
        if left <= 0:
            raise MonitorError(f"{where}: no prompt within {TIMEOUT:g} s (busy, or not a monitor)")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            raise MonitorError(f"{where}: closed the connection")
        data += chunk
        if len(data) > 1 << 20:
            raise MonitorError(f"{where}: answer too long (not a qemu monitor?)")
    return bytes(data[: -len(PROMPT)])
