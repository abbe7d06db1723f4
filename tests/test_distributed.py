"""Data-parallel training (reverie.distributed) with 2 Gloo ranks on CPU: the ranks stay
identical and match one process trained on the whole batch; torchrun runs, checkpoints,
refuses another world size, and resumes after a rank is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reverie import checkpoint
from reverie.config import ConfigError
from reverie.distributed import (
    World,
    check_world_size,
    local_batch,
    rank_seed,
    replay_folder,
    timeout_s,
    world_from_env,
)
from reverie.specs import ActSpec, ObsSpec

from .conftest import TINY, random_batch, tiny_config

VEC = ObsSpec({"vector": 5}, {})
DISCRETE = ActSpec(True, 3)
GLOBAL_BATCH = 4
UPDATES = 3

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch has no torch.distributed"
)


# ------------------------------------------------------------------ the pieces
def test_world_from_torchrun_variables():
    assert world_from_env({}) == World()
    assert not World().active and World().main
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    world = world_from_env(env)
    assert world == World(1, 2, 1, 2) and world.active and not world.main
    with pytest.raises(ConfigError, match="RANK=2 is outside WORLD_SIZE=2"):
        world_from_env({**env, "RANK": "2"})
    with pytest.raises(ConfigError, match="not an integer"):
        world_from_env({**env, "RANK": "x"})


def test_batch_seed_and_replay_per_rank(tmp_path):
    world = World(1, 2, 1, 2)
    assert local_batch(16, world) == 8
    with pytest.raises(ConfigError, match="does not split evenly over 3 ranks"):
        local_batch(16, World(0, 3, 0, 3))
    assert rank_seed(5, 0) == 5 and rank_seed(5, 1) == 6
    assert replay_folder(tmp_path, World()) == tmp_path
    assert replay_folder(tmp_path, world) == tmp_path / "rank1"


def test_world_size_of_a_checkpoint_is_kept(tmp_path):
    check_world_size({"world_size": 2}, World(0, 2, 0, 2), tmp_path)
    with pytest.raises(ConfigError, match="trained by 2 ranks, this run has 1 process"):
        check_world_size({"world_size": 2}, World(), tmp_path)
    with pytest.raises(ConfigError, match="trained by 1 process, this run has 2 ranks"):
        check_world_size({}, World(0, 2, 0, 2), tmp_path)


def test_collective_timeout_is_read_and_checked():
    assert timeout_s({}) == 600.0
    assert timeout_s({"REVERIE_DIST_TIMEOUT": "30"}) == 30.0
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(ConfigError, match="REVERIE_DIST_TIMEOUT"):
            timeout_s({"REVERIE_DIST_TIMEOUT": bad})


# ----------------------------------------------- 2 ranks against one process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _content_sampling() -> None:
    """Draws that depend on each row's content, not on a random stream (the class where
    the CDF crosses 1/2): then a rank's half of the batch draws what the same rows draw
    inside the whole batch in one process."""
    import reverie.distributions as D

    def sample_categorical(probs, generator=None):
        return (probs.cumsum(-1) < 0.5).sum(-1).clamp(max=probs.shape[-1] - 1)

    D.sample_categorical = sample_categorical


def _updates(rank: int, world_size: int, port: int, out: str) -> None:
    """One rank (or, with world_size 1, the single process): UPDATES updates on its share
    of one fixed global batch; the parameters after each are saved to `out`."""
    from reverie.agent import Agent
    from reverie.distributed import Comm

    torch.set_num_threads(1)
    _content_sampling()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    world = World(rank, world_size, rank, world_size)
    comm = Comm.connect(world, torch.device("cpu"))
    cfg = tiny_config(f"run.batch_size={GLOBAL_BATCH}")
    torch.manual_seed(0 if rank == 0 else 100)  # rank 1 gets rank 0's weights by broadcast
    agent = Agent(VEC, DISCRETE, cfg, "cpu", comm=comm)
    batch = random_batch(cfg, VEC, DISCRETE, seed=3, ends=0.1)
    share = GLOBAL_BATCH // world_size
    mine = {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}
    snapshots = []
    for _ in range(UPDATES):
        metrics, _ = agent.update(mine)
        flat = torch.cat([p.detach().flatten() for p in agent.parameters()])
        snapshots.append({"params": flat.clone(), "loss": float(metrics["loss/total"])})
    # the first updates imagine returns of ~0 (reward and critic start at 0), so the
    # return normaliser is also fed returns of its own: (H, N) of the global batch, split
    returns = torch.arange(3.0 * GLOBAL_BATCH).reshape(3, GLOBAL_BATCH) ** 2
    agent.behavior.retnorm.update(returns[:, rank * share : (rank + 1) * share])
    snapshots.append({"spread": agent.behavior.retnorm.spread.clone()})
    torch.save(snapshots, out)
    comm.close()


@pytest.mark.slow
def test_two_ranks_stay_identical_and_equal_one_process(tmp_path):
    port = free_port()
    ctx = torch.multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_updates, args=(r, 2, port, str(tmp_path / f"rank{r}.pt")))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"a rank ended with {p.exitcode}"
    single = ctx.Process(target=_updates, args=(0, 1, port, str(tmp_path / "single.pt")))
    single.start()
    single.join(timeout=300)
    assert single.exitcode == 0
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    one = torch.load(tmp_path / "single.pt")
    for i in range(UPDATES):
        # the same averaged gradient on every rank: the parameters agree to the bit
        assert torch.equal(ranks[0][i]["params"], ranks[1][i]["params"]), f"update {i + 1}"
        assert ranks[0][i]["loss"] == ranks[1][i]["loss"]
        # and equal the single process's on the concatenated batch, to float tolerance
        torch.testing.assert_close(ranks[0][i]["params"], one[i]["params"], rtol=1e-4, atol=1e-5)
        assert ranks[0][i]["loss"] == pytest.approx(one[i]["loss"], rel=1e-4, abs=1e-5)
    assert not torch.equal(one[0]["params"], one[UPDATES - 1]["params"])  # it did learn
    # the return normaliser read the returns of both halves, as the single process did
    assert one[-1]["spread"] > 0.1
    for r in range(2):
        torch.testing.assert_close(ranks[r][-1]["spread"], one[-1]["spread"])


def _learn_then_read_checkpoint(rank: int, port: int, logdir: str, out: str) -> None:
    """One rank of a 2-rank job (torchrun's variables set by hand): train, then record the
    step of the checkpoint on disk the moment learn() returns. Rank 0 writes its
    checkpoint 3 s late, so a rank that did not wait for it would find none."""
    from reverie import trainer
    from reverie.api import Dreamer

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    if rank == 0:
        write = trainer.save_checkpoint

        def slow_write(*args, **kwargs):
            time.sleep(3.0)
            return write(*args, **kwargs)

        trainer.save_checkpoint = slow_write
    agent = Dreamer(env="gym:CartPole-v1", logdir=logdir, overrides=[*TINY, "run.train_ratio=64"])
    try:
        agent.learn(200)
        ckpt = Path(logdir) / checkpoint.CHECKPOINT
        step = checkpoint.load_latest(Path(logdir))["counters"]["step"] if ckpt.exists() else -1
    finally:
        agent.close()
    Path(out).write_text(str(step))


@pytest.mark.slow
def test_learn_returns_on_every_rank_once_the_checkpoint_is_written(tmp_path):
    port = free_port()
    ctx = torch.multiprocessing.get_context("spawn")
    outs = [tmp_path / f"rank{r}.txt" for r in range(2)]
    args = [(r, port, str(tmp_path / "run"), str(outs[r])) for r in range(2)]
    procs = [ctx.Process(target=_learn_then_read_checkpoint, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"a rank ended with {p.exitcode}"
    # rank 1 did not return (and could not close its process group) before rank 0 wrote
    assert [int(o.read_text()) for o in outs] == [200, 200]


# ------------------------------------------------------------------- torchrun
def torchrun(logdir: Path, steps: int, *extra: str, nproc: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "reverie",
        "train",
        "--logdir",
        str(logdir),
        "--steps",
        str(steps),
        *TINY,
        "run.train_ratio=64",
        *extra,
    ]


def run_env() -> dict[str, str]:
    # faulthandler: a rank that aborts (SIGABRT) prints every thread's Python stack
    env = {"OMP_NUM_THREADS": "1", "REVERIE_DIST_TIMEOUT": "60", "PYTHONFAULTHANDLER": "1"}
    return {**os.environ, **env}


@pytest.mark.slow
def test_torchrun_trains_checkpoints_and_keeps_its_world_size(tmp_path):
    logdir = tmp_path / "run"
    done = subprocess.run(
        torchrun(logdir, 400), env=run_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = checkpoint.load_latest(logdir)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["counters"]["step"] >= 400 and state["counters"]["updates"] > 0
    # each rank keeps its own replay chunks and random state
    for r in range(2):
        assert list((logdir / "replay" / f"rank{r}").glob("*.npz")), f"rank {r} wrote no chunk"
    assert state["ranks"][0]["rng"]["numpy"] != state["ranks"][1]["rng"]["numpy"]
    # rank 0 alone writes the logs: one line per logged event, not two
    assert done.stdout.count("done: ") == 1
    # one process cannot resume what two ranks wrote: one line, exit 2
    alone = subprocess.run(
        [sys.executable, "-m", "reverie", "train", "--logdir", str(logdir), "--steps", "800"],
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alone.returncode == 2
    assert "trained by 2 ranks, this run has 1 process" in alone.stderr
    assert "Traceback" not in alone.stderr


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_a_rerun_resumes(tmp_path):
    logdir = tmp_path / "run"
    ckpt = logdir / checkpoint.CHECKPOINT
    proc = subprocess.Popen(
        torchrun(logdir, 10**6, "run.checkpoint_every=1.0"),
        env=run_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not (ckpt.exists() and checkpoint.load_latest(logdir)["counters"]["updates"] > 0):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "no checkpoint with updates in time"
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[-1], signal.SIGKILL)  # one rank dies without a word
        proc.wait(timeout=120)  # and takes the job down: no rank waits forever
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode != 0
    saved = checkpoint.load_latest(logdir)["counters"]
    again = subprocess.run(
        torchrun(logdir, saved["step"] + 200),
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:] + err[-2000:]
    assert f"resumed {logdir} at step {saved['step']}" in again.stderr
    assert again.stderr.count("resumed") == 2  # each rank says so
    state = checkpoint.load_latest(logdir)["counters"]
    assert state["step"] >= saved["step"] + 200 and state["updates"] > saved["updates"]
