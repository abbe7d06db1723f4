"""Catch an env that breaks its contract, with one line naming the env and what is wrong.

`StrictEnv` wraps the env as it comes from its suite (or your factory): `reset` must return
(obs, info) and `step` five values (the Gymnasium API, not the old gym one), the action
space must stay what it was, and rewards must be numbers no larger than REWARD_LIMIT.
`DreamerObservation`'s output is checked against its own space (each key's shape), so a
vector of the wrong size or a value that is no number is named by its key.

What happens next: in env worker processes (`env.parallel=async`) the error is a fault like
any other (the worker restarts, the episode ends as truncated, `env/fault` is logged); in
the learner's process the run saves a checkpoint and stops with the one line.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reverie.errors import ReverieError

# 20x the largest twohot bin (symexp(20) = 4.85e8): a reward beyond it cannot be represented
REWARD_LIMIT = 1e10


class EnvContractError(ReverieError, RuntimeError):
    """The env returned something its spaces or the Gymnasium API rule out."""


def env_name(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None and spec.id else type(env.unwrapped).__name__


class StrictEnv(gym.Wrapper):
    """The raw env's API, action space and rewards, checked on every call."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.name, self.initial_actions = env_name(env), env.action_space

    def _fail(self, what: str) -> EnvContractError:
        return EnvContractError(f"env {self.name}: {what}")

    def reset(self, **kwargs: Any) -> Any:
        try:
            out = self.env.reset(**kwargs)
        except AssertionError as e:  # gymnasium's env checker (gym.make) found it first
            raise self._fail(f"reset broke the Gymnasium API: {e}") from None
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise self._fail(
                "reset returned the observation alone (the old gym API); return "
                "(observation, info) as Gymnasium does"
            )
        return out

    def step(self, action: Any) -> Any:
        try:
            out = self.env.step(action)
        except AssertionError as e:
            raise self._fail(f"step broke the Gymnasium API: {e}") from None
        if not (isinstance(out, tuple) and len(out) == 5):
            n = len(out) if isinstance(out, tuple) else 1
            raise self._fail(
                f"step returned {n} values; Gymnasium's step returns 5: observation, "
                "reward, terminated, truncated, info (4 is the old gym API)"
            )
        obs, reward, terminated, truncated, info = out
        try:
            value = float(reward)
        except (TypeError, ValueError):
            raise self._fail(f"reward {reward!r} is not a number") from None
        if np.isfinite(value) and abs(value) > REWARD_LIMIT:
            raise self._fail(f"reward {value:.3g} is beyond +-{REWARD_LIMIT:.0e}; scale it down")
        if self.env.action_space != self.initial_actions:
            raise self._fail(
                f"the action space changed from {self.initial_actions} to "
                f"{self.env.action_space}; it must stay the same for the whole run"
            )
        return obs, reward, terminated, truncated, info


def check_observation(name: str, space: spaces.Dict, obs: dict[str, np.ndarray]) -> None:
    """Each key of a converted observation has the shape its space declares."""
    for key, sub in space.spaces.items():
        if np.shape(obs[key]) != sub.shape:
            raise EnvContractError(
                f"env {name}: observation {key!r} has shape {np.shape(obs[key])}, its "
                f"observation space says {sub.shape}"
            )


def nonfinite_keys(obs: dict[str, np.ndarray], reward: np.ndarray) -> list[str]:
    """Observation keys (and 'reward') holding NaN or inf, of a batch of N envs."""
    bad = [
        k for k, v in obs.items() if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()
    ]
    return bad + (["reward"] if not np.isfinite(reward).all() else [])
