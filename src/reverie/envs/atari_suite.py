"""Atari through the Arcade Learning Environment (ale-py ships the ROMs).

`atari:<game>` (Atari 57 setting): sticky actions 0.25, the full action set of 18, up to
30 no-op actions at reset, action repeat 4 with max-pooling of the last two frames,
grayscale, `size` x `size` (64). `atari100k:<game>`: the same without sticky actions,
in colour, with the game's minimal action set. Games are ALE's snake-case names
(`pong`, `ms_pacman`, `montezuma_revenge`). Episodes are cut at 108,000 frames
(`truncated`); game over is `terminated`. The action repeat happens inside the env, so
the config keeps `env.action_repeat=1`. Needs `pip install -e .[atari]`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from reverie.envs._util import require, unknown_task


def _ale_id(game: str) -> str:
    ale_py = require("ale_py", "atari", "atari")
    from ale_py import roms

    name = game.lower().replace("-", "_")
    known = sorted(roms.get_all_rom_ids())
    if name not in known:
        raise unknown_task("atari", game, known)
    gym.register_envs(ale_py)
    return "ALE/" + "".join(part.capitalize() for part in name.split("_")) + "-v5"


def make_atari(
    task: str,
    *,
    pixels: bool = True,
    size: int = 64,
    gray: bool = True,
    sticky: float = 0.25,
    full_action_space: bool = True,
    noops: int = 30,
    repeat: int = 4,
    max_frames: int = 108_000,
    **kwargs: Any,
) -> gym.Env:
    """One Atari game; the defaults are the paper's Atari 57 setting."""
    env_id = _ale_id(task)
    require("cv2", "atari", "atari")  # AtariPreprocessing resizes with OpenCV
    env = gym.make(
        env_id,
        frameskip=1,
        repeat_action_probability=float(sticky),
        full_action_space=bool(full_action_space),
        max_num_frames_per_episode=int(max_frames),
        **kwargs,
    )
    return gym.wrappers.AtariPreprocessing(
        env,
        noop_max=int(noops),
        frame_skip=int(repeat),
        screen_size=int(size),
        terminal_on_life_loss=False,
        grayscale_obs=bool(gray),
        grayscale_newaxis=True,
        scale_obs=False,
    )


def make_atari100k(
    task: str,
    *,
    pixels: bool = True,
    size: int = 64,
    gray: bool = False,
    sticky: float = 0.0,
    full_action_space: bool = False,
    noops: int = 30,
    repeat: int = 4,
    max_frames: int = 108_000,
    **kwargs: Any,
) -> gym.Env:
    """Atari100k: colour, no sticky actions, minimal action set."""
    return make_atari(
        task,
        size=size,
        gray=gray,
        sticky=sticky,
        full_action_space=full_action_space,
        noops=noops,
        repeat=repeat,
        max_frames=max_frames,
        **kwargs,
    )
