"""The training loop: act in the envs, store the steps, update at the train ratio, log,
evaluate, dream and checkpoint. It owns the clocks and is the only module that knows
all the others (`Trainer.train` is the loop; each of its steps is a method below).

Under torchrun every rank runs this loop in lockstep on its own envs and replay; the
update averages gradients over the ranks, rank 0 alone writes the checkpoint and the
logs (docs/distributed.md)."""

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
from reverie.config import ConfigError, size_note, to_yaml, train_fill
from reverie.distributed import (
    Comm,
    check_world_size,
    local_batch,
    rank_seed,
    replay_folder,
    world_from_env,
)
from reverie.envs import describe_spaces, make_vector_env, uses_workers
from reverie.envs.checks import EnvContractError, nonfinite_keys
from reverie.envs.custom import EnvFactory
from reverie.envs.episode_stats import EpisodeStats, EpisodeTracker, info_at
from reverie.files import DiskFullError, atomic_write, pause_for_test, remove_stale_temps
from reverie.interrupts import Interrupted, InterruptGuard
from reverie.lock import LogdirInUseError, LogdirLock
from reverie.logger import Logger, MetricsMean, NullLogger, Progress
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
        self.world = world_from_env()  # one process unless torchrun launched this one
        self.batch_size = local_batch(cfg.run.batch_size, self.world)  # this rank's share
        self.seed = rank_seed(cfg.seed, self.world.rank)
        tune_malloc()
        workers = cfg.env.num_envs if uses_workers(cfg.env) else 0
        torch.set_num_threads(learner_threads(cfg.run.threads, workers, self.world.local_size))
        seed_everything(cfg.seed)  # the same initial weights on every rank
        local_rank = self.world.local_rank if self.world.active else None
        self.device = pick_device(cfg.run.device, local_rank)
        self.env = make_vector_env(cfg.env, self.seed, factory)  # bad env ids fail before any file
        self.obs_spec, self.act_spec = describe_spaces(self.env)  # and unsupported spaces
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.lock = LogdirLock(self.logdir)
        self.comm = Comm(self.world, self.device)
        try:
            self.comm = Comm.connect(self.world, self.device)
            self._lock_logdir()  # before anything is read or written
            self._check_same_config(cfg)
            self._build(cfg)
        except BaseException:
            self.lock.release()
            self.env.close()
            self.comm.close()
            raise
        if self.world.main:
            print(f"reverie: {size_note(self.cfg)}", file=sys.stderr)
            how = describe(bool(self.agent.compiled), self.agent.precision, self.cfg.run.compile)
            print(f"reverie: {how}", file=sys.stderr)

    def _lock_logdir(self) -> None:
        """One trainer per logdir: in a job rank 0 holds the lock for all ranks, and tells
        them whether it got it."""
        if not self.world.active:
            self.lock.acquire()
            return
        refused: LogdirInUseError | None = None
        if self.world.main:
            try:
                self.lock.acquire()
            except LogdirInUseError as e:
                refused = e
        if self.comm.sum_ints([refused is not None])[0]:
            raise refused or LogdirInUseError(
                f"logdir {self.logdir} is in use by another trainer (rank 0 of this job "
                "could not lock it); wait for it to end or stop it, or pick another --logdir"
            )

    def _check_same_config(self, cfg: DictConfig) -> None:
        if not self.comm.same_everywhere(to_yaml(cfg)):
            raise ConfigError(
                "the ranks of this job resolved different configs: launch the same command "
                "on every host, with the same logdir contents (config.yaml)"
            )

    def _build(self, cfg: DictConfig) -> None:
        """The agent, replay and counters, resumed from what the logdir holds."""
        self.agent = Agent(self.obs_spec, self.act_spec, cfg, self.device, comm=self.comm)
        if self.world.active:
            seed_everything(self.seed)  # from here each rank draws its own random numbers
        rc, run = cfg.replay, cfg.run
        self.seq_len = replay_length(run, rc)
        n = self.world.size  # capacity and disk budget are the job's: each rank holds 1/n
        self.replay = Replay(
            rc.capacity // n,
            rc.chunk,
            replay_folder(self.logdir / "replay", self.world) if rc.save else None,
            rc.selector,
            rc.recency_exponent,
            seed=self.seed,
            disk_budget_mb=rc.disk_budget_mb / n,
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
        self.interrupted = False  # a job's SIGINT/SIGTERM, acted on by all ranks together
        self.last_saved: tuple[int, Path] | None = None  # (env step, path) of this process
        self.stop_all = False  # a job's agreed stop (`_checkpoint_due`)
        self.logger: Logger | None = None
        self.callbacks: list[Callback] = []
        self.stopped_by: str | None = None  # the callback hook that stopped `train`
        self._resume()
        if self.world.main:
            atomic_write(self.logdir / "config.yaml", to_yaml(cfg).encode())

    @property
    def last_eval(self) -> int:
        return int(self.eval_clock.last)

    # -------------------------------------------------------------- resuming
    def _resume(self) -> None:
        # rank 0 reads the checkpoint for all: other hosts need no copy of it
        state = self.comm.from_main(lambda: checkpoint.load_latest(self.logdir))
        if state is not None:
            check_world_size(state, self.world, self.logdir)
        if self.world.main:
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
        c = state["counters"]
        self.step, self.updates, self.train_start = c["step"], c["updates"], c["train_start"]
        self.eval_clock.last = c["last_eval"]
        # a job's checkpoint holds what is each rank's own in `ranks` (rank 0's at the top too)
        mine = state["ranks"][self.world.rank] if self.world.active else state
        self.replay.load_state(mine["replay"])
        self.episodes = mine["counters"]["episodes"]
        self.episode_stats.load_state(mine.get("episode_stats"))
        random.setstate(mine["rng"]["python"])
        np.random.set_state(mine["rng"]["numpy"])
        torch.set_rng_state(mine["rng"]["torch"])
        who = f"rank {self.world.rank}: " if self.world.active else ""
        print(
            f"reverie: {who}resumed {self.logdir} at step {self.step} ({self.updates} updates, "
            f"{steps} replay steps)",
            file=sys.stderr,
        )

    def save(self) -> Path:
        """Write a checkpoint. In a job every rank calls it at the same point: each writes
        its replay chunks, and rank 0 writes the checkpoint with every rank's own state."""
        self.replay.flush()
        mine = self._rank_state()
        ranks = self.comm.gather_to_main(mine)
        if not self.world.main:
            return self.logdir / checkpoint.CHECKPOINT
        state = {
            "config": to_yaml(self.cfg),
            "agent": self.agent.checkpoint_state(),
            "replay": mine["replay"],
            "counters": {
                "step": self.step,
                "updates": self.updates,
                "train_start": self.train_start,
                "episodes": self.episodes,
                "last_eval": self.last_eval,
            },
            "episode_stats": mine["episode_stats"],
            "specs": specs_state(self.obs_spec, self.act_spec),  # reverie.policy reads them
            "rng": mine["rng"],
        }
        if self.world.active:
            state.update(world_size=self.world.size, ranks=ranks)
        path = checkpoint.save(self.logdir, state)
        self.last_saved = (self.step, path)
        return path

    def _rank_state(self) -> dict[str, Any]:
        """What each rank holds of its own: replay sampler, episodes, random states."""
        return {
            "replay": self.replay.state(),
            "counters": {"episodes": self.episodes},
            "episode_stats": self.episode_stats.state(),
            "rng": {
                "python": random.getstate(),
                "numpy": numpy_rng_state(),
                "torch": torch.get_rng_state(),
            },
        }

    # ------------------------------------------------------------- the loop
    def train(self, steps: int | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Run until `steps` total env steps (default run.steps), or until a callback
        (`reverie.callbacks`) stops it. Returns a summary."""
        rc = self.cfg.run
        self.callbacks, self.stopped_by = list(callbacks), None
        self.stop_all, self.interrupted = False, False
        total = int(steps if steps is not None else rc.steps)
        self.logger = self.logger or self._open_logger()
        bar = rc.progress and sys.stderr.isatty() and self.world.main
        progress = Progress(total, self.step, bar)
        start = time.time()
        run_speed, log_speed = (Speedometer(start, self.step, self.updates) for _ in range(2))
        log_clock, ckpt_clock = Every(rc.log_every, start), Every(rc.checkpoint_every, start)
        tracker = EpisodeTracker(self.cfg.env.num_envs)
        incoming, state = self.reset_envs(), None
        # the first SIGINT/SIGTERM stops the loop (alone: at once, by KeyboardInterrupt; in a
        # job: at the next step, all ranks together); later ones cannot interrupt the save
        with InterruptGuard(raise_first=not self.world.active) as signals:
            try:
                while self.step < total and not self._stopping():
                    action, state = self.agent.policy(
                        {**incoming.obs, "is_first": incoming.is_first}, state
                    )
                    self.store(incoming, action, state)
                    self.send_actions(action)  # env workers step while the learner updates
                    self.step += self.cfg.env.num_envs * self.world.size  # all ranks' env steps
                    self.update()  # reads only what replay held before this step: same result
                    incoming = self.receive(incoming, tracker)
                    now = time.time()
                    if log_clock(now):
                        self._log_train(log_speed.read(now, self.step, self.updates))
                    if self.eval_clock(self.step) and self.world.main:
                        self.logger.write(self.step, self.evaluate(rc.eval_episodes))
                    if self.dream_clock(self.step) and self.world.main:
                        self._dream()
                    self.interrupted = self.interrupted or signals.received
                    if self._checkpoint_due(ckpt_clock, now):
                        self._hook("on_checkpoint", self.save())
                    self._hook("on_step")
                    progress.update(self.step, self._progress_info(run_speed))
                if self.interrupted:
                    raise Interrupted(self.last_saved)  # a job's: all ranks saved together above
            except Interrupted:
                raise
            except KeyboardInterrupt:
                if not self.world.active:
                    self.save()
                raise Interrupted(self.last_saved) from None
            except EnvContractError:
                # a broken env: keep what was learned. A job's checkpoint takes every rank,
                # which one rank's error cannot wait for: there the last checkpoint stands
                if not self.world.active:
                    self.save()
                raise
            except DiskFullError:
                if not self.world.active:
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

    def _stopping(self) -> bool:
        """Whether a callback stopped the run; in a job, what all ranks agreed on."""
        return self.stop_all if self.world.active else self.stopped_by is not None

    def _checkpoint_due(self, clock: Every, now: float) -> bool:
        """Whether to checkpoint now: the clock's call alone, or in a job rank 0's clock,
        shared with every rank along with stops and interrupts (one small all-reduce per
        step keeps the ranks' loops in step)."""
        if not self.world.active:
            return clock(now)
        flags = [self.world.main and clock(now), self.stopped_by is not None, self.interrupted]
        due, stop, interrupted = self.comm.sum_ints([int(f) for f in flags])
        if stop and self.stopped_by is None:
            self.stopped_by = "a callback on rank 0"
        self.interrupted = bool(interrupted)
        self.stop_all = bool(stop or interrupted)
        return bool(due or interrupted)  # an interrupt saves first

    def _save_what_fits(self) -> None:
        """After a full disk: a new checkpoint if it still fits, else the last one stands
        (each write is atomic, so a failed one changes nothing on disk)."""
        try:
            self.save()
        except DiskFullError:
            pass

    def _open_logger(self) -> Logger:
        if not self.world.main:
            return NullLogger()  # rank 0 writes the logs of a job
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
        """Call hook `name` of every callback; one that returns False stops the run.
        In a job they run on rank 0 (`_checkpoint_due` tells the others of a stop)."""
        if not self.world.main:
            return
        for callback in self.callbacks:
            if getattr(callback, name)(self, *args) is False and self.stopped_by is None:
                self.stopped_by = f"{type(callback).__name__}.{name}"

    def reset_envs(self) -> EnvStep:
        obs, infos = self.env.reset(seed=self.seed + 1000 * self.episodes)
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
        """Whether replay holds `train_fill` steps (in a job: all ranks' together) and a
        sequence to sample (on every rank)."""
        fill = train_fill(self.cfg.run)
        if not self.world.active:
            return self.replay.size >= fill and self.replay.can_sample(self.seq_len)
        short = int(not self.replay.can_sample(self.seq_len))
        size, ranks_short = self.comm.sum_ints([self.replay.size, short])
        return size >= fill and ranks_short == 0

    def updates_due(self) -> int:
        if self.train_start is None:
            return 0
        return self.ratio.owed(self.step - self.train_start, self.updates)

    def train_step(self) -> None:
        data, keys = self.replay.sample(self.batch_size, self.seq_len)  # this rank's share
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
        if self.world.main:  # every rank skips it (the ranks' average was non-finite)
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
        self.comm.close()
