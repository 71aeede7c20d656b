"""A non-blocking exclusive lock on a lock file: one holder at a time, the others told at once.

The lock is the OS's (flock): it goes with its holder's process, killed or not, so no lock
outlives the build that took it and no PID bookkeeping is needed (the holder's PID is written
into the file only so that a refusal can name it). A lock file that its holder removes (to
leave nothing behind) is safe to take: whoever locked the removed file sees that the path no
longer names it and takes the new one instead.
"""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_TRIES = 5  # a lock file removed and made again between open and flock, this many times in a row


class Busy(Exception):
    """Another process holds the lock; `pid`: the holder's, when it wrote it (else None)."""

    def __init__(self, pid: int | None):
        super().__init__(f"held by pid {pid}" if pid else "held by another process")
        self.pid = pid


@dataclass
class HeldLock:
    path: Path
    fd: int | None

    def release(self, remove: bool = False) -> None:
        """Let go; `remove`: delete the lock file first (while still held, so that no one
        can take the old file after it is gone)."""
        if self.fd is None:
            return
        if remove:
            try:
                if os.fstat(self.fd).st_ino == os.lstat(self.path).st_ino:
                    self.path.unlink()
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None


def take(path: Path) -> HeldLock:
    """Hold `path`'s lock, made if missing; raises Busy when another process holds it, and
    OSError when the lock file cannot be made or is not a regular file (a link is not followed)."""
    for _ in range(_TRIES):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(0, "not a regular file", str(path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy(_pid_in(fd)) from None
            try:
                same = os.fstat(fd).st_ino == os.lstat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                held, fd = HeldLock(path, fd), None
                return held
        finally:
            if fd is not None:
                os.close(fd)
    raise Busy(None)  # removed and made again each time: someone is churning it


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
