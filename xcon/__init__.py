"""xcon: a fast, frame-aware cross-connect for qemu-based virtual routers."""

__version__ = "0.1.0"
