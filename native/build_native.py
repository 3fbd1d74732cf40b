"""cffi (API mode) build script for ``xcon._native``.

Used two ways:

* by setuptools, through ``cffi_modules=["native/build_native.py:ffibuilder"]``
  in setup.py (``pip install .``, ``pip install -e .``, ``setup.py build_ext``);
* directly, ``python native/build_native.py``, which compiles the extension
  and copies it next to the package sources (``xcon/``) for development.

The declarations given to cffi are generated from ``xcon_native.h``
(:func:`cdef_from_header`), so the header is the only place they are written.
Paths are taken relative to this file, never to the current directory.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys

import cffi

NATIVE_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(NATIVE_DIR)
HEADER = os.path.join(NATIVE_DIR, "xcon_native.h")

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_DIRECTIVE = re.compile(r"#\s*(\w+)\s*(.*)")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _blank(comment: re.Match[str]) -> str:
    """A comment's replacement: its line breaks (line numbers stay), or a space."""
    return "\n" * comment.group().count("\n") or " "


def _refused(number: int, line: str, why: str) -> ValueError:
    return ValueError(f"line {number}: {why}: {line}")


def cdef_from_header(text: str) -> str:
    """The cffi declarations of a C header: its prototypes (and any other
    declarations) as written, every object-like ``#define NAME value`` as
    ``#define NAME ...`` (the compiler fills the value in), the include guard
    and the ``#include <...>`` lines left out (cffi knows the standard types).

    Anything else the preprocessor would have to decide (``#if``, ``#ifdef``,
    ``#undef``, a macro with parameters or continued on the next line, a local
    ``#include "..."``) cannot be declared to cffi and raises ValueError
    naming its line.
    """
    out: list[str] = []
    guard: str | None = None
    for number, line in enumerate(_COMMENT.sub(_blank, text).splitlines(), start=1):
        stripped = line.strip()
        if not stripped.startswith("#"):
            out.append(line.rstrip())
            continue
        if stripped.endswith("\\"):
            raise _refused(number, stripped, "a directive continued on the next line")
        directive = _DIRECTIVE.fullmatch(stripped)
        if directive is None:
            raise _refused(number, stripped, "not a directive cffi can take")
        word, rest = directive.groups()
        if word == "include" and rest.startswith("<"):
            continue
        if word == "ifndef" and guard is None and not "".join(out) and _NAME.fullmatch(rest):
            guard = rest
            continue
        if word == "endif" and guard is not None and not rest:
            guard = None
            continue
        if word == "define":
            name = _NAME.match(rest)
            if name is None:
                raise _refused(number, stripped, "a #define without a name")
            value = rest[name.end() :]
            if value.startswith("("):
                raise _refused(number, stripped, "a macro with parameters")
            if not value.strip():
                if name.group() != guard:
                    raise _refused(number, stripped, "a #define without a value")
                continue
            out.append(f"#define {name.group()} ...")
            continue
        raise _refused(number, stripped, f"#{word} cannot be declared to cffi")
    if guard is not None:
        raise ValueError(f"#ifndef {guard} has no #endif")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def read_cdef(path: str = HEADER) -> str:
    """:func:`cdef_from_header` of the header at ``path``."""
    with open(path, encoding="utf-8") as f:
        return cdef_from_header(f.read())


ffibuilder = cffi.FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "xcon._native",
    '#include "xcon_native.c"\n#include "xcon_packet.c"\n',
    include_dirs=[NATIVE_DIR],
    depends=[
        os.path.join(NATIVE_DIR, "xcon_native.c"),
        HEADER,
        os.path.join(NATIVE_DIR, "xcon_packet.c"),
    ],
    extra_compile_args=["-O2"],
)


def build_in_place() -> str:
    """Compile into build/native/ and copy the extension into xcon/; return its path.

    Other builds of the module left in xcon/ (``_native.abi3.so`` from an
    editable install or ``setup.py build_ext --inplace``) are removed, so the
    import cannot pick up a stale one.
    """
    tmpdir = os.path.join(ROOT_DIR, "build", "native")
    os.makedirs(tmpdir, exist_ok=True)
    built = ffibuilder.compile(tmpdir=tmpdir, verbose=False)
    pkg_dir = os.path.join(ROOT_DIR, "xcon")
    target = os.path.join(pkg_dir, os.path.basename(built))
    # Replace, never overwrite in place: a running process may have it mapped.
    tmp = target + ".tmp"
    shutil.copyfile(built, tmp)
    os.replace(tmp, target)
    for old in glob.glob(os.path.join(pkg_dir, "_native.*.so")):
        if old != target:
            os.unlink(old)
    return target


if __name__ == "__main__":
    sys.stdout.write(build_in_place() + "\n")
