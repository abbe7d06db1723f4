"""What a run directory holds, owned in one place: the names of its files, the typed
contents of its checkpoint, and `load_agent`, the one way to get a trained agent back.

    logdir/
      config.yaml        the resolved config (CONFIG)
      checkpoint.pt      the newest checkpoint; checkpoint.prev.pt the one before (checkpoint.py)
      metrics.jsonl      one JSON line per log event (METRICS)
      replay/            replay chunks (REPLAY; replay/rank<r>/ per rank of a job)
      .lock              held while a trainer runs there (reverie.lock)

The checkpoint file keeps the layout it has had since format 2 (a dict of plain data and
tensors, read weights-only); `Checkpoint` is its typed view, so that no reader indexes it
by string keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from reverie import checkpoint
from reverie.config import (
    PAPER,
    STRUCTURAL,
    ConfigError,
    all_keys,
    from_yaml,
    make_config,
    size_preset,
)
from reverie.errors import NoCheckpointError
from reverie.specs import ActSpec, ObsSpec, specs_from_state, specs_state

if TYPE_CHECKING:
    from reverie.agent import Agent

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
REPLAY = "replay"


@dataclass
class Counters:
    """How far a run got: env steps, updates, the env step updates started at (None before
    replay held enough), episodes ended (this rank's), the env step of the last eval."""

    step: int = 0
    updates: int = 0
    train_start: int | None = None
    episodes: int = 0
    last_eval: int = 0


@dataclass
class RankState:
    """What each rank of a job keeps of its own: its replay sampler, episode count,
    Crafter achievement stats and random number generators' states."""

    replay: dict[str, Any]
    episodes: int
    episode_stats: dict[str, Any] | None
    rng: dict[str, Any]

    def to_state(self) -> dict[str, Any]:
        return {
            "replay": self.replay,
            "counters": {"episodes": self.episodes},
            "episode_stats": self.episode_stats,
            "rng": self.rng,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RankState:
        return cls(
            state["replay"],
            int(state["counters"]["episodes"]),
            state.get("episode_stats"),
            state["rng"],
        )


@dataclass
class Checkpoint:
    """The typed contents of a checkpoint file.

    :param config: the run's config as YAML (what `config.yaml` held when it was saved).
    :param agent: the agent's weights and optimiser state (`Agent.checkpoint_state`).
    :param ranks: one RankState per rank of the job that wrote it (one for a single
        process); rank 0's is also the file's top level, as single-process files have it.
    :param specs: the observation and action specs; None in files written before they
        were stored (`load_agent` then asks the env).
    """

    config: str
    agent: dict[str, Any]
    counters: Counters
    ranks: list[RankState]
    specs: dict[str, Any] | None = None

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def step(self) -> int:
        return self.counters.step

    def cfg(self, *overrides: str) -> DictConfig:
        return make_config(list(overrides), base=from_yaml(self.config))

    def to_state(self) -> dict[str, Any]:
        """The dict the file holds (format `checkpoint.FORMAT_VERSION`)."""
        main = self.ranks[0]
        c = self.counters
        counters = {"step": c.step, "updates": c.updates, "train_start": c.train_start}
        state: dict[str, Any] = {
            "config": self.config,
            "agent": self.agent,
            "replay": main.replay,
            "counters": {**counters, "episodes": main.episodes, "last_eval": c.last_eval},
            "episode_stats": main.episode_stats,
            "specs": self.specs,
            "rng": main.rng,
        }
        if self.world_size > 1:
            state.update(world_size=self.world_size, ranks=[r.to_state() for r in self.ranks])
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Checkpoint:
        c = state["counters"]
        counters = Counters(
            c["step"], c["updates"], c["train_start"], c["episodes"], c["last_eval"]
        )
        ranks = [RankState.from_state(r) for r in state.get("ranks", [state])]
        return cls(state["config"], state["agent"], counters, ranks, state.get("specs"))


def save_checkpoint(logdir: str | Path, ckpt: Checkpoint) -> Path:
    """Write `ckpt` to logdir/checkpoint.pt, atomically (the replaced one is kept as
    checkpoint.prev.pt)."""
    return checkpoint.save(Path(logdir), ckpt.to_state())


def read_checkpoint(path: str | Path) -> Checkpoint | None:
    """The newest readable checkpoint of a logdir (None if it has none), or one file."""
    path = Path(path)
    state = checkpoint.load_file(path) if path.is_file() else checkpoint.load_latest(path)
    return None if state is None else Checkpoint.from_state(state)


def require_checkpoint(path: str | Path) -> Checkpoint:
    ckpt = read_checkpoint(path)
    if ckpt is None:
        raise NoCheckpointError(
            f"no checkpoint in {path}: train there first (reverie train --logdir {path})"
        )
    return ckpt


def checkpoint_step(logdir: str | Path) -> int | None:
    """The env step of the newest readable checkpoint of `logdir`, None without one.
    Warnings about a corrupt newest one are left to the trainer, which loads it again."""
    import contextlib
    import io

    path = Path(logdir)
    if not any((path / name).exists() for name in (checkpoint.CHECKPOINT, checkpoint.PREVIOUS)):
        return None
    with contextlib.redirect_stderr(io.StringIO()):
        ckpt = read_checkpoint(path)
    return None if ckpt is None else ckpt.step


def resolve_config(run_dir: str | Path, overrides: list[str], **flags: Any) -> DictConfig:
    """A new run's config, or the stored one of `logdir` with the given flags applied.

    Flags that change the model or the env of an existing run are refused, since its
    checkpoint and replay would not fit them.
    """
    logdir = run_dir
    check_logdir(logdir)
    stored_path = Path(logdir) / CONFIG
    if not stored_path.exists():
        return make_config(overrides, **flags)
    try:
        stored = from_yaml(stored_path.read_text())
        make_config([], base=stored)  # the stored config alone must be valid
    except Exception as e:  # noqa: BLE001 - unreadable YAML, bad bytes, bad keys or values
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"{stored_path} is corrupt ({problem}): restore it (run `reverie config` with the "
            "run's flags to regenerate it), or pick a new --logdir"
        ) from None
    size = flags.pop("size", None)
    if size is not None and size != PAPER:
        size_preset(str(size))  # an unknown size is named as such, not as another run's
    if size is not None and size != stored.size:
        raise ConfigError(
            f"logdir {logdir} holds a run of size {stored.size}, not {size}: "
            "drop --size to resume it, or pick a new --logdir"
        )
    cfg = make_config(overrides, base=stored, **flags)
    keys = [k for k in all_keys(cfg) if any(k == p or k.startswith(p + ".") for p in STRUCTURAL)]
    for key in keys:
        old, new = OmegaConf.select(stored, key), OmegaConf.select(cfg, key)
        if old != new:
            raise ConfigError(
                f"logdir {logdir} was trained with {key}={old}, this command asks for {new}: "
                "resume with the original setting, or pick a new --logdir"
            )
    step = checkpoint_step(logdir)
    if step is not None and cfg.run.steps < step:
        raise ConfigError(
            f"logdir {logdir} is already at step {step}, beyond the {cfg.run.steps} total env "
            f"steps asked for (--steps, run.steps): pass --steps above {step} to train it "
            "further, or pick a new --logdir"
        )
    return cfg


def check_logdir(logdir: str | Path) -> None:
    """A logdir must be a directory, or creatable, and writable: refused before anything runs."""
    path = Path(logdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"logdir {path} is a file, not a directory: pick a new --logdir")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"logdir {path} cannot be created: {existing} is a file; pick a new --logdir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == path else f"{existing}"
        raise ConfigError(
            f"logdir {path} is not writable ({where} denies this user write access): "
            "fix its permissions (chmod u+w), or pick a new --logdir"
        )


@dataclass
class LoadedAgent:
    """A trained agent with the config and checkpoint it came from."""

    agent: Agent
    cfg: DictConfig
    checkpoint: Checkpoint

    def parts(self) -> tuple[Agent, DictConfig, Checkpoint]:
        return self.agent, self.cfg, self.checkpoint


def checkpoint_specs(ckpt: Checkpoint, cfg: DictConfig) -> tuple[ObsSpec, ActSpec]:
    """The specs the checkpoint stored; for a file written before they were stored, the
    ones of the env its config names (which builds that env once), with no categorical
    keys: such a file predates them, its model read every vector as numbers."""
    if ckpt.specs is not None:
        return specs_from_state(ckpt.specs)
    from reverie.envs import describe_spaces, env_kwargs, make_env

    env = make_env(str(cfg.env.id), **env_kwargs(cfg.env))
    try:
        obs, act = describe_spaces(env)
    finally:
        env.close()
    return replace(obs, discrete={}), act


def load_agent(
    path: str | Path, device: str | torch.device | None = None, learner: bool = False
) -> LoadedAgent:
    """The agent of the newest checkpoint of a logdir, or of one checkpoint file: what
    eval, dream, export, `load_policy` and the API read a trained agent with.

    :param device: where it runs (None: the run's `run.device`).
    :param learner: also its optimiser state, to train on; False loads the networks alone
        (no optimiser, no compilation, no gradients).
    """
    from reverie.accel import pick_device
    from reverie.agent import Agent

    ckpt = require_checkpoint(path)
    cfg = ckpt.cfg() if learner else ckpt.cfg("run.compile=off")
    obs_spec, act_spec = checkpoint_specs(ckpt, cfg)
    device = pick_device(cfg.run.device) if device is None else device
    agent = Agent(obs_spec, act_spec, cfg, device, learner=learner)
    if learner:
        agent.load_checkpoint_state(ckpt.agent)
    else:
        agent.load_state_dict(ckpt.agent["agent"])
        agent.requires_grad_(False)
        agent.eval()
    return LoadedAgent(agent, cfg, ckpt)


def specs_of(agent: Agent) -> dict[str, Any]:
    """What a checkpoint stores of the agent's specs (`Checkpoint.specs`)."""
    return specs_state(agent.obs_spec, agent.act_spec)
