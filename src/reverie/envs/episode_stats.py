"""Per-episode metrics that suites report through the env's `info` (Crafter achievements).

The trainer hands each finished episode's last `info` to `EpisodeStats.episode`, which
returns extra metrics for the episode line: `achievement/<name>` (1 if unlocked in the
episode, else 0) and `crafter/score`, the Crafter paper's score over all episodes so
far: exp(mean_i ln(1 + s_i)) - 1 with s_i the success rate of achievement i in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def crafter_score(success_rates_percent: list[float] | np.ndarray) -> float:
    rates = np.asarray(success_rates_percent, np.float64)
    return float(np.exp(np.mean(np.log1p(rates))) - 1.0)


def info_at(infos: dict[str, Any], index: int, key: str) -> Any:
    """Entry `key` of env `index` from a vector env's batched infos (None if absent)."""
    if key not in infos:
        return None
    mask = infos.get("_" + key)
    if mask is not None and not np.asarray(mask)[index]:
        return None
    value = infos[key]
    if isinstance(value, dict):
        return {k: info_at(value, index, k) for k in value if not k.startswith("_")}
    return np.asarray(value)[index]


class EpisodeStats:
    def __init__(self) -> None:
        self.episodes = 0
        self.unlocked: dict[str, int] = {}

    def episode(self, info: dict[str, Any] | None) -> dict[str, float]:
        achievements = (info or {}).get("achievements")
        if not achievements:
            return {}
        self.episodes += 1
        out = {}
        for name, count in sorted(achievements.items()):
            got = float(count is not None and float(count) > 0)
            self.unlocked[name] = self.unlocked.get(name, 0) + int(got)
            out[f"achievement/{name}"] = got
        rates = [100.0 * n / self.episodes for n in self.unlocked.values()]
        out["crafter/score"] = crafter_score(rates)
        return out

    def state(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "unlocked": dict(self.unlocked)}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if state:
            self.episodes = int(state["episodes"])
            self.unlocked = dict(state["unlocked"])


@dataclass
class Episode:
    index: int  # the env that ran it
    ret: float
    length: int
    info: dict[str, Any]


class EpisodeTracker:
    """Returns and lengths of the episodes running in N envs, from the flags of each step.

    A reset step (`is_first`) is no transition: its reward and length do not count.
    """

    def __init__(self, num_envs: int) -> None:
        self.ret = np.zeros(num_envs)
        self.length = np.zeros(num_envs, np.int64)

    def step(
        self, reward: np.ndarray, is_first: np.ndarray, is_last: np.ndarray, infos: dict[str, Any]
    ) -> list[Episode]:
        """Count one step of every env; returns the episodes that ended on it."""
        self.ret += np.where(is_first, 0.0, reward)
        self.length += ~is_first
        done = []
        for i in np.flatnonzero(is_last):
            info = {"achievements": info_at(infos, int(i), "achievements")}
            done.append(Episode(int(i), float(self.ret[i]), int(self.length[i]), info))
            self.ret[i], self.length[i] = 0.0, 0
        return done
