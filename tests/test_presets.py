"""The domain presets against the authors' December-2024 config, read from the resolved
config (`make_config`), and the settings that changed to match it: env counts, Atari's
96x96 frames, Minecraft's ratio and health term (test_suites.py), sampled evaluation."""

from __future__ import annotations

import pytest
import torch

from reverie import envs as envs_module
from reverie.agent import Agent
from reverie.build import open_trainer
from reverie.clocks import TrainRatio
from reverie.config import ConfigError, make_config
from reverie.envs import uses_workers
from reverie.rollout import evaluate
from reverie.specs import ActSpec, ObsSpec
from tests.batches import random_batch
from tests.conftest import load_benchmark, tiny_config
from tests.tiny import TINY_MODEL


def _preset_table():
    return load_benchmark("preset_table")


@pytest.mark.slow
def test_every_preset_setting_equals_the_authors_or_says_why():
    table = _preset_table()
    rows = table.rows()
    assert {r["preset"] for r in rows} >= {"dmc_proprio", "dmc_vision", "atari", "minecraft"}
    unexplained = [
        (r["preset"], r["key"], r["reverie"], r["authors"])
        for r in rows
        if not r["equal"] and not r["reason"]
    ]
    assert unexplained == []
    # a reason for a setting that is equal is stale
    equal = {(r["preset"], r["key"]) for r in rows if r["equal"]}
    assert equal.isdisjoint(table.DEPARTURES)


@pytest.mark.slow
def test_the_committed_preset_table_is_current():
    table = _preset_table()
    assert table.OUT.read_text() == table.markdown(), "run python benchmarks/preset_table.py"


@pytest.mark.parametrize(
    "env_id, preset, envs",
    [
        ("dmc:walker_walk", "", 16),
        ("dmc:walker_walk", "dmc_vision", 16),
        ("atari:pong", "", 16),
        ("procgen:coinrun", "", 16),
        ("memmaze:9x9", "", 16),
        ("minecraft:diamond", "", 16),
        ("atari100k:pong", "", 1),
        ("crafter", "", 1),
        ("bsuite:catch/0", "", 1),
        ("gym:CartPole-v1", "", 1),
    ],
)
def test_env_count_per_preset_is_the_authors(env_id, preset, envs):
    cfg = make_config([f"env.id={env_id}", *([f"preset={preset}"] if preset else [])])
    assert cfg.env.num_envs == envs
    assert make_config([f"env.id={env_id}", "env.num_envs=2"]).env.num_envs == 2  # a flag


@pytest.mark.slow
def test_changed_presets_resolve_to_the_authors_values():
    atari = make_config(["env.id=atari:pong"])
    assert atari.env.image_size == 96 and atari.env.kwargs.gray
    assert make_config(["env.id=atari100k:pong"]).env.image_size == 64
    minecraft = make_config(["env.id=minecraft:diamond"])
    assert minecraft.run.train_ratio == 32 and minecraft.env.time_limit == 36000
    assert make_config(["env.id=memmaze:9x9"]).run.train_ratio == 32
    for env_id in ("gym:CartPole-v1", "dmc:walker_walk", "atari:pong", "crafter"):
        assert make_config([f"env.id={env_id}"]).run.eval_mode == "sample"
    assert make_config(["run.eval_mode=mode"]).run.eval_mode == "mode"
    with pytest.raises(ConfigError, match="run.eval_mode"):
        make_config(["run.eval_mode=greedy"])


@pytest.mark.parametrize("size", [48, 96, 256])
def test_image_sizes_the_encoder_takes(size):
    assert make_config([f"env.image_size={size}"]).env.image_size == size


@pytest.mark.parametrize("size", [32, 40, 100, 272])
def test_image_sizes_it_refuses_name_the_rule(size):
    with pytest.raises(ConfigError, match="multiple of 16 from 48 to 256"):
        make_config([f"env.image_size={size}"])


@pytest.mark.slow
def test_a_96x96_gray_frame_trains_and_reconstructs_at_its_size():
    cfg = make_config([*TINY_MODEL, "run.compile=off", "run.device=cpu"])
    obs, act = ObsSpec({}, {"image": (96, 96, 1)}), ActSpec(True, 6)
    agent = Agent(obs, act, cfg, "cpu")
    depth = cfg.model.depth
    assert agent.wm.encoder.cnn.out_dim == 4 * depth * 6 * 6  # 96 halved 4 times: 6x6
    metrics, _ = agent.update(random_batch(cfg, obs, act))
    assert torch.isfinite(metrics["loss/dec_image"])
    feat = torch.zeros(2, cfg.model.deter + cfg.model.stoch * cfg.model.classes)
    assert agent.wm.decoder.cnn(feat).shape == (2, 96, 96, 1)


def test_more_envs_than_cores_step_in_the_learners_process(monkeypatch):
    monkeypatch.setattr(envs_module, "usable_cores", lambda: 2)
    auto = make_config(["env.num_envs=16"]).env
    assert not uses_workers(auto)
    assert "stepped in turn in this process" in envs_module.envs_note(auto)
    assert uses_workers(make_config(["env.num_envs=2"]).env)
    assert uses_workers(make_config(["env.num_envs=16", "env.parallel=async"]).env)
    monkeypatch.setattr(envs_module, "usable_cores", lambda: 32)
    assert uses_workers(auto)


@pytest.mark.slow
@pytest.mark.parametrize("envs", [1, 3])
def test_the_train_ratio_counts_the_steps_of_all_envs(tmp_path, envs):
    ratio = 8
    cfg = tiny_config(f"env.num_envs={envs}", "env.parallel=sync", f"run.train_ratio={ratio}")
    trainer = open_trainer(cfg, tmp_path)
    try:
        trainer.train(120)
        step, updates, start = trainer.step, trainer.updates, trainer.train_start
    finally:
        trainer.close()
    assert step >= 120 and step % envs == 0 and start is not None
    # ratio replayed steps per env step of any env, from the step training started
    expected = TrainRatio.from_run(cfg.run).paid(step - start) + 1
    assert updates > 10 and abs(updates - expected) <= 1, (updates, expected)


def test_evaluation_samples_unless_told_to_take_the_mode(monkeypatch):
    cfg = tiny_config()
    trainer_agent = Agent(*_cartpole_specs(), cfg, "cpu")
    seen: list[str] = []
    policy = trainer_agent.policy

    def spy(obs, state, mode):
        seen.append(mode)
        return policy(obs, state, mode)

    monkeypatch.setattr(trainer_agent, "policy", spy)
    evaluate(trainer_agent, cfg, 1, seed=0)
    assert set(seen) == {"sample"}
    seen.clear()
    evaluate(trainer_agent, tiny_config("run.eval_mode=mode"), 1, seed=0)
    assert set(seen) == {"mode"}


def _cartpole_specs():
    from reverie.envs import describe_spaces, make_env

    env = make_env("gym:CartPole-v1", seed=0)
    try:
        return describe_spaces(env)
    finally:
        env.close()
