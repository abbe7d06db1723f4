"""Behaviour Suite, written `bsuite:<experiment>/<id>` (e.g. bsuite:catch/0), through its
dm_env interface: observations flattened into one float32 vector, Discrete actions.
Each id fixes its own seed and settings, so seeded resets do not reseed the env.
Needs `pip install -e .[bsuite]`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium as gym

from reverie.config import ConfigError
from reverie.envs._util import require, unknown_task
from reverie.envs.dm_adapter import DmEnvToGym


def make_bsuite(task: str, *, pixels: bool = False, size: int = 64, **kwargs: Any) -> gym.Env:
    if pixels:
        raise ConfigError("bsuite has no rendered frames: drop env.pixels=true")
    bsuite = require("bsuite", "bsuite", "bsuite")
    from bsuite import sweep

    bsuite_id = task if "/" in task else f"{task}/0"
    if bsuite_id not in sweep.SWEEP:
        raise unknown_task("bsuite", task, list(sweep.SWEEP))

    def factory(seed: int | None):
        with contextlib.redirect_stdout(io.StringIO()):  # it prints 'Loaded bsuite_id'
            return bsuite.load_from_id(bsuite_id)

    return DmEnvToGym(factory, obs="flat", reseed=lambda env, seed: None)
