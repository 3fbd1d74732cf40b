"""tcpdump and tshark, the readers a capture file must satisfy (Debian's
``tcpdump`` and ``tshark`` packages; None here when not installed)."""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["TCPDUMP", "TSHARK", "tcpdump_lines", "tshark_env", "tshark_fields"]

TCPDUMP = shutil.which("tcpdump")
TSHARK = shutil.which("tshark")


def tshark_env() -> dict[str, str]:
    """The environment to run tshark in (it wants a writable profile directory)."""
    env = dict(os.environ)
    env["HOME"] = env.get("TMPDIR", "/tmp")
    return env


def tcpdump_lines(path: str, *extra: str) -> list[str]:
    """``tcpdump -r PATH -nn -e -tt EXTRA...``: one line per frame."""
    assert TCPDUMP
    out = subprocess.run(
        [TCPDUMP, "-r", path, "-nn", "-e", "-tt", *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    # one line per frame (tcpdump hexdumps unknown ethertypes on indented lines)
    return [line for line in out.stdout.splitlines() if not line.startswith("\t")]


def tshark_fields(
    path: str, *fields: str, options: dict[str, str] | None = None
) -> list[list[str]]:
    """``tshark -r PATH -T fields``: per frame, the values of ``fields`` in order
    (``options``: preferences, ``-o NAME:VALUE``)."""
    assert TSHARK
    cmd = [TSHARK, "-r", path, "-T", "fields", "-E", "separator=|"]
    for name, value in (options or {}).items():
        cmd += ["-o", f"{name}:{value}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=tshark_env())
    assert out.returncode == 0, out.stderr
    return [line.split("|") for line in out.stdout.splitlines()]
