"""Hooks into the training loop (`Dreamer.learn(steps, callbacks=[...])`).

A callback overrides any of the hooks below; each gets the run (`TrainingRun`: its
`step`, `updates`, `agent`, `logger`, `evaluate`). A hook that returns False stops
training: the run saves a checkpoint and `learn` returns its summary with `stopped_by`
naming the hook.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reverie.agent import Agent
from reverie.clocks import Every
from reverie.logger import Logger


class TrainingRun(Protocol):
    """What a callback sees of the training loop (`reverie.trainer.Trainer` is one)."""

    step: int  # env steps so far (all envs, all ranks)
    updates: int
    agent: Agent
    logger: Logger

    def evaluate(self, episodes: int, prefix: str = "eval/", mode: str = "mode") -> dict: ...


class Callback:
    def on_step(self, trainer: TrainingRun) -> bool | None:
        """After each step of the envs (and the updates it was due)."""
        return None

    def on_episode(self, trainer: TrainingRun, ret: float, length: int) -> bool | None:
        """When an episode ends, with its return and length."""
        return None

    def on_log(self, trainer: TrainingRun, metrics: dict[str, Any]) -> bool | None:
        """After each train-metrics line (every `run.log_every` seconds)."""
        return None

    def on_checkpoint(self, trainer: TrainingRun, path: Path) -> bool | None:
        """After each checkpoint written during training."""
        return None


class EvalCallback(Callback):
    """Evaluate the policy every `every` env steps on `episodes` fresh episodes; the results
    go to the logger under `prefix` and to `history` as (step, mean return)."""

    def __init__(self, every: int, episodes: int = 5, prefix: str = "callback_eval/"):
        self.clock, self.episodes, self.prefix = Every(every), episodes, prefix
        self.history: list[tuple[int, float]] = []

    def on_step(self, trainer: TrainingRun) -> bool | None:
        if self.clock(trainer.step):
            result = trainer.evaluate(self.episodes, prefix=self.prefix)
            self.history.append((trainer.step, result[f"{self.prefix}return"]))
            if trainer.logger is not None:
                trainer.logger.write(trainer.step, result)
        return None


class StopOnReturn(Callback):
    """Stop once the mean return of the last `window` training episodes reaches `target`."""

    def __init__(self, target: float, window: int = 10):
        self.target = target
        self.returns: deque[float] = deque(maxlen=window)
        self.reached_at: int | None = None

    def on_episode(self, trainer: TrainingRun, ret: float, length: int) -> bool | None:
        self.returns.append(ret)
        full = len(self.returns) == self.returns.maxlen
        if full and float(np.mean(self.returns)) >= self.target:
            self.reached_at = trainer.step
            return False
        return None
