"""Your own env: a Gymnasium env passed as an object or as a factory instead of an id.

A run on such an env records `env.id = custom:<name>` in its config (the class or factory
name); it resumes when the same kind of object or factory is passed again. A factory
(anything callable that returns a new env, e.g. the env class or a lambda) is what goes to
env worker processes, pickled with cloudpickle, so `--envs N` works with it. A bare
instance serves one env; evaluation runs on a deep copy of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from reverie.errors import ReverieError

CUSTOM = "custom"

EnvFactory = Callable[[], gym.Env]


class CustomEnvError(ReverieError, ValueError):
    """An env object or factory that cannot be used as asked; the message says why."""


def custom_env_id(env: Any) -> str:
    """`custom:<name>` for an env instance (its class) or a factory (its name)."""
    if isinstance(env, gym.Env):
        name = type(env.unwrapped).__name__
    else:
        name = getattr(env, "__qualname__", None) or type(env).__name__
    return f"{CUSTOM}:{name}"


def is_custom_id(env_id: str) -> bool:
    return str(env_id).split(":", 1)[0] == CUSTOM


class InstanceFactory:
    """Hands out one env instance: itself on the first call (training), a deep copy on
    each later one (evaluation, dreams), since one object cannot run two episodes."""

    def __init__(self, env: gym.Env):
        self.env, self.calls = env, 0

    def __call__(self) -> gym.Env:
        self.calls += 1
        if self.calls == 1:
            return self.env
        try:
            return copy.deepcopy(self.env)
        except Exception as e:  # noqa: BLE001 - any failure to copy has the same fix
            raise CustomEnvError(
                f"cannot copy the env object {type(self.env).__name__} for a second env "
                f"(evaluation or dreams): {type(e).__name__}: {e}. Pass a factory instead, "
                "e.g. Dreamer(env=lambda: MyEnv())"
            ) from None


def as_factory(env: gym.Env | EnvFactory, num_envs: int) -> EnvFactory:
    """A factory for `env`, refusing what cannot serve `num_envs` envs."""
    if isinstance(env, gym.Env):
        if num_envs > 1:
            raise CustomEnvError(
                f"one env object ({type(env).__name__}) cannot be copied into {num_envs} "
                "env worker processes; pass a factory that builds a new env on each call, "
                "e.g. Dreamer(env=lambda: MyEnv(), ...) or the class itself"
            )
        return InstanceFactory(env)
    if not callable(env):
        raise CustomEnvError(
            f"env must be an id string, a gymnasium.Env or a function returning one; got "
            f"{type(env).__name__}"
        )
    return env


def build(factory: EnvFactory) -> gym.Env:
    """Call the factory and check that it gave a Gymnasium env."""
    env = factory()
    if not isinstance(env, gym.Env):
        raise CustomEnvError(
            f"the env factory returned {type(env).__name__}, not a gymnasium.Env: it must "
            "return a new env each time it is called"
        )
    return env
