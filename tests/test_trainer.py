"""Trainer, resume, metrics and the CLI, on tiny models and short runs."""

import json

import numpy as np
import pytest
import torch

from reverie.build import open_trainer
from reverie.cli import main
from reverie.config import ConfigError
from reverie.run_dir import resolve_config

from .conftest import TINY, train_tiny

FAST = [*TINY, "run.train_ratio=64", "replay.chunk=64"]


def run(logdir, steps, *extra, **flags):
    return train_tiny(logdir, steps, [*FAST, *extra], **flags)


def read_metrics(logdir):
    return [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_writes_metrics_checkpoint_and_replay(tmp_path):
    trainer, summary = run(tmp_path, 200)
    assert summary["step"] == 200 and summary["updates"] > 0
    lines = read_metrics(tmp_path)
    assert all("step" in line for line in lines)
    episodes = [line for line in lines if "episode/return" in line]
    assert episodes and all("episode/length" in e for e in episodes)
    assert all(e["episode/return"] == e["episode/length"] for e in episodes)  # CartPole: +1
    train_lines = [line for line in lines if "loss/total" in line]
    assert train_lines and np.isfinite(train_lines[-1]["loss/total"])
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "config.yaml").exists()
    assert sorted(p.name for p in (tmp_path / "replay").iterdir())[:1] == ["000-00000000.npz"]
    # the train ratio: 64 / (4 * 8) updates per env step once replay holds 4 * 8 steps
    assert summary["updates"] == pytest.approx((200 - 32) * 64 / 32, abs=4)


@pytest.mark.slow
def test_resume_continues_at_same_step(tmp_path):
    first, s1 = run(tmp_path, 120)
    params = {k: v.clone() for k, v in first.agent.state_dict().items()}
    second = open_trainer(resolve_config(tmp_path, list(FAST)), tmp_path)
    try:
        assert second.step == 120 and second.updates == s1["updates"]
        assert second.replay.size == first.replay.size
        for k, v in second.agent.state_dict().items():
            torch.testing.assert_close(v, params[k])
        opt_a = first.agent.opt.state_dict()["state"]
        opt_b = second.agent.opt.state_dict()["state"]
        torch.testing.assert_close(opt_a[0]["nu"], opt_b[0]["nu"])
        s2 = second.train(180)
    finally:
        second.close()
    assert s2["step"] == 180
    steps = [line["step"] for line in read_metrics(tmp_path)]
    assert steps == sorted(steps)  # the step counter never goes backwards
    # no burst of catch-up updates: the ratio holds across the restart
    assert s2["updates"] - s1["updates"] == pytest.approx(60 * 64 / 32, abs=3)


@pytest.mark.slow
def test_pixel_env_runs_an_update(tmp_path):
    trainer, summary = run(tmp_path, 40, "env.pixels=true", "run.train_ratio=32")
    assert trainer.obs_spec.images == {"image": (64, 64, 3)}
    assert summary["updates"] >= 1


@pytest.mark.slow
def test_continuous_actions_run(tmp_path):
    trainer, summary = run(tmp_path, 60, **{"env.id": "gym:Pendulum-v1"})
    assert not trainer.act_spec.discrete and summary["updates"] >= 1


def test_incompatible_logdir_is_refused(tmp_path):
    run(tmp_path, 30)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="size"):
        resolve_config(tmp_path, [], size="12m")
    with pytest.raises(ConfigError, match="model.deter"):
        resolve_config(tmp_path, [*FAST, "model.deter=64"])
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.slow
def test_cli_train_and_eval(tmp_path, capsys):
    logdir = tmp_path / "run"
    code = main(["train", "--logdir", str(logdir), "--steps", "60", "--seed", "1", *FAST])
    assert code == 0
    assert "done: 60 env steps" in capsys.readouterr().out
    assert main(["eval", "--logdir", str(logdir), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "mean return over 2 episodes" in out and "at step 60" in out


def test_cli_clean_errors(tmp_path, capsys):
    assert main(["train", "--logdir", str(tmp_path / "a"), "--env", "gym:CartPol-v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reverie: error:") and "CartPole-v1" in err
    assert not (tmp_path / "a").exists()
    assert main(["train", "--logdir", str(tmp_path / "b"), "run.batch_sise=3"]) == 2
    err = capsys.readouterr().err
    assert "run.batch_sise" in err and "run.batch_size" in err and len(err.splitlines()) == 1
    assert main(["eval", "--logdir", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, capsys):
    run(tmp_path, 40)
    run(tmp_path, 60)  # a second save: the first becomes checkpoint.prev.pt
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:-100])
    trainer = open_trainer(resolve_config(tmp_path, list(FAST)), tmp_path)
    trainer.close()
    assert trainer.step == 40
    assert "checkpoint.pt" in capsys.readouterr().err
