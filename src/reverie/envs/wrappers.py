"""Wrappers that turn any Gymnasium env into the agent's view: a Dict of vectors (categorical
observations one-hot) and images, actions in [-1, 1] (continuous) or one-hot (discrete)."""

from __future__ import annotations

from typing import TypeGuard

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from reverie.envs.checks import EnvContractError, check_observation, env_name
from reverie.errors import ReverieError
from reverie.specs import ActSpec, act_spec_of, specs_from_spaces


class UnsupportedSpaceError(ReverieError, ValueError):
    """An observation or action space DreamerV3 has no encoding for."""


def _is_image(space: spaces.Space) -> TypeGuard[spaces.Box]:
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and (len(space.shape) == 3 and space.shape[-1] in (1, 3, 4) or len(space.shape) == 2)
    )


def _leaves(space: spaces.Space, name: str) -> list[tuple[str, tuple, spaces.Space]]:
    """(key, path into the raw observation, leaf space) for every observation leaf."""
    if isinstance(space, spaces.Dict):
        out = []
        for key, sub in space.spaces.items():
            child = f"{name}/{key}" if name else key
            out += [(k, (key, *path), s) for k, path, s in _leaves(sub, child)]
        return out
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        return [(name, (), space)]
    raise UnsupportedSpaceError(
        f"observation space {space} is not supported: reverie reads Box (vectors or uint8 "
        "images), Discrete, MultiBinary, MultiDiscrete and Dicts of them. Wrap the env "
        "(e.g. gymnasium.wrappers.FlattenObservation) to turn it into one of those."
    )


class DreamerObservation(gym.ObservationWrapper):
    """Dict observation with float32 vectors and uint8 (size, size, C) images; a Discrete,
    MultiDiscrete or MultiBinary leaf becomes a one-hot vector whose space (`OneHotBox`)
    names its classes.

    A plain Box observation becomes key 'vector' (or 'image' for uint8 frames).
    """

    def __init__(self, env: gym.Env, image_size: int = 64):
        super().__init__(env)
        self.size = image_size
        base = "" if isinstance(env.observation_space, spaces.Dict) else "obs"
        self.leaves = _leaves(env.observation_space, base)
        out: dict[str, spaces.Space] = {}
        self.kinds = {}
        for key, _, space in self.leaves:
            name = key if base == "" else ("image" if _is_image(space) else "vector")
            if _is_image(space):
                chans = space.shape[-1] if len(space.shape) == 3 else 1
                chans = 3 if chans == 4 else chans
                out[name] = spaces.Box(0, 255, (image_size, image_size, chans), np.uint8)
                self.kinds[key] = ("image", name)
            else:
                classes = _classes(space)
                if classes:
                    out[name] = OneHotBox(classes)
                else:
                    out[name] = spaces.Box(-np.inf, np.inf, (_flat_size(space),), np.float32)
                self.kinds[key] = ("vector", name)
        self.observation_space = spaces.Dict(out)

    def observation(self, obs):
        result = {}
        for key, path, space in self.leaves:
            kind, name = self.kinds[key]
            try:
                value = obs
                for p in path:
                    value = value[p]
                if kind == "image":
                    result[name] = resize_image(np.asarray(value), self.size)
                else:
                    result[name] = _flatten(space, value)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise EnvContractError(
                    f"env {env_name(self.env)}: observation {key!r} does not fit its space "
                    f"{space} ({type(e).__name__}: {e})"
                ) from None
        check_observation(env_name(self.env), self.observation_space, result)
        return result


class OneHotBox(spaces.Box):
    """The observation space of a categorical key: one-hot segments side by side, one per
    part, `classes` the class count of each part. `reverie.specs.specs_from_spaces` reads
    `classes` into `ObsSpec.discrete`; a Box subclass keeps them through pickling (env
    worker processes) and through the vector envs, whose `single_observation_space` is
    the env's own."""

    def __init__(self, classes: tuple[int, ...]):
        super().__init__(0.0, 1.0, (int(sum(classes)),), np.float32)
        self.classes = tuple(int(n) for n in classes)


def _classes(space: spaces.Space) -> tuple[int, ...]:
    """The class count of each categorical part of an observation leaf; () for numbers.

    A Discrete is one part; a MultiDiscrete one part per entry; a MultiBinary one part of
    2 classes per bit, as the 2024 code's spaces (`elements.Space`) count a bool: discrete,
    2 classes, one-hot encoded and decoded by a categorical head like any other.
    """
    if isinstance(space, spaces.Discrete):
        return (int(space.n),)
    if isinstance(space, spaces.MultiDiscrete):
        return tuple(int(n) for n in np.ravel(space.nvec))
    if isinstance(space, spaces.MultiBinary):
        return (2,) * int(np.prod(space.shape))
    return ()


def _flat_size(space: spaces.Space) -> int:
    return int(np.prod(space.shape)) if space.shape else 1


def _flatten(space: spaces.Space, value) -> np.ndarray:
    if isinstance(space, spaces.Discrete):
        out = np.zeros(space.n, np.float32)
        out[int(value) - int(space.start)] = 1.0
        return out
    if isinstance(space, spaces.MultiDiscrete):
        index = np.ravel(value) - np.ravel(getattr(space, "start", 0))
        parts = [np.eye(n, dtype=np.float32)[v] for n, v in zip(space.nvec.flat, index)]
        return np.concatenate(parts)
    if isinstance(space, spaces.MultiBinary):
        return np.eye(2, dtype=np.float32)[np.ravel(value).astype(np.int64)].reshape(-1)
    return np.asarray(value, np.float32).reshape(-1)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[:2] != (size, size):
        chans = image.shape[-1]
        pil = Image.fromarray(image[..., 0] if chans == 1 else image)
        # Pillow sets its module-level filter names (BILINEAR, ...) with setattr, unseen by
        # mypy; Image.Resampling would need Pillow >= 9.1 (pyproject allows 9.0)
        image = np.asarray(pil.resize((size, size), Image.BILINEAR))  # type: ignore[attr-defined]
        image = image.reshape(size, size, chans)
    return image.astype(np.uint8)


class NormalizedBox(spaces.Box):
    """The [-1, 1] action space of `NormalizeAction`, which remembers the env's own bounds
    (`env_low`, `env_high`) so that specs read from it can map actions back."""

    def __init__(self, shape: tuple[int, ...], env_low: np.ndarray, env_high: np.ndarray):
        super().__init__(-1.0, 1.0, shape, np.float32)
        self.env_low, self.env_high = env_low, env_high


class NormalizeAction(gym.ActionWrapper):
    """Continuous actions arrive in [-1, 1], are clipped, and mapped onto the env's bounds."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        assert isinstance(space, spaces.Box)
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.action_space = NormalizedBox(space.shape, low, high)
        self.act_spec = specs_from_spaces(spaces.Dict({}), self.action_space)[1]
        self.dtype = space.dtype

    def action(self, action):
        return self.act_spec.to_env(action).reshape(self.action_space.shape).astype(self.dtype)


class OneHotAction(gym.ActionWrapper):
    """Discrete actions arrive as the agent's one-hot (or any score) vector (A,), of which
    the largest entry is the action, and reach the env as its index (plus the space's
    `start`). A plain index passes through, so `action_space.sample()` still works; the
    action space stays the env's own Discrete space."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        assert isinstance(space, spaces.Discrete), space
        self.act_spec = ActSpec(True, int(space.n), int(space.start))

    def action(self, action):
        action = np.asarray(action)
        if action.ndim == 0:
            return int(action)
        return int(self.act_spec.to_env(action))


class ActionRepeat(gym.Wrapper):
    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class ComposedBox(spaces.Box):
    """The action space of `ComposedAction`: one [-1, 1] vector of all parts, keeping the
    spec of the env's own space (`act_spec`) for the model and the policy."""

    def __init__(self, act_spec: ActSpec):
        super().__init__(-1.0, 1.0, (act_spec.dim,), np.float32)
        self.act_spec = act_spec


class ComposedAction(gym.ActionWrapper):
    """MultiDiscrete and Dict actions arrive as the agent's one vector (A,) of parts side by
    side (one-hot segments, [-1, 1] values) and reach the env as its index array or dict
    (`ActSpec.to_env`). A vector env batches the (A,) vectors (a `ComposedBox`)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.act_spec = act_spec_of(env.action_space)
        self.action_space = ComposedBox(self.act_spec)

    def action(self, action):
        out = self.act_spec.to_env(np.asarray(action, np.float64))
        space = self.env.action_space
        if isinstance(space, spaces.Dict):
            return {k: _as_space(space[k], v) for k, v in out.items()}
        return _as_space(space, out)


def _as_space(space: spaces.Space, value: np.ndarray):
    if isinstance(space, spaces.Discrete):
        return int(value)
    return np.asarray(value).reshape(space.shape).astype(space.dtype)


def _float_box(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating)


def check_action_space(space: spaces.Space) -> None:
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)) or _float_box(space):
        return
    if isinstance(space, spaces.Dict) and all(
        isinstance(s, spaces.Discrete) or _float_box(s) for s in space.spaces.values()
    ):
        return
    raise UnsupportedSpaceError(
        f"action space {space} is not supported: reverie acts in Discrete, float Box, "
        "MultiDiscrete spaces and Dicts of Discrete and float Box spaces. Wrap the env to "
        "expose one of those."
    )
