"""Running a trained agent outside the training loop: episodes in a fresh env, and
evaluation (`reverie.run_dir.load_agent` loads a trained one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from omegaconf import DictConfig

from reverie.agent import Agent
from reverie.envs import env_kwargs, make_env, split_id
from reverie.envs.custom import EnvFactory

Obs = dict[str, np.ndarray]


def episode_steps(
    agent: Agent,
    env: Any,
    seed: int,
    mode: str = "mode",
    on_obs: Callable[[Obs], None] | None = None,
) -> Iterator[tuple[Obs, np.ndarray, float, Obs, bool]]:
    """Play one episode of `agent` in a single env built by `make_env`.

    Yields per step: the observation, the agent's action on it (A,), then the reward, the
    next observation and whether the episode ended there. `on_obs(obs)` sees every
    observation as it arrives, before the env moves on (where `env.render()` shows it).
    """
    obs, _ = env.reset(seed=seed)
    if on_obs is not None:
        on_obs(obs)
    state, first = None, True
    while True:
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        action, state = agent.policy({**batch, "is_first": np.array([first])}, state, mode)
        act = action[0].float().cpu().numpy()
        next_obs, reward, term, trunc, _ = env.step(act)  # envs.wrappers.OneHotAction: index
        done = bool(term or trunc)
        if on_obs is not None:
            on_obs(next_obs)
        yield obs, act, float(reward), next_obs, done
        if done:
            return
        obs, first = next_obs, False


def eval_mode(cfg: DictConfig, mode: str | None = None) -> str:
    """How evaluation picks actions: `mode` if given, else the run's `run.eval_mode`
    (sample, the authors' protocol, for configs written before it existed)."""
    return mode or str(cfg.run.get("eval_mode", "sample"))


def evaluate(
    agent: Agent,
    cfg: DictConfig,
    episodes: int,
    seed: int = 0,
    prefix: str = "eval/",
    mode: str | None = None,
    frames: Any = None,
    on_episode: Callable[[int, float, int], None] | None = None,
    factory: EnvFactory | None = None,
) -> dict[str, float]:
    """Mean return and length over `episodes` full episodes in a fresh single env.

    :param mode: "sample" (the policy's sample, as the authors' code evaluates) or "mode"
        (its most likely action); None: the run's `run.eval_mode`.
    :param frames: anything with `append(frame)` (a list, `reverie.viz.video.VideoWriter`)
        that receives every frame as (H, W, 3) uint8: the env's first image observation,
        else `env.render()` (gym envs are then built with render_mode='rgb_array').
    :param on_episode: called as `on_episode(index, return, length)` after each episode.
    :param factory: your own env, as the run got it (`reverie.envs.custom`).
    """
    mode = eval_mode(cfg, mode)
    kw = env_kwargs(cfg.env)
    image_key = next(iter(agent.obs_spec.images), None)
    if frames is not None and image_key is None and split_id(str(cfg.env.id))[0] == "gym":
        kw["kwargs"] = {"render_mode": "rgb_array", **kw["kwargs"]}
    env = make_env(str(cfg.env.id), seed=seed, factory=factory, **kw)

    def record(obs: Obs) -> None:
        if frames is not None:
            frames.append(obs[image_key] if image_key is not None else env.render())

    returns, lengths = [], []
    try:
        for ep in range(episodes):
            total, length = 0.0, 0
            for _, _, reward, _, _ in episode_steps(agent, env, seed + ep, mode, record):
                total += reward
                length += 1
            returns.append(total)
            lengths.append(length)
            if on_episode is not None:
                on_episode(ep, total, length)
    finally:
        env.close()
    return {
        f"{prefix}return": float(np.mean(returns)),
        f"{prefix}length": float(np.mean(lengths)),
        f"{prefix}return_std": float(np.std(returns)),
    }
