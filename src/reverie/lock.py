"""One trainer per logdir: an exclusive lock on `<logdir>/.lock`.

The lock is an `flock` on an open file, so the OS releases it when the process ends in
any way (a kill -9 included): there is never a stale lock to clean up. The file holds the
pid and host of the holder, for the message a second trainer prints. Readers (`eval`,
`dream`, `plot`, `load_policy`) do not take it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from reverie.errors import ReverieError

LOCK = ".lock"


class LogdirInUseError(ReverieError, RuntimeError):
    """Another process trains in this logdir."""


class LogdirLock:
    def __init__(self, logdir: str | Path):
        self.path = Path(logdir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> LogdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LogdirInUseError(
                f"logdir {self.path.parent} is in use by another trainer ({holder}); wait "
                "for it to end or stop it, or pick another --logdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None
