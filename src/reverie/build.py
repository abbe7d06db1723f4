"""Building a run: the trainer's collaborators (envs, agent, replay, logger, coordinator)
from a config and a logdir, resumed from what the logdir holds.

`open_trainer(cfg, logdir)` is what `reverie train`, the API and the benchmarks call; the
`Trainer` itself receives what is built here and keeps only the loop.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from reverie.accel import describe, learner_threads, pick_device
from reverie.agent import Agent
from reverie.config import protocol_note, size_note, to_yaml
from reverie.coordinator import Coordinator, JobCoordinator
from reverie.distributed import world_from_env
from reverie.envs import describe_spaces, envs_note, make_vector_env, uses_workers
from reverie.envs.custom import EnvFactory
from reverie.envs.episode_stats import EpisodeStats
from reverie.files import atomic_write, remove_stale_temps
from reverie.lock import LogdirLock
from reverie.logger import Logger, NullLogger
from reverie.perf import tune_malloc
from reverie.replay import Replay
from reverie.run_dir import CONFIG, REPLAY, Counters, RankState
from reverie.specs import replay_length
from reverie.trainer import Trainer, seed_everything


def open_trainer(cfg: DictConfig, logdir: str | Path, factory: EnvFactory | None = None) -> Trainer:
    """The trainer of the run in `logdir`, resumed from its checkpoint if it has one.

    :param factory: builds your own env instead of `cfg.env.id` (`reverie.envs.custom`).
    """
    logdir = Path(logdir)
    world = world_from_env()  # one process unless torchrun launched this one
    tune_malloc()
    workers = cfg.env.num_envs if uses_workers(cfg.env) else 0
    torch.set_num_threads(learner_threads(cfg.run.threads, workers, world.local_size))
    seed_everything(cfg.seed)  # the same initial weights on every rank
    device = pick_device(cfg.run.device, world.local_rank if world.active else None)
    coordinator = JobCoordinator(world, device) if world.active else Coordinator()
    seed = coordinator.seed(cfg.seed)
    env = make_vector_env(cfg.env, seed, factory)  # bad env ids fail before any file
    lock = LogdirLock(logdir)
    try:
        obs_spec, act_spec = describe_spaces(env)  # and unsupported spaces
        logdir.mkdir(parents=True, exist_ok=True)
        coordinator.lock(lock)  # before anything is read or written
        coordinator.check_same_config(to_yaml(cfg))
        agent = Agent(obs_spec, act_spec, cfg, device, comm=coordinator.comm)
        if not coordinator.alone:
            seed_everything(seed)  # from here each rank draws its own random numbers
        replay = make_replay(cfg, logdir, coordinator, seed)
        counters, stats = resume(logdir, coordinator, agent, replay)
        if coordinator.main:
            atomic_write(logdir / CONFIG, to_yaml(cfg).encode())
        logger = open_logger(cfg, logdir) if coordinator.main else NullLogger()
    except BaseException:
        lock.release()
        env.close()
        coordinator.close()
        raise
    if coordinator.main:
        print(f"reverie: {size_note(cfg)}", file=sys.stderr)
        departs = protocol_note(cfg)
        if departs:
            print(f"reverie: {departs}", file=sys.stderr)
        how = describe(bool(agent.compiled), agent.precision, cfg.run.compile)
        print(f"reverie: {how}", file=sys.stderr)
        if cfg.env.num_envs > 1:
            print(f"reverie: {envs_note(cfg.env)}", file=sys.stderr)
    return Trainer(
        cfg, logdir, env, agent, replay, logger, coordinator, lock, counters, stats, factory
    )


def make_replay(cfg: DictConfig, logdir: Path, coordinator: Coordinator, seed: int) -> Replay:
    rc = cfg.replay
    folder = coordinator.replay_folder(logdir / REPLAY) if rc.save else None
    return Replay(
        int(coordinator.share(rc.capacity)),  # capacity and disk budget are the job's
        rc.chunk,
        folder,
        rc.selector,
        rc.recency_exponent,
        seed=seed,
        disk_budget_mb=coordinator.share(rc.disk_budget_mb),
        online_length=replay_length(cfg.run, rc) if rc.online else 0,
    )


def resume(
    logdir: Path, coordinator: Coordinator, agent: Agent, replay: Replay
) -> tuple[Counters, EpisodeStats]:
    """Load what `logdir` holds into the agent and replay: (the run's counters, the
    episode stats); fresh ones for a new run."""
    ckpt, mine = coordinator.read_checkpoint(logdir)
    if coordinator.main:
        remove_stale_temps(logdir)  # of a killed run's checkpoint write
    steps = replay.load()
    if replay.skipped_files:
        print(
            f"reverie: warning: skipped unreadable replay chunks: "
            f"{', '.join(replay.skipped_files)}",
            file=sys.stderr,
        )
    stats = EpisodeStats()  # Crafter achievements
    if ckpt is None or mine is None:
        return Counters(), stats
    agent.load_checkpoint_state(ckpt.agent)
    replay.load_state(mine.replay)
    stats.load_state(mine.episode_stats)
    restore_rng(mine)
    counters = Counters(**{**vars(ckpt.counters), "episodes": mine.episodes})
    print(
        f"reverie: {coordinator.label}resumed {logdir} at step {counters.step} "
        f"({counters.updates} updates, {steps} replay steps)",
        file=sys.stderr,
    )
    return counters, stats


def restore_rng(mine: RankState) -> None:
    random.setstate(mine.rng["python"])
    np.random.set_state(mine.rng["numpy"])
    torch.set_rng_state(mine.rng["torch"])


def open_logger(cfg: DictConfig, logdir: Path) -> Logger:
    sink = None
    if cfg.logger.wandb:
        from reverie.wandb_sink import WandbSink

        config = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(config, dict)
        plain = {str(k): v for k, v in config.items()}
        sink = WandbSink(logdir, cfg.logger.wandb_project, cfg.logger.wandb_entity, plain)
    return Logger(logdir, cfg.run.tensorboard, sink)
