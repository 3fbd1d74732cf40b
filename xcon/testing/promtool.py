"""promtool, Prometheus' own checker of metrics and rule files: ``$PROMTOOL``,
else promtool on PATH, else the one ``make test`` unpacks from Debian's
``prometheus`` package into the venv.  Tests that need it skip, saying so,
where there is none."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

__all__ = ["PROMTOOL", "requires_promtool"]


def _find() -> str | None:
    venv = os.path.join(os.path.dirname(sys.executable), "promtool")
    return (
        os.environ.get("PROMTOOL")
        or shutil.which("promtool")
        or (venv if os.access(venv, os.X_OK) else None)
    )


PROMTOOL = _find()
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="no promtool (make test unpacks it from Debian's prometheus package; PROMTOOL=path)",
)
