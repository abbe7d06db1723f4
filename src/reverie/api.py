"""The Python API: `Dreamer(env=..., logdir=...).learn(steps)`, `.act(obs, state)`, save/load."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from reverie.build import open_trainer
from reverie.callbacks import Callback
from reverie.envs.custom import EnvFactory, as_factory, custom_env_id
from reverie.policy import Policy
from reverie.rollout import evaluate
from reverie.run_dir import require_checkpoint, resolve_config


def default_logdir(env_id: str) -> Path:
    name = env_id.split(":")[-1].replace("/", "_").lower()
    return Path("logs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class Dreamer:
    """A DreamerV3 agent bound to an env and a logdir.

    `env`: an id string ("gym:CartPole-v1", "dmc:walker_walk"), your own gymnasium.Env
    object, or a factory returning a new one (a class, a lambda): see `reverie.envs.custom`.

    >>> agent = Dreamer(env="gym:CartPole-v1", size="1m", seed=0)
    >>> agent.learn(20_000)            # total env steps; calling again continues
    >>> action, state = agent.act(obs) # obs as the env returned it, or a batch (N, ...)
    """

    def __init__(
        self,
        env: str | gym.Env | EnvFactory | None = None,
        logdir: str | Path | None = None,
        size: str | None = None,
        seed: int | None = None,
        overrides: list[str] | None = None,
        **keys,
    ):
        env_id = env if env is None or isinstance(env, str) else custom_env_id(env)
        flags = {"env.id": env_id, "size": size, "seed": seed, **keys}
        flags = {k: v for k, v in flags.items() if v is not None}
        self.logdir = Path(logdir) if logdir else default_logdir(env_id or "gym:CartPole-v1")
        flags["logdir"] = str(self.logdir)
        self.cfg = resolve_config(self.logdir, list(overrides or []), **flags)
        self.factory: EnvFactory | None = None
        if env is not None and not isinstance(env, str):
            self.factory = as_factory(env, self.cfg.env.num_envs)
        self.trainer = open_trainer(self.cfg, self.logdir, self.factory)
        self.agent = self.trainer.agent
        self.policy = Policy(self.agent, shared=True)  # the agent's own networks

    def learn(self, steps: int, callbacks: Sequence[Callback] = ()) -> dict:
        """Train until `steps` total env steps, or until a callback stops it
        (`reverie.callbacks`); returns a summary dict."""
        return self.trainer.train(steps, callbacks)

    def act(
        self, obs: Any, state: dict | None = None, deterministic: bool = False
    ) -> tuple[Any, dict]:
        """The env's action for an observation as the env returned it, or for a batch
        (N, ...), on this agent's current networks (`reverie.policy.Policy.act`).

        A dict's `is_first` (N,) marks episode starts; it defaults to True when state is None.
        """
        return self.policy.act(obs, state, deterministic)

    def evaluate(self, episodes: int = 10) -> dict:
        seed = self.cfg.seed + 10**6
        return evaluate(self.agent, self.cfg, episodes, seed=seed, factory=self.factory)

    def save(self) -> Path:
        return self.trainer.save()

    def load(self, logdir: str | Path | None = None) -> None:
        """Load the newest checkpoint of `logdir` (default: this agent's) into the agent."""
        ckpt = require_checkpoint(Path(logdir) if logdir else self.logdir)
        self.agent.load_checkpoint_state(ckpt.agent)

    def close(self) -> None:
        self.trainer.close()

    @property
    def device(self) -> torch.device:
        return self.agent.device
