"""Crash-safe files: atomic writes and a size+CRC32 footer that catches torn or corrupt files."""

from __future__ import annotations

import errno
import os
import shutil
import zlib
from pathlib import Path
from typing import IO

from reverie.errors import ReverieError

MAGIC = b"RVCK"


class CorruptFileError(RuntimeError):
    pass


class DiskFullError(ReverieError, RuntimeError):
    """A write failed for lack of space; what was on disk before it is intact."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path | str, error: OSError) -> DiskFullError:
    """The one line for a write that found the disk full: where, how much is free, what next."""
    path = Path(path)
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(
        f"no space left on the device of {path.parent} ({free}) while writing {path.name}; "
        "free some space (or lower replay.disk_budget_mb) and rerun the same command to "
        "resume from the last checkpoint",
    )


def write(file: IO[bytes] | IO[str], data: bytes | memoryview | str) -> None:
    """Every byte reverie writes to its own files goes through here (one place to see a
    full disk; tests/test_disk_full.py fills it)."""
    file.write(data)  # type: ignore[arg-type]


def with_footer(payload: bytes) -> bytes:
    """Append 16 bytes: magic, payload length, CRC32."""
    return (
        payload
        + MAGIC
        + len(payload).to_bytes(8, "little")
        + zlib.crc32(payload).to_bytes(4, "little")
    )


def strip_footer(raw: bytes, path: Path | str) -> bytes:
    """The payload of a file written with `with_footer`; raises CorruptFileError naming it."""
    if len(raw) < 16 or raw[-16:-12] != MAGIC:
        raise CorruptFileError(f"{path} is truncated or not a reverie file")
    payload = raw[:-16]
    size = int.from_bytes(raw[-12:-4], "little")
    if size != len(payload) or zlib.crc32(payload) != int.from_bytes(raw[-4:], "little"):
        raise CorruptFileError(f"{path} is corrupt (size or checksum mismatch)")
    return payload


def atomic_write(path: Path | str, payload: bytes) -> None:
    """Write to a temporary name, fsync, rename: readers see the old file or the new one.

    Stale temporary files of killed writers (`.NAME.tmpPID`) are ignored by every reader.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f, payload)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)  # the old file stays as it was
        if e.errno in NO_SPACE:
            raise disk_full(path, e) from None
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def remove_stale_temps(directory: Path) -> None:
    """Delete the temporary files (`.NAME.tmpPID`) of writers that are no longer running."""
    for path in Path(directory).glob(".*.tmp*"):
        pid = path.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
