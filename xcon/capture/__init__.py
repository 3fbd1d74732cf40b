"""Per-link capture to pcapng: files, ring files, live streams (see
:mod:`xcon.capture.capture` for the recording model and the buffer)."""

from xcon.capture.capture import Capture, CaptureOptions, CaptureTap

__all__ = ["Capture", "CaptureOptions", "CaptureTap"]
