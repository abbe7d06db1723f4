"""A small dm_env -> Gymnasium adapter, shared by the dmc, bsuite and memmaze suites.

Episode flags follow dm_env's discounts: a last time step with discount 0 is
`terminated` (a true terminal state), one with discount > 0 is `truncated` (a time limit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def spec_to_space(spec: Any) -> spaces.Space:
    """A dm_env spec (Array, BoundedArray, DiscreteArray) as a Gymnasium space."""
    if hasattr(spec, "num_values"):  # DiscreteArray
        return spaces.Discrete(int(spec.num_values))
    dtype = np.dtype(spec.dtype)
    shape = tuple(int(s) for s in spec.shape)
    if dtype == np.uint8:
        return spaces.Box(0, 255, shape, np.uint8)
    low = np.broadcast_to(getattr(spec, "minimum", -np.inf), shape).astype(np.float32)
    high = np.broadcast_to(getattr(spec, "maximum", np.inf), shape).astype(np.float32)
    return spaces.Box(low, high, shape, np.float32)


def _entries(spec: Any) -> dict[str, Any]:
    return dict(spec) if isinstance(spec, dict) else {"obs": spec}


class DmEnvToGym(gym.Env):
    """Wraps a dm_env.Environment.

    obs: 'flat' concatenates every entry into one float32 vector (DMC proprio, bsuite);
    'dict' keeps the entries (a Dict, or the one array of a non-dict spec; uint8 arrays
    stay images, others become float32 vectors). `render` (a function of
    the dm env returning an HxWx3 uint8 frame) replaces the observation by that frame
    when `pixels` is set. `reseed(env, seed)` reseeds in place; without it a seeded reset
    rebuilds the env with `factory(seed)`.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        factory: Callable[[int | None], Any],
        *,
        obs: str = "flat",
        pixels: bool = False,
        render: Callable[[Any], np.ndarray] | None = None,
        image_shape: tuple[int, int, int] = (64, 64, 3),
        reseed: Callable[[Any, int], None] | None = None,
        close: Callable[[Any], None] | None = None,
    ):
        if pixels and render is None:
            raise ValueError("pixels=True needs a render function")
        self.factory, self.mode, self.pixels = factory, obs, pixels
        self.render_fn, self.reseed_fn, self.close_fn = render, reseed, close
        self.render_mode = "rgb_array" if render is not None else None
        self.env = factory(None)
        self.action_space = spec_to_space(self.env.action_spec())
        raw_spec = self.env.observation_spec()
        self.single = not isinstance(raw_spec, dict)  # one array: no Dict around it
        self.obs_specs = _entries(raw_spec)
        if pixels:
            self.observation_space = spaces.Box(0, 255, image_shape, np.uint8)
        elif obs == "flat":
            size = sum(int(np.prod(s.shape)) for s in self.obs_specs.values())
            self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        elif self.single:
            self.observation_space = _entry_space(self.obs_specs["obs"])
        else:
            self.observation_space = spaces.Dict(
                {k: _entry_space(s) for k, s in self.obs_specs.items()}
            )
        self._needs_reset = True

    def _convert(self, observation: Any) -> Any:
        if self.pixels:
            assert self.render_fn is not None  # __init__ requires one with pixels=True
            return self.render_fn(self.env)
        values = _entries(observation)
        if self.mode == "flat":
            parts = [np.asarray(values[k], np.float32).reshape(-1) for k in self.obs_specs]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if self.single:
            return _entry_value(self.observation_space, values["obs"])
        assert isinstance(self.observation_space, spaces.Dict)  # the dict branch of __init__
        return {
            k: _entry_value(space, values[k]) for k, space in self.observation_space.spaces.items()
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            if self.reseed_fn is not None:
                self.reseed_fn(self.env, int(seed))
            else:
                self._close_inner()
                self.env = self.factory(int(seed))
        ts = self.env.reset()
        self._needs_reset = False
        return self._convert(ts.observation), {}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() after the episode ended: call reset() first")
        if isinstance(self.action_space, spaces.Discrete):
            action = int(action)
        else:
            action = np.asarray(action, np.float64)
        ts = self.env.step(action)
        reward = float(ts.reward) if ts.reward is not None else 0.0
        last = bool(ts.last())
        terminated = last and float(ts.discount if ts.discount is not None else 1.0) == 0.0
        truncated = last and not terminated
        self._needs_reset = last
        info = {"discount": float(ts.discount) if ts.discount is not None else 1.0}
        return self._convert(ts.observation), reward, terminated, truncated, info

    def render(self):
        return None if self.render_fn is None else self.render_fn(self.env)

    def _close_inner(self) -> None:
        if self.close_fn is not None:
            self.close_fn(self.env)
        elif hasattr(self.env, "close"):
            self.env.close()

    def close(self) -> None:
        if getattr(self, "env", None) is not None:
            self._close_inner()
            self.env = None


def _entry_space(spec: Any) -> spaces.Space:
    space = spec_to_space(spec)
    if isinstance(space, spaces.Box) and space.dtype != np.uint8:
        size = int(np.prod(space.shape)) if space.shape else 1
        return spaces.Box(-np.inf, np.inf, (size,), np.float32)
    return space


def _entry_value(space: spaces.Space, value: Any) -> Any:
    if isinstance(space, spaces.Discrete):
        return int(value)
    value = np.asarray(value)
    return value if space.dtype == np.uint8 else value.astype(np.float32).reshape(-1)
