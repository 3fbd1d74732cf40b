"""Command line: vr-xcon's flags with the same spelling and meaning, plus a few new ones.

``xcon ctl`` and ``xcon demo`` run a subcommand instead (:mod:`xcon.commands`).

Three steps, one module each: the arguments are parsed
(:mod:`xcon.cli.arguments`), then checked (:mod:`xcon.cli.checks`) before
anything is created (no engine, port, device or file exists yet when a usage
error is reported), then run (here): the checked arguments (:class:`Setup`)
are plain values, handed to the builders of :mod:`xcon.modes`.  A usage
error is one line on stderr (``xcon: error: ...``) and exit code 2; a
failure to start (a missing privilege or kernel feature, another xcon's
health file) is one line and exit code 1.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from xcon import __version__
from xcon.cli.arguments import (
    DEFAULT_RAW_IF,
    DEFAULT_TAP_IF,
    build_parser,
    trace_seconds,
)
from xcon.cli.checks import (
    CAPTURE_FLAGS,
    Setup,
    UsageError,
    capture_dir_arg,
    check,
    check_capture,
    control_settings,
    impair_arg,
    listen_address,
)
from xcon.commands import run_subcommand
from xcon.errors import LinkError, ModeError, one_line
from xcon.linkspec import SpecError
from xcon.lockfile import LockFile, LockHeld

if TYPE_CHECKING:
    import socket

    from xcon.app import Xcon
    from xcon.control.config import Config, ConfigReloader
    from xcon.handover import Parcel
    from xcon.ports import Port

__all__ = [
    "CAPTURE_FLAGS",
    "DEFAULT_RAW_IF",
    "DEFAULT_TAP_IF",
    "Setup",
    "UsageError",
    "build_parser",
    "capture_dir_arg",
    "check",
    "check_capture",
    "control_settings",
    "impair_arg",
    "listen_address",
    "lock_health_file",
    "main",
    "one_line",
    "run",
    "setup_logging",
    "start_captures",
    "trace_seconds",
]

log = logging.getLogger("xcon")


def setup_logging(level: str, tag: str = "") -> None:
    """The log on stderr; ``tag`` before each line's logger (a worker's ``w1``)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s.%(msecs)03d %(levelname)s {tag}%(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def _error(message: str, code: int) -> int:
    print(f"xcon: error: {one_line(message)}", file=sys.stderr)
    return code


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


def run(setup: Setup) -> int:
    """Build the mode on an engine and run it; returns the exit code.

    The health file is locked first (:mod:`xcon.lockfile`): an xcon whose
    health file another one writes stops there, exit 1, before it creates
    anything.  With ``--workers N`` this process supervises N workers
    (:mod:`xcon.workers`); a worker keeps its share of the links."""
    index = None
    if "XCON_WORKER" in os.environ:  # xcon.workers.ENV: loaded only in a worker
        from xcon.workers import become_worker

        index = become_worker(setup)
    if index is None:
        setup_logging(setup.log_level)
    else:  # a worker's lines say which
        setup_logging(setup.log_level, f"w{index} ")
    if setup.debug:
        logging.getLogger("xcon.frames").setLevel(logging.DEBUG)
    from xcon.handover import ENV, ENV_FROM

    # Restarted in place: the parcel's memory file, or the forked child's socket.
    handed = os.environ.pop(ENV, None)
    if handed is None and ENV_FROM in os.environ:
        handed = "from:" + os.environ.pop(ENV_FROM)
    lock = None
    if setup.health_file and not setup.takeover and handed is None:
        try:
            lock = lock_health_file(setup.health_file)
        except ModeError as e:
            return _error(str(e), e.exit_code)
    locks: list[LockFile] = [lock] if lock is not None else []
    try:
        if setup.workers > 1:
            return _supervise(setup, locks)
        return _run(setup, locks, handed)
    finally:
        for held in locks:
            held.release()  # nothing if it was handed over


def _supervise(setup: Setup, locks: list[LockFile]) -> int:
    from xcon.workers import Supervisor

    sup = Supervisor(setup, config_loader(setup) if setup.config else None)
    sup.lock = locks[0] if locks else None
    try:
        code = sup.run()
        if sup.lock is not None and sup.lock not in locks:
            locks.append(sup.lock)  # taken over: released at exit like one held from the start
        return code
    except ModeError as e:
        return _error(str(e), e.exit_code)


def lock_health_file(path: str) -> LockFile | None:
    """Lock the health file ``path`` for this process; a :class:`ModeError`
    (exit 1) names the xcon that holds it.  None (logged) when the lock file
    cannot be made: as before, xcon then runs without it."""
    lock_path = f"{path}.lock"
    try:
        return LockFile.acquire(lock_path)
    except LockHeld as e:
        holder = f"another xcon (pid {e.pid})" if e.pid is not None else "another xcon"
        raise ModeError(
            f"{holder} uses the health file {os.path.abspath(path)}: run this one in another "
            "directory, or give it its own --health-file and --control",
            exit_code=1,
        ) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        log.warning(
            "cannot lock the health file (%s: %s): another xcon could share it",
            lock_path,
            getattr(e, "strerror", None) or e,
        )
        return None


def _run(setup: Setup, locks: list[LockFile], handed: str | None = None) -> int:
    from xcon import native
    from xcon.app import Xcon
    from xcon.control import start_control
    from xcon.engines import EngineUnavailable, make_engine
    from xcon.rlimit import ensure_nofile

    try:
        engine = make_engine(setup.engine)
    except EngineUnavailable as e:
        return _error(str(e), 2)
    app = Xcon(
        engine=engine, health_path=setup.health_file, trace_interval=setup.trace, debug=setup.debug
    )
    app.lock = locks[0] if locks else None
    taker = None
    taking = setup.takeover or handed is not None
    # Taking over: ports open only once the parcel said which it brings (a
    # UDP end's port is still bound by the xcon handing over).
    opening = app.open_ports
    deferred: list[Port] = []
    if taking:
        app.open_ports = deferred.extend
    try:
        ensure_nofile(setup.sockets)
        app.monitor_rules = dict(setup.monitors)
        app.vrnetlab_monitors = setup.vrnetlab_monitors
        build_mode(app, setup)
        if setup.seed is not None:  # before the config file's impairments are applied
            app.seed = setup.seed
        reload = None
        if setup.config is not None:
            reloader = config_reloader(app, setup)
            reloader.apply_initial(setup.config_links, setup.config_hubs)
            app.on_hangup = reloader.on_signal
            reload = reloader.reload
        start_captures(app, setup)
        for name, direction, imp in setup.impairs:
            try:
                app.set_impair(name, direction, imp)
            except LinkError as e:
                raise ModeError(f"--impair {name}: {e}", exit_code=2) from None
        if taking:
            app.open_ports = opening
            taker = take_over(app, setup, handed, locks)
            opening([p for p in deferred if p.handed is None])
        start_carriers(app, setup.on_exit)
        if taker is not None:
            taker.restore_carriers(app)
        start_control(
            app,
            setup.control,
            setup.engine,
            reload=reload,
            # a parcel without control sockets (a worker's share): its own
            handed=(taker.parcel.control() or None) if taker is not None else None,
        )
        if taker is not None:
            taker.done()
    except ModeError as e:
        if taker is not None:
            taker.fail()
        app.close()
        return _error(str(e), e.exit_code)
    log.info(
        "xcon %s (fast path: %s, engine: %s): %s",
        __version__,
        native.BACKEND,
        setup.engine,
        setup.describe(),
    )
    for spec in setup.links:
        log.info("p2p link %s", spec)
    return app.run()


def config_reloader(app: Xcon, setup: Setup) -> ConfigReloader:
    """What keeps the links in step with ``--config`` or ``--topology``'s
    file; what reading a topology file passed over is logged now.  A worker
    of ``--workers`` keeps its share of the file."""
    from xcon.control.config import ConfigReloader

    assert setup.config is not None
    if setup.topology_format is not None:
        for note in setup.config_notes:
            log.warning("%s", note)
    load = config_loader(setup)
    if setup.worker is not None:
        from xcon.workers import filtered

        load = filtered(load, setup.worker[1], setup.worker[0])
    source = "config" if setup.topology_format is None else "topology"
    return ConfigReloader(app, setup.config, load=load, source=source)


def config_loader(setup: Setup) -> Callable[[], Config]:
    """What reads ``--config`` or ``--topology``'s file (raises ConfigError)."""
    assert setup.config is not None
    path = setup.config
    if setup.topology_format is None:
        from xcon.control.config import load_config

        return lambda: load_config(path)
    from xcon.control.topology import loader

    return loader(path, setup.topology_format, setup.topology_prefix)


class _Taker:
    """The parcel of a handover being taken, and the giver's connection
    (None when restarted in place): :meth:`done` says "taken" to it, and
    :meth:`fail` lets it carry on."""

    def __init__(self, parcel: Parcel, conn: socket.socket | None, child: int | None) -> None:
        self.parcel = parcel
        self.conn = conn
        #: The forked child that forwarded during an in-place restart: reaped once it exits.
        self.child = child

    def restore_carriers(self, app: Xcon) -> None:
        if app.carriers is not None:
            for name, saved in self.parcel.state["links"].items():
                app.carriers.restore(name, saved.get("carrier", {}))

    def done(self) -> None:
        from xcon.handover import TAKEN

        self.parcel.close_unused()
        if self.conn is not None:
            try:
                self.conn.sendall(TAKEN)
            except OSError as e:
                raise ModeError(
                    f"--takeover: the running xcon went away: {e.strerror or e}", 1
                ) from None
            finally:
                self.conn.close()
        if self.child is not None:
            import threading

            pid = self.child
            threading.Thread(target=_reap, args=(pid,), name="reap", daemon=True).start()
        log.info(
            "took over %d link(s) from pid %s",
            len(self.parcel.state["links"]),
            self.parcel.state["pid"],
        )

    def fail(self) -> None:
        if self.conn is not None:
            self.conn.close()  # the running xcon reads again and carries on


def _reap(pid: int) -> None:
    """Wait for the child that handed over to exit (it exits at once)."""
    import contextlib

    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def take_over(app: Xcon, setup: Setup, handed: str | None, locks: list[LockFile]) -> _Taker:
    """The connections of the xcon before this one (``--takeover``, or this
    process before ``exec``), given to the links just built."""
    # What taking uses, loaded while the old xcon still forwards, not once
    # the links went dark (the control server, the carrier, the parcel's codecs).
    import base64  # noqa: F401
    import json  # noqa: F401

    import xcon.carrier  # noqa: F401
    import xcon.control.api  # noqa: F401
    import xcon.control.sockets  # noqa: F401
    from xcon.handover import HandoverError, Parcel, read_exec_parcel, take, take_from

    conn = None
    child = None
    try:
        if handed is not None and handed.startswith("from:"):
            parcel, conn, child = take_from(handed[5:])
        elif handed is not None:
            parcel = Parcel(*read_exec_parcel(handed))
        else:
            assert setup.control.path is not None
            parcel, conn = take(setup.control.path)
        if setup.seed is None:  # the impairments draw from the same seed as before
            app.seed = int(parcel.state.get("seed", app.seed))
        lock = parcel.lock()
        if lock is not None:
            locks.append(lock)
            app.lock = lock
        for line in parcel.apply(app):
            log.info("%s", line)
    except HandoverError as e:
        if conn is not None:
            conn.close()
        raise ModeError(f"--takeover: {e}", exit_code=1) from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return _Taker(parcel, conn, child)


def start_carriers(app: Xcon, on_exit: str) -> None:
    """The routers' carrier follows their links (:mod:`xcon.carrier`)."""
    from xcon.carrier import Carriers

    app.carriers = Carriers(app, on_exit)
    app.services.append(app.carriers)
    used = {end for link in app.links.values() for end in link.monitors}
    for end in sorted(set(app.monitor_rules) - used):
        log.warning("--monitor %s: no link has this end yet (kept for links added later)", end)


def build_mode(app: Xcon, setup: Setup) -> None:
    """The mode's links, by its builder in :mod:`xcon.modes`."""
    from xcon import modes

    if setup.mode == "p2p":
        modes.p2p(app, setup.links, debug=setup.debug)
    elif setup.mode == "hub":
        modes.hub(app, setup.hub, debug=setup.debug)
    elif setup.mode == "tap":
        assert setup.nic is not None and setup.ifname and setup.plan is not None
        modes.tap_listen(
            app,
            setup.nic,
            setup.ifname,
            setup.plan,
            debug=setup.debug,
            listen_host=setup.listen_host,
        )
    else:
        assert setup.nic is not None and setup.ifname
        modes.raw_listen(
            app, setup.nic, setup.ifname, debug=setup.debug, listen_host=setup.listen_host
        )


def start_captures(app: Xcon, setup: Setup) -> None:
    """``--capture``: open the files now (a file that cannot be written is
    exit 1); ``--capture-dir``: the API's captures go there."""
    if setup.capture_dir is None and setup.capture_options is None:
        return  # the capture code loads with the first capture
    from xcon.capture.manager import captures_of

    if setup.capture_dir is not None:
        captures_of(app).capture_dir = setup.capture_dir
    if setup.capture_options is None:
        return
    caps = captures_of(app)
    try:
        for name, path in setup.captures:
            caps.start_file(name, path, setup.capture_options, source="command line")
        if setup.capture_all_dir is not None:
            caps.capture_all(setup.capture_all_dir, setup.capture_options)
    except LinkError as e:
        raise ModeError(f"--capture: {e}", exit_code=1) from None


def main(argv: Sequence[str] | None = None) -> int:
    """``xcon ARGS``: a subcommand, or parse, check and run; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    code = run_subcommand(args_list)
    if code is not None:
        return code
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return _exit_code(e)
    try:
        setup = check(args)
        setup.argv = args_list
    except ModeError as e:
        return _error(str(e), e.exit_code)
    except (SpecError, UsageError) as e:
        return _error(str(e), 2)
    return run(setup)


if __name__ == "__main__":
    raise SystemExit(main())
