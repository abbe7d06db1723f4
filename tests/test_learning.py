"""A tiny agent learns CartPole clearly better than a random policy (about 22) in a short run.

The model is tiny and the learning rate high so that this fits in two minutes on two
cores; the paper-default agent's learning runs live in benchmarks/learning.py.
"""

import numpy as np
import pytest

from reverie.build import open_trainer

from .conftest import tiny_config

pytestmark = pytest.mark.slow  # every test here takes a second or more

LEARNS = [
    "model.deter=64",
    "model.hidden=32",
    "model.units=32",
    "model.blocks=4",
    "model.stoch=8",
    "run.batch_size=8",
    "run.batch_length=32",
    "behavior.horizon=15",
    "run.train_ratio=256",
    "optim.lr=1e-3",
    "optim.warmup=0",
]


def test_tiny_agent_improves_over_random_on_cartpole(tmp_path):
    trainer = open_trainer(tiny_config(*LEARNS, seed=0), tmp_path)
    try:
        trainer.train(1000)
        result = trainer.evaluate(5, mode="mode")  # greedy: what the agent learned
    finally:
        trainer.close()
    random_return = 22.0  # mean CartPole-v1 return of uniform random actions
    assert result["eval/return"] > 3 * random_return, result
    assert np.mean(list(trainer.returns)[-5:]) > 2 * random_return
