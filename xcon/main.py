"""The ``xcon`` executable: ``xcon ctl …`` starts without loading the data
path (a script calling it in a loop pays for the client only); everything
else is :func:`xcon.cli.main`."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["ctl"]:
        from xcon.control.client import main as ctl_main

        return ctl_main(args[1:])
    from xcon.cli import main as cli_main

    return cli_main(args)
