"""The training loop: act in the envs, fill replay, update at the train ratio, log,
evaluate and checkpoint. It owns the clocks and is the only module that knows all others."""

from __future__ import annotations

import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from reverie import checkpoint
from reverie.accel import describe
from reverie.agent import Agent
from reverie.config import (
    ConfigError,
    all_keys,
    from_yaml,
    make_config,
    size_note,
    to_yaml,
    train_fill,
)
from reverie.envs import describe_spaces, make_env, make_vector_env, uses_workers
from reverie.envs.episode_stats import EpisodeStats, info_at
from reverie.files import pause_for_test, remove_stale_temps
from reverie.logger import Logger, MetricsMean, Progress
from reverie.perf import tune_malloc
from reverie.replay import Replay

STRUCTURAL = ("size", "model", "ablation", "env.id", "env.image_size", "env.pixels")


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients too many updates in a row."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is available; use run.device=cpu")
    return torch.device(name)


def learner_threads(cfg: DictConfig) -> int:
    """Intra-op threads for the learner: the cores left after env worker processes.

    OpenMP threads spin while they wait; sharing a core with a busy worker made a 1m
    update 2-3x slower with 2 threads than with 1 (and OMP_WAIT_POLICY=PASSIVE, which
    avoids that, made the idle case 1.6x slower: 950 vs 590 ms), so workers get cores.
    """
    if cfg.run.threads > 0:
        return int(cfg.run.threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = cfg.env.num_envs if uses_workers(cfg.env) else 0
    return max(1, (cores or 1) - workers)


def resolve_config(run_dir: Path, overrides: list[str], **flags) -> DictConfig:
    """A new run's config, or the stored one of `logdir` with the given flags applied.

    Flags that change the model or the env of an existing run are refused, since its
    checkpoint and replay would not fit them.
    """
    logdir = run_dir
    stored_path = Path(logdir) / "config.yaml"
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
    return cfg


class Trainer:
    def __init__(self, cfg: DictConfig, logdir: str | Path):
        self.cfg = cfg
        self.logdir = Path(logdir)
        tune_malloc()
        torch.set_num_threads(learner_threads(cfg))
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.run.device)
        self.env = make_vector_env(cfg.env, cfg.seed)  # bad env ids fail before any file
        self.obs_spec, self.act_spec = describe_spaces(self.env)  # and unsupported spaces
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.agent = Agent(self.obs_spec, self.act_spec, cfg, self.device)
        rc = cfg.replay
        self.replay = Replay(
            rc.capacity,
            rc.chunk,
            self.logdir / "replay" if rc.save else None,
            rc.selector,
            rc.recency_exponent,
            seed=cfg.seed,
            disk_budget_mb=rc.disk_budget_mb,
            online_length=cfg.run.batch_length + rc.context if rc.online else 0,
        )
        self.step = 0
        self.updates = 0
        self.train_start: int | None = None
        self.episodes = 0
        self.last_eval = 0
        self.nonfinite_in_row = 0
        self.last_dream = 0
        self.returns: deque[float] = deque(maxlen=20)
        # --- per-episode env metrics (Crafter achievements): see reverie.envs.episode_stats
        self.episode_stats = EpisodeStats()
        self.metrics = MetricsMean()
        self.logger: Logger | None = None
        self._resume()
        (self.logdir / "config.yaml").write_text(to_yaml(cfg))
        print(f"reverie: {size_note(self.cfg)}", file=sys.stderr)
        print(f"reverie: {describe(self.agent.compiled, self.agent.precision)}", file=sys.stderr)

    # -------------------------------------------------------------- resuming
    def _resume(self) -> None:
        state = checkpoint.load_latest(self.logdir)
        remove_stale_temps(self.logdir)  # of a killed run's checkpoint write
        steps = self.replay.load()
        if self.replay.skipped_files:
            print(
                f"reverie: warning: skipped unreadable replay chunks: "
                f"{', '.join(self.replay.skipped_files)}",
                file=sys.stderr,
            )
        if state is None:
            return
        self.agent.load_checkpoint_state(state["agent"])
        self.replay.load_state(state["replay"])
        c = state["counters"]
        self.step, self.updates, self.train_start = c["step"], c["updates"], c["train_start"]
        self.episodes, self.last_eval = c["episodes"], c["last_eval"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        print(
            f"reverie: resumed {self.logdir} at step {self.step} ({self.updates} updates, "
            f"{steps} replay steps)",
            file=sys.stderr,
        )

    def save(self) -> Path:
        self.replay.flush()
        state = {
            "config": to_yaml(self.cfg),
            "agent": self.agent.checkpoint_state(),
            "replay": self.replay.state(),
            "counters": {
                "step": self.step,
                "updates": self.updates,
                "train_start": self.train_start,
                "episodes": self.episodes,
                "last_eval": self.last_eval,
            },
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        }
        return checkpoint.save(self.logdir, state)

    # ------------------------------------------------------------- the loop
    def to_env_action(self, action: torch.Tensor) -> np.ndarray:
        action = action.cpu().numpy()
        if self.act_spec.discrete:
            start = getattr(self.env.single_action_space, "start", 0)
            return action.argmax(-1) + int(start)
        return action

    def updates_due(self) -> int:
        rc = self.cfg.run
        if self.train_start is None:
            length = rc.batch_length + self.cfg.replay.context
            if self.replay.size < train_fill(rc) or not self.replay.can_sample(length):
                return 0
            self.train_start = self.step
        per_update = rc.batch_size * rc.batch_length
        target = int((self.step - self.train_start) * rc.train_ratio / per_update) + 1
        return max(0, target - self.updates)

    def train_step(self) -> None:
        rc, k = self.cfg.run, self.cfg.replay.context
        data, keys = self.replay.sample(rc.batch_size, rc.batch_length + k)
        batch = {key: torch.as_tensor(v, device=self.device) for key, v in data.items()}
        metrics, latents = self.agent.update(batch)
        pause_for_test("update")  # tests/test_kill.py: a kill between update and bookkeeping
        self.updates += 1
        if not self.agent.last_update_finite:
            self._nonfinite_update(metrics)
            return
        self.nonfinite_in_row = 0
        self.metrics.add(metrics)
        self.replay.write_latents(
            keys,
            k,
            {
                "deter": latents["deter"].half().cpu().numpy(),
                "stoch": latents["stoch"].cpu().numpy(),
            },
        )

    def _nonfinite_update(self, metrics: dict[str, torch.Tensor]) -> None:
        """Log a skipped update with the loss terms that went bad; stop after too many."""
        bad = sorted(k for k, v in metrics.items() if not torch.isfinite(v).all())
        self.nonfinite_in_row += 1
        self.logger.write(self.step, {"train/skipped_update": 1.0})
        print(
            f"reverie: warning: update {self.updates} at step {self.step} skipped: "
            f"non-finite {', '.join(bad) or 'gradients'}",
            file=sys.stderr,
        )
        patience = self.cfg.run.nonfinite_patience
        if self.nonfinite_in_row >= patience:
            self.save()  # skipped updates left the parameters as they were before the problem
            raise NonFiniteError(
                f"{patience} updates in a row had non-finite losses or gradients "
                f"({', '.join(bad) or 'gradients'}); stopped at step {self.step}. The "
                f"checkpoint in {self.logdir} holds the parameters from before. Check the "
                "env's observations and rewards for NaN/inf, or lower optim.lr."
            )

    def train(self, steps: int | None = None) -> dict:
        """Run until `steps` total env steps (default run.steps). Returns a summary."""
        cfg, rc = self.cfg, self.cfg.run
        total = int(steps if steps is not None else rc.steps)
        self.logger = self.logger or Logger(self.logdir, rc.tensorboard)
        progress = Progress(total, self.step, rc.progress and sys.stderr.isatty())
        n = cfg.env.num_envs
        obs, infos = self.env.reset(seed=cfg.seed + 1000 * self.episodes)
        self._env_faults(infos)
        is_first = np.ones(n, bool)
        reward = np.zeros(n, np.float32)
        is_last = np.zeros(n, bool)
        is_terminal = np.zeros(n, bool)
        ep_return, ep_length = np.zeros(n), np.zeros(n, np.int64)
        state = None
        workers = hasattr(self.env, "step_async")  # worker processes (reverie.envs.vector)
        start_time = last_log = last_ckpt = time.time()
        first_step, first_updates = self.step, self.updates
        log_step, log_updates = self.step, self.updates
        try:
            while self.step < total:
                action, state = self.agent.policy({**obs, "is_first": is_first}, state)
                self.replay.add_batch(
                    {
                        **obs,
                        "reward": reward,
                        "is_first": is_first,
                        "is_last": is_last,
                        "is_terminal": is_terminal,
                        "action": action.float().cpu().numpy(),
                        "deter": state["deter"].half().cpu().numpy(),
                        "stoch": state["stoch"].argmax(-1).to(torch.uint8).cpu().numpy(),
                    },
                    range(n),
                )
                # env workers step while the learner updates: the updates read only what
                # replay held before this step, so the order changes no result
                env_action = self.to_env_action(action)
                if workers:
                    self.env.step_async(env_action)
                self.step += n
                for _ in range(self.updates_due()):
                    self.train_step()
                result = self.env.step_wait() if workers else self.env.step(env_action)
                obs, rew, term, trunc, infos = result
                self._env_faults(infos)  # log env faults; their episodes end as truncations
                is_first = is_last.copy()
                reward = rew.astype(np.float32)
                is_last, is_terminal = term | trunc, term.copy()
                # a reset step (is_first) is no transition: its reward and length do not count
                ep_return += np.where(is_first, 0.0, reward)
                ep_length += ~is_first
                for i in np.flatnonzero(is_last):  # log each episode on the step it ends
                    info = {"achievements": info_at(infos, i, "achievements")}
                    self._episode_done(float(ep_return[i]), int(ep_length[i]), info)
                    ep_return[i], ep_length[i] = 0.0, 0

                now = time.time()
                if now - last_log >= rc.log_every:
                    self._log_train(now - last_log, log_step, log_updates)
                    last_log, log_step, log_updates = now, self.step, self.updates
                if rc.eval_every and self.step - self.last_eval >= rc.eval_every:
                    self.last_eval = self.step
                    self.logger.write(self.step, self.evaluate(rc.eval_episodes, prefix="eval/"))
                if rc.dream_every and self.step - self.last_dream >= rc.dream_every:
                    self.last_dream = self.step
                    self._dream()
                if now - last_ckpt >= rc.checkpoint_every:
                    self.save()
                    last_ckpt = now
                progress.update(
                    self.step, self._progress_info(now - start_time, first_step, first_updates)
                )
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM (see cli): keep what was learned, then stop
            self.save()
            raise
        finally:
            progress.close()
        self._log_train(max(1e-9, time.time() - last_log), log_step, log_updates)
        path = self.save()
        self.logger.flush()
        return {
            "step": self.step,
            "updates": self.updates,
            "episodes": self.episodes,
            "mean_return": float(np.mean(self.returns)) if self.returns else float("nan"),
            "wall_time": time.time() - start_time,
            "checkpoint": str(path),
            "logdir": str(self.logdir),
        }

    def _progress_info(self, seconds: float, first_step: int, first_updates: int) -> str:
        recent = np.mean(self.returns) if self.returns else float("nan")
        seconds = max(seconds, 1e-9)
        return (
            f"return {recent:.1f} | {(self.updates - first_updates) / seconds:.2f} upd/s"
            f" | {(self.step - first_step) / seconds:.1f} steps/s | {self.updates} updates"
        )

    def _episode_done(self, ret: float, length: int, info: dict | None = None) -> None:
        self.episodes += 1
        self.returns.append(ret)
        extra = self.episode_stats.episode(info)  # achievement/<name>, crafter/score
        self.logger.write(self.step, {"episode/return": ret, "episode/length": length, **extra})

    def _env_faults(self, infos: dict) -> None:
        """Log the faults the async vector env reports (reverie.envs.vector)."""
        for i in np.flatnonzero(infos.get("_env_fault", ())):
            fault = str(info_at(infos, i, "env_fault"))
            restarts = int(info_at(infos, i, "worker_restarts"))
            self.logger.write(self.step, {"env/worker_restarts": restarts, "env/fault": fault})
            print(f"reverie: warning: step {self.step}: {fault}", file=sys.stderr)

    def _log_train(self, seconds: float, since_step: int, since_updates: int) -> None:
        metrics = self.metrics.result()
        metrics["fps/env_steps"] = (self.step - since_step) / seconds
        metrics["fps/updates"] = (self.updates - since_updates) / seconds
        metrics["replay/size"] = self.replay.size
        metrics["train/updates"] = self.updates
        self.logger.write(self.step, metrics)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, episodes: int, prefix: str = "eval/", mode: str = "mode") -> dict:
        return evaluate(
            self.agent,
            self.cfg,
            episodes,
            seed=self.cfg.seed + 10**6 + self.step,
            prefix=prefix,
            mode=mode,
        )

    def _dream(self) -> None:
        """Open-loop predictions on replay into TensorBoard and logdir/dreams (run.dream_every)."""
        from reverie.viz.dream import dream_during_training

        args = (self.agent, self.cfg, self.replay, self.logdir, self.logger, self.step)
        dream_during_training(*args)

    def close(self) -> None:
        self.env.close()
        if self.logger is not None:
            self.logger.close()


def evaluate(
    agent: Agent,
    cfg: DictConfig,
    episodes: int,
    seed: int = 0,
    prefix: str = "eval/",
    mode: str = "mode",
    frames: Any = None,
    on_episode: Callable[[int, float, int], None] | None = None,
) -> dict:
    """Mean return and length over `episodes` full episodes in a fresh single env.

    `frames`: anything with `append(frame)` (a list, `reverie.viz.video.VideoWriter`) that
    receives every frame as (H, W, 3) uint8: the env's first image observation, else
    `env.render()` (gym envs are then built with render_mode='rgb_array').
    `on_episode(index, return, length)` is called after each episode (progress bars).
    """
    from reverie.envs import env_kwargs, split_id

    kw = env_kwargs(cfg.env)
    image_key = next(iter(agent.obs_spec.images), None)
    if frames is not None and image_key is None and split_id(str(cfg.env.id))[0] == "gym":
        kw["kwargs"] = {"render_mode": "rgb_array", **kw["kwargs"]}
    env = make_env(str(cfg.env.id), seed=seed, **kw)

    def record(obs) -> None:
        if frames is not None:
            frames.append(obs[image_key] if image_key is not None else env.render())

    returns, lengths = [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            record(obs)
            state, first, done, total, length = None, True, False, 0.0, 0
            while not done:
                batch = {k: np.asarray(v)[None] for k, v in obs.items()}
                action, state = agent.policy({**batch, "is_first": np.array([first])}, state, mode)
                act = action[0].cpu().numpy()
                if agent.act_spec.discrete:
                    act = int(act.argmax()) + int(getattr(env.action_space, "start", 0))
                obs, reward, term, trunc, _ = env.step(act)
                record(obs)
                total += float(reward)
                length += 1
                first, done = False, term or trunc
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
