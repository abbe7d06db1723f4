"""Clocks of the training loop: when to update, log, evaluate, dream and checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the clocks import nothing of reverie at run time
    from omegaconf import DictConfig

    from reverie.config import RunConfig


class Every:
    """Fires when `every` units (env steps or seconds) have passed since it last fired.

    `every=None` never fires; `every=0` fires on every check.
    """

    def __init__(self, every: float | None, last: float = 0.0):
        self.every, self.last = every, last

    def __call__(self, now: float) -> bool:
        if self.every is None or now - self.last < self.every:
            return False
        self.last = now
        return True


class TrainRatio:
    """How many updates are owed after `steps` env steps since training started: one at
    the start, then `ratio` replayed steps per env step at `replayed` steps per update."""

    def __init__(self, ratio: float, replayed: int):
        self.ratio, self.replayed = ratio, replayed

    @classmethod
    def from_run(cls, run: RunConfig | DictConfig) -> TrainRatio:
        """The run config's ratio: `run.train_ratio` replayed steps per env step, one update
        replaying `run.batch_size * run.batch_length` steps."""
        return cls(run.train_ratio, run.batch_size * run.batch_length)

    def paid(self, steps: int) -> int:
        """The updates that `steps` env steps pay for at the ratio, besides the first one."""
        return int(steps * self.ratio / self.replayed)

    def budget(self, steps: int, fill: int, start: int = 0) -> int:
        """The updates paid for from env step `start` to `steps` when training starts once
        replay holds `fill` steps (a run's budget; a resumed one's rest)."""
        return self.paid(max(0, steps - fill)) - self.paid(max(0, start - fill))

    def owed(self, steps: int, updates: int) -> int:
        return max(0, self.paid(steps) + 1 - updates)


class Speedometer:
    """Env steps and updates per second since the last reading."""

    def __init__(self, now: float, step: int, updates: int):
        self.since = (now, step, updates)

    def read(self, now: float, step: int, updates: int, reset: bool = True) -> dict[str, float]:
        then, step0, updates0 = self.since
        seconds = max(now - then, 1e-9)
        if reset:
            self.since = (now, step, updates)
        return {
            "fps/env_steps": (step - step0) / seconds,
            "fps/updates": (updates - updates0) / seconds,
        }
