#!/usr/bin/env python3
"""Entry point of the vr-xcon image, at /xcon.py and /xcon: runs xcon with the given arguments.

This file is itself named xcon(.py), so its own directory is taken off the import
path first: ``import xcon`` must find the installed package, not this script.
"""

import os
import sys

_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _here]

from xcon.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
