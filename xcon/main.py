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

    return cli_main(args)
