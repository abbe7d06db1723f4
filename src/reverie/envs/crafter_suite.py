"""Crafter (Hafner 2021), written `crafter` or `crafter:reward` (`crafter:noreward` for
the unsupervised variant): 64x64 colour frames, 17 discrete actions, episodes of at
most 10,000 steps (`truncated`) that end early when the player dies (`terminated`).

`info['achievements']` holds the episode's achievement counts (crafter's own); the
trainer turns the final step's into `achievement/<name>` episode metrics and the
Crafter score (`reverie.envs.episode_stats`). Needs `pip install -e .[crafter]`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reverie.envs._util import require, unknown_task

ACHIEVEMENTS = (
    "collect_coal",
    "collect_diamond",
    "collect_drink",
    "collect_iron",
    "collect_sapling",
    "collect_stone",
    "collect_wood",
    "defeat_skeleton",
    "defeat_zombie",
    "eat_cow",
    "eat_plant",
    "make_iron_pickaxe",
    "make_iron_sword",
    "make_stone_pickaxe",
    "make_stone_sword",
    "make_wood_pickaxe",
    "make_wood_sword",
    "place_furnace",
    "place_plant",
    "place_stone",
    "place_table",
    "wake_up",
)


class CrafterEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, reward: bool = True, size: int = 64, length: int = 10_000, **kwargs):
        crafter = require("crafter", "crafter", "crafter")
        self.env = crafter.Env(size=(size, size), reward=reward, length=length, **kwargs)
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(int(self.env.action_space.n))
        self.render_mode = "rgb_array"
        self._last = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # crafter seeds each world from (seed, episode index)
            self.env._seed = int(seed)
            self.env._episode = 0
        self._last = self.env.reset()
        return self._last, {"achievements": self._achievements()}

    def _achievements(self) -> dict[str, int]:
        player = getattr(self.env, "_player", None)
        counts = dict(getattr(player, "achievements", {}) or {})
        return {name: int(counts.get(name, 0)) for name in ACHIEVEMENTS}

    def step(self, action):
        obs, reward, done, info = self.env.step(int(action))
        self._last = obs
        terminated = bool(done) and float(info.get("discount", 1.0)) == 0.0
        truncated = bool(done) and not terminated
        out = {"achievements": {k: int(info["achievements"].get(k, 0)) for k in ACHIEVEMENTS}}
        return obs, float(reward), terminated, truncated, out

    def render(self):
        return self._last


def make_crafter(task: str = "reward", *, pixels: bool = True, size: int = 64, **kwargs: Any):
    if task not in ("reward", "noreward"):
        raise unknown_task("crafter", task, ["reward", "noreward"])
    return CrafterEnv(reward=task == "reward", size=size, **kwargs)
