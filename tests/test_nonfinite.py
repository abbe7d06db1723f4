"""Non-finite losses skip the update, are logged with their terms, and stop the run after
`run.nonfinite_patience` in a row with a checkpoint from before the problem."""

import json

import numpy as np
import pytest
import torch

from reverie.build import open_trainer
from reverie.trainer import NonFiniteError

from .conftest import random_batch, tiny_config


def test_agent_skips_nonfinite_update():
    from reverie.agent import Agent
    from reverie.specs import ActSpec, ObsSpec

    cfg = tiny_config()
    spec, act = ObsSpec({"vector": 5}, {}), ActSpec(True, 3)
    agent = Agent(spec, act, cfg, "cpu")
    batch = random_batch(cfg, spec, act)
    batch["reward"][0, 3] = float("nan")
    before = [p.detach().clone() for p in agent.parameters()]
    metrics, _ = agent.update(batch)
    assert not agent.last_update_finite
    assert not torch.isfinite(metrics["loss/rew"])
    assert all(torch.equal(a, b) for a, b in zip(before, agent.parameters()))
    assert agent.updates.item() == 0 and not agent.opt.state
    assert agent.behavior.retnorm.spread.isfinite()


def test_trainer_logs_and_stops_after_patience(tmp_path, monkeypatch, capsys):
    trainer = open_trainer(tiny_config("run.train_ratio=64", "run.nonfinite_patience=3"), tmp_path)
    trainer.train(30)  # healthy updates first
    good = [p.detach().clone() for p in trainer.agent.parameters()]
    sample = trainer.replay.sample

    def poisoned(*args, **kwargs):
        data, keys = sample(*args, **kwargs)
        data["vector"] = np.full_like(data["vector"], np.nan)
        return data, keys

    monkeypatch.setattr(trainer.replay, "sample", poisoned)
    with pytest.raises(NonFiniteError, match="3 updates in a row"):
        trainer.train(200)
    trainer.close()
    err = capsys.readouterr().err
    assert "skipped: non-finite" in err and "loss/dec_vector" in err
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum("train/skipped_update" in x for x in lines) == 3
    from reverie import checkpoint

    saved = checkpoint.load_latest(tmp_path)["agent"]["agent"]
    names = [n for n, _ in trainer.agent.named_parameters()]
    for name, p in zip(names, good):
        torch.testing.assert_close(saved[name], p)
