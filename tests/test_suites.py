"""Every suite through the trainer's path (config -> make_vector_env / make_env), plus a
short training run per installed suite. Suites whose package is missing are skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gymnasium import spaces

from reverie.config import ConfigError, make_config
from reverie.envs import SuiteNotInstalledError, make_env, make_vector_env, suite_installed
from reverie.envs.episode_stats import EpisodeStats, crafter_score
from reverie.envs.minecraft_suite import ACTIONS, MILESTONES, milestone_reward

from .conftest import TINY, train_tiny

FAST = [*TINY, "run.train_ratio=32", "replay.chunk=64", "replay.save=false"]


def needs(suite: str):
    return pytest.mark.skipif(not suite_installed(suite), reason=f"{suite} not installed")


# id, extra overrides, {obs key: (shape, dtype)}, discrete action count or Box dims
CASES = [
    pytest.param(
        "dmc:walker_walk",
        [],
        {"vector": ((24,), np.float32)},
        ("box", 6),
        marks=[needs("dmc"), pytest.mark.slow],
        id="dmc-proprio",
    ),
    pytest.param(
        "dmc:quadruped_run",
        ["preset=dmc_vision"],
        {"image": ((64, 64, 3), np.uint8)},
        ("box", 12),
        marks=[needs("dmc"), pytest.mark.slow],
        id="dmc-vision",
    ),
    pytest.param(
        "atari:pong",
        [],
        {"image": ((96, 96, 1), np.uint8)},  # the authors' 96x96 gray frames
        ("discrete", 18),
        marks=needs("atari"),
        id="atari",
    ),
    pytest.param(
        "atari100k:pong",
        [],
        {"image": ((64, 64, 3), np.uint8)},
        ("discrete", 6),
        marks=needs("atari100k"),
        id="atari100k",
    ),
    pytest.param(
        "crafter",
        [],
        {"image": ((64, 64, 3), np.uint8)},
        ("discrete", 17),
        marks=[needs("crafter"), pytest.mark.slow],
        id="crafter",
    ),
    pytest.param(
        "bsuite:catch/0",
        [],
        {"vector": ((50,), np.float32)},
        ("discrete", 3),
        marks=needs("bsuite"),
        id="bsuite",
    ),
    pytest.param(
        "memmaze:9x9",
        [],
        {"image": ((64, 64, 3), np.uint8)},
        ("discrete", 6),
        marks=[needs("memmaze"), pytest.mark.slow],
        id="memmaze",
    ),
    pytest.param(
        "procgen:coinrun",
        [],
        {"image": ((64, 64, 3), np.uint8)},
        ("discrete", 15),
        marks=needs("procgen"),
        id="procgen",
    ),
]


@pytest.mark.parametrize("env_id, extra, obs_spec, act", CASES)
def test_suite_spaces_and_step(env_id, extra, obs_spec, act):
    cfg = make_config([f"env.id={env_id}", "env.num_envs=1", *extra])
    venv = make_vector_env(cfg.env, seed=0)
    try:
        obs_space = venv.single_observation_space
        assert set(obs_space.spaces) == set(obs_spec)
        for key, (shape, dtype) in obs_spec.items():
            assert obs_space[key].shape == shape and obs_space[key].dtype == dtype
        space = venv.single_action_space
        if act[0] == "discrete":
            assert isinstance(space, spaces.Discrete) and space.n == act[1]
        else:
            assert isinstance(space, spaces.Box) and space.shape == (act[1],)
            assert np.all(space.low == -1) and np.all(space.high == 1)
        obs, _ = venv.reset(seed=0)
        for _ in range(3):
            obs, rew, term, trunc, _ = venv.step(venv.action_space.sample())
        for key, (shape, dtype) in obs_spec.items():
            assert obs[key].shape == (1, *shape) and obs[key].dtype == dtype
        assert rew.shape == (1,) and np.isfinite(rew).all()
        assert term.dtype == bool and trunc.dtype == bool
    finally:
        venv.close()


def _run_episode(env, limit: int = 2000):
    env.reset(seed=0)
    for t in range(1, limit + 1):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            return t, term, trunc, info
    raise AssertionError("episode did not end")


@needs("dmc")
@pytest.mark.slow
def test_dmc_time_limit_is_truncation_and_seeding():
    env = make_env("dmc:walker_walk", kwargs={"time_limit": 0.25})  # 10 control steps
    length, term, trunc, _ = _run_episode(env)
    assert (length, term, trunc) == (10, False, True)
    first = [make_env("dmc:walker_walk").reset(seed=s)[0]["vector"] for s in (3, 3, 4)]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])


@needs("dmc")
@pytest.mark.slow
def test_dmc_rendered_frame_looks_right():
    env = make_env("dmc:walker_walk", pixels=True)
    obs, _ = env.reset(seed=0)
    image = obs["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 10  # not a constant frame
    mean = image.reshape(-1, 3).mean(0)
    assert 10 < mean.mean() < 200  # neither black nor white
    assert mean[2] > mean[0]  # DMC's blue skybox and floor dominate
    # the body (orange) is in the frame: pixels with red well above blue
    assert ((image[..., 0].astype(int) - image[..., 2]) > 40).sum() > 20
    env.close()


@needs("bsuite")
def test_bsuite_catch_terminates():
    env = make_env("bsuite:catch/0")
    length, term, trunc, _ = _run_episode(env)
    assert (length, term, trunc) == (9, True, False)


@needs("atari")
def test_atari_frame_limit_is_truncation():
    env = make_env("atari:pong", kwargs={"max_frames": 200, "noops": 0})
    length, term, trunc, _ = _run_episode(env)
    assert trunc and not term and length <= 50


@needs("crafter")
@pytest.mark.slow
def test_crafter_length_truncates_and_reports_achievements():
    env = make_env("crafter", kwargs={"length": 12})
    length, term, trunc, info = _run_episode(env)
    assert (length, term, trunc) == (12, False, True)
    assert len(info["achievements"]) == 22


def test_crafter_score_and_episode_stats():
    assert crafter_score([0.0] * 22) == pytest.approx(0.0)
    assert crafter_score([100.0] * 22) == pytest.approx(100.0)
    assert crafter_score([100.0, 0.0]) == pytest.approx(np.sqrt(101) - 1)
    stats = EpisodeStats()
    names = [f"a{i}" for i in range(22)]
    out = stats.episode({"achievements": {n: int(i == 0) * 3 for i, n in enumerate(names)}})
    assert out["achievement/a0"] == 1.0 and out["achievement/a1"] == 0.0
    out = stats.episode({"achievements": {n: 0 for n in names}})
    assert out["crafter/score"] == pytest.approx(np.exp(np.log(51.0) / 22) - 1)
    assert stats.episode({}) == {} and stats.episode(None) == {}


class FakeMineRL:
    """Stand-in for MineRL's ObtainDiamond env: old gym API, scripted inventories."""

    def __init__(self, inventories, length=None, lives=None):
        self.inventories, self.length, self.t, self.actions = inventories, length, 0, []
        self.lives = lives  # life per step, reported as life_stats where given

    def _obs(self):
        inv = self.inventories[min(self.t, len(self.inventories) - 1)]
        obs = {
            "pov": np.full((64, 64, 3), self.t, np.uint8),
            "inventory": dict(inv),
            "equipped_items": {"mainhand": {"type": "wooden_pickaxe" if self.t else "air"}},
        }
        if self.lives is not None:
            obs["life_stats"] = {"life": self.lives[self.t]}
        return obs

    def reset(self):
        self.t = 0
        return self._obs()

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        done = self.t >= len(self.inventories) - 1
        info = {"TimeLimit.truncated": done and self.length == "timeout"}
        return self._obs(), 0.0, done, info


def test_minecraft_milestone_rewards_once_per_episode():
    reached: set[str] = set()
    assert milestone_reward({"log": 2, "dirt": 5}, reached) == (1.0, ["log"])
    assert milestone_reward({"log": 0, "planks": 4, "stick": 1}, reached) == (
        2.0,
        ["plank", "stick"],
    )
    assert milestone_reward({"log": 1, "planks": 4}, reached) == (0.0, [])
    assert len(MILESTONES) == 12 and MILESTONES[-1][0] == "diamond"
    inventories = [
        {},
        {"log": 1},
        {"log": 3},  # more logs: no second reward
        {"log": 0, "planks": 4},  # logs turned into planks
        {"planks": 0, "crafting_table": 1, "stick": 2},
        {"wooden_pickaxe": 1, "cobblestone": 1},
        {"wooden_pickaxe": 1},
    ]
    fake = FakeMineRL(inventories)
    env = make_env("minecraft:diamond", kwargs={"make_inner": lambda: fake})
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["inventory"].shape == (19,)
    rewards, ends = [], []
    for _ in range(len(inventories) - 1):
        obs, reward, term, trunc, _ = env.step(1)
        rewards.append(reward)
        ends.append((term, trunc))
    assert rewards == [1.0, 0.0, 1.0, 2.0, 2.0, 0.0]  # 6 milestones, each once
    assert ends[-1] == (True, False) and not any(any(e) for e in ends[:-1])
    assert fake.actions[0]["attack"] == 1 and fake.actions[0]["camera"].shape == (2,)
    from reverie.envs.minecraft_suite import ITEMS

    assert obs["inventory_max"][ITEMS.index("log")] == 3.0  # most logs held this episode
    assert obs["equipped"].sum() == 1.0
    # a new episode pays the milestones again
    env.reset()
    assert env.step(0)[1] == 1.0
    assert env.action_space.n == len(ACTIONS)


def test_minecraft_health_term_is_a_hundredth_of_the_health_change():
    lives = [20.0, 20.0, 14.0, 18.0, 18.0]  # life out of 20: hurt by 6, healed by 4
    inventories = [{}, {}, {"log": 1}, {}, {}]
    fake = FakeMineRL(inventories, lives=lives)
    env = make_env("minecraft:diamond", kwargs={"make_inner": lambda: fake})
    env.reset(seed=0)
    rewards = [env.step(0)[1] for _ in range(len(lives) - 1)]
    assert rewards == pytest.approx([0.0, 1.0 - 0.01 * 6 / 20, 0.01 * 4 / 20, 0.0])
    fake.lives = lives[2:] + [18.0, 18.0]  # a new episode starts from its own health
    env.reset()
    assert env.step(0)[1] == pytest.approx(0.01 * 4 / 20)


def test_missing_suite_names_the_extra(monkeypatch):
    if not suite_installed("minecraft"):
        with pytest.raises(SuiteNotInstalledError, match=r"pip install -e \.\[minecraft\]"):
            make_env("minecraft:diamond")
    if not suite_installed("procgen"):
        with pytest.raises(SuiteNotInstalledError, match=r"\[procgen\]"):
            make_env("procgen:coinrun")


def test_presets_by_suite_and_by_name():
    assert make_config(["env.id=dmc:walker_walk"]).run.train_ratio == 1024
    vision = make_config(["env.id=dmc:walker_walk", "preset=dmc_vision"])
    assert vision.run.train_ratio == 256 and vision.env.pixels
    atari = make_config(["env.id=atari:pong"])
    assert atari.run.train_ratio == 32 and atari.env.kwargs.sticky == 0.25
    assert make_config(["env.id=atari100k:pong"]).env.kwargs.sticky == 0.0
    assert make_config(["env.id=crafter"]).run.train_ratio == 512
    assert make_config(["env.id=bsuite:catch/0"]).run.train_ratio == 1024
    override = make_config(["env.id=atari:pong", "env.kwargs.sticky=0"])
    assert override.env.kwargs.sticky == 0 and override.env.kwargs.noops == 30
    with pytest.raises(ConfigError, match="dmc_vision"):
        make_config(["preset=dmc_visoin"])


# ------------------------------------------------------------- training smoke runs
SMOKE = [
    pytest.param("dmc:cartpole_swingup", [], marks=needs("dmc"), id="dmc-proprio"),
    pytest.param(
        "dmc:cartpole_swingup", ["preset=dmc_vision"], marks=needs("dmc"), id="dmc-vision"
    ),
    pytest.param("atari:pong", [], marks=needs("atari"), id="atari"),
    pytest.param("atari100k:pong", [], marks=needs("atari100k"), id="atari100k"),
    pytest.param("bsuite:catch/0", [], marks=needs("bsuite"), id="bsuite"),
    pytest.param("memmaze:9x9", [], marks=needs("memmaze"), id="memmaze"),
    pytest.param("procgen:coinrun", [], marks=needs("procgen"), id="procgen"),
]


def run(logdir, steps, *extra):
    # updates from 16 replay steps on: a smoke run needs a few updates, not a full batch's fill
    return train_tiny(logdir, steps, [*FAST, "run.train_fill=16", *extra])


@pytest.mark.parametrize("env_id, extra", SMOKE)
@pytest.mark.slow
def test_training_smoke(tmp_path, env_id, extra):
    _, summary = run(tmp_path, 24, f"env.id={env_id}", *extra)
    assert summary["step"] == 24 and summary["updates"] >= 1


@needs("crafter")
@pytest.mark.slow
def test_crafter_training_logs_achievements_and_score(tmp_path):
    run(tmp_path, 30, "env.id=crafter", "env.kwargs.length=10")
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    episodes = [x for x in lines if "episode/return" in x]
    assert len(episodes) >= 2
    for line in episodes:
        assert sum(k.startswith("achievement/") for k in line) == 22
        assert all(line[k] in (0.0, 1.0) for k in line if k.startswith("achievement/"))
        assert 0.0 <= line["crafter/score"] <= 100.0
