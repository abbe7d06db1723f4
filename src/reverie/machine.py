"""What the machine offers the run, read from the OS: used by the learner's thread count
(accel) and by the choice of where envs step (envs), which must not import the model."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
