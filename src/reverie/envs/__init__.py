"""Environment construction: `<suite>:<task>` ids, each suite yielding a Gymnasium env that
the wrappers turn into the agent's Dict observation / normalised action view."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector.utils import CloudpickleWrapper

from reverie.envs._util import SuiteNotInstalledError
from reverie.envs.atari_suite import make_atari, make_atari100k
from reverie.envs.bsuite_suite import make_bsuite
from reverie.envs.checks import EnvContractError, StrictEnv
from reverie.envs.crafter_suite import make_crafter
from reverie.envs.custom import EnvFactory, is_custom_id
from reverie.envs.custom import build as build_custom
from reverie.envs.dmc_suite import make_dmc
from reverie.envs.gym_suite import EnvIdError, make_gym
from reverie.envs.memmaze_suite import make_memmaze
from reverie.envs.minecraft_suite import make_minecraft
from reverie.envs.procgen_suite import make_procgen
from reverie.envs.wrappers import (
    ActionRepeat,
    ComposedAction,
    DreamerObservation,
    NormalizeAction,
    OneHotAction,
    UnsupportedSpaceError,
    check_action_space,
)
from reverie.machine import usable_cores
from reverie.specs import ActSpec, ObsSpec, specs_from_spaces

# Each maker: make_<suite>(task, *, pixels=False, size=64, **kwargs) -> gymnasium.Env.
# Optional packages are imported inside the makers (SuiteNotInstalledError names the extra).
SUITES = {
    "gym": make_gym,
    "dmc": make_dmc,
    "atari": make_atari,
    "atari100k": make_atari100k,
    "crafter": make_crafter,
    "bsuite": make_bsuite,
    "memmaze": make_memmaze,
    "procgen": make_procgen,
    "minecraft": make_minecraft,
}
# suite -> (module that must import, pip extra, example id)
SUITE_INFO = {
    "gym": ("gymnasium", "", "gym:CartPole-v1"),
    "dmc": ("dm_control", "dmc", "dmc:walker_walk"),
    "atari": ("ale_py", "atari", "atari:pong"),
    "atari100k": ("ale_py", "atari", "atari100k:ms_pacman"),
    "crafter": ("crafter", "crafter", "crafter:reward"),
    "bsuite": ("bsuite", "bsuite", "bsuite:catch/0"),
    "memmaze": ("memory_maze", "memmaze", "memmaze:9x9"),
    "procgen": ("procgen", "procgen", "procgen:coinrun"),
    "minecraft": ("minerl", "minecraft", "minecraft:diamond"),
}
# a bare suite name stands for its default task ('crafter' -> 'crafter:reward')
DEFAULT_TASKS = {"crafter": "reward", "minecraft": "diamond"}

__all__ = [
    "EnvContractError",
    "EnvIdError",
    "SuiteNotInstalledError",
    "UnsupportedSpaceError",
    "make_env",
    "make_vector_env",
    "suite_installed",
    "SUITES",
    "SUITE_INFO",
]


def suite_installed(suite: str) -> bool:
    """Whether the suite's optional package can be found (without importing it)."""
    import importlib.util

    module = SUITE_INFO[suite][0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def split_id(env_id: str) -> tuple[str, str]:
    """'dmc:walker_walk' -> ('dmc', 'walker_walk'); a bare Gymnasium id counts as gym."""
    if env_id in DEFAULT_TASKS:
        return env_id, DEFAULT_TASKS[env_id]
    suite, _, task = env_id.partition(":")
    if task and suite in SUITES:
        return suite, task
    # anything else ('CartPole-v1', 'module:Env-v0') goes to gymnasium.make as it is
    return "gym", env_id


def make_env(
    env_id: str,
    *,
    image_size: int = 64,
    pixels: bool = False,
    action_repeat: int = 1,
    time_limit: int = 0,
    seed: int | None = None,
    kwargs: dict[str, Any] | None = None,
    factory: EnvFactory | None = None,
) -> gym.Env:
    """Build one env through the same path the trainer uses.

    :param factory: builds the env instead of `env_id`'s suite (your own env,
        `reverie.envs.custom`); `env_id` is then its `custom:<name>`.
    """
    if factory is not None:
        env = build_custom(factory)
    elif is_custom_id(env_id):
        raise EnvIdError(
            f"{env_id} is an env that a run got as a Python object or factory; pass it "
            "again to resume or evaluate it: Dreamer(env=MyEnv or lambda: MyEnv(), "
            "logdir=...) or reverie.rollout.evaluate(..., factory=...)"
        )
    else:
        suite, task = split_id(env_id)
        given = sorted(kwargs or {})
        kwargs = dict(kwargs or {})
        if suite != "gym":
            kwargs.setdefault("size", image_size)  # suites render at the agent's image size
        try:
            env = SUITES[suite](task, pixels=pixels, **kwargs)
        except TypeError as e:
            if not given or "argument" not in str(e):
                raise
            raise EnvIdError(
                f"env {env_id} does not take the env.kwargs given ({', '.join(given)}): {e}; "
                "drop them or name the constructor's own arguments"
            ) from None
    check_action_space(env.action_space)
    env = StrictEnv(env)
    if time_limit:
        env = gym.wrappers.TimeLimit(env, time_limit)
    if action_repeat > 1:
        env = ActionRepeat(env, action_repeat)
    if isinstance(env.action_space, spaces.Box):
        env = NormalizeAction(env)
    elif isinstance(env.action_space, spaces.Discrete):
        env = OneHotAction(env)
    else:  # MultiDiscrete, Dict
        env = ComposedAction(env)
    env = DreamerObservation(env, image_size)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def env_kwargs(env_cfg) -> dict[str, Any]:
    return dict(
        image_size=int(env_cfg.image_size),
        pixels=bool(env_cfg.pixels),
        action_repeat=int(env_cfg.action_repeat),
        time_limit=int(env_cfg.time_limit),
        kwargs=dict(env_cfg.kwargs),
    )


def uses_workers(env_cfg) -> bool:
    """Worker processes for `parallel=async`, and for `auto` when there is more than one env
    and no more envs than cores (2 at least), so that a slow simulator steps beside the
    learner instead of stalling it. More envs than cores (the paper's 16 on a laptop) step
    in the learner's process: a worker per env would leave the learner one thread
    (`accel.learner_threads`) and the workers would mostly wait."""
    if env_cfg.parallel != "auto":
        return env_cfg.parallel == "async"
    return 1 < env_cfg.num_envs <= max(2, usable_cores())


def envs_note(env_cfg) -> str:
    """Where the run's envs step, for its first lines."""
    n = int(env_cfg.num_envs)
    if uses_workers(env_cfg):
        return f"{n} envs, each in a worker process"
    if env_cfg.parallel == "auto":
        cores = usable_cores()
        why = f"more envs than the {cores} core{'s' * (cores != 1)}; env.parallel=async for workers"
        return f"{n} envs, stepped in turn in this process ({why})"
    return f"{n} envs, stepped in turn in this process (env.parallel=sync)"


def make_vector_env(env_cfg, seed: int, factory: EnvFactory | None = None) -> gym.vector.VectorEnv:
    """`num_envs` copies in one process (sync) or in fault-tolerant worker processes (async).

    Episodes reset on the step after they end (NEXT_STEP), which gives the agent an
    explicit first step of each episode. `factory`: your own env (see `make_env`).
    """
    kw = env_kwargs(env_cfg)
    workers = uses_workers(env_cfg)
    if factory is not None and workers:
        factory = CloudpickleWrapper(factory)  # lambdas and local classes reach the workers
    thunks = [
        functools.partial(make_env, str(env_cfg.id), seed=seed + i, factory=factory, **kw)
        for i in range(int(env_cfg.num_envs))
    ]
    mode = gym.vector.AutoresetMode.NEXT_STEP
    if workers:
        # worker processes that are restarted when they raise, die or hang
        from reverie.envs.vector import FaultTolerantVectorEnv

        return FaultTolerantVectorEnv(thunks, step_timeout=float(env_cfg.step_timeout))
    return gym.vector.SyncVectorEnv(thunks, autoreset_mode=mode)


def describe_spaces(env: gym.Env | gym.vector.VectorEnv) -> tuple[ObsSpec, ActSpec]:
    """Observation spec and action spec of a (vector) env built by `make_env`."""
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    act_space = getattr(env, "single_action_space", env.action_space)
    assert isinstance(obs_space, spaces.Dict), obs_space  # DreamerObservation's Dict
    return specs_from_spaces(obs_space, act_space)
