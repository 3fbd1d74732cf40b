"""The ``xcon`` executable: ``xcon ctl …`` starts without loading the data
path (a script calling it in a loop pays for the client only); everything
else is :func:`xcon.cli.main`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xcon.commands import run_subcommand


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    code = run_subcommand(args)
    if code is not None:
        return code
    from xcon.cli import main as cli_main

    code = cli_main(args)
    if argv is None:  # the process itself: everything is closed and logged already
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down (tens of ms of a restart's
    dark time, freeing what the kernel frees anyway): the links, the health
    file, the captures and the log are closed and flushed by then."""
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
