"""Crash-safe files: atomic writes and a size+CRC32 footer that catches torn or corrupt files."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

MAGIC = b"RVCK"


class CorruptFileError(RuntimeError):
    pass


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
    """Write to a temporary name, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
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
