"""``xcon ctl``: the control API from a shell (human tables, or ``--json``).

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
import http.client
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from xcon.control import DEFAULT_SOCKET
from xcon.limits import CAPTURE_FILES, CAPTURE_SECONDS, CAPTURE_SIZE_MB, CTL_TIMEOUT, SNAPLEN

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
TIMEOUT = 10.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Unreachable(Exception):
    pass


class Client:
    """One request at a time to xcon's control API."""

    def __init__(
        self,
        path: str | None = None,
        url: str | None = None,
        timeout: float = TIMEOUT,
        token: str | None = None,
    ):
        self.path = path
        self.url = url
        self.timeout = timeout
        #: Sent as ``Authorization: Bearer`` (changes on a --control-listen address).
        self.token = token

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def where(self) -> str:
        return self.url or os.path.abspath(self.path or DEFAULT_SOCKET)

    def _conn(self) -> http.client.HTTPConnection:
        if self.url:
            u = urlsplit(self.url)
            if u.scheme != "http" or not u.hostname:
                raise ValueError(f"--url {self.url!r}: expected http://HOST:PORT")
            return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.timeout)
        return UnixHTTPConnection(self.path or DEFAULT_SOCKET, timeout=self.timeout)

    def connect(self) -> socket.socket:
        """A connected blocking socket to xcon (for a streamed answer)."""
        if self.url:
            u = urlsplit(self.url)
            if u.scheme != "http" or not u.hostname:
                raise ValueError(f"--url {self.url!r}: expected http://HOST:PORT")
            return socket.create_connection((u.hostname, u.port or 80), timeout=self.timeout)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path or DEFAULT_SOCKET)
        except OSError:
            s.close()
            raise
        s.settimeout(None)
        return s

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str]:
        """(status, body, content type); raises Unreachable."""
        conn = self._conn()
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        headers.update(self.auth_headers)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException) as e:
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise Unreachable(f"cannot reach xcon at {self.where}: {why}") from None
        finally:
            conn.close()


def link_path(name: str, action: str = "") -> str:
    return "/links/" + quote(name, safe="") + (f"/{action}" if action else "")


def monitors_arg(items: Sequence[str] | None) -> dict[str, str] | None:
    """``--monitor END=HOST:PORT[,NETDEV]`` options as the API's ``monitors``."""
    if not items:
        return None
    out = {}
    for item in items:
        end, sep, mon = item.partition("=")
        if not sep or not end or not mon:
            raise ValueError(f"--monitor {item!r}: expected END=HOST:PORT[,NETDEV]")
        out[end] = mon
    return out


CLAB_FLAGS = ("delay", "jitter", "loss", "rate", "corruption")


def impair_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request body of ``xcon ctl impair``, checked here (a bad word is a
    usage error, exit 2, before xcon is asked)."""
    from xcon.impair.spec import from_fields, parse_netem

    flags = {k: getattr(args, k) for k in CLAB_FLAGS if getattr(args, k) is not None}
    body: dict[str, Any] = {"direction": args.direction}
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


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    sub.add_parser("links", help="every link: ends, state, rates, counters")
    sub.add_parser("status", help="version, engine, uptime")
    one = sub.add_parser("link", help="one link in detail")
    one.add_argument("name")
    add = sub.add_parser("add", help="add a p2p link (same syntax as --p2p)")
    add.add_argument("spec")
    add.add_argument("--monitor", action="append", metavar="END=HOST:PORT[,NETDEV]")
    add.add_argument("--down", action="store_true", help="add it with the cable pulled")
    rm = sub.add_parser("remove", help="remove a link (its connections only)")
    rm.add_argument("name")
    for action in ("down", "up"):
        a = sub.add_parser(action, help=f"set a p2p link administratively {action}")
        a.add_argument("name")
        a.add_argument(
            "--monitor",
            action="append",
            metavar="END=HOST:PORT[,NETDEV]",
            help="a router's qemu monitor: its NIC is set_link off/on too (remembered)",
        )
    imp = sub.add_parser(
        "impair",
        help="impair a p2p link live with tc-netem's words (delay 10ms 2ms loss 1%% ...)",
        description="Impair a p2p link live: tc-netem's words (delay TIME [JITTER [CORR]] "
        "distribution D, loss [random] P [CORR], loss gemodel p [r [1-h [1-k]]], duplicate P, "
        "corrupt P, reorder P [CORR] gap N, rate RATE, limit N) or containerlab's flags; "
        "--clear removes it.",
    )
    imp.add_argument("name")
    imp.add_argument("words", nargs="*", help="tc-netem's words")
    imp.add_argument("--direction", default="both", choices=["a2b", "b2a", "both"])
    imp.add_argument("--clear", action="store_true", help="remove the impairment")
    imp.add_argument("--delay", metavar="TIME", help="as containerlab: 10ms (a number: ms)")
    imp.add_argument("--jitter", metavar="TIME", help="as containerlab: 2ms (a number: ms)")
    imp.add_argument("--loss", metavar="PERCENT", help="as containerlab: 1 (percent)")
    imp.add_argument("--rate", metavar="KBIT", help="as containerlab: kbit/s (or 100mbit)")
    imp.add_argument("--corruption", metavar="PERCENT", help="as containerlab: percent")
    reset = sub.add_parser("reset", help="counters back to zero (all, or one link)")
    reset.add_argument("name", nargs="?")
    sub.add_parser("health", help="the health summary (exit code 0 healthy, 1 not)")
    sub.add_parser("metrics", help="the Prometheus metrics")
    sub.add_parser("reload", help="apply the --config file's changes (as SIGHUP)")
    cap = sub.add_parser(
        "capture",
        help="capture a p2p link to pcapng: -w NAME (xcon writes NAME in its capture "
        "directory, xcon --capture-dir, until --stop) or -w - (live, to stdout, until "
        "interrupted: | tcpdump -r - or | wireshark -k -i -)",
    )
    cap.add_argument("name")
    what = cap.add_mutually_exclusive_group(required=True)
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
    cap.add_argument(
        "--snaplen",
        type=SNAPLEN.arg_type(),
        metavar="BYTES",
        help=f"keep at most BYTES per frame ({SNAPLEN})",
    )
    cap.add_argument("--filter", metavar="EXPR", help="a tcpdump (BPF) expression")
    cap.add_argument("--no-drops", action="store_true", help="leave out the frames xcon drops")
    cap.add_argument(
        "--size",
        type=CAPTURE_SIZE_MB.arg_type(),
        metavar="MB",
        help=f"ring: a new file before MB ({CAPTURE_SIZE_MB})",
    )
    cap.add_argument(
        "--seconds",
        type=CAPTURE_SECONDS.arg_type(),
        metavar="S",
        help=f"ring: a new file every S ({CAPTURE_SECONDS})",
    )
    cap.add_argument(
        "--files",
        type=CAPTURE_FILES.arg_type(),
        metavar="N",
        help=f"ring: keep the newest N files ({CAPTURE_FILES})",
    )
    cap.add_argument("--overwrite", action="store_true", help="replace the file NAME if it exists")
    for command in sub.choices.values():  # --json after the command too: ctl links --json
        command.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON"
        )
    return p


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


def stream_capture(client: Client, args: argparse.Namespace) -> int:
    """``-w -``: the live capture to stdout, written as it comes (as
    ``tcpdump -U -w -``), until xcon ends it (exit 0), the reader of stdout
    goes (exit 0: xcon sees the connection close and stops this capture
    only), or an interrupt."""
    import select
    import signal
    from urllib.parse import urlencode

    import h11

    q = capture_query(args)
    if "drops" in q:
        q["drops"] = "false"
    if any(k in q for k in ("size_mb", "seconds", "files")) or args.overwrite:
        raise ValueError("--size, --seconds, --files and --overwrite apply to -w NAME only")
    target = link_path(args.name, "capture") + (f"?{urlencode(q)}" if q else "")
    try:
        sock = client.connect()
    except OSError as e:
        raise Unreachable(f"cannot reach xcon at {client.where}: {e.strerror or e}") from None
    conn = h11.Connection(h11.CLIENT)
    out = sys.stdout.fileno()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    error = bytearray()
    try:
        sock.sendall(
            conn.send(
                h11.Request(
                    method="GET",
                    target=target,
                    headers=[("Host", "xcon"), *client.auth_headers.items()],
                )
            )
        )
        sock.sendall(conn.send(h11.EndOfMessage()))
        poll = select.poll()
        poll.register(sock.fileno(), select.POLLIN)
        poll.register(out, 0)  # POLLERR: the reader of the pipe is gone
        while True:
            for fd, ev in poll.poll():
                if fd == out and ev & (select.POLLERR | select.POLLHUP):
                    return OK
            data = sock.recv(256 * 1024)
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    if status >= 400:
                        error += event.data
                    else:
                        _write_all(out, event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    if status >= 400:
                        try:
                            msg = json.loads(error).get("error", f"HTTP {status}")
                        except ValueError:
                            msg = f"HTTP {status}"
                        return _fail(str(msg), REFUSED)
                    return OK
            if not data:
                return _fail("xcon closed the connection", REFUSED)
    except BrokenPipeError:
        return OK
    except KeyboardInterrupt:
        return OK
    except (OSError, h11.ProtocolError) as e:
        raise Unreachable(f"capture from {client.where} ended: {e}") from None
    finally:
        sock.close()
        # stdout may be a closed pipe: nothing more is flushed into it
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out)


def _write_all(fd: int, data: bytes) -> None:
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv) :]


def _fail(message: str, code: int) -> int:
    from xcon.errors import one_line

    print(f"xcon ctl: {one_line(message)}", file=sys.stderr)
    return code


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


def run(client: Client, args: argparse.Namespace) -> int:
    cmd = args.command
    method, path, body = "GET", "/", None
    if cmd == "capture" and args.write == "-":
        return stream_capture(client, args)
    if cmd == "capture":
        path = link_path(args.name, "capture")
        if args.stop:
            method = "DELETE"
        elif args.list:
            path = link_path(args.name)
        else:
            method = "POST"
            body = {"file": capture_file_arg(args.write), **capture_query(args)}
            if args.overwrite:
                body["overwrite"] = True
    elif cmd == "links":
        path = "/links"
    elif cmd == "link":
        path = link_path(args.name)
    elif cmd == "add":
        method, path = "POST", "/links"
        body = {"spec": args.spec, "admin": "down" if args.down else "up"}
        mons = monitors_arg(args.monitor)
        if mons:
            body["monitors"] = mons
    elif cmd == "remove":
        method, path = "DELETE", link_path(args.name)
    elif cmd in ("down", "up"):
        method, path = "POST", link_path(args.name, cmd)
        mons = monitors_arg(args.monitor)
        body = {"monitors": mons} if mons else {}
    elif cmd == "impair":
        method, path = "PUT", link_path(args.name, "impair")
        body = impair_body(args)
        if args.clear:
            method = "DELETE"
    elif cmd == "reset":
        method, path = "POST", "/counters/reset"
        body = {"link": args.name} if args.name else {}
    elif cmd == "health":
        path = "/health"
    elif cmd == "metrics":
        path = "/metrics"
    elif cmd == "reload":
        method, path = "POST", "/reload"
    status, data, ctype = client.request(method, path, body)
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


# -- human output ----------------------------------------------------------------------------


def _si(x: float, unit: str) -> str:
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.1f}{prefix}{unit}"
    return f"{x:.0f}{unit}"


def _drops(end: dict[str, Any]) -> str:
    d = {**end.get("rx_drops", {}), **end.get("tx_drops", {})}
    return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "0"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def links_table(links: list[dict[str, Any]]) -> str:
    if not links:
        return "no links\n"
    rows = [
        [
            "LINK",
            "ADMIN",
            "END",
            "STATE",
            "PEER",
            "RX/s",
            "TX/s",
            "RX",
            "TX",
            "DROPS",
            "IMPAIR",
            "CAPTURE",
        ]
    ]
    for link in links:
        impair = link.get("impair") or {}
        for i, end in enumerate(link["ends"]):
            # the impairment of what this end sends (a2b leaves the first end)
            words = impair.get("a2b" if i == 0 else "b2a") if len(link["ends"]) == 2 else None
            rows.append(
                [
                    link["name"] if i == 0 else "",
                    link["admin"] if i == 0 else "",
                    end["name"],
                    end["state"],
                    end["peer"] or "-",
                    _si(end["rx_frames_per_s"], "f"),
                    _si(end["tx_frames_per_s"], "f"),
                    str(end["rx_frames"]),
                    str(end["tx_frames"]),
                    _drops(end),
                    words or "-",
                    _captures(link) if i == 0 else "",
                ]
            )
    return table(rows)


def _captures(link: dict[str, Any]) -> str:
    """``2 (drops 5)``: the link's running captures and their drops, and
    ``1 failed`` for those that failed; ``-`` for none."""
    caps = link.get("captures") or []
    running = [c for c in caps if c.get("state", "running") == "running"]
    failed = len(caps) - len(running)
    text = f"{len(running)} (drops {sum(c['drops'] for c in running)})" if running else ""
    if failed:
        text += f"{', ' if text else ''}{failed} failed"
    return text or "-"


def link_detail(link: dict[str, Any]) -> str:
    lines = [
        f"link {link['name']} ({link['kind']}, from {link['source']}): admin {link['admin']}, "
        f"{link['state']}" + (f", VLAN {link['vlan']} access port" if link.get("vlan") else "")
    ]
    for end in link["ends"]:
        lines.append(
            f"  end {end['name']}: {end['state']}"
            + (f", peer {end['peer']}" if end["peer"] else "")
            + (f", monitor {end['monitor']}" if end.get("monitor") else "")
        )
        lines.append(
            f"    rx {end['rx_frames']} frames {end['rx_bytes']} bytes "
            f"({_si(end['rx_frames_per_s'], 'f/s')}, {_si(end['rx_bits_per_s'], 'bit/s')}); "
            f"tx {end['tx_frames']} frames {end['tx_bytes']} bytes "
            f"({_si(end['tx_frames_per_s'], 'f/s')}, {_si(end['tx_bits_per_s'], 'bit/s')})"
        )
        lines.append(
            f"    drops {_drops(end)}; connects {end['connects']}, reconnects "
            f"{end['reconnects']}, disconnects {end['disconnects']}"
            + (f", last error: {end['last_error']}" if end.get("last_error") else "")
        )
    for c in link.get("captures", []):
        lines.append("  " + capture_line(c).rstrip())
    for d, words in (link.get("impair") or {}).items():
        if words:
            lines.append(f"  impair {d}: {words}")
    for direction in link.get("directions", []):
        events = direction.get("events") or {}
        if events:
            lines.append(
                f"  {direction['name']}: "
                + ", ".join(f"{k} {v}" for k, v in sorted(events.items()))
            )
        late = direction.get("late")
        if late and late.get("frames"):
            lines.append(f"  {direction['name']}: {late_line(late)}")
    return "\n".join(lines) + "\n"


def late_line(late: dict[str, Any]) -> str:
    """``delay line: 1000 frames released, mean 41 us late, 99.2% within 200 us``."""
    n = late["frames"]
    at_most = late.get("at_most_us") or {}
    within = at_most.get("200", n)
    return (
        f"delay line: {n} frames released, mean {late['mean_us']:g} us late, "
        f"{100.0 * within / n:.1f}% within 200 us"
    )


def capture_line(c: dict[str, Any], verb: str = "") -> str:
    if not verb and c.get("state") == "failed":
        verb = "failed "
    where = c.get("file") or "stream"
    files = c.get("files") or []
    if c.get("ring") and files:
        where += f" ({len(files)} file(s), last {files[-1]})"
    extra = "".join(f", {k} {c[k]}" for k in ("snaplen", "filter") if c.get(k) not in (None, 0, ""))
    err = f", error: {c['error']}" if c.get("error") else ""
    return (
        f"{verb}capture {c['id']} of {c['link']} to {where}: {c['frames']} frames, "
        f"{c['drops']} dropped{extra}{err}\n"
    )


def render(cmd: str, doc: dict[str, Any]) -> str:
    if cmd == "links":
        return links_table(doc["links"])
    if cmd in ("link", "add", "down", "up", "impair"):
        return link_detail(doc)
    if cmd == "remove":
        return f"removed {doc['removed']}\n"
    if cmd == "capture":
        if "stopped" in doc:
            return "".join(
                capture_line(c, "cleared " if c.get("state") == "failed" else "stopped ")
                for c in doc["stopped"]
            )
        if "ends" in doc:
            return "".join(capture_line(c) for c in doc.get("captures", [])) or "no captures\n"
        return capture_line(doc, "capturing ")
    if cmd == "reset":
        return f"counters reset: {len(doc['reset'])} link(s)\n"
    if cmd == "health":
        text = f"{doc['code']}\n{doc['message']}\n"
        if doc.get("file_error"):
            text += f"health file: {doc['file_error']}\n"
        return text
    if cmd == "reload":
        text = (
            f"added {len(doc['added'])}, removed {len(doc['removed'])}, changed "
            f"{len(doc['changed'])}, unchanged {doc['unchanged']}"
        )
        for what in ("added", "removed", "changed"):
            for name in doc[what]:
                text += f"\n  {what} {name}"
        for f in doc.get("failed", []):
            text += f"\n  failed {f['link']}: {f['error']}"
        return text + "\n"
    # status
    return "".join(f"{k}: {v}\n" for k, v in doc.items() if k != "routes")
