"""The training loop: act in the envs, store the steps, update at the train ratio, log,
evaluate, dream and checkpoint. `Trainer.train` is the loop; each of its steps is a
method below. The trainer receives what it works with (`reverie.build.open_trainer`
builds them): the envs, agent, replay, logger, and a coordinator that makes every
decision that depends on how many processes train together (`reverie.coordinator`).

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
from omegaconf import DictConfig

from reverie.agent import Agent
from reverie.callbacks import Callback
from reverie.checkpoint import CHECKPOINT
from reverie.clocks import Every, Speedometer, TrainRatio
from reverie.config import to_yaml, train_fill, typed
from reverie.coordinator import Coordinator
from reverie.envs.checks import EnvContractError, nonfinite_keys
from reverie.envs.custom import EnvFactory
from reverie.envs.episode_stats import EpisodeStats, EpisodeTracker, info_at
from reverie.errors import ReverieError
from reverie.files import DiskFullError
from reverie.interrupts import Interrupted, InterruptGuard
from reverie.lock import LogdirLock
from reverie.logger import Logger, MetricsMean, Progress
from reverie.replay import Replay
from reverie.rollout import evaluate
from reverie.run_dir import Checkpoint, Counters, RankState, save_checkpoint, specs_of
from reverie.specs import replay_length, replay_step, to_numpy


class NonFiniteError(ReverieError, RuntimeError):
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
    """The training loop of one run in `logdir`, over the collaborators it is given
    (`reverie.build.open_trainer` builds them and resumes them from the logdir)."""

    def __init__(
        self,
        cfg: DictConfig,
        logdir: Path,
        env: Any,
        agent: Agent,
        replay: Replay,
        logger: Logger,
        coordinator: Coordinator,
        lock: LogdirLock,
        counters: Counters,
        episode_stats: EpisodeStats,
        factory: EnvFactory | None = None,
    ):
        self.cfg, self.logdir, self.factory = cfg, Path(logdir), factory
        self.env, self.agent, self.replay, self.logger = env, agent, replay, logger
        self.coordinator, self.lock, self.episode_stats = coordinator, lock, episode_stats
        typed_cfg = typed(cfg)  # read by field in the loop; `cfg` is what the run saves
        self.run, self.envs_cfg, self.replay_cfg = typed_cfg.run, typed_cfg.env, typed_cfg.replay
        run = self.run
        self.obs_spec, self.act_spec, self.device = agent.obs_spec, agent.act_spec, agent.device
        self.batch_size = coordinator.batch_size(run.batch_size)  # this rank's share
        self.seed = coordinator.seed(cfg.seed)
        self.seq_len = replay_length(run, self.replay_cfg)
        self.ratio = TrainRatio(run.train_ratio, run.batch_size * run.batch_length)
        self.step, self.updates = counters.step, counters.updates
        self.train_start, self.episodes = counters.train_start, counters.episodes
        self.eval_clock = Every(run.eval_every or None, counters.last_eval)
        self.dream_clock = Every(run.dream_every or None)
        self.nonfinite_in_row = 0
        self.returns: deque[float] = deque(maxlen=20)
        self.metrics = MetricsMean()
        self.last_saved: tuple[int, Path] | None = None  # (env step, path) of this process
        self.callbacks: list[Callback] = []
        self.stopped_by: str | None = None  # the callback hook that stopped `train`
        self.stop = False  # the loop's agreed stop (a callback's, or a signal's)
        self.interrupted = False  # a job's SIGINT/SIGTERM, acted on by all ranks together

    @property
    def last_eval(self) -> int:
        return int(self.eval_clock.last)

    # ------------------------------------------------------------- the loop
    def train(self, steps: int | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Run until `steps` total env steps (default run.steps), or until a callback
        (`reverie.callbacks`) stops it. Returns a summary."""
        self.callbacks, self.stopped_by = list(callbacks), None
        self.stop, self.interrupted = False, False
        total = int(steps if steps is not None else self.run.steps)
        start = time.time()
        log_speed = Speedometer(start, self.step, self.updates)
        # the first SIGINT/SIGTERM stops the loop (alone: at once, by KeyboardInterrupt; in a
        # job: at the next step, all ranks together); later ones cannot interrupt the save
        with InterruptGuard(raise_first=self.coordinator.raises_on_signal) as signals:
            progress = self._progress_bar(total)
            try:
                self._loop(total, start, log_speed, progress, signals)
            except Interrupted:
                raise
            except KeyboardInterrupt:
                if self.coordinator.saves_after_error:
                    self.save()
                raise Interrupted(self.last_saved) from None
            except EnvContractError:
                if self.coordinator.saves_after_error:
                    self.save()  # a broken env: keep what was learned
                raise
            except DiskFullError:
                if self.coordinator.saves_after_error:
                    self._save_what_fits()
                raise
            finally:
                progress.close()
        if self.step >= total and self.eval_clock.every and self.eval_clock.last != self.step:
            self.eval_clock.last = self.step  # scores are read at the budget (reverie score)
            if self.coordinator.main:
                self.logger.write(self.step, self.evaluate(self.run.eval_episodes))
        self._log_train(log_speed.read(time.time(), self.step, self.updates))
        path = self.save()
        self.logger.flush()
        # when train() returns on any rank, the job's checkpoint is on disk and no rank has
        # a collective in flight as it closes; error paths skip it (no waiting for a dead rank)
        self.coordinator.settle()
        return self._summary(start, path)

    def _loop(
        self,
        total: int,
        start: float,
        log_speed: Speedometer,
        progress: Progress,
        signals: InterruptGuard,
    ) -> None:
        rc, num_envs = self.run, self.envs_cfg.num_envs
        run_speed = Speedometer(start, self.step, self.updates)
        log_clock, ckpt_clock = Every(rc.log_every, start), Every(rc.checkpoint_every, start)
        tracker = EpisodeTracker(num_envs)
        incoming, state = self.reset_envs(), None
        while self.step < total and not self.coordinator.stops(self.stop, self.stopped_by):
            obs = {**incoming.obs, "is_first": incoming.is_first}
            action, state = self.agent.policy(obs, state)
            self.store(incoming, action, state)
            self.send_actions(action)  # env workers step while the learner updates
            self.step += self.coordinator.env_steps(num_envs)
            self.update()  # reads only what replay held before this step: same result
            incoming = self.receive(incoming, tracker)
            now = time.time()
            if log_clock(now):
                self._log_train(log_speed.read(now, self.step, self.updates))
            if self.eval_clock(self.step) and self.coordinator.main:
                self.logger.write(self.step, self.evaluate(rc.eval_episodes))
            if self.dream_clock(self.step) and self.coordinator.main:
                self._dream()
            if self._agree(ckpt_clock(now), signals.received):
                self._hook("on_checkpoint", self.save())
            self._hook("on_step")
            progress.update(self.step, self._progress_info(run_speed))
        if self.interrupted:
            raise Interrupted(self.last_saved)  # a job's: all ranks saved together above

    def _agree(self, checkpoint_due: bool, signalled: bool) -> bool:
        """Whether to checkpoint now; sets the loop's stop (what the coordinator agreed
        from this step's callbacks and signals)."""
        agreed = self.coordinator.agree(checkpoint_due, self.stopped_by is not None, signalled)
        if agreed.stop and self.stopped_by is None and not agreed.interrupted:
            self.stopped_by = "a callback on rank 0"
        self.stop, self.interrupted = agreed.stop, agreed.interrupted
        return agreed.checkpoint

    def _summary(self, start: float, path: Path) -> dict[str, Any]:
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

    def _hook(self, name: str, *args: Any) -> None:
        """Call hook `name` of every callback; one that returns False stops the run.
        In a job they run on rank 0 (the coordinator tells the others of a stop)."""
        if not self.coordinator.main:
            return
        for callback in self.callbacks:
            if getattr(callback, name)(self, *args) is False and self.stopped_by is None:
                self.stopped_by = f"{type(callback).__name__}.{name}"

    # ------------------------------------------------------------- acting
    def reset_envs(self) -> EnvStep:
        obs, infos = self.env.reset(seed=self.seed + 1000 * self.episodes)
        self._env_faults(infos)
        return EnvStep.first(obs, self.envs_cfg.num_envs)

    def store(self, incoming: EnvStep, action: torch.Tensor, latent: dict) -> None:
        """Replay keeps each step with the action taken on it and its posterior latent."""
        e = incoming
        step = replay_step(e.obs, e.reward, e.is_first, e.is_last, e.is_terminal, action, latent)
        self.replay.add_batch(step, range(self.envs_cfg.num_envs))

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
                    f"env {self.envs_cfg.id}: step returned NaN or inf in {', '.join(bad)}; "
                    "fix the env, or run it in worker processes (env.parallel=async), which "
                    "end such an episode as truncated and log the fault"
                )
        self._env_faults(infos)  # log env faults; their episodes end as truncations
        # NEXT_STEP autoreset: the step after an episode's last is the next one's first
        step = EnvStep(obs, reward.astype(np.float32), previous.is_last.copy(), term | trunc, term)
        for ep in tracker.step(step.reward, step.is_first, step.is_last, infos):
            self._episode_done(ep.ret, ep.length, ep.info)
        return step

    # ------------------------------------------------------------- learning
    def update(self) -> None:
        """The updates the train ratio owes, once replay holds enough to start."""
        if self.train_start is None and self._replay_ready():
            self.train_start = self.step
        for _ in range(self.updates_due()):
            self.train_step()

    def _replay_ready(self) -> bool:
        can_sample = self.replay.can_sample(self.seq_len)
        return self.coordinator.replay_ready(self.replay.size, can_sample, train_fill(self.run))

    def updates_due(self) -> int:
        if self.train_start is None:
            return 0
        return self.ratio.owed(self.step - self.train_start, self.updates)

    def train_step(self) -> None:
        data, keys = self.replay.sample(self.batch_size, self.seq_len)  # this rank's share
        batch = {key: torch.as_tensor(v, device=self.device) for key, v in data.items()}
        metrics, latents = self.agent.update(batch)
        self.updates += 1
        if not self.agent.last_update_finite:
            self._nonfinite_update(metrics)
            return
        self.nonfinite_in_row = 0
        self.metrics.add(metrics)
        self.replay.write_latents(keys, self.replay_cfg.context, to_numpy(latents))

    def _nonfinite_update(self, metrics: dict[str, torch.Tensor]) -> None:
        """Log a skipped update with the loss terms that went bad; stop after too many."""
        bad = sorted(k for k, v in metrics.items() if not torch.isfinite(v).all())
        self.nonfinite_in_row += 1
        self.logger.write(self.step, {"train/skipped_update": 1.0})
        if self.coordinator.main:  # every rank skips it (the ranks' average was non-finite)
            print(
                f"reverie: warning: update {self.updates} at step {self.step} skipped: "
                f"non-finite {', '.join(bad) or 'gradients'}",
                file=sys.stderr,
            )
        patience = self.run.nonfinite_patience
        if self.nonfinite_in_row >= patience:
            self.save()  # skipped updates left the parameters as they were before the problem
            raise NonFiniteError(
                f"{patience} updates in a row had non-finite losses or gradients "
                f"({', '.join(bad) or 'gradients'}); stopped at step {self.step}. The "
                f"checkpoint in {self.logdir} holds the parameters from before. Check the "
                "env's observations and rewards for NaN/inf, or lower optim.lr."
            )

    # ------------------------------------------------------------- saving
    def save(self) -> Path:
        """Write a checkpoint. In a job every rank calls it at the same point: each writes
        its replay chunks, and rank 0 writes the checkpoint with every rank's own state."""
        self.replay.flush()
        ranks = self.coordinator.gather(self._rank_state())
        path = self.logdir / CHECKPOINT
        if ranks is None:  # not the rank that writes it
            return path
        counters = Counters(
            self.step, self.updates, self.train_start, self.episodes, self.last_eval
        )
        config = to_yaml(self.cfg)
        ckpt = Checkpoint(
            config, self.agent.checkpoint_state(), counters, ranks, specs_of(self.agent)
        )
        path = save_checkpoint(self.logdir, ckpt)
        self.last_saved = (self.step, path)
        return path

    def _rank_state(self) -> RankState:
        """What each rank holds of its own: replay sampler, episodes, random states."""
        rng = {
            "python": random.getstate(),
            "numpy": numpy_rng_state(),
            "torch": torch.get_rng_state(),
        }
        return RankState(self.replay.state(), self.episodes, self.episode_stats.state(), rng)

    def _save_what_fits(self) -> None:
        """After a full disk: a new checkpoint if it still fits, else the last one stands."""
        try:
            self.save()
        except DiskFullError:
            pass

    # ------------------------------------------------------------- reporting
    def _progress_bar(self, total: int) -> Progress:
        bar = self.run.progress and sys.stderr.isatty() and self.coordinator.main
        return Progress(total, self.step, bar)

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
        self.logger.write(self.step, {"episode/return": ret, "episode/length": length, **extra})
        self._hook("on_episode", ret, length)

    def _env_faults(self, infos: dict) -> None:
        """Log the faults the async vector env reports (reverie.envs.vector)."""
        for i in np.flatnonzero(infos.get("_env_fault", ())):
            fault = str(info_at(infos, int(i), "env_fault"))
            restarts = int(info_at(infos, int(i), "worker_restarts"))
            self.logger.write(self.step, {"env/worker_restarts": restarts, "env/fault": fault})
            print(f"reverie: warning: step {self.step}: {fault}", file=sys.stderr)

    def _log_train(self, rates: dict[str, float]) -> None:
        metrics = {**self.metrics.result(), **rates}
        metrics["replay/size"] = self.replay.size
        metrics["train/updates"] = self.updates
        self.logger.write(self.step, metrics)
        self._hook("on_log", metrics)

    def evaluate(self, episodes: int, prefix: str = "eval/", mode: str | None = None) -> dict:
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
        self.logger.close()
        self.coordinator.close()
