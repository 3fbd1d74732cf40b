"""Checks of the errors xcon reports: one clear line each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def one_line_error(kind: type[BaseException], fn: Callable[..., Any], *args: Any) -> str:
    """Call ``fn(*args)``, which must raise ``kind`` with a one-line message; return it."""
    with pytest.raises(kind) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message, message
    return message
