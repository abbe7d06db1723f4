"""Discrete observations as the 2024 code treats them: one-hot into the encoder (no symlog),
a categorical head per part in the decoder (negative log-likelihood of the true class)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from reverie import distributions as D
from reverie.agent import Agent
from reverie.envs import describe_spaces, make_env, make_vector_env
from reverie.run_dir import checkpoint_specs, load_agent
from reverie.specs import ActSpec, ObsSpec, specs_from_state, specs_state
from reverie.viz.dream import dream, write_dream

from .conftest import TINY, random_batch, tiny_config, train_tiny

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_a62d318"


class MixedEnv(gym.Env):
    """A float Box, a Discrete (start 1), a MultiDiscrete and a MultiBinary observation."""

    def __init__(self):
        self.observation_space = spaces.Dict(
            {
                "pos": spaces.Box(-np.inf, np.inf, (2,), np.float32),
                "mode": spaces.Discrete(3, start=1),
                "grid": spaces.MultiDiscrete([2, 4]),
                "bits": spaces.MultiBinary(2),
            }
        )
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def _obs(self):
        return {
            "pos": np.array([self.t, -30.0], np.float32),
            "mode": 1 + self.t % 3,
            "grid": np.array([1, self.t % 4]),
            "bits": np.array([1, 0], np.int8),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 5, False, {}


def _one_hot_batch(cfg, spec: ObsSpec, act: ActSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    """`random_batch` with true one-hot vectors for the categorical keys."""
    data = random_batch(cfg, spec, act, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for key, classes in spec.discrete.items():
        lead = data[key].shape[:-1]
        parts = [
            torch.nn.functional.one_hot(torch.randint(0, n, lead, generator=gen), n).float()
            for n in classes
        ]
        data[key] = torch.cat(parts, -1)
    return data


def _posterior_feat(agent: Agent, data: dict[str, torch.Tensor]):
    """The world model's losses on `data` and the features its heads read."""
    b, t = data["is_first"].shape
    state = agent.wm.rssm.initial(b, torch.device("cpu"))
    state = {k: v[:, None].expand(b, t, *v.shape[1:]) for k, v in state.items()}
    prev = torch.cat([torch.zeros_like(data["action"][:, :1]), data["action"][:, :-1]], 1)
    start = {k: v[:, 0] for k, v in state.items()}
    losses, _, feat = agent.wm.loss(data, start, prev)
    return losses, feat


def test_a_discrete_gym_env_marks_its_key_categorical_with_its_class_count():
    env = make_env("gym:FrozenLake-v1")
    try:
        spec, _ = describe_spaces(env)
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    assert spec.vectors == {"vector": 16} and spec.discrete == {"vector": (16,)}
    assert obs["vector"].shape == (16,) and obs["vector"].sum() == 1.0
    assert obs["vector"][0] == 1.0  # FrozenLake starts in state 0


def test_a_float_env_has_no_categorical_keys():
    env = make_env("gym:CartPole-v1")
    try:
        spec, _ = describe_spaces(env)
    finally:
        env.close()
    assert spec.discrete == {}


@pytest.mark.parametrize("classes", [(5,), (3, 4), (4, 4)])
def test_the_loss_of_a_discrete_key_is_the_categorical_nll_of_the_true_class(classes):
    cfg = tiny_config()
    size = sum(classes)
    spec = ObsSpec({"x": 2, "d": size}, {}, {"d": classes})
    act = ActSpec(True, 3)
    agent = Agent(spec, act, cfg, "cpu")
    data = _one_hot_batch(cfg, spec, act)
    with torch.no_grad():
        losses, feat = _posterior_feat(agent, data)
        dec = agent.wm.decoder
        out = dec.vec_out(dec.mlp(feat)).float()
    logits, target = out[..., 2:], data["d"]
    expected = torch.zeros(target.shape[:-1])
    start = 0
    for n in classes:
        part = slice(start, start + n)
        index = target[..., part].argmax(-1, keepdim=True)
        expected -= torch.log_softmax(logits[..., part], -1).gather(-1, index).squeeze(-1)
        start += n
    assert losses["dec_d"].shape == target.shape[:-1]
    torch.testing.assert_close(losses["dec_d"], expected)
    symlog_mse = ((logits - D.symlog(target)) ** 2).sum(-1)
    assert not torch.allclose(losses["dec_d"], symlog_mse, atol=1e-2)
    # the float key keeps its symlog MSE
    mse = ((out[..., :2] - D.symlog(data["x"])) ** 2).sum(-1)
    torch.testing.assert_close(losses["dec_x"], mse)
    # a near-certain head scores near zero, a uniform one log(classes) per part
    sure = D.Categoricals(1e4 * (target - 0.5), classes).log_prob(target)
    assert torch.allclose(sure, torch.zeros(()), atol=1e-3)
    flat = D.Categoricals(torch.zeros_like(target), classes).log_prob(target)
    torch.testing.assert_close(flat, torch.full_like(flat, -sum(math.log(n) for n in classes)))


def test_a_mixed_dict_env_encodes_and_decodes_each_part_with_its_own_head():
    env = make_env("custom:mixed", factory=MixedEnv)
    try:
        spec, act = describe_spaces(env)
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(1)
    finally:
        env.close()
    assert spec.vectors == {"pos": 2, "mode": 3, "grid": 6, "bits": 4}
    assert spec.discrete == {"mode": (3,), "grid": (2, 4), "bits": (2, 2)}
    np.testing.assert_array_equal(obs["mode"], [0, 1, 0])  # 2, the second of 1..3
    np.testing.assert_array_equal(obs["grid"], [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(obs["bits"], [0, 1, 1, 0])

    cfg = tiny_config()
    agent = Agent(spec, act, cfg, "cpu")
    x = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    # the encoder: symlog on the float key, the one-hot vectors as they are
    enc_in = agent.wm.encoder.vector_input(x)
    expected = [D.symlog(x[k]) if k == "pos" else x[k] for k in spec.vectors]
    torch.testing.assert_close(enc_in, torch.cat(expected, -1))
    keys = list(spec.vectors)  # the Dict space's order (sorted)
    start = sum(spec.vectors[k] for k in keys[: keys.index("pos")])
    assert enc_in[0, start + 1].item() == pytest.approx(-math.log(31.0))  # symlog(-30)

    heads = agent.wm.decoder(torch.zeros(4, agent.wm.rssm.feat_dim))
    assert isinstance(heads["pos"], D.MSE)
    for key, classes in spec.discrete.items():
        assert isinstance(heads[key], D.Categoricals) and heads[key].classes == classes
        pred = heads[key].pred()  # the mode, one-hot in the observation's layout
        assert pred.shape == (4, sum(classes))
        parts = pred.split(classes, -1)
        assert all(torch.equal(p.sum(-1), torch.ones(4)) for p in parts)

    metrics, _ = agent.update(_one_hot_batch(cfg, spec, act))
    assert all(torch.isfinite(v) for v in metrics.values())


def test_specs_keep_their_categorical_keys_through_a_checkpoint_and_old_ones_have_none():
    spec = ObsSpec({"x": 2, "d": 7}, {"image": (64, 64, 3)}, {"d": (3, 4)})
    act = ActSpec(True, 3)
    assert specs_from_state(specs_state(spec, act)) == (spec, act)
    old = specs_state(spec, act)
    del old["obs"]["discrete"]  # a checkpoint written before categorical keys
    assert specs_from_state(old)[0].discrete == {}


def test_a_checkpoint_without_specs_reads_its_env_with_no_categorical_keys():
    """A file from before specs were stored predates categorical keys: its model read the
    one-hot vector as numbers, and loads that way."""
    cfg = tiny_config("env.id=gym:FrozenLake-v1")
    obs, _ = checkpoint_specs(SimpleNamespace(specs=None), cfg)  # type: ignore[arg-type]
    assert obs.vectors == {"vector": 16} and obs.discrete == {}


@pytest.mark.slow
def test_the_categorical_space_survives_worker_processes():
    cfg = tiny_config("env.id=gym:FrozenLake-v1", "env.num_envs=1", "env.parallel=async")
    venv = make_vector_env(cfg.env, seed=0)
    try:
        spec, _ = describe_spaces(venv)
        obs, _ = venv.reset(seed=0)
    finally:
        venv.close()
    assert spec.discrete == {"vector": (16,)}
    np.testing.assert_array_equal(obs["vector"].sum(-1), [1.0])


@pytest.mark.slow
def test_an_old_checkpoint_still_loads_with_float_vectors():
    loaded = load_agent(FIXTURE)
    assert loaded.agent.obs_spec.vectors == {"vector": 4}
    assert loaded.agent.obs_spec.discrete == {}


@pytest.mark.slow
def test_a_short_run_on_frozen_lake_trains_with_finite_losses(tmp_path):
    overrides = [*TINY, "env.id=gym:FrozenLake-v1", "run.train_fill=16", "run.train_ratio=32"]
    trainer, summary = train_tiny(tmp_path, 48, overrides)
    assert summary["updates"] > 0
    assert trainer.agent.obs_spec.discrete == {"vector": (16,)}
    agent, cfg = trainer.agent, trainer.cfg
    data = _one_hot_batch(cfg, agent.obs_spec, agent.act_spec, seed=3)
    metrics, _ = agent.update(data)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert any(k.endswith("dec_vector") for k in metrics), sorted(metrics)
    reloaded = load_agent(tmp_path)
    assert reloaded.agent.obs_spec.discrete == {"vector": (16,)}
    # a dream predicts the categorical key as its most likely class, one-hot
    result = dream(reloaded.agent, cfg, tmp_path, context=2, horizon=3, count=1)
    pred = result.pred["vector"]
    assert pred.shape == result.truth["vector"].shape and np.all(pred.sum(-1) == 1.0)
    assert write_dream(result, tmp_path / "dream.png")["vectors"].exists()
