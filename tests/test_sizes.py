"""Every size preset builds; parameter counts are reported and match the preset names."""

import json
from pathlib import Path

import pytest
import torch

from reverie.agent import Agent
from reverie.config import SIZES, make_config
from reverie.specs import ActSpec, ObsSpec

NOMINAL = {"1m": 1, "12m": 12, "25m": 25, "50m": 50, "100m": 100, "200m": 200, "400m": 400}


@pytest.mark.parametrize("size", list(SIZES))
def test_size_preset_builds(size, capsys):
    cfg = make_config([], size=size)
    with torch.device("meta"):
        agent = Agent(ObsSpec({}, {"image": (64, 64, 3)}), ActSpec(True, 17), cfg, "meta")
    counts = agent.param_count()
    with capsys.disabled():
        print(
            f"\n  size {size}: {counts['total'] / 1e6:.1f}M parameters "
            f"(world model {counts['world_model'] / 1e6:.1f}M)"
        )
    # within a factor of 1.35 of the nominal size (64x64 images, 17 actions); the official
    # 1m agent has 0.69M parameters (tests/fixtures/official_param_counts.json)
    low = 1.5 if size == "1m" else 1.35
    assert NOMINAL[size] / low < counts["total"] / 1e6 < NOMINAL[size] * 1.35
    assert counts["world_model"] > counts["actor"] + counts["critic"]


OFFICIAL = json.loads((Path(__file__).parent / "fixtures/official_param_counts.json").read_text())


@pytest.mark.parametrize("size", sorted(OFFICIAL["counts"]))
def test_parameter_counts_equal_the_official_agents(size):
    """Same layers, same shapes: every module has the official code's parameter count."""
    cfg = make_config([], size=size)
    with torch.device("meta"):
        agent = Agent(ObsSpec({}, {"image": (64, 64, 3)}), ActSpec(True, 17), cfg, "meta")
    wm = agent.wm
    count = lambda *ms: sum(p.numel() for m in ms for p in m.parameters())  # noqa: E731
    ours = {
        "enc": count(wm.encoder),
        "dyn": count(wm.rssm),
        "dec": count(wm.decoder),
        "rew": count(wm.reward),
        "con": count(wm.cont_net, wm.cont_out),
        "pol": count(agent.behavior.actor),
        "val": count(agent.behavior.critic),
    }
    assert ours == OFFICIAL["counts"][size]


@pytest.mark.slow
def test_one_m_builds_for_real_and_acts():
    cfg = make_config([], size="1m")
    agent = Agent(ObsSpec({"vector": 4}, {}), ActSpec(True, 2), cfg, "cpu")
    import numpy as np

    action, state = agent.policy(
        {"vector": np.zeros((3, 4), np.float32), "is_first": np.ones(3, bool)}, None
    )
    assert action.shape == (3, 2) and state["deter"].shape == (3, 512)
