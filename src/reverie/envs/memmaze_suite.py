"""Memory Maze (Pasukonis et al. 2022), written `memmaze:<size>` with size 9x9, 11x11,
13x13 or 15x15: the agent's 64x64 egocentric camera, 6 discrete actions, episodes of
1000/2000/3000/4000 steps (time limits: `truncated`). Built through its dm_env
interface (memory_maze.tasks), also when the old `gym` package its `__init__` wants is
absent. Needs `pip install -e .[memmaze]`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import types
from typing import Any

import gymnasium as gym

from reverie.envs._util import SuiteNotInstalledError, unknown_task
from reverie.envs.dm_adapter import DmEnvToGym
from reverie.envs.dmc_suite import ensure_mujoco_gl

SIZES = ("9x9", "11x11", "13x13", "15x15")


def _tasks_module() -> types.ModuleType:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # 'gym environments not registered'
            return importlib.import_module("memory_maze.tasks")
    except ImportError:
        pass
    # memory_maze/__init__.py re-raises when the old `gym` package is missing, although
    # the dm_env tasks do not need it: load the package without running its __init__.
    spec = importlib.util.find_spec("memory_maze")
    if spec is None or not spec.submodule_search_locations:
        raise SuiteNotInstalledError(
            "the 'memmaze' suite needs the package 'memory_maze'; install it with "
            "`pip install -e .[memmaze]`"
        )
    pkg = types.ModuleType("memory_maze")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["memory_maze"] = pkg
    return importlib.import_module("memory_maze.tasks")


def make_memmaze(task: str, *, pixels: bool = True, size: int = 64, **kwargs: Any) -> gym.Env:
    """Extra kwargs go to memory_maze.tasks.memory_maze_<size> (e.g. good_visibility)."""
    name = task.lower()
    if name not in SIZES:
        raise unknown_task("memmaze", task, list(SIZES))
    ensure_mujoco_gl()
    tasks = _tasks_module()
    maker = getattr(tasks, f"memory_maze_{name}")

    def factory(seed: int | None):
        return maker(seed=seed, image_only_obs=True, camera_resolution=size, **kwargs)

    return DmEnvToGym(factory, obs="dict")
