"""ProcGen (Cobbe et al. 2020), written `procgen:<game>` (e.g. procgen:coinrun): 64x64
colour frames, 15 discrete actions, through procgen's gym3 interface
(`ProcgenGym3Env`), distribution mode `hard` and unlimited levels by default.

Install note: procgen has no wheel for Python 3.11. `procgen-mirror` has one, but it
pins numpy 1.26, so it needs a venv with numpy<2: `pip install -e .[procgen]` installs
it there (pip refuses where another package needs numpy>=2). The suite's test skips
when procgen cannot be imported.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reverie.envs._util import require, unknown_task

GAMES = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)


class ProcgenEnv(gym.Env):
    """One ProcGen game. The gym3 env resets itself when an episode ends; its `first`
    flag on the following observation marks the end (a game over or the game's own
    step limit, both reported as `terminated`, as the game does not tell them apart)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, game: str, seed: int | None = None, **kwargs: Any):
        self.game, self.kwargs = game, {"distribution_mode": "hard", "num_levels": 0, **kwargs}
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(15)
        self.render_mode = "rgb_array"
        self.env: Any = None  # procgen's gym3 ProcgenGym3Env (untyped), built by _build
        self._build(seed)

    def _build(self, seed: int | None) -> None:
        procgen = require(
            "procgen",
            "procgen",
            "procgen",
            "(procgen-mirror; it needs numpy<2, see docs/domains.md)",
        )
        if self.env is not None:
            self.env.close() if hasattr(self.env, "close") else None
        extra = {"rand_seed": int(seed)} if seed is not None else {}
        self.env = procgen.ProcgenGym3Env(num=1, env_name=self.game, **self.kwargs, **extra)
        self._obs: np.ndarray | None = None

    def _observe(self) -> tuple[float, np.ndarray, bool]:
        reward, obs, first = self.env.observe()
        self._obs = np.asarray(obs["rgb"][0], np.uint8)
        return float(reward[0]), self._obs, bool(first[0])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._build(seed)
        if self._obs is None:
            self._observe()
        return self._obs, {}

    def step(self, action):
        self.env.act(np.array([int(action)], np.int32))
        reward, obs, first = self._observe()
        return obs, reward, first, False, {}

    def render(self):
        return self._obs


def make_procgen(task: str, *, pixels: bool = True, size: int = 64, **kwargs: Any) -> gym.Env:
    if task not in GAMES:
        raise unknown_task("procgen", task, list(GAMES))
    require(
        "procgen", "procgen", "procgen", "(procgen-mirror; it needs numpy<2, see docs/domains.md)"
    )
    return ProcgenEnv(task, **kwargs)
