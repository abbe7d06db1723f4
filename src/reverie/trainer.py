"""The training loop: act in the envs, store the steps, update at the train ratio, log,
evaluate, dream and checkpoint. It owns the clocks and is the only module that knows
all the others (`Trainer.train` is the loop; each of its steps is a method below)."""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from reverie import checkpoint
from reverie.accel import describe, learner_threads, pick_device
from reverie.agent import Agent
from reverie.callbacks import Callback
from reverie.clocks import Every, Speedometer, TrainRatio
from reverie.config import size_note, to_yaml, train_fill
from reverie.envs import describe_spaces, make_vector_env, uses_workers
from reverie.envs.checks import EnvContractError, nonfinite_keys
from reverie.envs.custom import EnvFactory
from reverie.envs.episode_stats import EpisodeStats, EpisodeTracker, info_at
from reverie.files import DiskFullError, atomic_write, pause_for_test, remove_stale_temps
from reverie.lock import LogdirLock
from reverie.logger import Logger, MetricsMean, Progress
from reverie.perf import tune_malloc
from reverie.replay import Replay
from reverie.rollout import evaluate
from reverie.specs import replay_length, replay_step, specs_state, to_numpy


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients too many updates in a row."""


def numpy_rng_state() -> tuple:
    """NumPy's global RNG state with its key array as a list: plain data, which a
    weights-only checkpoint load accepts (np.random.set_state takes it back)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    return kind, keys.tolist(), pos, has_gauss, cached


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EnvStep:
    """What N envs returned: observations (N, ...) and the reward and flags that came with them."""

    obs: dict[str, np.ndarray]
    reward: np.ndarray  # (N,) float32
    is_first: np.ndarray  # (N,) bool
    is_last: np.ndarray
    is_terminal: np.ndarray

    @classmethod
    def first(cls, obs: dict[str, np.ndarray], n: int) -> EnvStep:
        no = np.zeros(n, bool)
        return cls(obs, np.zeros(n, np.float32), np.ones(n, bool), no, no.copy())


class Trainer:
    """The training loop of one run in `logdir`, resumed from what it holds.

    :param factory: builds your own env instead of `cfg.env.id` (`reverie.envs.custom`).
    """

    def __init__(self, cfg: DictConfig, logdir: str | Path, factory: EnvFactory | None = None):
        self.cfg, self.factory = cfg, factory
        self.logdir = Path(logdir)
        tune_malloc()
        workers = cfg.env.num_envs if uses_workers(cfg.env) else 0
        torch.set_num_threads(learner_threads(cfg.run.threads, workers))
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.run.device)
        self.env = make_vector_env(cfg.env, cfg.seed, factory)  # bad env ids fail before any file
        self.obs_spec, self.act_spec = describe_spaces(self.env)  # and unsupported spaces
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.lock = LogdirLock(self.logdir)
        try:
            self.lock.acquire()  # before anything is read or written
            self._build(cfg)
        except BaseException:
            self.lock.release()
            self.env.close()
            raise
        print(f"reverie: {size_note(self.cfg)}", file=sys.stderr)
        print(
            f"reverie: {describe(bool(self.agent.compiled), self.agent.precision)}", file=sys.stderr
        )

    def _build(self, cfg: DictConfig) -> None:
        """The agent, replay and counters, resumed from what the logdir holds."""
        self.agent = Agent(self.obs_spec, self.act_spec, cfg, self.device)
        rc, run = cfg.replay, cfg.run
        self.seq_len = replay_length(run, rc)
        self.replay = Replay(
            rc.capacity,
            rc.chunk,
            self.logdir / "replay" if rc.save else None,
            rc.selector,
            rc.recency_exponent,
            seed=cfg.seed,
            disk_budget_mb=rc.disk_budget_mb,
            online_length=self.seq_len if rc.online else 0,
        )
        self.ratio = TrainRatio(run.train_ratio, run.batch_size * run.batch_length)
        self.step = 0
        self.updates = 0
        self.train_start: int | None = None
        self.episodes = 0
        self.eval_clock = Every(run.eval_every or None)
        self.dream_clock = Every(run.dream_every or None)
        self.nonfinite_in_row = 0
        self.returns: deque[float] = deque(maxlen=20)
        self.episode_stats = EpisodeStats()  # Crafter achievements
        self.metrics = MetricsMean()
        self.logger: Logger | None = None
        self.callbacks: list[Callback] = []
        self.stopped_by: str | None = None  # the callback hook that stopped `train`
        self._resume()
        atomic_write(self.logdir / "config.yaml", to_yaml(cfg).encode())

    @property
    def last_eval(self) -> int:
        return int(self.eval_clock.last)

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
        self.episodes, self.eval_clock.last = c["episodes"], c["last_eval"]
        self.episode_stats.load_state(state.get("episode_stats"))
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
            "episode_stats": self.episode_stats.state(),
            "specs": specs_state(self.obs_spec, self.act_spec),  # reverie.policy reads them
            "rng": {
                "python": random.getstate(),
                "numpy": numpy_rng_state(),
                "torch": torch.get_rng_state(),
            },
        }
        return checkpoint.save(self.logdir, state)

    # ------------------------------------------------------------- the loop
    def train(self, steps: int | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Run until `steps` total env steps (default run.steps), or until a callback
        (`reverie.callbacks`) stops it. Returns a summary."""
        rc = self.cfg.run
        self.callbacks, self.stopped_by = list(callbacks), None
        total = int(steps if steps is not None else rc.steps)
        self.logger = self.logger or self._open_logger()
        progress = Progress(total, self.step, rc.progress and sys.stderr.isatty())
        start = time.time()
        run_speed, log_speed = (Speedometer(start, self.step, self.updates) for _ in range(2))
        log_clock, ckpt_clock = Every(rc.log_every, start), Every(rc.checkpoint_every, start)
        tracker = EpisodeTracker(self.cfg.env.num_envs)
        incoming, state = self.reset_envs(), None
        try:
            while self.step < total and self.stopped_by is None:
                action, state = self.agent.policy(
                    {**incoming.obs, "is_first": incoming.is_first}, state
                )
                self.store(incoming, action, state)
                self.send_actions(action)  # env workers step while the learner updates
                self.step += self.cfg.env.num_envs
                self.update()  # reads only what replay held before this step: same result
                incoming = self.receive(incoming, tracker)
                now = time.time()
                if log_clock(now):
                    self._log_train(log_speed.read(now, self.step, self.updates))
                if self.eval_clock(self.step):
                    self.logger.write(self.step, self.evaluate(rc.eval_episodes))
                if self.dream_clock(self.step):
                    self._dream()
                if ckpt_clock(now):
                    self._hook("on_checkpoint", self.save())
                self._hook("on_step")
                progress.update(self.step, self._progress_info(run_speed))
        except (KeyboardInterrupt, EnvContractError):
            self.save()  # Ctrl-C, SIGTERM (see cli) or a broken env: keep what was learned
            raise
        except DiskFullError:
            self._save_what_fits()
            raise
        finally:
            progress.close()
        self._log_train(log_speed.read(time.time(), self.step, self.updates))
        path = self.save()
        self.logger.flush()
        return {
            "step": self.step,
            "updates": self.updates,
            "episodes": self.episodes,
            "mean_return": float(np.mean(self.returns)) if self.returns else float("nan"),
            "wall_time": time.time() - start,
            "checkpoint": str(path),
            "logdir": str(self.logdir),
            "stopped_by": self.stopped_by,
        }

    def _save_what_fits(self) -> None:
        """After a full disk: a new checkpoint if it still fits, else the last one stands
        (each write is atomic, so a failed one changes nothing on disk)."""
        try:
            self.save()
        except DiskFullError:
            pass

    def _open_logger(self) -> Logger:
        lc = self.cfg.logger
        sink = None
        if lc.wandb:
            from reverie.wandb_sink import WandbSink

            config = OmegaConf.to_container(self.cfg, resolve=True)
            assert isinstance(config, dict)
            plain = {str(k): v for k, v in config.items()}
            sink = WandbSink(self.logdir, lc.wandb_project, lc.wandb_entity, plain)
        return Logger(self.logdir, self.cfg.run.tensorboard, sink)

    def _hook(self, name: str, *args: Any) -> None:
        """Call hook `name` of every callback; one that returns False stops the run."""
        for callback in self.callbacks:
            if getattr(callback, name)(self, *args) is False and self.stopped_by is None:
                self.stopped_by = f"{type(callback).__name__}.{name}"

    def reset_envs(self) -> EnvStep:
        obs, infos = self.env.reset(seed=self.cfg.seed + 1000 * self.episodes)
        self._env_faults(infos)
        return EnvStep.first(obs, self.cfg.env.num_envs)

    def store(self, incoming: EnvStep, action: torch.Tensor, latent: dict) -> None:
        """Replay keeps each step with the action taken on it and its posterior latent."""
        e = incoming
        step = replay_step(e.obs, e.reward, e.is_first, e.is_last, e.is_terminal, action, latent)
        self.replay.add_batch(step, range(self.cfg.env.num_envs))

    def send_actions(self, action: torch.Tensor) -> None:
        # one-hot or [-1, 1] actions: the env wrappers turn them into the env's own
        self.pending = action.cpu().numpy()
        if hasattr(self.env, "step_async"):  # worker processes (reverie.envs.vector)
            self.env.step_async(self.pending)

    def receive(self, previous: EnvStep, tracker: EpisodeTracker) -> EnvStep:
        """The envs' answer to the actions sent; logs the episodes that ended with it."""
        if hasattr(self.env, "step_async"):
            assert hasattr(self.env, "step_wait")  # step_async's other half
            obs, reward, term, trunc, infos = self.env.step_wait()  # drops non-finite steps
        else:
            obs, reward, term, trunc, infos = self.env.step(self.pending)
            bad = nonfinite_keys(obs, reward)
            if bad:
                raise EnvContractError(
                    f"env {self.cfg.env.id}: step returned NaN or inf in {', '.join(bad)}; "
                    "fix the env, or run it in worker processes (env.parallel=async), which "
                    "end such an episode as truncated and log the fault"
                )
        self._env_faults(infos)  # log env faults; their episodes end as truncations
        # NEXT_STEP autoreset: the step after an episode's last is the next one's first
        step = EnvStep(obs, reward.astype(np.float32), previous.is_last.copy(), term | trunc, term)
        for ep in tracker.step(step.reward, step.is_first, step.is_last, infos):
            self._episode_done(ep.ret, ep.length, ep.info)
        return step

    def update(self) -> None:
        """The updates the train ratio owes, once replay holds enough to start."""
        if self.train_start is None and self._replay_ready():
            self.train_start = self.step
        for _ in range(self.updates_due()):
            self.train_step()

    def _replay_ready(self) -> bool:
        fill = train_fill(self.cfg.run)
        return self.replay.size >= fill and self.replay.can_sample(self.seq_len)

    def updates_due(self) -> int:
        if self.train_start is None:
            return 0
        return self.ratio.owed(self.step - self.train_start, self.updates)

    def train_step(self) -> None:
        data, keys = self.replay.sample(self.cfg.run.batch_size, self.seq_len)
        batch = {key: torch.as_tensor(v, device=self.device) for key, v in data.items()}
        metrics, latents = self.agent.update(batch)
        pause_for_test("update")  # tests/test_kill.py: a kill between update and bookkeeping
        self.updates += 1
        if not self.agent.last_update_finite:
            self._nonfinite_update(metrics)
            return
        self.nonfinite_in_row = 0
        self.metrics.add(metrics)
        self.replay.write_latents(keys, self.cfg.replay.context, to_numpy(latents))

    def _nonfinite_update(self, metrics: dict[str, torch.Tensor]) -> None:
        """Log a skipped update with the loss terms that went bad; stop after too many."""
        bad = sorted(k for k, v in metrics.items() if not torch.isfinite(v).all())
        self.nonfinite_in_row += 1
        assert self.logger is not None  # train() opens it before the loop
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

    # ------------------------------------------------------------- reporting
    def _progress_info(self, speed: Speedometer) -> str:
        recent = np.mean(self.returns) if self.returns else float("nan")
        rates = speed.read(time.time(), self.step, self.updates, reset=False)
        return (
            f"return {recent:.1f} | {rates['fps/updates']:.2f} upd/s"
            f" | {rates['fps/env_steps']:.1f} steps/s | {self.updates} updates"
        )

    def _episode_done(self, ret: float, length: int, info: dict | None = None) -> None:
        self.episodes += 1
        self.returns.append(ret)
        extra = self.episode_stats.episode(info)  # achievement/<name>, crafter/score
        assert self.logger is not None  # train() opens it before the loop
        self.logger.write(self.step, {"episode/return": ret, "episode/length": length, **extra})
        self._hook("on_episode", ret, length)

    def _env_faults(self, infos: dict) -> None:
        """Log the faults the async vector env reports (reverie.envs.vector)."""
        for i in np.flatnonzero(infos.get("_env_fault", ())):
            fault = str(info_at(infos, int(i), "env_fault"))
            restarts = int(info_at(infos, int(i), "worker_restarts"))
            assert self.logger is not None  # train() opens it before the loop
            self.logger.write(self.step, {"env/worker_restarts": restarts, "env/fault": fault})
            print(f"reverie: warning: step {self.step}: {fault}", file=sys.stderr)

    def _log_train(self, rates: dict[str, float]) -> None:
        metrics = {**self.metrics.result(), **rates}
        metrics["replay/size"] = self.replay.size
        metrics["train/updates"] = self.updates
        assert self.logger is not None  # train() opens it before the loop
        self.logger.write(self.step, metrics)
        self._hook("on_log", metrics)

    def evaluate(self, episodes: int, prefix: str = "eval/", mode: str = "mode") -> dict:
        seed = self.cfg.seed + 10**6 + self.step
        return evaluate(
            self.agent,
            self.cfg,
            episodes,
            seed=seed,
            prefix=prefix,
            mode=mode,
            factory=self.factory,
        )

    def _dream(self) -> None:
        """Open-loop predictions on replay into TensorBoard and logdir/dreams (run.dream_every)."""
        from reverie.viz.dream import dream_during_training

        dream_during_training(
            self.agent, self.cfg, self.replay, self.logdir, self.logger, self.step
        )

    def close(self) -> None:
        self.lock.release()
        self.env.close()
        if self.logger is not None:
            self.logger.close()
