"""Capture filters: tcpdump's expressions, compiled by libpcap's own compiler.

libpcap is loaded at run time (cffi in ABI mode: ``dlopen``), so xcon builds
and runs without it; only a capture with a filter needs it (Debian:
``libpcap0.8``).  An expression is compiled for Ethernet
(``pcap_open_dead(DLT_EN10MB)`` + ``pcap_compile``) and run on each frame
with libpcap's ``bpf_filter`` over the whole frame (before a snap length
cuts it), as the kernel would run it on a socket.
"""

from __future__ import annotations

import threading
from typing import Any

import cffi

__all__ = ["BpfFilter", "FilterError", "FilterUnavailable", "compile_filter"]

LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so", "pcap")
DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
#: The longest expression taken (a bound on what a request can make libpcap do).
MAX_EXPRESSION = 4096

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
)
_lib: Any = None
_lock = threading.Lock()  # pcap_compile is not thread-safe before libpcap 1.8


class FilterError(ValueError):
    """The expression does not compile; the message is libpcap's, in one line."""


class FilterUnavailable(FilterError):
    """libpcap is not installed."""


def _load() -> Any:
    global _lib
    if _lib is None:
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
            _lib = lib
            break
        else:
            raise FilterUnavailable(
                "capture filters need libpcap (Debian: apt-get install libpcap0.8); "
                "capture without a filter, or install it"
            )
    return _lib


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


def compile_filter(expression: str) -> BpfFilter:
    """Compile ``expression`` for Ethernet frames; raises FilterError (bad
    expression) or FilterUnavailable (no libpcap)."""
    if len(expression) > MAX_EXPRESSION:
        raise FilterError(f"filter longer than {MAX_EXPRESSION} characters")
    if "\x00" in expression:
        raise FilterError("filter contains a NUL character")
    lib = _load()
    with _lock:
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
    return BpfFilter(expression, prog, lib)
