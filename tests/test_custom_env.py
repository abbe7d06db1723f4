"""Your own env as an object or a factory (the README's example, run here), and the
callbacks of `learn`."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import reverie.api
from reverie import Dreamer
from reverie.callbacks import Callback, EvalCallback, StopOnReturn
from reverie.cli import main
from reverie.envs import EnvIdError
from reverie.envs.custom import CustomEnvError

from .conftest import TINY

README = Path(__file__).parents[1] / "README.md"
SMALL = [k for k in TINY if not k.startswith("env.num_envs")] + [
    "run.train_fill=16",
    "run.train_ratio=32",
    "run.log_every=0",
]


def readme_example() -> str:
    text = README.read_text()
    found = re.search(r"<!-- custom-env-example.*?```python\n(.*?)```", text, re.S)
    assert found, "README lost its custom-env example"
    return found.group(1)


@pytest.fixture
def small_runs(monkeypatch):
    """Every Dreamer built here gets the tiny model and an early start of training."""
    resolve = reverie.api.resolve_config

    def small(run_dir, overrides, **flags):
        return resolve(run_dir, [*SMALL, *overrides], **flags)

    monkeypatch.setattr(reverie.api, "resolve_config", small)


@pytest.mark.slow
def test_the_readme_custom_env_example_trains_an_object_and_a_factory(
    tmp_path, monkeypatch, small_runs
):
    script = tmp_path / "corridor.py"
    code = readme_example()
    assert "STEPS = 5_000" in code
    script.write_text(code.replace("STEPS = 5_000", "STEPS = 120"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    for name, envs in (("corridor", 1), ("corridor-2", 2)):
        logdir = tmp_path / "logs" / name
        assert "id: custom:Corridor" in (logdir / "config.yaml").read_text()
        assert f"num_envs: {envs}" in (logdir / "config.yaml").read_text()
        lines = [json.loads(s) for s in (logdir / "metrics.jsonl").read_text().splitlines()]
        assert max(r.get("train/updates", 0) for r in lines) > 0
        assert any("episode/return" in r for r in lines)
        assert (logdir / "checkpoint.pt").exists()


class Corridor(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos, self.t = max(0, self.pos + (1 if action == 1 else -1)), self.t + 1
        done = self.pos == 3
        return np.array([self.pos / 3], np.float32), float(done), done, self.t >= 10, {}


def test_one_object_cannot_serve_several_workers(tmp_path, small_runs):
    with pytest.raises(CustomEnvError, match="pass a factory"):
        Dreamer(env=Corridor(), logdir=tmp_path, overrides=["env.num_envs=2"])
    with pytest.raises(CustomEnvError, match="not a gymnasium.Env"):
        Dreamer(env=lambda: "not an env", logdir=tmp_path / "b")


@pytest.mark.slow
def test_a_custom_run_resumes_with_the_same_env_and_says_what_to_pass_without_it(
    tmp_path, small_runs, capsys
):
    agent = Dreamer(env=Corridor, logdir=tmp_path)
    agent.learn(40)
    updates = agent.trainer.updates
    agent.close()
    again = Dreamer(env=Corridor, logdir=tmp_path)  # resumes: same custom:Corridor
    assert again.trainer.step == 40 and again.trainer.updates == updates
    assert again.evaluate(episodes=2)["eval/length"] <= 10
    again.close()
    assert main(["train", "--logdir", str(tmp_path), "--steps", "60"]) == 2
    err = capsys.readouterr().err
    assert "custom:Corridor" in err and "pass it again" in err
    with pytest.raises(EnvIdError):
        reverie.envs.make_env("custom:Corridor")


class Recorder(Callback):
    def __init__(self):
        self.calls: dict[str, int] = {}

    def count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_step(self, trainer):
        self.count("step")

    def on_episode(self, trainer, ret, length):
        self.count("episode")

    def on_log(self, trainer, metrics):
        self.count("log")
        assert "train/updates" in metrics


def test_callbacks_see_steps_episodes_logs_and_can_stop_training(tmp_path, small_runs):
    agent = Dreamer(env=Corridor, logdir=tmp_path)
    recorder, evaluator = Recorder(), EvalCallback(every=5, episodes=2)
    stop = StopOnReturn(target=0.5, window=2)  # two episodes in a row reach the end
    summary = agent.learn(2000, callbacks=[recorder, evaluator, stop])
    agent.close()
    assert summary["stopped_by"] == "StopOnReturn.on_episode"
    assert summary["step"] == stop.reached_at < 2000
    assert recorder.calls["step"] >= summary["step"] - 1
    assert recorder.calls["episode"] >= 2 and recorder.calls["log"] >= 1
    assert [s for s, _ in evaluator.history] == list(range(5, summary["step"] + 1, 5))
    assert evaluator.history  # the run lasted at least one evaluation
    lines = (tmp_path / "metrics.jsonl").read_text()
    assert "callback_eval/return" in lines


# ------------------------------------------- a factory script without the main guard
SCRIPT = """import gymnasium as gym
from reverie import Dreamer


def train():
    agent = Dreamer(env=lambda: gym.make("CartPole-v1"), logdir={logdir!r}, overrides={over!r})
    print("trained", agent.learn(40)["step"])
    agent.close()


{call}
"""
GUARDED = 'if __name__ == "__main__":\n    train()'


def factory_script(tmp_path: Path, name: str, guarded: bool) -> tuple[str, Path]:
    """A script training on a lambda factory in 2 env worker processes; its logdir."""
    logdir = tmp_path / f"{name}-logs"
    over = [*SMALL, "env.num_envs=2", "env.parallel=async"]
    return SCRIPT.format(
        logdir=str(logdir), over=over, call=GUARDED if guarded else "train()"
    ), logdir


def run_python(tmp_path: Path, *args: str, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.slow
def test_a_factory_script_without_the_main_guard_ends_in_one_line(tmp_path):
    code, logdir = factory_script(tmp_path, "unguarded", guarded=False)
    script = tmp_path / "unguarded.py"
    script.write_text(code)
    done = run_python(tmp_path, str(script))
    assert done.returncode == 1 and "trained" not in done.stdout
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert lines[-1] == (
        "reverie.envs.vector.UnguardedMainError: env worker processes import your script "
        f"{script} again, and its training code is not under "
        '`if __name__ == "__main__":`, so each worker started training again: put it under '
        "that guard, or pass env.parallel=sync to step the envs in this process"
    )
    # one traceback, the script's own uncaught error: none from the workers, which exit quietly
    assert done.stderr.count("Traceback") == 1 and "multiprocessing" not in done.stderr
    assert "bootstrapping" not in done.stderr and "worker exited" not in done.stderr
    assert not logdir.exists()  # refused before any file

    code, logdir = factory_script(tmp_path, "guarded", guarded=True)
    (tmp_path / "guarded.py").write_text(code)
    done = run_python(tmp_path, str(tmp_path / "guarded.py"))
    assert done.returncode == 0, done.stderr
    assert "trained" in done.stdout and (logdir / "checkpoint.pt").exists()


@pytest.mark.slow
def test_a_factory_script_piped_to_python_trains_in_workers(tmp_path):
    # `python -`: the workers cannot import '<stdin>' again, so they start without it (as
    # under `python -c`), guard or none: the factory reaches them pickled by value
    code, logdir = factory_script(tmp_path, "piped", guarded=False)
    done = run_python(tmp_path, "-", stdin=code)
    assert done.returncode == 0, done.stderr
    assert "trained" in done.stdout and "Traceback" not in done.stderr
    assert "2 envs, each in a worker process" in done.stderr
    assert (logdir / "checkpoint.pt").exists()
