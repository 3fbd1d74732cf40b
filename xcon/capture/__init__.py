"""Per-link capture to pcapng: files, ring files, live streams (see
:mod:`xcon.capture.capture` for the recording model and the buffer)."""
