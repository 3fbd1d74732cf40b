"""``xcon extcap``: every link of every running xcon it can reach as a
Wireshark capture interface (Wireshark's extcap protocol), and the launcher
that puts it in Wireshark's extcap folder (``install``, ``uninstall``).

Wireshark runs the launcher with ``--extcap-interfaces`` when it starts (one
``interface`` line per link), ``--extcap-config`` and ``--extcap-dlts`` per
interface, then ``--capture --extcap-interface VALUE --fifo PATH`` to
capture: the link's live pcapng (``GET /links/NAME/capture``, as ``xcon ctl
capture LINK -w -``) is written into the FIFO until Wireshark closes it or
sends SIGTERM; xcon then sees the connection close and ends that capture.

Where it looks (each is a unix socket path or ``http://HOST:PORT`` of a
``--control-listen`` address): the ``--control`` options the launcher was
installed with, ``$XCON_EXTCAP_CONTROLS`` (separated by spaces or commas),
``$XCON_CONTROL`` and ``./xcon.sock``.  An xcon that does not answer has no
interfaces; that is not an error.

An interface's value is ``xcon-`` and, in lower-case base32 without padding,
the control socket's absolute path (or the URL), a NUL and the link's name:
stable for a link of one xcon, unique, and made only of ``[a-z0-9-]``, which
Wireshark keeps as it is in its preferences and command lines.

Only the client side of the control API is imported here, never the data
path.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence

from xcon import __version__
from xcon.control import DEFAULT_SOCKET
from xcon.control.client import (
    OK,
    REFUSED,
    UNREACHABLE,
    USAGE,
    plan,
    stop_on,
    stream_capture,
)
from xcon.control.routes import route
from xcon.control.transport import TIMEOUT, Client, Unreachable
from xcon.errors import OneLineParser, one_line
from xcon.limits import MAX_SNAPLEN, SNAPLEN

PROG = "xcon extcap"
#: Every interface's value starts with it.
PREFIX = "xcon-"
#: The launcher's name in the extcap folder.
LAUNCHER = "xcon"
#: The launcher's second line: ``uninstall`` removes only a file that has it.
MARKER = "# Written by 'xcon extcap install'; 'xcon extcap uninstall' removes it."
#: Seconds to wait for each xcon when listing (Wireshark waits for the list).
LIST_TIMEOUT = 2.0
#: Options of Wireshark's that xcon needs not (later versions add more).
IGNORED = ("--extcap-", "--debug")


# -- interfaces ----------------------------------------------------------------------------
def interface_value(where: str, link: str) -> str:
    """The interface value of ``link`` of the xcon at ``where``."""
    raw = f"{where}\0{link}".encode(errors="surrogatepass")  # any str a name can be
    return PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()


def parse_interface(value: str) -> tuple[str, str]:
    """(where, link) of an interface value; raises ValueError."""
    bad = ValueError(
        f"--extcap-interface {value}: not an xcon link (xcon extcap --extcap-interfaces lists them)"
    )
    body = value[len(PREFIX) :] if value.startswith(PREFIX) else ""
    if not re.fullmatch(r"[a-z2-7]+", body):
        raise bad
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        where, sep, link = raw.decode(errors="surrogatepass").partition("\0")
    except (binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not sep or not where or not link:
        raise bad
    return where, link


def control_entries(given: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Where to look for xcons, each once: unix socket paths (absolute) and URLs."""
    entries = [*given, *re.split(r"[\s,]+", env.get("XCON_EXTCAP_CONTROLS", ""))]
    entries += [env.get("XCON_CONTROL", ""), DEFAULT_SOCKET]
    out: list[str] = []
    for e in entries:
        where = e.rstrip("/") if _is_url(e) else os.path.abspath(e) if e else ""
        if where and where not in out:
            out.append(where)
    return out


def _is_url(text: str) -> bool:
    return text.startswith("http://")


def client_for(where: str, token: str | None, timeout: float = TIMEOUT) -> Client:
    """A client of the xcon at ``where`` (the token goes to a URL only)."""
    if _is_url(where):
        return Client(url=where, token=token, timeout=timeout)
    return Client(path=where, timeout=timeout)


def reachable_links(wheres: Sequence[str], token: str | None) -> list[tuple[str, str]]:
    """(where, link) of every link of every xcon that answers."""
    found = []
    for where in wheres:
        try:
            status, data, _ = client_for(where, token, LIST_TIMEOUT).request(
                "GET", route("GET /links").target()
            )
            links = json.loads(data)["links"] if status == 200 else []
            found += [(where, str(link["name"])) for link in links]
        except (Unreachable, ValueError, KeyError, TypeError):
            continue  # not an xcon, or none there: no interfaces from it
    return found


def interfaces_text(found: Sequence[tuple[str, str]]) -> str:
    """The answer to ``--extcap-interfaces``: a link's display names its xcon
    only when more than one answered."""
    several = len({w for w, _ in found}) > 1
    lines = [f"extcap {{version={__version__}}}"]
    for where, link in found:
        display = one_line(f"xcon: {link}" + (f" ({where})" if several else ""))
        display = display.replace("{", "(").replace("}", ")")  # braces end a field
        lines.append(f"interface {{value={interface_value(where, link)}}}{{display={display}}}")
    return "\n".join(lines) + "\n"


DLTS = "dlt {number=1}{name=EN10MB}{display=Ethernet}\n"

CONFIG = (
    "arg {number=0}{call=--snaplen}{display=Snap length}{type=unsigned}{default=0}"
    f"{{range=0,{MAX_SNAPLEN}}}"
    "{tooltip=Keep at most this many bytes of each frame (0: whole frames)}\n"
    "arg {number=1}{call=--no-drops}{display=Leave out the frames xcon drops}"
    "{type=boolflag}{default=false}"
    "{tooltip=Without it a frame xcon drops is recorded with the reason as its comment}\n"
)


# -- the extcap protocol ----------------------------------------------------------------------
def protocol_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="xcon's links as Wireshark capture interfaces (the extcap protocol; "
        "Wireshark runs it).  xcon extcap install | uninstall puts the launcher in "
        "Wireshark's extcap folder or removes it.  Exit codes: 0 done, 1 xcon said no, "
        "2 usage, 3 xcon not reachable.",
    )
    p.add_argument("--extcap-interfaces", action="store_true", help="list the links")
    p.add_argument("--extcap-version", metavar="VERSION", help="Wireshark's version")
    p.add_argument("--extcap-interface", metavar="VALUE", help="one link's interface")
    p.add_argument("--extcap-dlts", action="store_true", help="its link type (Ethernet)")
    p.add_argument("--extcap-config", action="store_true", help="its capture options")
    p.add_argument("--capture", action="store_true", help="capture it into --fifo")
    p.add_argument("--fifo", metavar="PATH", help="the FIFO Wireshark reads")
    p.add_argument(
        "--extcap-capture-filter", dest="filter", metavar="EXPR", help="a tcpdump expression"
    )
    p.add_argument(
        "--snaplen",
        type=SNAPLEN.arg_type(),
        metavar="BYTES",
        help=f"keep at most BYTES per frame ({SNAPLEN})",
    )
    p.add_argument("--no-drops", action="store_true", help="leave out the frames xcon drops")
    _where_args(p)
    return p


def _where_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="SOCKET|URL",
        help="an xcon's control socket or http://HOST:PORT (repeatable; also "
        f"$XCON_EXTCAP_CONTROLS, $XCON_CONTROL and ./{DEFAULT_SOCKET})",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="the token for http:// addresses (default $XCON_TOKEN_FILE): a live "
        "capture over TCP needs it",
    )


def parse_protocol(argv: Sequence[str]) -> argparse.Namespace:
    """The extcap call's arguments; raises ValueError (usage).  Options of
    Wireshark's that xcon does not use (``--extcap-*``, ``--debug*``) are
    left out, with their values."""
    parser = protocol_parser()
    try:
        args, extra = parser.parse_known_args(list(argv))
    except SystemExit as e:
        raise _Exit(e.code if isinstance(e.code, int) else USAGE) from None
    ignoring = False
    for word in extra:
        if word.startswith(IGNORED):
            ignoring = True
        elif word.startswith("-") or not ignoring:
            raise ValueError(f"unrecognized arguments: {' '.join(extra)}")
    modes = [args.extcap_interfaces, args.extcap_dlts, args.extcap_config, args.capture]
    if sum(modes) > 1:
        raise ValueError(
            "give one of --extcap-interfaces, --extcap-dlts, --extcap-config, --capture"
        )
    if (args.extcap_dlts or args.extcap_config or args.capture) and not args.extcap_interface:
        raise ValueError("--extcap-dlts, --extcap-config and --capture need --extcap-interface")
    if args.capture and not args.fifo:
        raise ValueError("--capture needs --fifo PATH")
    if not any(modes) and not (args.extcap_interface and args.filter is not None):
        raise ValueError(
            "give --extcap-interfaces, or --extcap-interface VALUE with --extcap-dlts, "
            "--extcap-config or --capture --fifo PATH (Wireshark does), or install | uninstall"
        )
    if args.extcap_interface:
        parse_interface(args.extcap_interface)
    return args


class _Exit(Exception):
    """argparse ended the command line (--help, or its own usage error)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or os.environ.get("XCON_TOKEN_FILE")
    if not path:
        return None
    from xcon.control.access import read_token_file

    return read_token_file(path)


def capture(args: argparse.Namespace, token: str | None) -> int:
    """The link's live capture into the FIFO until its reader goes, xcon ends
    it, or SIGTERM (Wireshark's stop)."""
    import signal

    where, link = parse_interface(args.extcap_interface)
    call = plan(
        argparse.Namespace(
            command="capture",
            name=link,
            write="-",
            stop=False,
            list=False,
            snaplen=args.snaplen,
            filter=args.filter,
            no_drops=args.no_drops,
            size=None,
            seconds=None,
            files=None,
            overwrite=False,
        )
    )
    stop_on(signal.SIGTERM, signal.SIGINT)
    try:
        fd = os.open(args.fifo, os.O_WRONLY)
    except OSError as e:
        raise ValueError(f"--fifo {args.fifo}: {e.strerror or e}") from None
    try:
        return stream_capture(client_for(where, token), call, out=fd, prog=PROG)
    finally:
        os.close(fd)


def run_protocol(argv: Sequence[str]) -> int:
    args = parse_protocol(argv)
    if args.extcap_interfaces:
        wheres = control_entries(args.control, os.environ)
        sys.stdout.write(interfaces_text(reachable_links(wheres, _token(args))))
    elif args.extcap_dlts:
        sys.stdout.write(DLTS)
    elif args.extcap_config:
        sys.stdout.write(CONFIG)
    elif args.capture:
        return capture(args, _token(args))
    # else: Wireshark checks a capture filter; xcon compiles it when the capture starts
    return OK


# -- install, uninstall ------------------------------------------------------------------------
def install_parser(command: str) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=f"{PROG} {command}",
        description=(
            "Write the launcher that lists xcon's links in Wireshark into its extcap folder."
            if command == "install"
            else "Remove the launcher 'xcon extcap install' wrote."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--system", action="store_true", help="Wireshark's global extcap folder (root)"
    )
    where.add_argument("--dir", metavar="DIR", help="this folder instead")
    if command == "install":
        _where_args(p)
    return p


def tshark_folders(env: Mapping[str, str]) -> dict[str, str]:
    """``tshark -G folders`` as a dict ({} without tshark)."""
    tshark = shutil.which("tshark", path=env.get("PATH"))
    if tshark is None:
        return {}
    try:
        out = subprocess.run(
            [tshark, "-G", "folders"],
            capture_output=True,
            text=True,
            timeout=20,
            env=dict(env),
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def personal_config(env: Mapping[str, str]) -> str:
    """Wireshark's personal configuration folder, as Wireshark 4.0 finds it."""
    if env.get("WIRESHARK_CONFIG_DIR"):
        return env["WIRESHARK_CONFIG_DIR"]
    home = env.get("HOME") or os.path.expanduser("~")
    old = os.path.join(home, ".wireshark")
    if os.path.isdir(old):
        return old
    return os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "wireshark")


def extcap_folder(system: bool, env: Mapping[str, str]) -> str:
    """Wireshark's personal (or global) extcap folder: what tshark says where
    it is installed (4.2 and later name it), else Wireshark 4.0's rule."""
    folders = tshark_folders(env)
    if system:
        if folders.get("Global Extcap path") or folders.get("Extcap path"):
            return folders.get("Global Extcap path") or folders["Extcap path"]
        arch = sysconfig.get_config_var("MULTIARCH") or ""
        return os.path.join("/usr/lib", arch, "wireshark", "extcap")
    if folders.get("Personal Extcap path"):
        return folders["Personal Extcap path"]
    conf = folders.get("Personal configuration") or personal_config(env)
    return os.path.join(conf, "extcap")


def launcher_text(controls: Sequence[str], token_file: str | None) -> str:
    """The launcher: this Python running ``-m xcon extcap``, with the options given."""
    import xcon

    words = [sys.executable, "-m", "xcon", "extcap"]
    for c in controls:
        words += ["--control", c if _is_url(c) else os.path.abspath(c)]
    if token_file:
        words += ["--token-file", os.path.abspath(token_file)]
    lines = ["#!/bin/sh", MARKER]
    root = os.path.dirname(os.path.dirname(os.path.abspath(xcon.__file__)))
    if root in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        # xcon came from PYTHONPATH here: the launcher finds the same one
        lines.append(f"PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}")
        lines.append("export PYTHONPATH")
    lines.append(f'exec {shlex.join(words)} "$@"')
    return "\n".join(lines) + "\n"


def install(argv: Sequence[str]) -> int:
    args = install_parser("install").parse_args(list(argv))
    for c in args.control:
        try:
            if _is_url(c):
                Client(url=c)._address()
        except ValueError:
            raise ValueError(f"--control {c}: expected http://HOST:PORT") from None
    folder = args.dir or extcap_folder(args.system, os.environ)
    path = os.path.join(folder, LAUNCHER)
    text = launcher_text(args.control, args.token_file)
    try:
        os.makedirs(folder, exist_ok=True)
        _check_ours(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except OSError as e:
        raise _Refused(f"{path}: {e.strerror or e}") from None
    print(f"installed {path}: restart Wireshark to see xcon's links")
    return OK


def uninstall(argv: Sequence[str]) -> int:
    args = install_parser("uninstall").parse_args(list(argv))
    folder = args.dir or extcap_folder(args.system, os.environ)
    path = os.path.join(folder, LAUNCHER)
    if not os.path.lexists(path):
        raise _Refused(f"no launcher at {path}")
    try:
        _check_ours(path)
        os.unlink(path)
    except OSError as e:
        raise _Refused(f"{path}: {e.strerror or e}") from None
    print(f"removed {path}")
    return OK


def _check_ours(path: str) -> None:
    """Raise _Refused when ``path`` exists and is not a launcher xcon wrote."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    ours = False
    if stat.S_ISREG(st.st_mode):
        with open(path, errors="replace") as f:
            ours = MARKER in f.read(4096)
    if not ours:
        raise _Refused(f"{path} exists and is not xcon's launcher: left as it is")


class _Refused(Exception):
    pass


# -- the command line --------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["install"]:
            return install(argv[1:])
        if argv[:1] == ["uninstall"]:
            return uninstall(argv[1:])
        return run_protocol(argv)
    except SystemExit as e:  # install's parser: --help, or its usage error (printed)
        return e.code if isinstance(e.code, int) else USAGE
    except _Exit as e:
        return e.code
    except KeyboardInterrupt:  # SIGTERM before the capture started: nothing to end
        return OK
    except ValueError as e:
        return _fail(str(e), USAGE)
    except _Refused as e:
        return _fail(str(e), REFUSED)
    except Unreachable as e:
        return _fail(str(e), UNREACHABLE)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {one_line(message)}", file=sys.stderr)
    return code
