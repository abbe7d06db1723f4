"""Env workers step while the learner updates (step_async / step_wait), changing no result."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from reverie.config import make_config
from reverie.envs import make_vector_env

from .conftest import TINY, train_tiny

pytestmark = [pytest.mark.usefixtures("importable_fake_envs"), pytest.mark.slow]

SLOW = ["env.id=gym:fake_envs:fake_envs/SlowCartPole-v0", "env.parallel=async"]


def async_env(*overrides: str):
    return make_vector_env(make_config(["env.parallel=async", *overrides]).env, seed=0)


def test_workers_step_while_the_caller_works():
    delay = 0.3
    venv = async_env(*SLOW, "env.num_envs=2", f"env.kwargs.delay={delay}")
    try:
        venv.reset(seed=0)
        start = time.monotonic()
        venv.step_async(np.zeros(2, np.int64))
        sent = time.monotonic() - start
        time.sleep(delay)  # the learner's updates
        waited = time.monotonic()
        obs, *_ = venv.step_wait()
        wait = time.monotonic() - waited
    finally:
        venv.close()
    assert sent < delay / 3, "step_async waited for the step"
    # the workers slept beside the caller: little or nothing left to wait for
    assert wait < delay / 2, f"step_wait took {wait:.2f} s after the caller's {delay} s"
    assert obs["vector"].shape == (2, 4)


def test_step_async_gives_the_same_steps_as_step():
    a, b = async_env("env.num_envs=2"), async_env("env.num_envs=2")
    try:
        first_a, _ = a.reset(seed=3)
        first_b, _ = b.reset(seed=3)
        np.testing.assert_array_equal(first_a["vector"], first_b["vector"])
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(60):  # random actions end episodes: the reset steps are covered
            actions = rng.integers(0, 2, 2)
            out_a = a.step(actions)
            b.step_async(actions)
            out_b = b.step_wait()
            np.testing.assert_array_equal(out_a[0]["vector"], out_b[0]["vector"])
            for x, y in zip(out_a[1:4], out_b[1:4]):
                np.testing.assert_array_equal(x, y)
            ends += int(out_a[2].sum() + out_a[3].sum())
        assert ends > 0
    finally:
        a.close()
        b.close()


def test_reset_drops_a_step_never_waited_for():
    venv = async_env("env.num_envs=2")
    fresh = async_env("env.num_envs=2")
    try:
        venv.reset(seed=0)
        venv.step_async(np.ones(2, np.int64))  # then the caller stops (Ctrl-C, an error)
        obs, _ = venv.reset(seed=5)
        expected, _ = fresh.reset(seed=5)
        np.testing.assert_array_equal(obs["vector"], expected["vector"])
        step = venv.step(np.ones(2, np.int64))
        np.testing.assert_array_equal(
            step[0]["vector"], fresh.step(np.ones(2, np.int64))[0]["vector"]
        )
    finally:
        venv.close()
        fresh.close()


def losses(logdir) -> list[dict]:
    lines = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in x.items() if k.startswith("loss/")} for x in lines if "loss/total" in x
    ]


def test_training_with_workers_matches_training_in_process(tmp_path):
    """The updates happen while the workers step, yet every loss is the in-process one's."""
    common = [*TINY, "env.num_envs=2", "run.train_ratio=64", "run.log_every=0"]
    results = {}
    for mode in ("sync", "async"):
        logdir = tmp_path / mode
        _, summary = train_tiny(logdir, 160, [*common, f"env.parallel={mode}"])
        results[mode] = (summary["updates"], losses(logdir))
    (updates, sync), (updates_async, overlapped) = results["sync"], results["async"]
    assert updates == updates_async > 5
    assert len(sync) > 5 and sync == overlapped
