"""Process-level settings that make eager PyTorch faster on CPU."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS.

    An update allocates and frees the same large activations every step; by default glibc
    maps them fresh each time and every first touch page-faults, which costs a measurable
    share of a small update (benchmarks/profile_update.py shows it). No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        ok &= libc.mallopt(_M_TOP_PAD, 256 << 20)
        return bool(ok)
    except (OSError, AttributeError):
        return False
