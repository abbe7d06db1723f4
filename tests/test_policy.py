"""A trained policy without the trainer (`load_policy`), its ONNX and TorchScript export,
the safetensors weights, and checkpoints that load weights only."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from reverie import checkpoint
from reverie.files import with_footer
from reverie.policy import export_policy, export_weights, load_policy

from .conftest import TINY, train_tiny

FAST = [*TINY, "run.train_fill=16", "run.train_ratio=32", "replay.save=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short CartPole (discrete) and Pendulum (continuous, bounds [-2, 2]) run."""
    out = {}
    for name, env in (("cartpole", "gym:CartPole-v1"), ("pendulum", "gym:Pendulum-v1")):
        logdir = tmp_path_factory.mktemp(name)
        train_tiny(logdir, 40, [*FAST, f"env.id={env}"])
        out[name] = logdir
    return out


def episode_actions(act, env_id: str, seed: int = 3, limit: int = 60) -> list[np.ndarray]:
    """The actions of `act(obs batch of 1, is_first) -> env action` over one episode of the
    raw Gymnasium env (no reverie wrappers), cut at `limit` steps."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    actions, first = [], True
    for _ in range(limit):
        action = act(np.asarray(obs, np.float32)[None], first)
        actions.append(np.asarray(action))
        obs, _, term, trunc, _ = env.step(action[0] if action.ndim else action)
        first = False
        if term or trunc:
            break
    env.close()
    return actions


def policy_actor(policy):
    state = None

    def act(obs, first):
        nonlocal state
        action, state = policy.act({"vector": obs, "is_first": np.array([first])}, state, True)
        return action

    return act


@pytest.mark.slow
def test_load_policy_acts_without_an_env_replay_or_optimiser_state(runs, monkeypatch):
    import reverie.envs

    def no_env(*args, **kwargs):
        raise AssertionError("load_policy built an env")

    monkeypatch.setattr(reverie.envs, "make_env", no_env)
    policy = load_policy(runs["cartpole"])
    assert policy.agent._opt is None  # no optimiser, no moments
    assert not any(p.requires_grad for p in policy.agent.parameters())
    actions = episode_actions(policy_actor(policy), "CartPole-v1")
    assert all(a.dtype.kind == "i" and a.shape == (1,) and a[0] in (0, 1) for a in actions)
    # deterministic: the same episode twice gives the same actions
    again = episode_actions(
        policy_actor(load_policy(runs["cartpole"] / "checkpoint.pt")), "CartPole-v1"
    )
    assert [a.tolist() for a in again] == [a.tolist() for a in actions]


@pytest.mark.slow
def test_continuous_actions_come_in_the_env_bounds(runs):
    policy = load_policy(runs["pendulum"])
    assert policy.act_spec.low == (-2.0,) and policy.act_spec.high == (2.0,)
    actions = np.concatenate(episode_actions(policy_actor(policy), "Pendulum-v1", limit=30))
    assert np.all(np.abs(actions) <= 2.0)
    # [-1, 1] model actions map onto [-2, 2]: the env-format action is twice the model's
    _, state = policy.act({"vector": np.zeros((1, 3), np.float32)}, None, True)
    env_action, _ = policy.act({"vector": np.zeros((1, 3), np.float32)}, None, True)
    assert np.allclose(env_action, 2.0 * state["action"].numpy())


@pytest.mark.parametrize("name, env_id", [("cartpole", "CartPole-v1"), ("pendulum", "Pendulum-v1")])
@pytest.mark.slow
def test_onnx_and_torchscript_act_as_load_policy_over_an_episode(runs, tmp_path, name, env_id):
    import onnxruntime

    policy = load_policy(runs[name])
    want = episode_actions(policy_actor(policy), env_id)
    onnx_path = export_policy(policy, tmp_path / "policy.onnx", "onnx")
    script_path = export_policy(policy, tmp_path / "policy.pt", "torchscript")
    session = onnxruntime.InferenceSession(str(onnx_path))
    names = [i.name for i in session.get_inputs()]
    assert names == ["vector", "is_first", "deter", "stoch", "action"]
    script = torch.jit.load(str(script_path))

    def runner(run):
        state = [v.numpy() for v in policy.initial_state(1).values()]  # deter, stoch, action

        def act(obs, first):
            nonlocal state
            env_action, action, deter, stoch = run([obs, np.array([first]), *state])
            state = [deter, stoch, action]
            return env_action

        return act

    def onnx_run(inputs):
        return session.run(None, dict(zip(names, inputs, strict=True)))

    def script_run(inputs):
        return [t.numpy() for t in script(*(torch.as_tensor(x) for x in inputs))]

    for run in (onnx_run, script_run):
        got = episode_actions(runner(run), env_id)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert np.allclose(g, w, atol=1e-5), (run.__name__, g, w)


@pytest.mark.slow
def test_weights_export_as_safetensors(runs, tmp_path):
    from safetensors.torch import load_file

    policy = load_policy(runs["cartpole"])
    loaded = load_file(str(export_weights(policy, tmp_path / "weights.safetensors")))
    state = policy.agent.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k].cpu()) for k in state)


@pytest.mark.slow
def test_cli_export_writes_each_format(runs, tmp_path):
    for fmt, name in (("torchscript", "p.pt"), ("safetensors", "w.safetensors")):
        out = tmp_path / name
        cmd = [sys.executable, "-m", "reverie.cli", "export", "--logdir", str(runs["cartpole"])]
        result = subprocess.run(
            [*cmd, "--format", fmt, "--out", str(out)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size > 1000 and str(out) in result.stdout


class Payload:
    """An object whose unpickling would run code: here, write a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_that_carries_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    buf = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT_VERSION, "config": "", "x": Payload(marker)}, buf)
    (tmp_path / checkpoint.CHECKPOINT).write_bytes(with_footer(buf.getvalue()))
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load_latest(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "not only weights" in message
    assert not marker.exists()
    with pytest.raises(checkpoint.CheckpointError):
        load_policy(tmp_path)
    assert not marker.exists()


@pytest.mark.slow
def test_checkpoints_hold_no_pickled_objects(runs):
    """What a run saves loads with weights_only (RNG states and config as plain data)."""
    path = runs["cartpole"] / checkpoint.CHECKPOINT
    state = checkpoint.load_file(path)
    assert isinstance(state["config"], str) and "specs" in state
    json.dumps(state["specs"])  # plain containers


FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_a62d318"


def test_act_takes_the_observation_as_the_env_returned_it():
    """A bare array, one observation or a batch; the dict form as before."""
    from reverie.config import ConfigError

    policy = load_policy(FIXTURE)  # CartPole: one key, 'vector' (4,)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action, state = policy.act(obs, deterministic=True)
    assert np.ndim(action) == 0 and env.action_space.contains(int(action))
    obs, *_ = env.step(int(action))
    action, state = policy.act(obs, state, deterministic=True)  # the episode goes on
    assert state["deter"].shape[0] == 1
    batch = np.stack([obs, obs, obs]).astype(np.float64)  # any float dtype
    actions, _ = policy.act(batch, deterministic=True)
    assert actions.shape == (3,)
    same, _ = policy.act({"vector": batch.astype(np.float32)}, deterministic=True)
    assert same.tolist() == actions.tolist()
    with pytest.raises(ConfigError, match=r"shape \(3,\); this policy expects \(4,\)"):
        policy.act(np.zeros(3))
    with pytest.raises(ConfigError, match="lacks"):
        policy.act({"image": np.zeros(4)})
