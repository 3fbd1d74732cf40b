"""``xcon ctl``: the control API from a shell (human tables, or ``--json``).

One subcommand per ``ctl`` name of the route table (:mod:`.routes`); each
turns its arguments into one request of the table (:data:`SUBCOMMANDS`),
sent by :mod:`.transport` and printed by :mod:`.render`.

Exit codes: 0 done; 1 xcon answered no (no such link, a clash, a bad spec,
a router's monitor failed; the message is on stderr); 2 usage error; 3 xcon
cannot be reached (no socket, refused, timed out).  ``xcon ctl health``
exits with the health file's code (0 healthy, 1 not).

Where: ``--control PATH`` (default ``$XCON_CONTROL``, else ``./xcon.sock``:
the working directory, as xcon's default, so ``docker exec vr-xcon xcon ctl
links`` finds the container's ``/xcon.sock``), or ``--url
http://127.0.0.1:PORT`` for a ``--control-listen`` address.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from xcon.control import DEFAULT_SOCKET
from xcon.control.render import capture_line, late_line, link_detail, links_table, render
from xcon.control.routes import Route, commands, route
from xcon.control.transport import TIMEOUT, Client, LiveResponse, Unreachable, link_path
from xcon.limits import (
    CAPTURE_FILES,
    CAPTURE_SECONDS,
    CAPTURE_SIZE_MB,
    CTL_TIMEOUT,
    SNAPLEN,
    TOP_INTERVAL,
)

__all__ = [
    "Client",
    "Unreachable",
    "build_parser",
    "capture_line",
    "late_line",
    "link_detail",
    "link_path",
    "links_table",
    "main",
    "monitors_arg",
    "plan",
]

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3

LINK_NAME = "the link's name: its two ends in either order (a VLAN link's :VID may be left out)"
MONITOR = "END=HOST:PORT[,NETDEV]"
MONITOR_HELP = (
    "a router's qemu monitor for one end of the link (repeat for the other): "
    "HOST:PORT of its HMP monitor, and the NIC's netdev (default pNN for a HOST/N end, "
    "required for other kinds); down and up then set that NIC off and on in qemu too"
)
DIRECTION_HELP = (
    "a2b: the frames from the link's first end to its second (a to b of the link a--b as "
    "it was added, whatever the order NAME gives); b2a: those the other way; both (default)"
)


class Call:
    """The request a subcommand makes: a route of the table, the link its
    NAME stands for, a JSON body or a query; ``live``: the answer is read as
    it comes (a live capture)."""

    __slots__ = ("route", "name", "body", "query", "live")

    def __init__(
        self,
        route: Route,
        name: str = "",
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        live: bool = False,
    ) -> None:
        self.route = route
        self.name = name
        self.body = body
        self.query = query
        self.live = live

    @property
    def path(self) -> str:
        path = self.route.target(self.name)
        return f"{path}?{urlencode(self.query)}" if self.query else path


class Subcommand:
    """One ``xcon ctl`` subcommand: its help, its arguments (added to its
    parser by ``arguments``) and the request they make (``plan``)."""

    __slots__ = ("help", "description", "arguments", "plan")

    def __init__(
        self,
        help: str,
        plan: Callable[[argparse.Namespace], Call],
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        description: str | None = None,
    ) -> None:
        self.help = help
        self.plan = plan
        self.arguments = arguments
        self.description = description


# -- the subcommands' requests -----------------------------------------------------------------
def monitors_arg(items: Sequence[str] | None) -> dict[str, str] | None:
    """``--monitor END=HOST:PORT[,NETDEV]`` options as the API's ``monitors``."""
    if not items:
        return None
    out = {}
    for item in items:
        end, sep, mon = item.partition("=")
        if not sep or not end or not mon:
            raise ValueError(f"--monitor {item!r}: expected {MONITOR}")
        out[end] = mon
    return out


def _add(args: argparse.Namespace) -> Call:
    body: dict[str, Any] = {"spec": args.spec, "admin": "down" if args.down else "up"}
    mons = monitors_arg(args.monitor)
    if mons:
        body["monitors"] = mons
    return Call(route("POST /links"), body=body)


def _admin(up: bool) -> Callable[[argparse.Namespace], Call]:
    def plan(args: argparse.Namespace) -> Call:
        mons = monitors_arg(args.monitor)
        body: dict[str, Any] = {"monitors": mons} if mons else {}
        if args.direction != "both":
            body["direction"] = args.direction
        return Call(route(f"POST /links/NAME/{'up' if up else 'down'}"), args.name, body)

    return plan


def _flap(args: argparse.Namespace) -> Call:
    if args.stop:
        if args.down or args.up or args.count:
            raise ValueError("flap --stop takes no --down, --up or --count")
        return Call(route("DELETE /links/NAME/flap"), args.name)
    if not args.down or not args.up:
        raise ValueError("flap needs --down TIME and --up TIME (or --stop)")
    body: dict[str, Any] = {"down": args.down, "up": args.up}
    if args.count is not None:
        body["count"] = args.count
    return Call(route("POST /links/NAME/flap"), args.name, body)


CLAB_FLAGS = ("delay", "jitter", "loss", "rate", "corruption")


def impair_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body of ``xcon ctl impair``, checked here (a bad word is a
    usage error, exit 2, before xcon is asked)."""
    from xcon.impair.spec import from_fields, parse_netem

    flags = {k: getattr(args, k) for k in CLAB_FLAGS if getattr(args, k) is not None}
    body: dict[str, Any] = {"direction": args.direction}
    if args.end is not None:
        body["end"] = args.end
    if args.clear:
        if args.words or flags:
            raise ValueError("impair --clear takes no netem words or flags")
        return body
    if args.words and flags:
        raise ValueError("give netem words or containerlab flags, not both")
    if args.words:
        body["netem"] = parse_netem(args.words).words()
    elif flags:
        body["netem"] = from_fields(
            {k: float(v) if _number(v) else v for k, v in flags.items()}
        ).words()
    else:
        raise ValueError("impair: give netem words (delay 10ms loss 1%), flags, or --clear")
    return body


def _impair(args: argparse.Namespace) -> Call:
    which = "DELETE" if args.clear else "PUT"
    return Call(route(f"{which} /links/NAME/impair"), args.name, impair_body(args))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def capture_file_arg(text: str) -> str:
    """``-w NAME``: a name in xcon's capture directory; raises ValueError (usage)."""
    if "/" in text:
        raise ValueError(
            f"-w {text}: xcon writes captures into its capture directory (xcon --capture-dir): "
            "give a file name, or -w - to stream the capture here"
        )
    return text


def capture_query(args: argparse.Namespace) -> dict[str, Any]:
    """The capture options given, as the API's names."""
    doc: dict[str, Any] = {}
    if args.snaplen is not None:
        doc["snaplen"] = args.snaplen
    if args.filter:
        doc["filter"] = args.filter
    if args.no_drops:
        doc["drops"] = False
    for key, value in (("size_mb", args.size), ("seconds", args.seconds), ("files", args.files)):
        if value is not None:
            doc[key] = value
    return doc


def _capture(args: argparse.Namespace) -> Call:
    if args.stop:
        return Call(route("DELETE /links/NAME/capture"), args.name)
    if args.list:
        return Call(route("GET /links/NAME"), args.name)
    options = capture_query(args)
    if args.write == "-":
        if any(k in options for k in ("size_mb", "seconds", "files")) or args.overwrite:
            raise ValueError("--size, --seconds, --files and --overwrite apply to -w NAME only")
        if "drops" in options:
            options["drops"] = "false"
        return Call(route("GET /links/NAME/capture"), args.name, query=options, live=True)
    body = {"file": capture_file_arg(args.write), **options}
    if args.overwrite:
        body["overwrite"] = True
    return Call(route("POST /links/NAME/capture"), args.name, body)


def _events(args: argparse.Namespace) -> Call:
    query = {k: ",".join(v) for k, v in (("link", args.link), ("type", args.type)) if v}
    return Call(route("GET /events"), query=query, live=True)


def _reset(args: argparse.Namespace) -> Call:
    return Call(route("POST /counters/reset"), body={"link": args.name} if args.name else {})


def _on(text: str) -> Callable[[argparse.Namespace], Call]:
    """The plan of a subcommand that makes one request, with no body."""
    r = route(text)
    return lambda args: Call(r, getattr(args, "name", ""))


# -- the subcommands' arguments ---------------------------------------------------------------
def _link_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help=LINK_NAME)


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "spec",
        help="the link as --p2p writes it: END--END (vr1/1--vr2/1; vr1/2--vr3/1:123 makes "
        "vr3/1 an access port of VLAN 123)",
    )
    p.add_argument("--monitor", action="append", metavar=MONITOR, help=MONITOR_HELP)
    p.add_argument("--down", action="store_true", help="add it with the cable pulled")


def _admin_args(p: argparse.ArgumentParser) -> None:
    _link_arg(p)
    p.add_argument(
        "--monitor",
        action="append",
        metavar=MONITOR,
        help=MONITOR_HELP + " (remembered: the router's carrier follows the link from then on)",
    )
    p.add_argument(
        "--direction",
        default="both",
        choices=["a2b", "b2a", "both"],
        help="one direction only: a one-way failure (frames dropped that way, the routers' "
        "carrier untouched); both (default) is a pulled cable",
    )


def _flap_args(p: argparse.ArgumentParser) -> None:
    _link_arg(p)
    p.add_argument("--down", metavar="TIME", help="how long each pull lasts: 2s, 500ms, 1m")
    p.add_argument("--up", metavar="TIME", help="how long it stays plugged in between")
    p.add_argument("--count", type=int, metavar="N", help="pulls in all (default: until --stop)")
    p.add_argument("--stop", action="store_true", help="stop the schedule (left plugged in)")


def _impair_args(p: argparse.ArgumentParser) -> None:
    _link_arg(p)
    p.add_argument("words", nargs="*", help="tc-netem's words")
    p.add_argument(
        "--direction", default="both", choices=["a2b", "b2a", "both"], help=DIRECTION_HELP
    )
    p.add_argument(
        "--end",
        metavar="END",
        help="a hub's end (vr1/1): its a2b is what it sends into the hub, b2a what the hub "
        "sends it",
    )
    p.add_argument("--clear", action="store_true", help="remove the impairment")
    p.add_argument("--delay", metavar="TIME", help="as containerlab: 10ms (a number: ms)")
    p.add_argument("--jitter", metavar="TIME", help="as containerlab: 2ms (a number: ms)")
    p.add_argument("--loss", metavar="PERCENT", help="as containerlab: 1 (percent)")
    p.add_argument("--rate", metavar="KBIT", help="as containerlab: kbit/s (or 100mbit)")
    p.add_argument("--corruption", metavar="PERCENT", help="as containerlab: percent")


def _capture_args(p: argparse.ArgumentParser) -> None:
    _link_arg(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "-w",
        dest="write",
        metavar="NAME|-",
        help="a file name in xcon's capture directory, or - for stdout",
    )
    what.add_argument(
        "--stop", action="store_true", help="stop the link's captures, clear those that failed"
    )
    what.add_argument("--list", action="store_true", help="the link's captures")
    p.add_argument(
        "--snaplen",
        type=SNAPLEN.arg_type(),
        metavar="BYTES",
        help=f"keep at most BYTES per frame ({SNAPLEN})",
    )
    p.add_argument("--filter", metavar="EXPR", help="a tcpdump (BPF) expression")
    p.add_argument("--no-drops", action="store_true", help="leave out the frames xcon drops")
    p.add_argument(
        "--size",
        type=CAPTURE_SIZE_MB.arg_type(),
        metavar="MB",
        help=f"ring: a new file before MB ({CAPTURE_SIZE_MB})",
    )
    p.add_argument(
        "--seconds",
        type=CAPTURE_SECONDS.arg_type(),
        metavar="S",
        help=f"ring: a new file every S ({CAPTURE_SECONDS})",
    )
    p.add_argument(
        "--files",
        type=CAPTURE_FILES.arg_type(),
        metavar="N",
        help=f"ring: keep the newest N files ({CAPTURE_FILES})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the file NAME if it exists")


def _events_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--link", action="append", metavar="NAME", help="this link's events only (repeatable)"
    )
    p.add_argument(
        "--type",
        action="append",
        metavar="T",
        help="these types only: link.down, carrier.changed... or a family: link, capture "
        "(repeatable, or comma-separated)",
    )


def _reset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help=LINK_NAME + "; all links when left out")


#: Every subcommand, by its ``ctl`` name in the route table.
SUBCOMMANDS: dict[str, Subcommand] = {
    "status": Subcommand("version, engine, uptime", _on("GET /")),
    "links": Subcommand("every link: ends, state, rates, counters", _on("GET /links")),
    "add": Subcommand("add a p2p link (same syntax as --p2p)", _add, _add_args),
    "link": Subcommand("one link in detail", _on("GET /links/NAME"), _link_arg),
    "remove": Subcommand(
        "remove a link (its connections only)", _on("DELETE /links/NAME"), _link_arg
    ),
    "down": Subcommand("set a p2p link administratively down", _admin(False), _admin_args),
    "up": Subcommand("set a p2p link administratively up", _admin(True), _admin_args),
    "flap": Subcommand(
        "pull and plug a p2p link on a schedule (--down 2s --up 10s [--count N]; --stop)",
        _flap,
        _flap_args,
    ),
    "capture": Subcommand(
        "capture a link to pcapng: -w NAME (xcon writes NAME in its capture "
        "directory, xcon --capture-dir, until --stop) or -w - (live, to stdout, until "
        "interrupted: | tcpdump -r - or | wireshark -k -i -)",
        _capture,
        _capture_args,
    ),
    "impair": Subcommand(
        "impair a link live with tc-netem's words (delay 10ms 2ms loss 1%% ...)",
        _impair,
        _impair_args,
        description="Impair a link live: tc-netem's words (delay TIME [JITTER [CORR]] "
        "distribution D, loss [random] P [CORR], loss gemodel p [r [1-h [1-k]]], duplicate P, "
        "corrupt P, reorder P [CORR] gap N, rate RATE, limit N) or containerlab's flags; "
        "--clear removes it.  a2b is the direction from the link's first end to its second "
        "(vr1/1 to vr2/1 on the link vr1/1--vr2/1), b2a the other.  On a hub, name one of "
        "its ends with --end: a2b is what that end sends into the hub, b2a what the hub "
        "sends it.",
    ),
    "reset": Subcommand("counters back to zero (all, or one link)", _reset, _reset_args),
    "health": Subcommand("the health summary (exit code 0 healthy, 1 not)", _on("GET /health")),
    "metrics": Subcommand("the Prometheus metrics", _on("GET /metrics")),
    "reload": Subcommand("apply the --config file's changes (as SIGHUP)", _on("POST /reload")),
    "restart": Subcommand(
        "run xcon again in place (same PID), its connections handed over: nothing the "
        "routers see (as SIGUSR2; docs/restart.md)",
        _on("POST /restart"),
    ),
    "events": Subcommand(
        "follow every change of the links' state, one line each, until interrupted",
        _events,
        _events_args,
    ),
}


def _top_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interval",
        type=TOP_INTERVAL.arg_type(),
        default=1.0,
        metavar="S",
        help=f"seconds between refreshes (default 1; {TOP_INTERVAL})",
    )
    p.add_argument("--once", action="store_true", help="print one frame of the view and exit")


#: Subcommands that are views made of several requests (not one route each).
VIEWS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "top": ("every link live, sorted by rate, as top (q quits; --once: one frame)", _top_args),
}


def plan(args: argparse.Namespace) -> Call:
    """The request ``args`` (parsed) make; raises ValueError (usage)."""
    return SUBCOMMANDS[args.command].plan(args)


# -- the command line ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from xcon.errors import OneLineParser

    p = OneLineParser(
        prog="xcon ctl",
        description="Talk to a running xcon: list, add, remove and pull links, counters, "
        "health, metrics, reload.  Exit codes: 0 done, 1 xcon said no, 2 usage, "
        "3 xcon not reachable (health: 0 healthy, 1 not).",
    )
    p.add_argument(
        "--control",
        metavar="PATH",
        help=f"xcon's control socket (default $XCON_CONTROL, else ./{DEFAULT_SOCKET})",
    )
    p.add_argument("--url", help="http://HOST:PORT of a --control-listen address instead")
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="with --url: send the token in FILE (xcon's --control-token-file; default "
        "$XCON_TOKEN_FILE); without it a --control-listen address only reads",
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument(
        "--timeout",
        type=CTL_TIMEOUT.arg_type(),
        default=TIMEOUT,
        help=f"seconds (default 10; {CTL_TIMEOUT})",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands():
        command = SUBCOMMANDS[name]
        one = sub.add_parser(name, help=command.help, description=command.description)
        if command.arguments is not None:
            command.arguments(one)
        _json_after(one)
    for name, (help, arguments) in VIEWS.items():
        arguments(sub.add_parser(name, help=help))
    return p


def _json_after(one: argparse.ArgumentParser) -> None:
    # --json after the command too: ctl links --json
    one.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        # netem words may come before or after the options (``impair L delay
        # 10ms --direction a2b``): argparse leaves the later ones over.
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if extra and (args.command != "impair" or any(w.startswith("-") for w in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:
            args.words = [*args.words, *extra]
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else USAGE
    path = args.control or os.environ.get("XCON_CONTROL") or DEFAULT_SOCKET
    token_file = args.token_file or os.environ.get("XCON_TOKEN_FILE")
    try:
        token = None
        if token_file and args.url:
            from xcon.control.access import read_token_file

            token = read_token_file(token_file)
        elif args.token_file:
            raise ValueError("--token-file applies to --url only (the unix socket needs none)")
    except ValueError as e:
        return _fail(str(e), USAGE)
    client = Client(path=path, url=args.url, timeout=args.timeout, token=token)
    try:
        return run(client, args)
    except Unreachable as e:
        return _fail(str(e), UNREACHABLE)
    except ValueError as e:
        return _fail(str(e), USAGE)


def run(client: Client, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "top":
        return top(client, args)
    call = plan(args)
    if call.live and cmd == "events":
        return follow_events(client, call, raw=args.json)
    if call.live:
        return stream_capture(client, call)
    status, data, _ctype = client.request(call.route.method, call.path, call.body)
    if cmd == "metrics" and status == 200:
        sys.stdout.write(data.decode(errors="replace"))
        return OK
    try:
        doc = json.loads(data) if data else {}
    except ValueError:
        return _fail(f"xcon answered {status} with something that is not JSON", REFUSED)
    if status >= 400:
        if args.json:
            print(json.dumps(doc, indent=1))
        return _fail(str(doc.get("error", f"HTTP {status}")), REFUSED)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(render(cmd, doc), end="")
    if cmd == "health":
        return OK if doc.get("code") == 0 else REFUSED
    return OK


def stop_on(*signums: int) -> None:
    """The first of ``signums`` to come raises KeyboardInterrupt (which ends a
    live capture); any after it is ignored, so that the capture's end runs."""
    import signal

    def stop(signum: int, frame: object) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt

    for s in signums:
        signal.signal(s, stop)


def stream_capture(
    client: Client, call: Call, out: int | None = None, prog: str = "xcon ctl"
) -> int:
    """``-w -``: the live capture to stdout (or the pipe ``out``: a FIFO),
    written as it comes (as ``tcpdump -U -w -``), until xcon ends it (exit
    0), the reader of the pipe goes (exit 0: xcon sees the connection close
    and stops this capture only), or an interrupt (SIGINT; :func:`stop_on`
    names others).  ``prog`` starts the line of an error."""
    import select
    import signal

    live = client.stream(call.route.method, call.path)
    if out is None:
        out = sys.stdout.fileno()
    if signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        signal.SIG_DFL,
        signal.default_int_handler,
    ):
        stop_on(signal.SIGINT)  # unless the caller chose its own
    error = bytearray()
    try:
        poll = select.poll()
        poll.register(live.fileno(), select.POLLIN)
        poll.register(out, 0)  # POLLERR: the reader of the pipe is gone
        while True:
            for fd, ev in poll.poll():
                if fd == out and ev & (select.POLLERR | select.POLLHUP):
                    return OK
            more = live.receive()
            for piece in live.take():
                if live.status >= 400:
                    error += piece
                else:
                    _write_all(out, piece)
            if not more:
                return _ended(live, error, prog)
    except BrokenPipeError:
        return OK
    except KeyboardInterrupt:
        return OK
    except OSError as e:
        raise Unreachable(f"capture from {client.where} ended: {e}") from None
    finally:
        live.close()
        # stdout may be a closed pipe: nothing more is flushed into it
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out)


def top(client: Client, args: argparse.Namespace) -> int:
    """``xcon ctl top``: the live view (:mod:`.top`), or one frame (``--once``)."""
    from xcon.control import top as view

    if not args.once and not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise ValueError("top draws on a terminal: run it in one, or use top --once")
    try:
        if args.once:
            sys.stdout.write(view.once(client))
            return OK
        view.fetch(client)  # unreachable or refused: said before the screen is taken
        view.run(client, args.interval)
    except view.Refused as e:
        return _fail(str(e), REFUSED)
    except KeyboardInterrupt:
        pass
    return OK


def follow_events(client: Client, call: Call, raw: bool) -> int:
    """``xcon ctl events``: one line per event as it comes (``--json``: the
    API's lines), until an interrupt (exit 0) or xcon goes away (exit 3)."""
    import signal

    from xcon.events import event_line

    live = client.stream(call.route.method, call.path)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    error = bytearray()
    rest = b""
    last = ""
    try:
        while True:
            more = live.receive()
            for piece in live.take():
                if live.status >= 400:
                    error += piece
                    continue
                *lines, rest = (rest + piece).split(b"\n")
                for line in lines:
                    doc = json.loads(line)
                    last = doc.get("type", "")
                    sys.stdout.write(line.decode() + "\n" if raw else event_line(doc) + "\n")
                sys.stdout.flush()
            if not more:
                break
    except KeyboardInterrupt:
        return OK
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    finally:
        live.close()
    if live.status >= 400:
        return _ended(live, error)
    if last == "events.overflow":
        return _fail("xcon dropped this client: it fell too far behind", REFUSED)
    return _fail(f"xcon at {client.where} went away: no more events", UNREACHABLE)


def _ended(live: LiveResponse, error: bytes | bytearray, prog: str = "xcon ctl") -> int:
    if live.status >= 400:
        try:
            msg = json.loads(error).get("error", f"HTTP {live.status}")
        except ValueError:
            msg = f"HTTP {live.status}"
        return _fail(str(msg), REFUSED, prog)
    if live.complete:
        return OK
    return _fail("xcon closed the connection", REFUSED, prog)


def _write_all(fd: int, data: bytes) -> None:
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv) :]


def _fail(message: str, code: int, prog: str = "xcon ctl") -> int:
    from xcon.errors import one_line

    print(f"{prog}: {one_line(message)}", file=sys.stderr)
    return code
