"""cffi (API mode) build script for ``xcon._native``.

Used two ways:

* by setuptools, through ``cffi_modules=["native/build_native.py:ffibuilder"]``
  in setup.py (``pip install .``, ``pip install -e .``, ``setup.py build_ext``);
* directly, ``python native/build_native.py``, which compiles the extension
  and copies it next to the package sources (``xcon/``) for development.

Paths are taken relative to this file, never to the current directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

import cffi

NATIVE_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(NATIVE_DIR)

CDEF = """
#define XCON_API_VERSION ...
#define XCON_MAX_FRAME ...
#define XCON_HDR_LEN ...
#define XCON_NEED_DATA ...
#define XCON_ZERO ...
#define XCON_TOO_BIG ...
#define XCON_READ_EOF ...
#define XCON_READ_BATCH ...
#define XCON_MAX_DGRAM ...
#define XCON_DGRAM_BATCH ...
#define XCON_MAX_PREFIX ...
#define XCON_OUT_LEN ...
#define XCON_EPB_FIXED ...
#define XCON_EPB_FLAGS_OPT ...

int xcon_scan(const uint8_t *buf, size_t start, size_t end, size_t out[]);
int xcon_skip(const uint8_t *buf, size_t start, size_t end, size_t max_frames, size_t out[]);
void xcon_vlan_strip(const uint8_t *src, size_t start, size_t end, unsigned int vid,
                     uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[]);
void xcon_vlan_insert(const uint8_t *src, size_t start, size_t end, unsigned int vid,
                      uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[]);
int xcon_read_frames(int fd, uint8_t *buf, size_t start, size_t end,
                     size_t max_frame, size_t max_count, size_t out[]);
int xcon_write_frames(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[]);
int xcon_recv_datagrams(int fd, uint8_t *buf, size_t start, size_t end, size_t max_count,
                        const uint8_t *expect, const uint8_t *mask, size_t prefix_len,
                        const uint8_t *peer, size_t peer_len, size_t out[]);
int xcon_send_datagrams(int fd, const uint8_t *buf, size_t start, size_t end,
                        const uint8_t *prefix, size_t prefix_len,
                        const uint8_t *addr, size_t addrlen, size_t out[]);
void xcon_capture_frames(const uint8_t *src, size_t start, size_t end,
                         uint8_t *dst, size_t dst_start, size_t dst_end,
                         uint32_t if_id, uint32_t flags, uint64_t ts, size_t snaplen,
                         size_t out[]);
"""

# AF_PACKET sockets with PACKET_VNET_HDR (native/xcon_packet.c).
CDEF_PACKET = """
#define XCON_VNET_HDR_LEN ...
#define XCON_PKT_ROOM ...
#define XCON_PKT_OUT_LEN ...
#define XCON_PKT_FORWARDED ...
#define XCON_PKT_CSUM ...
#define XCON_PKT_SPLIT ...
#define XCON_PKT_UNSUPPORTED ...
#define XCON_PKT_MALFORMED ...
#define XCON_PKT_BAD_FRAME ...
#define XCON_PKT_NO_ROOM ...

int xcon_offload_frame(const uint8_t *vnet, const uint8_t *frame, size_t len,
                       unsigned int tpid, unsigned int tci,
                       uint8_t *dst, size_t dst_start, size_t dst_end, size_t out[]);
int xcon_read_packets(int fd, uint8_t *buf, size_t start, size_t end, size_t max_count,
                      int vnet_hdr, size_t out[]);
int xcon_write_packets(int fd, const uint8_t *buf, size_t start, size_t end, size_t out[]);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.cdef(CDEF_PACKET)
ffibuilder.set_source(
    "xcon._native",
    '#include "xcon_native.c"\n#include "xcon_packet.c"\n',
    include_dirs=[NATIVE_DIR],
    depends=[
        os.path.join(NATIVE_DIR, "xcon_native.c"),
        os.path.join(NATIVE_DIR, "xcon_native.h"),
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
