"""One xcon per health file.

Two xcons writing one health file (two started in the same directory, both
with the default ``./health``) would overwrite each other's verdict, and the
one that ends first would leave ``xcon is not running`` there while the
other still runs.  So xcon locks the health file before it creates anything:
an exclusive ``flock`` on ``PATH.lock`` beside it, a file holding its pid.
The kernel drops the lock with the process, however it ends (a file left by
a killed xcon locks nothing); a clean exit also removes the file.  An xcon
that finds the lock held refuses to start and names the holder's pid.

The health file itself cannot carry the lock: it is replaced by a rename at
every write (readers never see half a file), and a lock belongs to an inode.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

#: Tries at taking a lock whose file its last holder removes meanwhile.
_ATTEMPTS = 5
#: How long to wait for a holder that has just locked the file to write its pid.
_PID_WAIT = 0.5


class LockHeld(Exception):
    """Another process holds the lock: its pid (None when the file does not say)."""

    def __init__(self, path: str, pid: int | None) -> None:
        super().__init__(f"{path} is locked by pid {pid}")
        self.path = path
        self.pid = pid


class LockFile:
    """An exclusive lock on a file holding the holder's pid (see the module docstring)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str) -> LockFile:
        """Lock ``path`` (made if missing) and write this process's pid in it.
        Raises :class:`LockHeld`, or OSError when the file cannot be made or opened."""
        for _ in range(_ATTEMPTS):
            fd = _open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise LockHeld(path, pid) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                with contextlib.suppress(OSError):  # read-only or full: the lock still holds
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return cls(path, fd)
            os.close(fd)  # its holder removed it as it let go: lock the new file
        raise OSError(f"{path} keeps being replaced")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def forget(self) -> None:
        """Let go of the descriptor only: the lock is another xcon's now (a
        handover passed it), so the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def release(self) -> None:
        """Remove the file (if it is still the one locked) and let go; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                os.unlink(self.path)
        os.close(fd)


def _open(path: str) -> int:
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except PermissionError:
        # Another user's file: locking needs no write access, only the pid goes unwritten.
        return os.open(path, os.O_RDONLY | flags)


def _holder(fd: int) -> int | None:
    """The pid written in a file another process holds locked (it may be
    writing it right now: waited for a moment)."""
    deadline = time.monotonic() + _PID_WAIT
    while True:
        with contextlib.suppress(OSError, ValueError):
            text = os.pread(fd, 32, 0).decode("ascii")
            if text.endswith("\n"):
                pid = int(text)
                return pid if pid > 0 else None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)
