"""Ctrl-C and SIGTERM during training: the first one stops the run, which then saves its
checkpoint; every further one is counted and ignored, so that pressing Ctrl-C twice (what
most people do) cannot break the save it is waiting for. `kill -9` still stops at once,
which the atomic writes make safe (docs/crash-safety.md).

Guards nest: a guard that caught a signal hands its count to the guard it was installed
over (the CLI's, around the trainer's), so the outer one ignores what follows too.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal, after its checkpoint: `saved` is (env step, path), or
    None on a job's ranks other than 0 (rank 0 writes the job's checkpoint)."""

    def __init__(self, saved: tuple[int, Path] | None):
        super().__init__()
        self.saved = saved


class InterruptGuard:
    """Within `with InterruptGuard(...)`: the first SIGINT/SIGTERM raises KeyboardInterrupt
    (or, with `raise_first=False`, only sets `.received`, for a loop that checks it at a
    point where all ranks of a job can stop together); later ones are ignored. Outside the
    main thread, where Python cannot set handlers, it does nothing."""

    def __init__(self, raise_first: bool = True, keep_after_signal: bool = False):
        self.raise_first = raise_first
        self.keep_after_signal = keep_after_signal  # for a process that ends after it
        self.count = 0
        self._old: dict[int, Any] | None = None

    @property
    def received(self) -> bool:
        return self.count > 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # no printing here: a handler that runs inside a print to stderr would fail on a
        # reentrant write, and the run's one closing line says what happened
        self.count += 1
        if self.count == 1 and self.raise_first:
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            # a signal this process was started ignoring (SIGINT in a shell's background
            # job, under nohup) stays ignored, as the shell asked
            current = {sig: signal.getsignal(sig) for sig in SIGNALS}
            self._old = {s: h for s, h in current.items() if h is not signal.SIG_IGN}
            for sig in self._old:
                signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is None:
            return
        if self.received and self.keep_after_signal:
            # ignored by the OS from here on: Python puts back the default handlers of the
            # ones it handles while it shuts down, and a signal then would kill the process
            for signum in self._old:
                signal.signal(signum, signal.SIG_IGN)
            return
        outers = {getattr(h, "__self__", None) for h in self._old.values()}
        for outer in outers:
            if isinstance(outer, InterruptGuard):
                outer.count += self.count  # before it is back: a signal then is ignored
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old = None
