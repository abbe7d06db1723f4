"""Async env workers that survive faults: exceptions, hangs, crashed processes, NaN obs."""

import json
from pathlib import Path

import numpy as np
import pytest

from reverie.config import make_config
from reverie.envs import EnvIdError, make_vector_env
from reverie.envs.vector import EnvWorkerError

from .conftest import TINY, train_tiny

# fake env -> (the fault kind reported, the info flag of the episode it ended)
FAULTS = {
    "Raise": ("exception", "worker_restarted"),
    "Hang": ("timeout", "worker_restarted"),
    "Exit": ("died", "worker_restarted"),
    "NaN": ("nonfinite_observation", "nonfinite_observation"),
}

pytestmark = [pytest.mark.usefixtures("importable_fake_envs"), pytest.mark.slow]


def faulty(name: str, marker: Path, *extra: str) -> list[str]:
    """Two async envs of which exactly one faults once, on its 3rd step."""
    return [
        "env.num_envs=2",
        "env.parallel=async",
        f"env.id=gym:fake_envs:fake_envs/{name}-v0",
        "env.step_timeout=1",
        "env.kwargs.fault_step=3",
        f"env.kwargs.marker={marker}",
        *extra,
    ]


@pytest.mark.parametrize("name", list(FAULTS))
def test_vector_env_survives_fault(name, tmp_path):
    kind, flag = FAULTS[name]
    venv = make_vector_env(make_config(faulty(name, tmp_path / "claimed")).env, seed=0)
    try:
        venv.reset(seed=0)
        steps = [venv.step(np.zeros(2, np.int64)) for _ in range(6)]
        restarts = venv.restarts
    finally:
        venv.close()
    obs, rew, term, trunc, infos = steps[2]  # the 3rd step faults in one env
    (i,) = np.flatnonzero(infos["_env_fault"])
    j = 1 - i
    assert trunc[i] and not term[i] and rew[i] == 0.0 and infos[flag][i]
    assert infos["env_fault"][i].startswith(f"{kind}: env {i}")
    np.testing.assert_array_equal(obs["vector"][i], 2.0)  # the last good observation
    assert np.isfinite(obs["vector"]).all()
    obs, rew, term, trunc, infos = steps[3]  # then the new episode's first observation
    np.testing.assert_array_equal(obs["vector"][i], 0.0)
    assert rew[i] == 0.0 and not term[i] and not trunc[i] and "_env_fault" not in infos
    assert steps[5][0]["vector"][i, 0] == 2.0  # and it steps on
    for t, (obs, rew, term, trunc, _) in enumerate(steps):  # the other env never noticed
        np.testing.assert_array_equal(obs["vector"][j], t + 1.0)
        assert rew[j] == 1.0 and not term[j] and not trunc[j]
    assert restarts == (0 if name == "NaN" else 1)


@pytest.mark.parametrize("name", list(FAULTS))
def test_training_survives_fault(name, tmp_path, capfd):
    kind, _ = FAULTS[name]
    logdir = tmp_path / "run"
    overrides = [*TINY, *faulty(name, tmp_path / "claimed"), "run.train_ratio=32"]
    _, summary = train_tiny(logdir, 40, overrides)
    assert summary["step"] == 40 and summary["updates"] > 0
    lines = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    (fault,) = [line for line in lines if "env/fault" in line]
    assert fault["env/fault"].startswith(f"{kind}: ")
    assert fault["env/worker_restarts"] == (0 if name == "NaN" else 1)
    assert f"reverie: warning: step {fault['step']}: {kind}: " in capfd.readouterr().err
    # the cut episode is the run's only one: two good steps, then the truncation
    episodes = [line for line in lines if "episode/length" in line]
    assert [(e["episode/length"], e["episode/return"]) for e in episodes] == [(3, 2.0)]


def test_single_async_env_with_dict_observations():
    env = ["env.id=gym:fake_envs:fake_envs/DictObs-v0", "env.kwargs.length=2"]
    cfg = make_config(["env.parallel=async", "env.num_envs=1", *env])
    venv = make_vector_env(cfg.env, seed=0)
    try:
        obs, _ = venv.reset(seed=0)
        assert obs["camera"].shape == (1, 64, 64, 3) and obs["camera"].dtype == np.uint8
        assert obs["joints"].shape == (1, 4) and obs["joints"].dtype == np.float32
        ends = [venv.step(np.zeros((1, 2), np.float32))[2][0] for _ in range(3)]
        assert ends == [False, True, False]  # ends on step 2; step 3 is the reset step
    finally:
        venv.close()


def test_env_failing_every_episode_stops_with_a_message(tmp_path):
    cfg = make_config([*faulty("Raise", tmp_path / "unused")[:4], "env.kwargs.fault_step=1"])
    venv = make_vector_env(cfg.env, seed=0)
    try:
        venv.reset(seed=0)
        with pytest.raises(EnvWorkerError, match="failed 4 times in a row"):
            for _ in range(20):
                venv.step(np.zeros(2, np.int64))
    finally:
        venv.close()


def test_bad_env_id_in_workers_is_the_usual_error():
    cfg = make_config(["env.parallel=async", "env.num_envs=2", "env.id=gym:CartPol-v1"])
    with pytest.raises(EnvIdError, match="CartPole-v1"):
        make_vector_env(cfg.env, seed=0)
