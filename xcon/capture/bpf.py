"""Capture filters: tcpdump's expressions, compiled by libpcap's own compiler.

libpcap is loaded at run time (cffi in ABI mode: ``dlopen``), so xcon builds
and runs without it; only a capture with a filter needs it (Debian:
``libpcap0.8``).  An expression is compiled for Ethernet
(``pcap_open_dead(DLT_EN10MB)`` + ``pcap_compile``) and run on each frame
with libpcap's ``bpf_filter`` over the whole frame (before a snap length
cuts it), as the kernel would run it on a socket.

Compiling can be slow (libpcap's optimizer: ``port 1 or ... or port 350``
takes seconds), so a program is compiled once per expression and kept
(:func:`compile_filter` remembers the last :data:`CACHE_SIZE`); the control
API compiles on a worker thread with a time limit (see
:class:`xcon.capture.manager.FilterCompiler`).  ``pcap_compile`` is
thread-safe from libpcap 1.8 on; older versions compile one at a time.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

import cffi

__all__ = ["BpfFilter", "FilterError", "FilterUnavailable", "cached", "compile_filter", "remember"]

LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so", "pcap")
DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
#: The longest expression taken (a bound on what a request can make libpcap do).
MAX_EXPRESSION = 4096
#: Compiled programs kept, by expression (the most recently used).
CACHE_SIZE = 64

_ffi = cffi.FFI()
_ffi.cdef(
    """
    typedef struct pcap pcap_t;
    struct bpf_insn { unsigned short code; unsigned char jt; unsigned char jf; uint32_t k; };
    struct bpf_program { unsigned int bf_len; struct bpf_insn *bf_insns; };
    pcap_t *pcap_open_dead(int linktype, int snaplen);
    int pcap_compile(pcap_t *p, struct bpf_program *fp, const char *str, int optimize,
                     uint32_t netmask);
    char *pcap_geterr(pcap_t *p);
    void pcap_freecode(struct bpf_program *fp);
    void pcap_close(pcap_t *p);
    const char *pcap_lib_version(void);
    unsigned int bpf_filter(const struct bpf_insn *pc, const unsigned char *pkt,
                            unsigned int wirelen, unsigned int buflen);
    """
)
FUNCTIONS = (
    "pcap_open_dead",
    "pcap_compile",
    "pcap_geterr",
    "pcap_freecode",
    "pcap_close",
    "bpf_filter",
    "pcap_lib_version",
)
_lib: Any = None
#: Held around pcap_compile when libpcap is older than 1.8 (not thread-safe).
_lock: threading.Lock | None = None
_cache: OrderedDict[str, BpfFilter] = OrderedDict()
_cache_lock = threading.Lock()
_load_lock = threading.Lock()


class FilterError(ValueError):
    """The expression does not compile; the message is libpcap's, in one line."""


class FilterUnavailable(FilterError):
    """libpcap is not installed."""


def _load() -> Any:
    global _lib, _lock
    if _lib is not None:
        return _lib
    with _load_lock:
        if _lib is not None:
            return _lib
        for name in LIBPCAP_NAMES:
            try:
                lib = _ffi.dlopen(name)
            except OSError:
                continue
            # Resolve every function now: cffi resolves one on first use under a
            # lock, and a filter freed by the garbage collector meanwhile would
            # need that lock again (a deadlock).
            for fn in FUNCTIONS:
                getattr(lib, fn)
            version = _ffi.string(lib.pcap_lib_version()).decode(errors="replace")
            if not thread_safe(version):
                _lock = threading.Lock()
            _lib = lib
            break
        else:
            raise FilterUnavailable(
                "capture filters need libpcap (Debian: apt-get install libpcap0.8); "
                "capture without a filter, or install it"
            )
    return _lib


def thread_safe(version: str) -> bool:
    """Whether ``pcap_lib_version()``'s text names libpcap 1.8 or later."""
    m = re.search(r"libpcap version (\d+)\.(\d+)", version)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (1, 8)


def available() -> bool:
    try:
        _load()
    except FilterUnavailable:
        return False
    return True


class BpfFilter:
    """A compiled expression; :meth:`matches` runs it on one frame."""

    def __init__(self, expression: str, prog: Any, lib: Any) -> None:
        self.expression = expression
        self._prog = prog  # keeps the instructions alive
        self._insns = prog.bf_insns
        self._run = lib.bpf_filter
        self._free = lib.pcap_freecode

    def matches(self, cbuf: Any, offset: int, length: int) -> bool:
        """Whether the frame at ``cbuf + offset`` (a cffi view of the buffer) matches."""
        return self._run(self._insns, cbuf + offset, length, length) != 0

    def view(self, buf: Any) -> Any:
        """A cffi view of ``buf`` for :meth:`matches`."""
        return _ffi.from_buffer(buf)

    def __del__(self) -> None:
        try:
            self._free(self._prog)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def cached(expression: str) -> BpfFilter | None:
    """The program compiled for ``expression`` already, if it is kept."""
    with _cache_lock:
        f = _cache.get(expression)
        if f is not None:
            _cache.move_to_end(expression)
        return f


def remember(f: BpfFilter) -> None:
    """Keep ``f`` for its expression (the least recently used goes beyond
    :data:`CACHE_SIZE`)."""
    with _cache_lock:
        _cache[f.expression] = f
        _cache.move_to_end(f.expression)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def compile_filter(expression: str, *, cache: bool = True) -> BpfFilter:
    """Compile ``expression`` for Ethernet frames (a kept program when there
    is one, and the new one kept, unless ``cache`` is false); raises
    FilterError (bad expression) or FilterUnavailable (no libpcap)."""
    if cache:
        f = cached(expression)
        if f is not None:
            return f
    if len(expression) > MAX_EXPRESSION:
        raise FilterError(f"filter longer than {MAX_EXPRESSION} characters")
    if "\x00" in expression:
        raise FilterError("filter contains a NUL character")
    try:
        expression.encode()
    except UnicodeEncodeError:
        raise FilterError("filter is not valid text (a lone surrogate)") from None
    lib = _load()
    if _lock is not None:
        with _lock:
            prog = _compile(lib, expression)
    else:
        prog = _compile(lib, expression)
    f = BpfFilter(expression, prog, lib)
    if cache:
        remember(f)
    return f


def _compile(lib: Any, expression: str) -> Any:
    pcap = lib.pcap_open_dead(DLT_EN10MB, 262144)
    if pcap == _ffi.NULL:
        raise FilterError("libpcap: pcap_open_dead failed")
    try:
        prog = _ffi.new("struct bpf_program *")
        if lib.pcap_compile(pcap, prog, expression.encode(), 1, PCAP_NETMASK_UNKNOWN) != 0:
            msg = _ffi.string(lib.pcap_geterr(pcap)).decode(errors="replace")
            raise FilterError(f"bad filter {expression!r}: {msg}")
    finally:
        lib.pcap_close(pcap)
    return prog
