"""DeepMind Control Suite, written `dmc:<domain>_<task>` (e.g. dmc:walker_walk).

Proprio (default): the time step's observations flattened into one float32 vector.
Vision (`pixels=True`, preset dmc_vision): camera 0 rendered at `size` x `size`
(quadruped: camera 2), with MuJoCo's default rendering as in the authors' code.
`fast_render=True` renders without multisampling (`model.vis.quality.offsamples = 0`),
shadows and reflections: several times faster in software, but the frames differ
(darker, no shadows; benchmarks/results/dmc_render_check.md). Needs `pip install -e .[dmc]`.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import gymnasium as gym

from reverie.envs._util import require, unknown_task
from reverie.envs.dm_adapter import DmEnvToGym

CAMERAS = {"quadruped": 2}
ALIASES = {"cup_catch": ("ball_in_cup", "catch")}
FAST_FLAGS = {"shadow": False, "reflection": False}


def ensure_mujoco_gl() -> str:
    """Pick a headless MuJoCo renderer if MUJOCO_GL is unset: EGL, else OSMesa."""
    if "MUJOCO_GL" not in os.environ:
        for backend, lib in (("egl", "libEGL.so.1"), ("osmesa", "libOSMesa.so.8")):
            try:
                ctypes.CDLL(lib)
            except OSError:
                continue
            os.environ["MUJOCO_GL"] = backend
            if backend == "osmesa":
                os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
            break
    return os.environ.get("MUJOCO_GL", "")


def split_task(task: str) -> tuple[str, str]:
    """'walker_walk' -> ('walker', 'walk'); 'ball_in_cup_catch' -> ('ball_in_cup', 'catch')."""
    if task in ALIASES:
        return ALIASES[task]
    from dm_control import suite

    for domain, name in suite.ALL_TASKS:
        if f"{domain}_{name}" == task:
            return domain, name
    raise unknown_task("dmc", task, [f"{d}_{t}" for d, t in suite.ALL_TASKS])


def make_dmc(
    task: str,
    *,
    pixels: bool = False,
    size: int = 64,
    camera: int | None = None,
    fast_render: bool = False,
    **kwargs: Any,
) -> gym.Env:
    """`dmc:<domain>_<task>`; extra kwargs go to the task (`task_kwargs` of suite.load)."""
    ensure_mujoco_gl()
    require("dm_control.suite", "dmc", "dmc", "(dm-control 1.0.50 needs mujoco 3.17.0)")
    from dm_control import suite

    domain, name = split_task(task)
    cam = CAMERAS.get(domain, 0) if camera is None else int(camera)

    def factory(seed: int | None):
        env = suite.load(domain, name, task_kwargs={**kwargs, "random": seed})
        if fast_render:
            env.physics.model.vis.quality.offsamples = 0  # before the first render
        return env

    def render(env) -> Any:
        flags = FAST_FLAGS if fast_render else None
        return env.physics.render(size, size, camera_id=cam, render_flag_overrides=flags)

    def reseed(env, seed: int) -> None:
        env.task.random.seed(seed)

    def close(env) -> None:
        env.close()
        env.physics.free()

    return DmEnvToGym(
        factory,
        obs="flat",
        pixels=pixels,
        render=render,
        image_shape=(size, size, 3),
        reseed=reseed,
        close=close,
    )
