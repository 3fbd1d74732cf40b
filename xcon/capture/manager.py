"""The captures of a running xcon, by link: start, stop, list; taps set on a
link's flows while it has a capture and removed when it has none left.

A link's captures stop when the link is removed (their files end with the
statistics).  ``--capture DIR`` (:meth:`Captures.capture_all`) captures
every p2p link, those added later included, to ``DIR/<link>.pcapng``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from xcon.app import Link, Xcon, end_name
from xcon.bridges.p2p import P2PLink
from xcon.capture.bpf import FilterError, compile_filter
from xcon.capture.capture import Capture, CaptureTap, Sink
from xcon.capture.options import CaptureOptions
from xcon.capture.sinks import FileSink, StreamSink
from xcon.errors import BadRequest, Conflict, NotFound

log = logging.getLogger("xcon.capture")

#: Captures at once on one link (each has its own buffer).
MAX_PER_LINK = 8
#: Seconds xcon waits at exit for a capture file's last bytes.
CLOSE_WAIT = 5.0


def file_name(link: str) -> str:
    """A link's file in ``--capture DIR``: ``vr1/1--vr2/1:10`` -> ``vr1_1--vr2_1_10.pcapng``."""
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in link)
    return safe + ".pcapng"


class Captures:
    """Every capture of one :class:`~xcon.app.Xcon` (a service: closed at exit)."""

    def __init__(self, app: Xcon) -> None:
        self.app = app
        self.by_link: dict[str, list[Capture]] = {}
        self.next_id = 1
        self.directory: str | None = None
        self.directory_options = CaptureOptions()
        #: Totals of captures that ended, for the metrics (link name -> frames, drops).
        app.link_added.append(self._link_added)
        app.link_removed.append(self._link_removed)
        app.services.append(self)

    # -- starting and stopping ----------------------------------------------------
    def start_file(
        self, name: str, path: str, options: CaptureOptions, source: str = "api"
    ) -> Capture:
        """Capture link ``name`` to ``path`` (a ring with ``options.ring``).
        Raises NotFound, BadRequest (options, filter), Conflict (the file
        cannot be opened, too many captures)."""
        link = self._p2p(name)
        check_options(options)
        try:
            sink = FileSink(path, size=options.size, seconds=options.seconds, files=options.files)
        except OSError as e:
            raise Conflict(f"cannot write {path}: {e.strerror or e}") from None
        return self._start(link, sink, options, source)

    def start_stream(self, name: str, options: CaptureOptions) -> tuple[Capture, StreamSink]:
        link = self._p2p(name)
        check_options(options)
        if options.ring:
            raise BadRequest("ring options (size, seconds, files) apply to captures to a file")
        sink = StreamSink()
        cap = self._start(link, sink, options, "stream")
        sink.on_gone = lambda: self.stop_one(cap, "the reader went away")
        return cap, sink

    def _start(self, link: Link, sink: Sink, options: CaptureOptions, source: str) -> Capture:
        caps = self.by_link.setdefault(link.name, [])
        bridge = link.bridge
        assert isinstance(bridge, P2PLink) and link.spec is not None
        names = [end_name(link.spec.left), end_name(link.spec.right)]
        cap = Capture(
            self.app.engine, link.name, names, options, sink, ident=self.next_id, source=source
        )
        self.next_id += 1
        cap.on_end = self._ended
        caps.append(cap)
        if len(caps) == 1:
            a, b = bridge.a, bridge.b
            bridge.flows[a].tap = CaptureTap(caps, out_if=1, in_if=0)
            bridge.flows[b].tap = CaptureTap(caps, out_if=0, in_if=1)
        what = sink.describe()
        log.info(
            "capture %d of %s started (%s%s%s)",
            cap.ident,
            link.name,
            what.get("file") or "stream",
            f", snaplen {options.snaplen}" if options.snaplen else "",
            f", filter {options.filter!r}" if options.filter else "",
        )
        return cap

    def stop(self, name: str) -> list[Capture]:
        """Stop every capture of link ``name``; raises NotFound."""
        link = self.app.find(name)
        caps = list(self.by_link.get(link.name, ()))
        if not caps:
            raise NotFound(f"no capture on link {link.name}")
        for cap in caps:
            self.stop_one(cap, "stopped")
        return caps

    def stop_one(self, cap: Capture, why: str) -> None:
        if cap.active:
            log.info(
                "capture %d of %s %s: %d frames, %d dropped",
                cap.ident,
                cap.link,
                why,
                cap.frames,
                cap.drops,
            )
            cap.stop()

    def _ended(self, cap: Capture) -> None:
        caps = self.by_link.get(cap.link)
        if caps is None or cap not in caps:
            return
        caps.remove(cap)  # the taps hold this same list
        if not caps:
            del self.by_link[cap.link]
            link = self.app.links.get(cap.link)
            if link is not None and isinstance(link.bridge, P2PLink):
                for flow in link.bridge.flows.values():
                    flow.tap = None

    def for_link(self, name: str) -> list[Capture]:
        return list(self.by_link.get(name, ()))

    def all(self) -> list[Capture]:
        return [c for caps in self.by_link.values() for c in caps]

    # -- every link to a directory --------------------------------------------------
    def capture_all(self, directory: str, options: CaptureOptions) -> None:
        """Capture every p2p link present and to come into ``directory``."""
        self.directory = os.path.abspath(directory)
        self.directory_options = options
        for link in list(self.app.links.values()):
            self._link_added(link)

    def _link_added(self, link: Link) -> None:
        if self.directory is None or link.p2p is None:
            return
        path = os.path.join(self.directory, file_name(link.name))
        try:
            self.start_file(link.name, path, self.directory_options, source="directory")
        except (Conflict, BadRequest, NotFound) as e:
            log.error("capture of %s: %s", link.name, e)

    def _link_removed(self, link: Link) -> None:
        for cap in list(self.by_link.get(link.name, ())):
            self.stop_one(cap, "ended: link removed")

    # -- the end ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything; wait (a bounded time) for the files' last bytes."""
        caps = self.all()
        for cap in caps:
            self.stop_one(cap, "ended: xcon stops")
        for cap in caps:
            if isinstance(cap.sink, FileSink):
                cap.sink.join(CLOSE_WAIT)

    def _p2p(self, name: str) -> Link:
        link = self.app.find(name)
        if link.p2p is None:
            raise Conflict(f"{link.name} is not a p2p link: only p2p links can be captured")
        if len(self.by_link.get(link.name, ())) >= MAX_PER_LINK:
            raise Conflict(f"link {link.name} has {MAX_PER_LINK} captures already")
        return link

    def describe(self, name: str) -> list[dict[str, Any]]:
        return [c.describe() for c in self.for_link(name)]


def captures_of(app: Xcon) -> Captures:
    """``app``'s captures (made on first use)."""
    if app.captures is None:
        app.captures = Captures(app)
    assert isinstance(app.captures, Captures)
    return app.captures


def check_options(o: CaptureOptions) -> None:
    """Raise BadRequest for options out of range (the command line checks
    first) or a filter that does not compile (or no libpcap for it)."""
    from xcon.capture.options import OutOfRange, check_ranges

    try:
        check_ranges(o)
    except OutOfRange as e:
        raise BadRequest(str(e)) from None
    if o.files and not o.ring:
        raise BadRequest("files (how many ring files to keep) needs size or seconds")
    if o.filter is not None:
        try:
            compile_filter(o.filter)
        except FilterError as e:
            raise BadRequest(str(e)) from None
