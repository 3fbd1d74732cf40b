"""xcon's subcommands, ``xcon ctl``, ``xcon demo``, ``xcon extcap`` and ``xcon
fake-router``: a first argument that names one hands the rest of the command
line to it.

Both entry points (``xcon`` itself, :mod:`xcon.main`, and
:func:`xcon.cli.main`, which the image's ``/xcon.py`` runs) dispatch with
this table, and the main usage line lists it.  It imports nothing: ``xcon
ctl`` starts by loading this module and the client only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def _ctl(argv: list[str]) -> int:
    from xcon.control.client import main

    return main(argv)


def _demo(argv: list[str]) -> int:
    from xcon.demo import main

    return main(argv)


def _extcap(argv: list[str]) -> int:
    from xcon.extcap import main

    return main(argv)


def _fake_router(argv: list[str]) -> int:
    from xcon.fakerouter import main

    return main(argv)


#: Subcommand name -> (what runs it, its usage after the name).
SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "ctl": (_ctl, "COMMAND ...  (talk to a running xcon: xcon ctl --help)"),
    "demo": (_demo, "[OPTIONS]  (a self-contained demonstration: xcon demo --help)"),
    "extcap": (_extcap, "install | uninstall  (xcon's links in Wireshark: xcon extcap --help)"),
    "fake-router": (
        _fake_router,
        "END=ADDRESS/PREFIX ... [--ping ADDR]  (a router to try xcon by hand: "
        "xcon fake-router --help)",
    ),
}


def run_subcommand(argv: Sequence[str]) -> int | None:
    """Run the subcommand ``argv`` starts with and return its exit code; None
    when ``argv`` does not start with one."""
    if not argv or argv[0] not in SUBCOMMANDS:
        return None
    run, _ = SUBCOMMANDS[argv[0]]
    return run(list(argv[1:]))
