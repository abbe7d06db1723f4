"""Any environment `gymnasium.make` accepts, written `gym:<id>` (also `gym:module:Env-v0`)."""

from __future__ import annotations

import difflib
import importlib

import gymnasium as gym

from reverie.errors import ReverieError


class EnvIdError(ReverieError, ValueError):
    """An env id that cannot be made: an unknown suite or task (the message names close
    matches), or a suite or module that is not installed (it names what to install)."""


def make_gym(task: str, *, pixels: bool = False, **kwargs) -> gym.Env:
    if ":" in task:
        module = task.split(":", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise EnvIdError(
                f"cannot import module {module!r} for env 'gym:{task}': {e}. "
                f"Install the package that provides it."
            ) from None
    if pixels:
        kwargs.setdefault("render_mode", "rgb_array")
    try:
        env = gym.make(task, **kwargs)
    except gym.error.Error as e:
        known = list(gym.registry.keys())
        name = task.split(":", 1)[-1]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join('gym:' + c for c in close)}?" if close else ""
        raise EnvIdError(f"unknown Gymnasium env 'gym:{task}' ({e}){hint}") from None
    if pixels:
        env = gym.wrappers.AddRenderObservation(env, render_only=True)
    return env
