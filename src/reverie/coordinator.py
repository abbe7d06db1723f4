"""Every decision of the training loop that depends on how many processes train together.

`Coordinator` is one process deciding alone (each method: the plain answer). Under
torchrun, `JobCoordinator` makes the same decisions for all ranks of the job with the
collectives of `reverie.distributed` (docs/distributed.md): rank 0 locks the logdir,
reads and writes the checkpoint and the logs, and the ranks agree on when to start
updating, checkpoint and stop. The trainer asks; it never branches on the job itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from reverie.config import ConfigError
from reverie.distributed import (
    Comm,
    World,
    check_world_size,
    local_batch,
    rank_seed,
    replay_folder,
)
from reverie.lock import LogdirInUseError, LogdirLock
from reverie.run_dir import Checkpoint, RankState, read_checkpoint


class Agreement(NamedTuple):
    checkpoint: bool  # write a checkpoint now
    stop: bool  # leave the loop
    interrupted: bool  # because of a SIGINT/SIGTERM (on any rank)


class Coordinator:
    """One process: it holds the lock, reads and writes everything, and decides alone."""

    world = World()
    comm: Comm | None = None  # the update's collectives (None: one process)

    @property
    def main(self) -> bool:
        """Whether this process writes the checkpoint, the logs and the progress bar."""
        return self.world.main

    @property
    def alone(self) -> bool:
        return not self.world.active

    # -------------------------------------------------------------- this rank's share
    def batch_size(self, batch_size: int) -> int:
        return local_batch(batch_size, self.world)

    def seed(self, seed: int) -> int:
        return rank_seed(seed, self.world.rank)

    def replay_folder(self, replay: Path) -> Path:
        return replay_folder(replay, self.world)

    def share(self, amount: float) -> float:
        """This rank's part of something the job holds in all (replay capacity, disk)."""
        return amount / self.world.size

    def env_steps(self, num_envs: int) -> int:
        """Env steps one step of the loop adds to the run's count (every rank's envs)."""
        return num_envs * self.world.size

    @property
    def label(self) -> str:
        """How messages name this process ("" alone, "rank r: " in a job)."""
        return ""

    # -------------------------------------------------------------- the logdir
    def lock(self, lock: LogdirLock) -> None:
        lock.acquire()

    def check_same_config(self, config_yaml: str) -> None:
        pass

    def read_checkpoint(self, logdir: Path) -> tuple[Checkpoint | None, RankState | None]:
        """The logdir's checkpoint and this rank's part of it (None, None: a new run).
        Rank 0 reads it for all: other hosts need no copy of the file."""
        ckpt = self.from_main(lambda: read_checkpoint(logdir))
        if ckpt is None:
            return None, None
        check_world_size({"world_size": ckpt.world_size}, self.world, logdir)
        return ckpt, ckpt.ranks[self.world.rank]

    def gather(self, mine: RankState) -> list[RankState] | None:
        """Every rank's own state, on the process that writes the checkpoint."""
        return [mine]

    # -------------------------------------------------------------- the loop
    @property
    def raises_on_signal(self) -> bool:
        """Whether the first SIGINT/SIGTERM stops the loop at once (KeyboardInterrupt):
        alone, yes; a job's ranks stop together at the next step instead."""
        return True

    @property
    def saves_after_error(self) -> bool:
        """Whether a run stopped by an error saves what it learned (a job's checkpoint
        needs every rank, which one rank's error cannot wait for)."""
        return True

    def replay_ready(self, size: int, can_sample: bool, fill: int) -> bool:
        """Whether updates can start: replay holds `fill` steps and a sequence to sample."""
        return size >= fill and can_sample

    def agree(self, checkpoint_due: bool, stopped: bool, interrupted: bool) -> Agreement:
        """What this step of the loop does, from its clock, callbacks and signals."""
        return Agreement(checkpoint_due or interrupted, stopped or interrupted, interrupted)

    def stops(self, agreed: bool, stopped_by: str | None) -> bool:
        """Whether the loop ends before its next step: alone, as soon as a callback
        stopped it; in a job, once the ranks agreed (`agree`)."""
        return agreed or stopped_by is not None

    def from_main(self, make: Callable[[], Any]) -> Any:
        return make()

    def settle(self) -> None:
        """At the end of a run that ended well: wait until every rank got there (rank 0
        with its checkpoint written), so no rank tears down while another still talks."""

    def close(self) -> None:
        pass


class JobCoordinator(Coordinator):
    """The ranks of a torchrun job, deciding together (one small all-reduce per step)."""

    def __init__(self, world: World, device: torch.device):
        self.world = world
        self.comm = Comm.connect(world, device)

    @property
    def label(self) -> str:
        return f"rank {self.world.rank}: "

    def lock(self, lock: LogdirLock) -> None:
        """Rank 0 holds the lock for all ranks, and tells them whether it got it."""
        assert self.comm is not None
        refused: LogdirInUseError | None = None
        if self.main:
            try:
                lock.acquire()
            except LogdirInUseError as e:
                refused = e
        if self.comm.sum_ints([refused is not None])[0]:
            raise refused or LogdirInUseError(
                f"logdir {lock.path.parent} is in use by another trainer (rank 0 of this job "
                "could not lock it); wait for it to end or stop it, or pick another --logdir"
            )

    def check_same_config(self, config_yaml: str) -> None:
        assert self.comm is not None
        if not self.comm.same_everywhere(config_yaml):
            raise ConfigError(
                "the ranks of this job resolved different configs: launch the same command "
                "on every host, with the same logdir contents (config.yaml)"
            )

    def gather(self, mine: RankState) -> list[RankState] | None:
        assert self.comm is not None
        return self.comm.gather_to_main(mine)

    @property
    def raises_on_signal(self) -> bool:
        return False

    @property
    def saves_after_error(self) -> bool:
        return False

    def replay_ready(self, size: int, can_sample: bool, fill: int) -> bool:
        """The job's replay together holds `fill` steps, and every rank a sequence."""
        assert self.comm is not None
        total, ranks_short = self.comm.sum_ints([size, int(not can_sample)])
        return total >= fill and ranks_short == 0

    def agree(self, checkpoint_due: bool, stopped: bool, interrupted: bool) -> Agreement:
        """Rank 0's clock and callbacks and any rank's signal decide for all ranks."""
        assert self.comm is not None
        flags = [int(self.main and checkpoint_due), int(self.main and stopped), int(interrupted)]
        due, stop, signalled = (bool(x) for x in self.comm.sum_ints(flags))
        return Agreement(due or signalled, stop or signalled, signalled)  # a signal saves first

    def stops(self, agreed: bool, stopped_by: str | None) -> bool:
        return agreed

    def from_main(self, make: Callable[[], Any]) -> Any:
        assert self.comm is not None
        return self.comm.from_main(make)

    def settle(self) -> None:
        assert self.comm is not None
        self.comm.barrier("waiting for the other ranks to finish")

    def close(self) -> None:
        if self.comm is not None:
            self.comm.close()
