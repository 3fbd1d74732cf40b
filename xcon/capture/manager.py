"""The captures of a running xcon, by link: start, stop, list; taps set on
every flow of a link (p2p or hub: ``Bridge.directions``) while it has a
capture, and removed when it has none left.

A link's captures stop when the link is removed (their files end with the
statistics).  ``--capture DIR`` (:meth:`Captures.capture_all`) captures
every link (hubs too), those added later included, to ``DIR/<link>.pcapng``.

**Where files go** (docs/capture.md).  The operator's paths (the command
line, the config file, ``--capture DIR``: :meth:`Captures.start_file`) are
used as given.  A file asked for through the API (:meth:`Captures.start_named`)
is a NAME (:func:`check_name`) in the capture directory (``--capture-dir``,
by default ``captures/`` in the working directory, made mode 0700 when first
needed), opened relative to it: never outside it, never through a symbolic
link, never over an existing file unless the request says ``overwrite``
(see :class:`~xcon.capture.sinks.FileSink`).  One capture per file: a path
another capture writes (compared as real paths, across links) is refused.

**Captures that fail** (a write error, the writer thread's death) stay
listed under their link with their error, the last :data:`MAX_FAILED` of
each link, until ``DELETE /links/NAME/capture`` clears them or the link is
removed; :attr:`Captures.errors` counts them for the metrics.

**Filters** asked for through the API are compiled off the loop
(:class:`FilterCompiler`), one at a time and within :data:`FILTER_SECONDS`.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable

from xcon.app import Link, Xcon, end_name
from xcon.capture import bpf as bpf_mod
from xcon.capture.bpf import BpfFilter, FilterError, compile_filter
from xcon.capture.capture import Capture, CaptureTap, Sink
from xcon.capture.options import CaptureOptions
from xcon.capture.sinks import FileSink, NotRegularFile, StreamSink
from xcon.engines import Engine, TimerHandle
from xcon.errors import BadRequest, Conflict, NotFound

log = logging.getLogger("xcon.capture")

#: Captures at once on one link (each has its own buffer).
MAX_PER_LINK = 8
#: Failed captures kept per link (the oldest forgotten first).
MAX_FAILED = 8
#: Seconds xcon waits at exit for a capture file's last bytes.
CLOSE_WAIT = 5.0
#: The capture directory when ``--capture-dir`` is not given (in the working directory).
DEFAULT_DIR = "captures"
#: Longest file name an API request may give (ring files add ``-00001``).
MAX_NAME = 200
#: Longest an API request waits for its filter to compile (seconds); longer is refused.
FILTER_SECONDS = 2.0
#: Filters waiting to be compiled at most; more are refused at once.
FILTER_QUEUE = 16
#: Filters that took too long, remembered (refused at once when asked again).
SLOW_KEPT = 64


def file_name(link: str) -> str:
    """A link's file in ``--capture DIR``: ``vr1/1--vr2/1:10`` -> ``vr1_1--vr2_1_10.pcapng``."""
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in link)
    return safe + ".pcapng"


def check_name(name: object) -> str:
    """An API request's ``file``: a plain NAME in the capture directory;
    raises BadRequest."""
    if not isinstance(name, str) or not name:
        raise BadRequest('"file" is a file name in xcon\'s capture directory, e.g. "r1r2.pcapng"')
    if "/" in name or ".." in name or name.startswith("."):
        raise BadRequest(
            '"file" is a name, without "/" or "..", not starting with ".": files go into '
            "xcon's capture directory (xcon --capture-dir)"
        )
    if len(name) > MAX_NAME:
        raise BadRequest(f'"file" is a name of at most {MAX_NAME} characters')
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest('"file" has a control character')
    return name


class Captures:
    """Every capture of one :class:`~xcon.app.Xcon` (a service: closed at exit)."""

    def __init__(self, app: Xcon, capture_dir: str | None = None) -> None:
        self.app = app
        self.by_link: dict[str, list[Capture]] = {}
        #: Captures that failed, by link, oldest first (see the module docstring).
        self.failed: dict[str, list[Capture]] = {}
        #: Captures that failed, counted by link (the metrics).
        self.errors: dict[str, int] = {}
        self.next_id = 1
        self.directory: str | None = None
        self.directory_options = CaptureOptions()
        #: Where the files of API requests go (``--capture-dir``).
        self.capture_dir = os.path.abspath(capture_dir or DEFAULT_DIR)
        #: File captures whose writer may still write: (real path, capture).
        self._writing: list[tuple[str, Capture]] = []
        self.filters = FilterCompiler(app.engine)
        app.link_added.append(self._link_added)
        app.link_removed.append(self._link_removed)
        app.services.append(self)

    # -- starting and stopping ----------------------------------------------------
    def start_file(
        self,
        name: str,
        path: str,
        options: CaptureOptions,
        source: str = "command line",
        bpf: BpfFilter | None = None,
    ) -> Capture:
        """Capture link ``name`` to the operator's ``path`` (a ring with
        ``options.ring``).  Raises NotFound, BadRequest (options, filter),
        Conflict (the file cannot be opened or is being written, too many
        captures)."""
        link = self._link(name)
        check_options(options)
        bpf = _filter(options, bpf)
        real = os.path.realpath(path)
        self._check_free(real, path)
        try:
            sink = FileSink(path, size=options.size, seconds=options.seconds, files=options.files)
        except OSError as e:
            raise Conflict(f"cannot write {path}: {e.strerror or e}") from None
        cap = self._start(link, sink, options, source, bpf)
        self._writing.append((real, cap))
        return cap

    def start_named(
        self,
        name: str,
        file: str,
        options: CaptureOptions,
        *,
        overwrite: bool = False,
        bpf: BpfFilter | None = None,
    ) -> Capture:
        """Capture link ``name`` to ``file``, a name in the capture directory
        (an API request: see the module docstring).  Raises as
        :meth:`start_file`; error messages name ``file`` only."""
        self.check_named(name, file, options)
        link = self._link(name)
        bpf = _filter(options, bpf)
        real = os.path.join(os.path.realpath(self.capture_dir), file)
        self._check_free(real, file)
        dir_fd = self._open_dir()
        try:  # the sink owns dir_fd from here (and closes it when it fails)
            sink = FileSink(
                file,
                size=options.size,
                seconds=options.seconds,
                files=options.files,
                directory=(self.capture_dir, dir_fd),
                overwrite=overwrite,
            )
        except OSError as e:
            raise Conflict(_open_error(file, e)) from None
        cap = self._start(link, sink, options, "api", bpf)
        self._writing.append((real, cap))
        return cap

    def check_named(self, name: str, file: object, options: CaptureOptions) -> None:
        """What :meth:`start_named` checks before its filter is compiled."""
        self._link(name)
        check_options(options)
        check_name(file)

    def start_stream(
        self, name: str, options: CaptureOptions, bpf: BpfFilter | None = None
    ) -> tuple[Capture, StreamSink]:
        self.check_stream(name, options)
        link = self._link(name)
        bpf = _filter(options, bpf)
        sink = StreamSink()
        cap = self._start(link, sink, options, "stream", bpf)
        sink.on_gone = lambda: self.stop_one(cap, "the reader went away")
        return cap, sink

    def check_stream(self, name: str, options: CaptureOptions) -> None:
        """What :meth:`start_stream` checks before its filter is compiled."""
        self._link(name)
        check_options(options)
        if options.ring:
            raise BadRequest("ring options (size, seconds, files) apply to captures to a file")

    def _start(
        self, link: Link, sink: Sink, options: CaptureOptions, source: str, bpf: BpfFilter | None
    ) -> Capture:
        caps = self.by_link.setdefault(link.name, [])
        names = [end_name(e) for e in link.ends]
        cap = Capture(
            self.app.engine,
            link.name,
            names,
            options,
            sink,
            ident=self.next_id,
            source=source,
            bpf=bpf,
        )
        self.next_id += 1
        cap.on_end = self._ended
        caps.append(cap)
        if len(caps) == 1:
            for d in link.bridge.directions():
                d.flow.set_tap(CaptureTap(caps, out_if=d.to_end, in_if=d.from_end))
        where = sink.describe().get("file") or "stream"
        log.info(
            "capture %d of %s started (%s%s%s)",
            cap.ident,
            link.name,
            where,
            f", snaplen {options.snaplen}" if options.snaplen else "",
            f", filter {options.filter!r}" if options.filter else "",
        )
        self.app.events.emit(
            "capture.started",
            link.name,
            reason=f"capture {cap.ident} to {where}",
            capture=cap.ident,
            file=None if where == "stream" else where,
        )
        return cap

    def _open_dir(self) -> int:
        """The capture directory, open (made, mode 0700, if missing)."""
        try:
            os.mkdir(self.capture_dir, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise Conflict(
                f"cannot make the capture directory {self.capture_dir}: {e.strerror or e}"
            ) from None
        else:
            log.info("capture directory %s made (mode 0700)", self.capture_dir)
        try:
            fd = os.open(self.capture_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise Conflict(
                f"cannot open the capture directory {self.capture_dir}: {e.strerror or e}"
            ) from None
        return fd

    def _check_free(self, real: str, shown: str) -> None:
        """Conflict when a capture writes ``real`` (a real path) already."""
        self._writing = [(p, c) for p, c in self._writing if c.active or not _closed(c)]
        for path, cap in self._writing:
            assert isinstance(cap.sink, FileSink)
            if real == path or real in {os.path.realpath(f) for f in list(cap.sink.files)}:
                raise Conflict(f"{shown} is being written by capture {cap.ident} of {cap.link}")

    def stop(self, name: str) -> list[Capture]:
        """Stop every capture of link ``name`` and forget those that failed
        (returned after the others); raises NotFound when there is none."""
        link = self.app.find(name)
        caps = list(self.by_link.get(link.name, ()))
        failed = self.failed.pop(link.name, [])
        if not caps and not failed:
            raise NotFound(f"no capture on link {link.name}")
        for cap in caps:
            self.stop_one(cap, "stopped")
        return caps + failed

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
            self._emit_stopped(cap, why)

    def _emit_stopped(self, cap: Capture, why: str) -> None:
        self.app.events.emit(
            "capture.stopped", cap.link, reason=f"capture {cap.ident} {why}", capture=cap.ident
        )

    def _ended(self, cap: Capture) -> None:
        caps = self.by_link.get(cap.link)
        if caps is not None and cap in caps:
            caps.remove(cap)  # the taps hold this same list
            if not caps:
                del self.by_link[cap.link]
                link = self.app.links.get(cap.link)
                if link is not None:
                    for d in link.bridge.directions():
                        d.flow.set_tap(None)
        if cap.error is not None and cap.link in self.app.links:
            failed = self.failed.setdefault(cap.link, [])
            if cap not in failed:
                self._emit_stopped(cap, f"failed: {cap.error}")
                failed.append(cap)
                del failed[:-MAX_FAILED]
                self.errors[cap.link] = self.errors.get(cap.link, 0) + 1

    def for_link(self, name: str) -> list[Capture]:
        """The link's captures: those running, then those that failed."""
        return list(self.by_link.get(name, ())) + self.failed.get(name, [])

    def failed_of(self, name: str) -> list[Capture]:
        return list(self.failed.get(name, ()))

    def all(self) -> list[Capture]:
        return [c for caps in self.by_link.values() for c in caps]

    # -- every link to a directory --------------------------------------------------
    def capture_all(self, directory: str, options: CaptureOptions) -> None:
        """Capture every link present and to come into ``directory``."""
        self.directory = os.path.abspath(directory)
        self.directory_options = options
        for link in list(self.app.links.values()):
            self._link_added(link)

    def _link_added(self, link: Link) -> None:
        if self.directory is None:
            return
        path = os.path.join(self.directory, file_name(link.name))
        try:
            self.start_file(link.name, path, self.directory_options, source="directory")
        except (Conflict, BadRequest, NotFound) as e:
            log.error("capture of %s: %s", link.name, e)

    def _link_removed(self, link: Link) -> None:
        for cap in list(self.by_link.get(link.name, ())):
            self.stop_one(cap, "ended: link removed")
        self.failed.pop(link.name, None)
        self.errors.pop(link.name, None)

    # -- the end ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything; wait (a bounded time) for the files' last bytes."""
        caps = self.all()
        for cap in caps:
            self.stop_one(cap, "ended: xcon stops")
        for cap in caps:
            if isinstance(cap.sink, FileSink):
                cap.sink.join(CLOSE_WAIT)
        self.filters.close()

    def _link(self, name: str) -> Link:
        link = self.app.find(name)
        if len(self.by_link.get(link.name, ())) >= MAX_PER_LINK:
            raise Conflict(f"link {link.name} has {MAX_PER_LINK} captures already")
        return link


def _filter(options: CaptureOptions, bpf: BpfFilter | None) -> BpfFilter | None:
    """The compiled filter of ``options`` (``bpf`` when given, else compiled
    here, or kept from before); raises BadRequest."""
    if bpf is not None or not options.filter:
        return bpf
    try:
        return compile_filter(options.filter)
    except FilterError as e:
        raise BadRequest(str(e)) from None


def _closed(cap: Capture) -> bool:
    """Whether the capture's writer is done with its file."""
    return isinstance(cap.sink, FileSink) and cap.sink.closed.is_set()


def _open_error(file: str, e: OSError) -> str:
    """Why ``file`` (in the capture directory) cannot be written, in one line."""
    if isinstance(e, NotRegularFile):
        return f"{file} is in the capture directory and not a regular file: not replaced"
    if e.errno == errno.EEXIST:
        return f'{file} exists in the capture directory ("overwrite": true replaces it)'
    if e.errno == errno.ELOOP:
        return f"{file} is a symbolic link in the capture directory: not followed"
    return f"cannot write {file} in the capture directory: {e.strerror or e}"


class _Job:
    """One expression to compile and the requests waiting for it."""

    __slots__ = ("expression", "waiting", "timer", "started", "done")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.waiting: list[Callable[[BpfFilter | None, BaseException | None], None]] = []
        self.timer: TimerHandle | None = None
        self.started = False
        self.done = False


class FilterCompiler:
    """Compiles the API's capture filters off the loop (libpcap's compiler
    can take seconds: ``port 1 or ... or port 350`` about six).

    One expression at a time is compiled, on a worker thread
    (``engine.run_in_thread``), so a flood of requests takes one core at
    most; requests for an expression being compiled share its result, and
    at most :data:`FILTER_QUEUE` wait.  Each request has
    :data:`FILTER_SECONDS`: past them it is refused (a 400 naming the time
    if its expression was being compiled, which is then remembered and
    refused at once next time; a 409 if another one still was), and a
    compile that ends later is discarded.  The loop never waits.  Programs
    compiled in time are kept (:func:`xcon.capture.bpf.remember`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue: deque[_Job] = deque()
        self.running: _Job | None = None
        #: Expressions that took longer than :data:`FILTER_SECONDS`.
        self.slow: OrderedDict[str, None] = OrderedDict()

    def ready(self, expression: str) -> BpfFilter | None:
        """The program for ``expression`` if it is compiled already (None: it
        must be compiled, see :meth:`compile`); raises BadRequest for an
        expression known to be too slow, or with no libpcap."""
        if expression in self.slow:
            raise BadRequest(_too_slow())
        if not bpf_mod.available():
            try:
                compile_filter(expression)
            except FilterError as e:
                raise BadRequest(str(e)) from None
        return bpf_mod.cached(expression)

    def compile(
        self, expression: str, done: Callable[[BpfFilter | None, BaseException | None], None]
    ) -> None:
        """Compile ``expression``; ``done(program, None)`` or ``done(None,
        error)`` (a LinkError for the request, any other exception a bug) is
        called later, on the loop."""
        for job in (self.running, *self.queue):
            if job is not None and job.expression == expression and not job.done:
                job.waiting.append(done)
                return
        if len(self.queue) >= FILTER_QUEUE:
            done(None, Conflict(_busy()))
            return
        job = _Job(expression)
        job.waiting.append(done)
        job.timer = self.engine.call_later(FILTER_SECONDS, lambda: self._late(job))
        self.queue.append(job)
        self._next()

    def _next(self) -> None:
        if self.running is not None or not self.queue:
            return
        job = self.running = self.queue.popleft()
        job.started = True
        expression = job.expression
        self.engine.run_in_thread(
            lambda: compile_filter(expression, cache=False),
            lambda result, err: self._compiled(job, result, err),
        )

    def _compiled(self, job: _Job, result: object, err: BaseException | None) -> None:
        self.running = None
        if not job.done:
            job.done = True
            if job.timer is not None:
                job.timer.cancel()
            if err is None:
                assert isinstance(result, BpfFilter)
                bpf_mod.remember(result)
                self._answer(job, result, None)
            elif isinstance(err, FilterError):
                self._answer(job, None, BadRequest(str(err)))
            else:
                self._answer(job, None, err)  # a bug: the API's 500 and one log line
        self._next()

    def _late(self, job: _Job) -> None:
        if job.done:
            return
        job.done = True
        if job.started:
            self.slow[job.expression] = None
            while len(self.slow) > SLOW_KEPT:
                self.slow.popitem(last=False)
            log.warning("capture filter refused: not compiled in %g s", FILTER_SECONDS)
            self._answer(job, None, BadRequest(_too_slow()))
        else:
            self.queue.remove(job)
            self._answer(job, None, Conflict(_busy()))

    def _answer(self, job: _Job, result: BpfFilter | None, err: BaseException | None) -> None:
        for done in job.waiting:
            done(result, err)
        job.waiting.clear()

    def close(self) -> None:
        for job in (self.running, *self.queue):
            if job is not None and job.timer is not None:
                job.timer.cancel()


def _too_slow() -> str:
    return (
        f"the filter takes libpcap over {FILTER_SECONDS:g} s to compile: refused "
        "(a shorter expression, or several captures)"
    )


def _busy() -> str:
    return "libpcap is busy compiling another capture filter: try again in a few seconds"


def captures_of(app: Xcon) -> Captures:
    """``app``'s captures (made on first use)."""
    if app.captures is None:
        app.captures = Captures(app)
    assert isinstance(app.captures, Captures)
    return app.captures


def check_options(o: CaptureOptions) -> None:
    """Raise BadRequest for options out of range (the command line checks
    first).  The filter is compiled by the caller, once."""
    from xcon.capture.options import OutOfRange, check_ranges

    try:
        check_ranges(o)
    except OutOfRange as e:
        raise BadRequest(str(e)) from None
    if o.files and not o.ring:
        raise BadRequest("files (how many ring files to keep) needs size or seconds")
