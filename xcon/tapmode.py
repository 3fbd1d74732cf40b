"""--tap-listen and --raw-listen (not implemented yet)."""

from __future__ import annotations

import argparse
from typing import Any

from xcon.errors import ModeError


def add_tap_listen(app: Any, args: argparse.Namespace) -> None:
    raise ModeError("--tap-listen is not implemented yet", exit_code=2)


def add_raw_listen(app: Any, args: argparse.Namespace) -> None:
    raise ModeError("--raw-listen is not implemented yet", exit_code=2)
