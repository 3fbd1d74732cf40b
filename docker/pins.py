"""Check that every distribution in a Python environment is pinned in a constraints file.

Run with the environment's own interpreter: ``/opt/xcon/bin/python pins.py constraints.txt``.
Exits 1, naming them, if a distribution (other than xcon itself) is missing from
the file or installed at another version than the one pinned there.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict[str, str]:
    pins = {}
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if line:
                name, sep, version = line.partition("==")
                if not sep:
                    raise SystemExit(f"{path}: not an exact pin: {line!r}")
                pins[canonical(name)] = version.strip()
    return pins


def main(argv: list[str]) -> int:
    pins = read_pins(argv[1])
    bad = []
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name == "xcon":
            continue
        if pins.get(name) != dist.version:
            bad.append(f"{name}=={dist.version} (pinned: {pins.get(name, 'nothing')})")
    if bad:
        print(f"not pinned in {argv[1]}: " + ", ".join(sorted(bad)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
