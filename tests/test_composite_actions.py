"""MultiDiscrete and Dict action spaces, end to end: specs, the wrapper, training,
evaluation and the policy without the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from reverie.agent import Agent
from reverie.envs import describe_spaces, make_env
from reverie.policy import export_policy, load_policy
from reverie.rollout import evaluate
from reverie.specs import ObsSpec, act_spec_of

from .conftest import TINY, random_batch, tiny_config, train_tiny

IDS = {
    "multi": "gym:fake_envs:fake_envs/MultiDiscrete-v0",
    "dict": "gym:fake_envs:fake_envs/DictAction-v0",
}


def test_composite_specs_and_their_env_format():
    multi = act_spec_of(spaces.MultiDiscrete([3, 2], start=[1, 0]))
    assert multi.dim == 5 and [p.dim for p in multi.parts] == [3, 2]
    one_hot = np.array([[0, 0, 1, 1, 0], [1, 0, 0, 0, 1]], np.float32)
    assert multi.to_env(one_hot).tolist() == [[3, 0], [1, 1]]
    space = spaces.Dict({"move": spaces.Discrete(3), "force": spaces.Box(-2, 2, (2,))})
    mixed = act_spec_of(space)
    assert [(p.key, p.discrete, p.dim) for p in mixed.parts] == [  # gymnasium sorts the keys
        ("force", False, 2),
        ("move", True, 3),
    ]
    out = mixed.to_env(np.array([1.0, -0.5, 0, 1, 0]))
    assert out["move"] == 1 and np.allclose(out["force"], [2.0, -1.0])


def test_the_actor_emits_one_segment_per_part():
    cfg = tiny_config()
    act = act_spec_of(spaces.Dict({"move": spaces.Discrete(3), "force": spaces.Box(-2, 2, (2,))}))
    agent = Agent(ObsSpec({"vector": 2}, {}), act, cfg, "cpu")
    dist = agent.behavior.actor(torch.zeros(6, agent.wm.rssm.feat_dim))
    sample = dist.sample()
    assert sample.shape == (6, 5)
    assert torch.equal(sample[:, 2:].sum(-1), torch.ones(6))  # the discrete part is one-hot
    assert dist.log_prob(sample).shape == (6,) and dist.entropy().shape == (6,)
    metrics, _ = agent.update(random_batch(cfg, agent.obs_spec, act))
    assert all(torch.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("kind", sorted(IDS))
@pytest.mark.slow
def test_train_evaluate_and_load_policy_with_composite_actions(tmp_path, kind):
    env = make_env(IDS[kind])
    _, act = describe_spaces(env)
    assert act.container == ("multidiscrete" if kind == "multi" else "dict")
    overrides = [*TINY, "run.train_fill=16", "run.train_ratio=32", f"env.id={IDS[kind]}"]
    trainer, summary = train_tiny(tmp_path, 40, overrides)
    assert summary["updates"] > 0 and summary["episodes"] >= 4
    result = evaluate(trainer.agent, trainer.cfg, 2, seed=1)
    assert result["eval/length"] == 8
    policy = load_policy(tmp_path)
    action, state = policy.act({"vector": np.zeros((3, 2), np.float32)}, None, True)
    raw = env.unwrapped
    if kind == "multi":
        assert action.shape == (3, 2) and all(raw.action_space.contains(a) for a in action)
    else:
        assert set(action) == {"move", "force"} and action["force"].shape == (3, 2)
        assert np.all(np.abs(action["force"]) <= 2.0)
    assert state["action"].shape == (3, act.dim)
    with pytest.raises(ValueError, match="not supported yet"):
        export_policy(policy, tmp_path / "p.onnx", "onnx")
