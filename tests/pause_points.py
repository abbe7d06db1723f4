"""`reverie train` (any `reverie` command) with pause points for tests/test_kill.py.

    python tests/pause_points.py train --logdir DIR ...

The kill test SIGKILLs a training run at exact moments; reverie's code holds no hook for
that, so this launcher patches the moments in before calling `reverie.cli.main`:

- "update": right after `Agent.update` returns, before the trainer's bookkeeping;
- "checkpoint": with half of a checkpoint's bytes written to its temporary file;
- "chunk": likewise, with half of a replay chunk file's bytes written.

Protocol (the environment): REVERIE_TEST_PAUSE names the point, REVERIE_TEST_PAUSE_FILE a
marker file. The test arms a point by deleting the marker; the run, reaching that point
with the marker absent, writes it and sleeps 0.5 s to be killed there. Without
REVERIE_TEST_PAUSE the launcher patches nothing.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

# the modules whose `atomic_write` writes the file of a point (patched there, by name)
WRITERS = {"checkpoint": "reverie.checkpoint", "chunk": "reverie.replay"}


def pause(point: str) -> None:
    """At the armed point (marker absent) write the marker, then wait 0.5 s for the kill."""
    marker = os.environ.get("REVERIE_TEST_PAUSE_FILE", "")
    if os.environ.get("REVERIE_TEST_PAUSE") == point and marker and not os.path.exists(marker):
        Path(marker).write_text(point)
        time.sleep(0.5)


def pause_after_update() -> None:
    """Wrap `Agent.update` on the class: the trainer's agent is an instance of it."""
    from reverie.agent import Agent

    update = Agent.update

    @functools.wraps(update)
    def paused(self: Agent, *args: Any, **kwargs: Any) -> Any:
        result = update(self, *args, **kwargs)
        pause("update")
        return result

    Agent.update = paused  # type: ignore[method-assign]


def pause_mid_write(point: str) -> None:
    """Pause once half of each file the point's module writes is on disk.

    `reverie.files.write` carries every byte reverie writes; it is patched to stop at the
    half-way byte while the point's module is inside its `atomic_write` call (so in the
    temporary file, whichever way `atomic_write` splits its writes). Per thread: a write
    elsewhere is not counted.
    """
    import importlib

    from reverie import files

    module = importlib.import_module(WRITERS[point])
    atomic_write, write = module.atomic_write, files.write
    state = threading.local()  # .left: bytes until the pause, inside the point's write

    def watched_atomic_write(path: Any, payload: bytes, *args: Any, **kwargs: Any) -> None:
        state.left = len(payload) // 2
        try:
            atomic_write(path, payload, *args, **kwargs)
        finally:
            state.left = None

    def paused_write(file: Any, data: Any) -> None:
        left = getattr(state, "left", None)
        if left is None or left > len(data):
            if left is not None:
                state.left = left - len(data)
            write(file, data)
            return
        state.left = None
        write(file, data[:left])
        file.flush()  # the half on disk, not in a buffer: the kill leaves it torn there
        pause(point)
        write(file, data[left:])

    module.atomic_write = watched_atomic_write
    files.write = paused_write


def install(point: str) -> None:
    if point == "update":
        pause_after_update()
    elif point in WRITERS:
        pause_mid_write(point)
    else:
        raise SystemExit(f"pause_points: unknown REVERIE_TEST_PAUSE={point!r}")


def main(argv: list[str]) -> int:
    point = os.environ.get("REVERIE_TEST_PAUSE", "")
    if point:
        install(point)
    from reverie.cli import main as reverie_main

    return reverie_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
