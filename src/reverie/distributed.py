"""Data-parallel training on torch.distributed (`torchrun ... -m reverie train`): which
rank this process is, its process group, and the few collectives the trainer and the
update need. docs/distributed.md describes the design.

A world of one process (a plain `reverie train`, or torchrun with one process) creates no
process group, and every collective here returns its input unchanged, so the
single-process path runs as it did before.
"""

from __future__ import annotations

import datetime
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from reverie.config import ConfigError
from reverie.errors import ReverieError

Tensor = torch.Tensor

TIMEOUT_ENV = "REVERIE_DIST_TIMEOUT"
# long enough for what rank 0 does alone while the others wait at the next collective
# (evaluation episodes, dreams, a checkpoint write); torch's own NCCL default is 10 min
DEFAULT_TIMEOUT_S = 600.0


class RankLostError(ReverieError, RuntimeError):
    """A collective failed: another rank of the job ended, or did not answer in time."""


@dataclass(frozen=True)
class World:
    """This process's place in the job, as torchrun describes it in the environment."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0 writes the checkpoint, the logs and the progress bar."""
        return self.rank == 0


def world_from_env(environ: Mapping[str, str] = os.environ) -> World:
    """The World torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE)
    describe; one process when they are absent."""

    def read(name: str, default: int) -> int:
        raw = environ.get(name)
        try:
            return default if raw is None else int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer: launch with torchrun") from None

    size = read("WORLD_SIZE", 1)
    # without LOCAL_WORLD_SIZE, all ranks are taken to share this host
    world = World(read("RANK", 0), size, read("LOCAL_RANK", 0), read("LOCAL_WORLD_SIZE", size))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ConfigError(f"RANK={world.rank} is outside WORLD_SIZE={world.size}")
    return world


def timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds a collective waits for the other ranks before it fails (REVERIE_DIST_TIMEOUT)."""
    raw = environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: give the collective timeout in seconds (> 0)")
    return value


def rank_seed(seed: int, rank: int) -> int:
    """Rank r's envs, replay sampler and random draws use seed + r (rank 0: the run's seed)."""
    return seed + rank


def local_batch(batch_size: int, world: World) -> int:
    """Each rank's share of the global batch `run.batch_size` (sequences)."""
    if batch_size % world.size:
        raise ConfigError(
            f"run.batch_size={batch_size} (the global batch) does not split evenly over "
            f"{world.size} ranks: pick a multiple of {world.size}, or another world size"
        )
    return batch_size // world.size


def replay_folder(replay: Path, world: World) -> Path:
    """Where this rank's replay chunks go: replay/ alone, replay/rank<r>/ in a job."""
    return replay / f"rank{world.rank}" if world.active else replay


def check_world_size(state: Mapping[str, Any], world: World, logdir: Path) -> None:
    """A checkpoint resumes only with the world size that wrote it (each rank's replay
    streams and random states are its own)."""
    saved = int(state.get("world_size", 1))
    if saved != world.size:

        def ranks(n: int) -> str:
            return "1 process" if n == 1 else f"{n} ranks"

        raise ConfigError(
            f"logdir {logdir} was trained by {ranks(saved)}, this run has {ranks(world.size)}:"
            f" resume it with the same world size (torchrun --nproc-per-node x --nnodes), "
            "or pick a new --logdir"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Comm:
    """The collectives of one data-parallel job (Gloo on CPU, NCCL on CUDA). With one
    process every method returns its input, without touching torch.distributed."""

    def __init__(self, world: World, device: torch.device, owns_group: bool = False):
        self.world, self.device, self.owns_group = world, device, owns_group

    @property
    def active(self) -> bool:
        return self.world.active

    @classmethod
    def connect(cls, world: World, device: torch.device) -> Comm:
        """Join the job's process group (torchrun's MASTER_ADDR/MASTER_PORT), with a
        timeout on every collective; one that already exists is reused."""
        if not world.active or dist.is_initialized():
            return cls(world, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s())
        with cls._collective(world, "init_process_group"):
            dist.init_process_group(
                backend, rank=world.rank, world_size=world.size, timeout=timeout
            )
        return cls(world, device, owns_group=True)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False

    @staticmethod
    @contextmanager
    def _collective(world: World, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as e:  # DistBackendError, DistStoreError, timeouts, resets
            raise RankLostError(
                f"rank {world.rank} of {world.size}: {what} failed ({_first_line(e)}); "
                "another rank of this job ended or did not answer, so this one stops too: "
                "rerun the same torchrun command to resume from the last checkpoint "
                "(torchrun --max-restarts does it for you)"
            ) from None

    def _guard(self, what: str) -> AbstractContextManager[None]:
        return self._collective(self.world, what)

    # ------------------------------------------------------------------ tensors
    def average_(self, tensors: list[Tensor]) -> None:
        """Replace each tensor by its mean over the ranks, in one all-reduce."""
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])  # (sum of numels,)
        with self._guard("averaging the gradients"):
            dist.all_reduce(flat)
        flat.div_(self.world.size)
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))

    def gather_flat(self, x: Tensor) -> Tensor:
        """Every rank's `x`, flattened and concatenated in rank order: (size * x.numel(),)."""
        if not self.active:
            return x.reshape(-1)
        flat = x.detach().reshape(-1).contiguous()
        out = flat.new_empty(self.world.size * flat.numel())
        # torch 2.13 renamed all_gather_into_tensor (deprecated there) to all_gather_single
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        with self._guard("gathering the imagined returns"):
            gather(out, flat)
        return out

    def broadcast_(self, tensors: list[Tensor]) -> None:
        """Rank 0's values into every rank's tensors (in place)."""
        if not self.active:
            return
        with self._guard("broadcasting the parameters"):
            for t in tensors:
                dist.broadcast(t, src=0)

    def sum_ints(self, values: list[int]) -> list[int]:
        """Each value summed over the ranks (flags: how many ranks raised them)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.int64, device=self.device)
        with self._guard("exchanging the loop's flags"):
            dist.all_reduce(t)
        return [int(v) for v in t.tolist()]

    def barrier(self, what: str) -> None:
        """Wait until every rank gets here."""
        if not self.active:
            return
        with self._guard(what):
            dist.barrier()

    # ------------------------------------------------------------------ objects
    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0, in rank order (None on the others)."""
        if not self.active:
            return [obj]
        out: list[Any] | None = [None] * self.world.size if self.world.main else None
        with self._guard("gathering the ranks' checkpoint state"):
            dist.gather_object(obj, out, dst=0)
        return out

    def from_main(self, make: Callable[[], Any]) -> Any:
        """What `make()` returns on rank 0, on every rank; an exception it raises there is
        raised on every rank."""
        if not self.active:
            return make()
        box: list[Any] = [None]
        if self.world.main:
            try:
                box[0] = ("ok", make())
            except Exception as e:  # noqa: BLE001 - sent to every rank, raised there
                box[0] = ("error", e)
        with self._guard("receiving rank 0's checkpoint"):
            dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def same_everywhere(self, text: str) -> bool:
        """Whether every rank holds the same `text` (its CRC32 against rank 0's)."""
        if not self.active:
            return True
        mine = zlib.crc32(text.encode())
        theirs = torch.tensor([mine], dtype=torch.int64, device=self.device)
        with self._guard("comparing the ranks' configs"):
            dist.broadcast(theirs, src=0)
        return self.sum_ints([int(int(theirs.item()) != mine)])[0] == 0
