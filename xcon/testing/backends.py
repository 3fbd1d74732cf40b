"""The two backends of :mod:`xcon.native` for tests that run on both.

When the compiled module is not built the native cases skip and say so; with
``XCON_NATIVE=1`` (as ``make test`` runs) they fail instead, so a missing or
stale build never passes as a test of the fallback.
"""

from __future__ import annotations

import os

import pytest

from xcon import native
from xcon.native import Backend

__all__ = ["get_backend", "native_backend"]


def native_backend() -> Backend:
    """The compiled backend; skips the test (fails with XCON_NATIVE=1) when not built."""
    try:
        return native.load_backend("native")
    except ImportError as e:
        msg = (
            f"native backend not built ({e}); build it with `python native/build_native.py` "
            "or `pip install -e .`"
        )
        if os.environ.get("XCON_NATIVE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``python`` or ``native``)."""
    return native_backend() if name == "native" else native.load_backend("python")
