"""A ``timerfd`` (``timerfd_create(2)``) on ``CLOCK_MONOTONIC``: the engines'
precise wake-up.

``epoll_wait`` takes its timeout in whole milliseconds (Python rounds it up),
so a timer can fire up to 1 ms late; a delay line needs better.  A timerfd
armed at the absolute monotonic time of the nearest timer becomes readable
at that time (nanosecond resolution, the kernel's timer slack aside: 50 µs by
default), and the loop watching it wakes then.  ``time.monotonic`` reads
``CLOCK_MONOTONIC``, so the engines' clock and the timer's are the same.
Through ctypes: it is called once per change of the nearest timer, not per
frame.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["TimerFd", "set_timer_slack"]

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)  # libc: already in the process (find_library forks)
_create = _libc.timerfd_create
_create.argtypes = [ctypes.c_int, ctypes.c_int]
_create.restype = ctypes.c_int
_settime = _libc.timerfd_settime
_settime.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(_Itimerspec),
    ctypes.POINTER(_Itimerspec),
]
_settime.restype = ctypes.c_int


_PR_SET_TIMERSLACK = 29
#: Timer slack asked for the loop's thread (ns): the kernel's default, 50 µs,
#: would be most of a delay line's error budget.
TIMER_SLACK_NS = 1000


def set_timer_slack(ns: int = TIMER_SLACK_NS) -> bool:
    """Ask for ``ns`` of timer slack on this thread (``prctl(PR_SET_TIMERSLACK)``)."""
    prctl = _libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl(_PR_SET_TIMERSLACK, ns, 0, 0, 0) == 0


class TimerFd:
    """One timerfd; :meth:`arm` it at a monotonic time, :meth:`clear` it when it fired."""

    def __init__(self) -> None:
        fd = _create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        self.fd = fd
        self.armed = 0.0  # the time it is armed for (0: disarmed)
        self._spec = _Itimerspec()

    def arm(self, when: float) -> None:
        """Become readable at monotonic time ``when`` (seconds); re-arms."""
        if when == self.armed:
            return
        ns = max(1, int(when * 1e9))  # 0 would disarm it
        v = self._spec.it_value
        v.tv_sec, v.tv_nsec = divmod(ns, 1_000_000_000)
        if _settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        self.armed = when

    def clear(self) -> None:
        """Read the expiry count (the descriptor is readable until then)."""
        self.armed = 0.0
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
