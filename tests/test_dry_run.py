"""`reverie train --dry-run` and `reverie sweep --dry-run` (reverie.dry_run).

- through the real CLI at the tiny config: the parameter count is the agent's, the replay
  RAM is capacity x the bytes of every stored key (worked out here from the specs), the
  updates for the budget are the train ratio's, updates/s > 0, and the wall time is the
  updates over updates/s plus the acting time; nothing is written (no logdir, no logs/);
- a sweep of 2 seeds measures once and prints one line per cell and the total;
- bad input (run.device=cuda without CUDA) is one `reverie: error:` line, status 2.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from reverie import dry_run
from reverie.agent import Agent
from reverie.cli import main
from reverie.clocks import TrainRatio
from reverie.config import train_fill
from reverie.envs import describe_spaces, env_kwargs, make_env
from reverie.sweep.grid import cell_config, cost, expand
from reverie.sweep.spec import make_spec

from .conftest import TINY, tiny_config

CARTPOLE = "gym:CartPole-v1"
RUN = ["--steps", "600", "--train-ratio", "16", *TINY]


@pytest.fixture
def quick(monkeypatch):
    """A short dry run: few acting steps, half a second of timed updates; and every
    Estimate it makes, kept."""
    monkeypatch.setattr(dry_run, "ACT_STEPS", 40)
    monkeypatch.setattr(dry_run, "MEASURE_SECONDS", 0.5)
    made: list[dry_run.Estimate] = []
    real = dry_run.estimate

    def keep(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(dry_run, "estimate", keep)
    return made


def number(text: str, label: str) -> float:
    match = re.search(rf"{label}: ([\d,.]+)", text)
    assert match, (label, text)
    return float(match[1].replace(",", ""))


def expected_bytes(cfg) -> int:
    """Bytes per replay step from the specs: observations, reward, three flags, the action
    (float32), the latent (deter fp16, stoch uint8 indices)."""
    env = make_env(CARTPOLE, **env_kwargs(cfg.env))
    obs, act = describe_spaces(env)
    env.close()
    observations = 4 * sum(obs.vectors.values()) + sum(int(np.prod(s)) for s in obs.images.values())
    return observations + 4 + 3 + 4 * act.dim + 2 * cfg.model.deter + cfg.model.stoch


@pytest.mark.slow
def test_train_dry_run_measures_and_writes_nothing(tmp_path, capsys, monkeypatch, quick):
    monkeypatch.chdir(tmp_path)  # the default logdir would be ./logs/...
    logdir = tmp_path / "run"
    assert main(["train", "--dry-run", "--logdir", str(logdir), *RUN]) == 0
    out = capsys.readouterr().out
    assert not logdir.exists() and list(tmp_path.iterdir()) == []
    [est] = quick
    cfg = tiny_config("run.steps=600", "run.train_ratio=16")

    env = make_env(CARTPOLE, **env_kwargs(cfg.env))
    agent = Agent(*describe_spaces(env), cfg, "cpu")
    env.close()
    assert number(out, "parameters") == agent.param_count()["total"] == est.params["total"]
    per_step = expected_bytes(cfg)
    assert number(out, "replay bytes per step") == per_step == est.bytes_per_step
    capacity = cfg.replay.capacity
    assert f"({capacity:,} steps x {per_step:,} B;" in out
    assert f"replay RAM at capacity: {dry_run.size_text(capacity * per_step)}" in out

    updates = TrainRatio.from_run(cfg.run).paid(600 - train_fill(cfg.run))
    assert number(out, "updates to the budget") == updates == est.updates
    assert est.measured and est.updates_per_s > 0 and est.timed >= 2
    assert number(out, "updates/s") == pytest.approx(est.updates_per_s, rel=1e-2)
    assert f"measured over {est.timed} updates after {est.warmup} warm-up" in out
    assert 0 < est.peak_bytes < 2**30 and "peak learner memory: " in out
    assert not est.compiled and est.compile_s == 0  # TINY: run.compile=off
    assert est.wall_s == pytest.approx(updates / est.updates_per_s + 600 * est.acting_s)
    assert f"estimated wall time: {dry_run.duration_text(est.wall_s)} " in out

    # an existing logdir stays as it was, and the default one is not created
    logdir.mkdir()
    assert main(["train", "--dry-run", "--logdir", str(logdir), *RUN]) == 0
    assert main(["train", "--dry-run", *RUN]) == 0
    assert list(logdir.iterdir()) == [] and sorted(tmp_path.iterdir()) == [logdir]


@pytest.mark.slow
def test_sweep_dry_run_measures_each_variant_once(tmp_path, capsys, quick):
    root = tmp_path / "root"
    argv = ["sweep", "--root", str(root), "--tasks", CARTPOLE, "--seeds", "2", *RUN]
    assert main([*argv, "--jobs", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not root.exists()
    assert len(quick) == 1  # the two seeds share one measurement
    [est] = quick
    cells = expand(make_spec(CARTPOLE, "2", 600, train_ratio=16.0, overrides=TINY))
    lines = [x for x in out.splitlines() if x.startswith("reverie train ")]
    assert len(lines) == len(cells) == 2
    per_cell = cost(make_spec(CARTPOLE, "1", 600, train_ratio=16.0, overrides=TINY), cells[:1])
    for line, cell in zip(lines, cells):
        assert f"--logdir {root / cell.name} " in line
        assert f"# {per_cell['updates']:,} updates, about " in line
    total = out.strip().splitlines()[-1]
    assert f"estimated wall time {dry_run.duration_text(2 * est.wall_s)} for 2 cells" in total
    assert f"{dry_run.duration_text(est.wall_s)} with --jobs 2" in total


def test_budget_updates_are_the_sweep_cost():
    spec = make_spec(CARTPOLE, "1", 5000, train_ratio=32.0, grid=["run.batch_size=4,8"])
    for cell in expand(spec):
        run = cell_config(spec, cell).run
        assert dry_run.budget_updates(run, 5000) == cost(spec, [cell])["updates"]
    run = tiny_config("run.train_ratio=32").run  # batch 4 x 8: one update replays 32 steps
    fill = train_fill(run)
    assert dry_run.budget_updates(run, 5000) == (5000 - fill) * 32 // 32
    assert dry_run.budget_updates(run, 5000, start=1000) == 5000 - 1000  # a resume
    assert dry_run.budget_updates(run, fill) == 0


def test_step_bytes_are_what_a_replay_chunk_stores():
    step = {
        "image": np.zeros((64, 64, 3), np.uint8),
        "reward": np.float32(0),
        "is_first": np.bool_(True),
        "action": np.zeros(6, np.float32),
        "deter": np.zeros(512, np.float16),
        "stoch": np.zeros(32, np.uint8),
    }
    sizes = dry_run.step_bytes(step)
    assert sizes == {
        "image": 12288,
        "reward": 4,
        "is_first": 1,
        "action": 24,
        "deter": 1024,
        "stoch": 32,
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_missing_is_one_error_line(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", "--dry-run", "--logdir", str(logdir), *RUN, "run.device=cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reverie: error: run.device=cuda but no CUDA") and "\n" not in err
    assert not logdir.exists()
