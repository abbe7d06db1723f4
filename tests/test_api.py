"""The Python API: Dreamer(...).learn(), .act(), .save(), .load()."""

import numpy as np
import pytest
import torch

from reverie import Dreamer
from reverie.envs import make_env

from .conftest import TINY

pytestmark = pytest.mark.slow  # every test here takes a second or more


def test_dreamer_learn_act_save_load(tmp_path):
    agent = Dreamer(
        env="gym:CartPole-v1", logdir=tmp_path, seed=1, overrides=[*TINY, "run.train_ratio=64"]
    )
    try:
        summary = agent.learn(50)
        assert summary["step"] == 50 and summary["updates"] > 0
        env = make_env("gym:CartPole-v1")
        obs, _ = env.reset(seed=0)
        batch = {k: v[None] for k, v in obs.items()}
        action, state = agent.act(batch)
        assert action.shape == (1,) and action[0] in (0, 1)
        action, state = agent.act({**batch, "is_first": np.array([False])}, state)
        path = agent.save()
        assert path.exists()
        weights = {k: v.clone() for k, v in agent.agent.state_dict().items()}
        with torch.no_grad():
            for p in agent.agent.parameters():
                p.zero_()
        agent.load(tmp_path)
        for k, v in agent.agent.state_dict().items():
            torch.testing.assert_close(v, weights[k])
        assert "eval/return" in agent.evaluate(episodes=1)
    finally:
        agent.close()
