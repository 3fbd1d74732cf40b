"""``--config FILE``: p2p links and their options in a TOML file, reloaded on
SIGHUP (or ``xcon ctl reload``) by applying only the difference.

::

    # xcon.toml
    links = ["vr1/1--vr2/1", "vr1/2--vr3/1:123"]      # links with no options
    seed = 42                                         # impairments' draws (as --seed; read at start)

    [[link]]                                          # a link with options
    spec = "vr2/2--vr3/2"
    monitors = { "vr2/2" = "vr2:4000", "vr3/2" = "vr3:4000,p02" }
    admin = "down"                                    # start with the cable pulled
    capture = "/captures/vr2-vr3.pcapng"              # or a table: see below

A link's ``capture`` is a file, or a table with ``file`` and the options of
``POST /links/NAME/capture`` (``snaplen``, ``filter``, ``drops``,
``size_mb``, ``seconds``, ``files``).  The file is the operator's path, used
as given (not the API's capture directory), opened as the command line's
``--capture`` opens its files.  A reload that changes it ends the
old capture (its file closed with its statistics) and starts the new one; a
reload that leaves it as it was leaves the capture running.

    [[link]]
    spec = "vr3/3--vr4/1"
    impair = "delay 10ms 2ms loss 1%"                 # both directions (tc-netem's words)
    # impair = { a2b = "delay 10ms", b2a = "loss gemodel 1% 10%" }   # or per direction

A reload reads and checks the whole file first, on a worker thread (a
regular file of at most 1 MiB in UTF-8, opened without blocking so a FIFO
is refused rather than waited for; syntax, every spec, every option within
its range, NICs used twice), then on the loop its clashes with links that
do not come from the file: a file with an error changes nothing, and the
reason is one log line (and the API's 400).  Then links no longer in the
file are removed, new ones are added, and a link whose options changed gets
them (its connections untouched: a changed impairment is applied live, as
``xcon ctl impair`` does); every other link is not touched at all: same
sockets, no frame lost.
Links given on the command line or added through the API are not the
file's: a reload never removes them.

A topology file (``--topology``: :mod:`xcon.control.topology`) is reloaded
the same way; its hubs too: a hub whose ends changed is replaced (its
connections restart), one that did not is not touched.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from xcon.errors import BadRequest, LinkError, ModeError
from xcon.impair.spec import ImpairError, Impairment, parse_netem
from xcon.limits import FLAP_COUNT, FLAP_SECONDS, SEED, OutOfRange, duration
from xcon.linkspec import End, LinkSpec, SpecError, check_distinct, parse_link

if TYPE_CHECKING:
    from xcon.app import Xcon
    from xcon.capture.capture import Capture
    from xcon.capture.options import CaptureOptions

log = logging.getLogger("xcon.control")

LINK_KEYS = ("spec", "monitors", "admin", "capture", "impair", "flap")
#: The largest config file read (bytes).
MAX_CONFIG = 1024 * 1024
TOP_KEYS = ("links", "link", "seed", "monitors")


class ConfigError(ValueError):
    """The file cannot be used; the message is one line naming the file."""


class Failed(TypedDict):
    link: str
    error: str


class ReloadResult(TypedDict):
    """What a reload did (the answer to ``POST /reload``)."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    failed: list[Failed]
    unchanged: int


#: Called (on the loop) with what a reload did, or why it did nothing.
ReloadDone = Callable[[ReloadResult | LinkError], None]
#: Starts a reload of the config file (:meth:`ConfigReloader.reload`).
Reload = Callable[[ReloadDone], None]


class ReloadBug(LinkError):
    """Applying a checked file failed unexpectedly (a bug, logged in one line)."""

    status = 500


@dataclass(frozen=True)
class ConfigLink:
    spec: LinkSpec
    monitors: tuple[tuple[str, str], ...] = ()
    admin_up: bool = True
    #: (file, options) of the link's capture, or None.
    capture: tuple[str, CaptureOptions] | None = None
    #: The impairment of a2b and of b2a (None: none).
    impair: tuple[Impairment | None, Impairment | None] = (None, None)
    #: A flap schedule: (down, up, count) as written (None: none).
    flap: tuple[object, object, object] | None = None

    @property
    def name(self) -> str:
        return str(self.spec)


@dataclass(frozen=True)
class ConfigHub:
    """A hub of a topology file, by the name the file gives it."""

    name: str
    ends: tuple[End, ...]


@dataclass
class Config:
    links: list[ConfigLink] = field(default_factory=list)
    seed: int | None = None
    #: ``monitors = "vrnetlab"`` (as ``--monitors``; read at start).
    monitors: str | None = None
    #: A topology file's hubs.
    hubs: list[ConfigHub] = field(default_factory=list)
    #: What reading the file passed over (logged, one line each).
    notes: list[str] = field(default_factory=list)


def read_config(path: str) -> str:
    """The text of ``path``: a regular file of at most :data:`MAX_CONFIG`
    bytes, in UTF-8.  Opened without blocking (a FIFO with no writer is
    refused, not waited for); raises :class:`ConfigError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ConfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > MAX_CONFIG:
            raise ConfigError(f"{path}: {st.st_size} bytes, larger than {MAX_CONFIG}")
        data = b""
        while len(data) <= MAX_CONFIG:  # the file may grow while it is read
            chunk = os.read(fd, MAX_CONFIG + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 (byte 0x{data[e.start]:02x} on line {line})"
        ) from None


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


def load_config(path: str) -> Config:
    """Read and check ``path``; raises :class:`ConfigError`, whatever is in it.

    Blocking (a slow disk): the running xcon calls it on a worker thread."""
    text = read_config(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except ValueError:  # tomllib's int() of an integer of thousands of digits
        raise ConfigError(f"{path}: not valid TOML (an integer too long)") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None
    try:
        return parse_config(doc, path)
    except ConfigError:
        raise
    except (ValueError, TypeError, RecursionError) as e:  # a value no check expected
        raise ConfigError(f"{path}: cannot be used ({type(e).__name__}: {e})") from None


def parse_config(doc: dict[str, Any], path: str = "config") -> Config:
    from xcon.app import check_monitors

    for key in doc:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(TOP_KEYS)})")
    seed = doc.get("seed")
    if seed is not None:
        try:
            seed = SEED.check(seed)
        except OutOfRange as e:
            raise ConfigError(f"{path}: {e}") from None
    vrnetlab = doc.get("monitors")
    if vrnetlab not in (None, "vrnetlab"):
        raise ConfigError(f'{path}: "monitors" is "vrnetlab" (each link\'s own go in its table)')
    entries: list[tuple[str, dict[str, Any]]] = []
    plain = doc.get("links", [])
    if not isinstance(plain, list) or not all(isinstance(x, str) for x in plain):
        raise ConfigError(f'{path}: "links" is a list of link strings, e.g. ["vr1/1--vr2/1"]')
    entries += [(f"links[{i}]", {"spec": x}) for i, x in enumerate(plain)]
    tables = doc.get("link", [])
    if not isinstance(tables, list) or not all(isinstance(x, dict) for x in tables):
        raise ConfigError(f"{path}: [[link]] entries are tables")
    entries += [(f"[[link]] {i + 1}", t) for i, t in enumerate(tables)]
    links = []
    for where, entry in entries:
        where = f"{path}: {where}"
        for key in entry:
            if key not in LINK_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(LINK_KEYS)})")
        text = entry.get("spec")
        if not isinstance(text, str):
            raise ConfigError(f'{where}: "spec" is the link, e.g. "vr1/1--vr2/1"')
        try:
            spec = parse_link(text)
        except SpecError as e:
            raise ConfigError(f"{where}: {e}") from None
        mons = entry.get("monitors", {})
        if not isinstance(mons, dict) or not all(isinstance(v, str) for v in mons.values()):
            raise ConfigError(f'{where}: "monitors" maps an end to "HOST:PORT[,NETDEV]"')
        try:
            checked = check_monitors(spec, mons)
        except LinkError as e:
            raise ConfigError(f"{where}: {e}") from None
        admin = entry.get("admin", "up")
        if admin not in ("up", "down"):
            raise ConfigError(f'{where}: "admin" is "up" or "down"')
        monitors = tuple(sorted((k, str(v)) for k, v in checked.items()))
        capture = parse_capture(entry.get("capture"), where)
        impair = _impair(entry.get("impair"), where)
        flap = _flap(entry.get("flap"), where)
        links.append(ConfigLink(spec, monitors, admin == "up", capture, impair, flap))
    try:
        check_distinct([cl.spec for cl in links])
    except SpecError as e:
        raise ConfigError(f"{path}: {e}") from None
    return Config(links, seed, vrnetlab)


def _flap(value: object, where: str) -> tuple[object, object, object] | None:
    """A link's ``flap = { down = "2s", up = "10s", count = 3 }``, checked."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"down", "up", "count"}:
        raise ConfigError(f'{where}: "flap" is a table: {{ down = "2s", up = "10s", count = 3 }}')
    try:
        down = duration(value.get("down"), FLAP_SECONDS, "flap down")
        up = duration(value.get("up"), FLAP_SECONDS, "flap up")
        count = value.get("count")
        if count is not None:
            count = FLAP_COUNT.check(count, name="flap count")
    except OutOfRange as e:
        raise ConfigError(f"{where}: {e}") from None
    return (down, up, count)


def _impair(value: object, where: str) -> tuple[Impairment | None, Impairment | None]:
    if value is None:
        return (None, None)
    try:
        if isinstance(value, str):
            imp = parse_netem(value)
            return (imp, imp)
        if isinstance(value, dict) and set(value) <= {"a2b", "b2a"}:
            if all(isinstance(v, str) for v in value.values()):
                a2b, b2a = value.get("a2b"), value.get("b2a")
                return (
                    parse_netem(a2b) if a2b is not None else None,
                    parse_netem(b2a) if b2a is not None else None,
                )
    except ImpairError as e:
        raise ConfigError(f"{where}: impair: {e}") from None
    raise ConfigError(
        f'{where}: "impair" is netem\'s words ("delay 10ms loss 1%") or '
        '{ a2b = "...", b2a = "..." }'
    )


def parse_capture(value: object, where: str) -> tuple[str, CaptureOptions] | None:
    """A link's ``capture``: a file, or a table with ``file`` and options."""
    if value is None:
        return None
    from xcon.control.api import capture_options

    table = {"file": value} if isinstance(value, str) else value
    if not isinstance(table, dict) or not isinstance(table.get("file"), str) or not table["file"]:
        raise ConfigError(f'{where}: "capture" is a file, or a table with "file" and options')
    from xcon.capture.bpf import FilterError, compile_filter
    from xcon.capture.manager import check_options
    from xcon.capture.options import check_file

    try:
        check_file(table["file"])
        options = capture_options(table, file=True)
        check_options(options)  # ranges, ring
        if options.filter is not None:
            compile_filter(options.filter)  # once: the capture takes it kept
    except (LinkError, FilterError, ValueError) as e:
        raise ConfigError(f"{where}: capture: {e}") from None
    return table["file"], options


class ConfigReloader:
    """Keeps the running links in step with the file (see the module docstring).

    ``load`` reads and checks the file (default: :func:`load_config` of
    ``path``); ``source`` is what the file's links say they come from."""

    def __init__(
        self,
        app: Xcon,
        path: str,
        load: Callable[[], Config] | None = None,
        source: str = "config",
    ) -> None:
        self.app = app
        self.path = path
        self.load = load if load is not None else lambda: load_config(path)
        self.source = source
        #: What the file said for each of its links when last applied.
        self.applied: dict[str, ConfigLink] = {}
        #: The capture the file started on each of its links.
        self.captures: dict[str, Capture] = {}
        self.reloads = 0
        #: Those waiting for the reload in progress (None: none runs), and
        #: for the one after it.
        self._waiting: list[ReloadDone] | None = None
        self._again: list[ReloadDone] | None = None

    def apply_initial(self, links: list[ConfigLink], hubs: Sequence[ConfigHub] = ()) -> None:
        """Add the file's links and hubs before the loop runs; raises ModeError."""
        try:
            for cl in links:
                self._add(cl)
            for hub in hubs:
                self.app.add_hub(hub.name, hub.ends, self.source)
        except LinkError as e:
            raise ModeError(f"{self.path}: {e}", exit_code=2 if e.status == 400 else 1) from None

    def _add(self, cl: ConfigLink) -> None:
        self.app.add_link(cl.name, dict(cl.monitors), source=self.source, admin_up=cl.admin_up)
        self.applied[cl.name] = cl
        self._impair(cl, None)
        self._capture(cl)
        if cl.flap is not None:
            self.app.flap(cl.name, *cl.flap)

    def _capture(self, cl: ConfigLink) -> None:
        """Start the file's capture of ``cl`` (raises LinkError: Conflict when
        the file cannot be written)."""
        if cl.capture is None:
            return
        from xcon.capture.manager import captures_of

        path, options = cl.capture
        self.captures[cl.name] = captures_of(self.app).start_file(
            cl.name, path, options, source="config"
        )

    def _recapture(self, before: ConfigLink | None, cl: ConfigLink) -> None:
        if before is not None and before.capture == cl.capture:
            return
        old = self.captures.pop(cl.name, None)
        if old is not None and old.active:
            from xcon.capture.manager import captures_of

            captures_of(self.app).stop_one(old, f"stopped: {self.path} changed")
        self._capture(cl)

    def _impair(self, cl: ConfigLink, before: ConfigLink | None) -> None:
        for direction, imp, old in zip(
            ("a2b", "b2a"), cl.impair, before.impair if before else (None, None), strict=True
        ):
            if imp != old:
                self.app.set_impair(cl.name, direction, imp)

    def reload(self, done: ReloadDone) -> None:
        """Read and check the file on a worker thread, then apply it on the
        loop; ``done`` gets what was done, or the error (a BadRequest:
        nothing changed).  Reloads asked for while one runs share the next
        one (the file is read again after the current read), so changes
        are applied in the order they were read."""
        if self._waiting is not None:
            if self._again is None:
                self._again = []
            self._again.append(done)
            return
        self._waiting = [done]
        self.app.engine.run_in_thread(self.load, self._loaded)

    def _loaded(self, config: object, err: BaseException | None) -> None:
        waiting, self._waiting = self._waiting or [], None
        result: ReloadResult | LinkError
        if err is not None:
            if not isinstance(err, ConfigError):  # load_config catches what it expects
                err = ConfigError(f"{self.path}: cannot be used ({type(err).__name__}: {err})")
            result = BadRequest(str(err))
        else:
            assert isinstance(config, Config)
            for note in config.notes:
                log.warning("%s", note)
            try:
                result = self.apply(config)
            except LinkError as e:
                result = e
            except Exception as e:  # noqa: BLE001 - a bug: one line, a 500, xcon goes on
                result = ReloadBug(f"{self.path}: {type(e).__name__}: {e}")
        events = self.app.events
        if isinstance(result, LinkError) and result.status == 400:
            log.error("reload failed, nothing changed: %s", result)
            events.emit("config.failed", reason=str(result))
        elif isinstance(result, LinkError):
            log.error("reload of %s failed: %s", self.path, result)
            events.emit("config.failed", reason=f"{self.path}: {result}")
        else:
            text = summary(result)
            log.info("reloaded %s: %s", self.path, text)
            events.emit(
                "config.reloaded",
                reason=f"{self.path}: {text}",
                added=result["added"],
                removed=result["removed"],
                changed=result["changed"],
            )
        for done in waiting:
            done(result)
        again, self._again = self._again, None
        if again:
            self._waiting = again
            self.app.engine.run_in_thread(self.load, self._loaded)

    def apply(self, config: Config) -> ReloadResult:
        """Apply a checked file's links (on the loop); raises BadRequest
        (nothing changed) when they clash with links not from the file.
        Returns what was done."""
        ours = {n: link for n, link in self.app.links.items() if link.source == self.source}
        mine = {n for n, link in ours.items() if link.spec is not None}
        wanted = {cl.name: cl for cl in config.links}
        hubs = {h.name: h for h in config.hubs}
        replaced = [n for n, h in hubs.items() if n in ours and ours[n].ends != h.ends]
        removed = [n for n in ours if n not in wanted and n not in hubs]
        added = [cl for n, cl in wanted.items() if n not in mine]
        new_hubs = [h for n, h in hubs.items() if n not in ours or n in replaced]
        gone = removed + replaced
        for cl in added:  # everything is checked before anything changes
            try:
                self.app.check_new(cl.spec, ignore=gone)
            except LinkError as e:
                raise BadRequest(f"{self.path}: {e}") from None
        for hub in new_hubs:
            try:
                self.app.check_ends(hub.name, hub.ends, ignore=gone)
            except LinkError as e:
                raise BadRequest(f"{self.path}: hub {hub.name}: {e}") from None
        for name in gone:
            why = f"changed in {self.path}" if name in replaced else f"not in {self.path} any more"
            self.app.remove_link(name, why=why, hubs=True)
            self.applied.pop(name, None)
            self.captures.pop(name, None)
        done = ReloadResult(added=[], removed=removed, changed=[], failed=[], unchanged=0)
        for hub in new_hubs:
            try:
                self.app.add_hub(hub.name, hub.ends, self.source)
            except LinkError as e:
                log.error("%s: hub %s not added: %s", self.path, hub.name, e)
                done["failed"].append(Failed(link=hub.name, error=str(e)))
            else:
                done["changed" if hub.name in replaced else "added"].append(hub.name)
        for cl in added:
            try:
                self._add(cl)
            except LinkError as e:
                log.error("%s: link %s not added: %s", self.path, cl.name, e)
                done["failed"].append(Failed(link=cl.name, error=str(e)))
            else:
                done["added"].append(cl.name)
        for name, cl in wanted.items():
            before = self.applied.get(name)
            if name not in mine or before == cl:
                continue
            link = self.app.links.get(name)
            if link is None:
                continue
            from xcon.app import check_monitors

            assert link.spec is not None
            self.app.set_monitors(link, check_monitors(link.spec, dict(cl.monitors)), replace=True)
            if before is None or before.flap != cl.flap:
                self.app.stop_flap(link)
                if cl.flap is not None:
                    self.app.flap(name, *cl.flap)
            if (before is None or before.admin_up != cl.admin_up) and cl.flap is None:
                self.app.set_admin(name, cl.admin_up)
            self._impair(cl, before)
            self.applied[name] = cl
            try:
                self._recapture(before, cl)
            except LinkError as e:
                log.error("%s: link %s: capture not started: %s", self.path, name, e)
                done["failed"].append(Failed(link=name, error=f"capture: {e}"))
                continue
            done["changed"].append(name)
        done["unchanged"] = (
            len(wanted)
            + len(hubs)
            - len(done["added"])
            - len(done["changed"])
            - len(done["failed"])
        )
        self.reloads += 1
        return done

    def on_signal(self, signum: int) -> None:
        """SIGHUP: reload; the outcome is one log line (see :meth:`reload`)."""
        log.info("received SIGHUP, reloading %s", self.path)
        self.reload(lambda _result: None)


def summary(done: ReloadResult) -> str:
    """``1 added, 1 removed, 0 changed, 1 unchanged`` (and ``, N failed``)."""
    failed = f", {len(done['failed'])} failed" if done["failed"] else ""
    return (
        f"{len(done['added'])} added, {len(done['removed'])} removed, "
        f"{len(done['changed'])} changed, {done['unchanged']} unchanged{failed}"
    )
