"""The run directory: a checkpoint written before `reverie.run_dir` existed still loads
(committed fixture), its typed view round-trips the file's layout, and every reader
loads through `load_agent`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from reverie import checkpoint
from reverie.build import open_trainer
from reverie.errors import NoCheckpointError, ReverieError
from reverie.files import with_footer
from reverie.policy import load_policy
from reverie.run_dir import (
    Checkpoint,
    Counters,
    RankState,
    load_agent,
    read_checkpoint,
    resolve_config,
)

# written by reverie at commit a62d318 (tests/fixtures/checkpoint_a62d318/make_fixture.py)
OLD = Path(__file__).parent / "fixtures" / "checkpoint_a62d318"


def test_a_checkpoint_from_before_the_run_dir_module_loads_and_acts_as_it_did():
    loaded = load_agent(OLD, device="cpu")
    assert loaded.checkpoint.step == 48 and loaded.checkpoint.counters.updates == 17
    assert loaded.cfg.env.id == "gym:CartPole-v1" and loaded.cfg.seed == 3
    assert not any(p.requires_grad for p in loaded.agent.parameters())
    # the actions its policy took on fixed observations, recorded with the old code
    expected = json.loads((OLD / "expected.json").read_text())
    policy = load_policy(OLD)
    obs = np.random.default_rng(expected["obs_seed"]).normal(size=(5, 4)).astype(np.float32)
    state, actions = None, []
    for t in range(5):
        action, state = policy.act({"vector": obs[t : t + 1]}, state, deterministic=True)
        actions.append(int(action[0]))
    assert actions == expected["actions"]
    assert float(state["deter"].sum()) == pytest.approx(expected["deter_sum"], rel=1e-5)


@pytest.mark.slow
def test_a_run_from_before_the_run_dir_module_resumes(tmp_path):
    logdir = tmp_path / "run"
    shutil.copytree(OLD, logdir, ignore=shutil.ignore_patterns("*.py", "*.json"))
    overrides = ["run.progress=false", "run.tensorboard=false"]
    trainer = open_trainer(resolve_config(logdir, overrides, **{"run.steps": 64}), logdir)
    try:
        assert (trainer.step, trainer.updates, trainer.episodes) == (48, 17, 2)
        summary = trainer.train(64)
    finally:
        trainer.close()
    assert summary["step"] == 64 and summary["updates"] > 17
    assert read_checkpoint(logdir).step == 64  # type: ignore[union-attr]


def rank(seed: int) -> RankState:
    rng = {"python": (seed,), "numpy": ("MT19937", [seed], 0, 0, 0.0), "torch": torch.ones(2)}
    return RankState({"sampler": seed}, seed, {"episodes": seed, "unlocked": {}}, rng)


@pytest.mark.parametrize("world", [1, 2])
def test_the_typed_checkpoint_round_trips_the_file_layout(tmp_path, world):
    ckpt = Checkpoint(
        "seed: 0\n",
        {"agent": {"w": torch.zeros(1)}, "optimizer": {}},
        Counters(step=10, updates=3, train_start=4, episodes=0, last_eval=8),
        [rank(r + 1) for r in range(world)],
        specs=None,
    )
    state = ckpt.to_state()
    assert state["counters"]["step"] == 10 and state["replay"] == {"sampler": 1}
    assert ("ranks" in state) == (world > 1)
    checkpoint.save(tmp_path, state)
    back = read_checkpoint(tmp_path)
    assert back is not None and back.world_size == world
    assert back.counters == Counters(10, 3, 4, 1, 8)  # rank 0's episodes at the top
    assert [r.episodes for r in back.ranks] == [r + 1 for r in range(world)]


def test_a_checkpoint_of_another_format_fails_with_one_line_saying_what_to_do(tmp_path):
    state = checkpoint.load_file(OLD / "checkpoint.pt")
    state["format"] = 1
    buf = io.BytesIO()
    torch.save(state, buf)
    (tmp_path / "checkpoint.pt").write_bytes(with_footer(buf.getvalue()))
    with pytest.raises(checkpoint.CheckpointVersionError) as e:
        load_agent(tmp_path)
    assert isinstance(e.value, ReverieError)
    assert "format 1" in str(e.value) and "reverie version that wrote it" in str(e.value)


def test_a_logdir_without_a_checkpoint_says_to_train_there_first(tmp_path):
    with pytest.raises(NoCheckpointError, match="train there first"):
        load_agent(tmp_path)
