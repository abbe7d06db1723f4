"""The same seed and config give the same run on CPU; another seed gives another."""

import pytest
import torch

from reverie.build import open_trainer

from .conftest import tiny_config

pytestmark = pytest.mark.slow  # every test here takes a second or more


def train_params(tmp_path, seed):
    trainer = open_trainer(
        tiny_config("run.train_ratio=64", "replay.save=false", seed=seed), tmp_path
    )
    try:
        trainer.train(40)
    finally:
        trainer.close()
    return torch.cat([p.detach().flatten() for p in trainer.agent.parameters()])


def test_same_seed_same_parameters(tmp_path):
    a = train_params(tmp_path / "a", 3)
    b = train_params(tmp_path / "b", 3)
    c = train_params(tmp_path / "c", 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
