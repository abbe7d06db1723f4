"""An env that lies (wrong shapes or dtypes, NaN or absurd rewards, a changing action space,
the old gym API) is named in one line: the run stops cleanly with a checkpoint in the
learner's process, and goes on with the fault logged when the env runs in a worker."""

from __future__ import annotations

import json

import pytest

from reverie import checkpoint
from reverie.cli import main

from .conftest import TINY

LYING = "gym:fake_envs:fake_envs/Lying-v0"
FAST = [*TINY, "run.train_fill=8", "run.train_ratio=16", "replay.save=false"]
# kind -> what the one line must name
CASES = {
    "shape": "observation 'vector' has shape (5,)",
    "dtype": "observation 'obs' does not fit its space",
    "reward_nan": "NaN or inf in reward",
    "reward_huge": "reward 1e+30 is beyond",
    "action_space": "the action space changed from Discrete(2) to Discrete(3)",
    "old_reset": "reset returned the observation alone (the old gym API)",
    "old_step": "step returned 4 values",
}


def train(logdir, kind: str, *extra: str) -> int:
    args = ["train", "--logdir", str(logdir), "--steps", "40", *FAST]
    return main([*args, f"env.id={LYING}", f"env.kwargs.kind={kind}", *extra])


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_lying_env_stops_the_run_with_one_line_and_a_checkpoint(tmp_path, capsys, kind):
    assert train(tmp_path, kind) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("reverie: error: env "), err
    assert CASES[kind] in err[-1] and "Traceback" not in "\n".join(err)
    assert [line for line in err if line.startswith("reverie: error")] == [err[-1]]
    if kind != "old_reset":  # it fails at the first reset: nothing to keep yet
        state = checkpoint.load_latest(tmp_path)
        assert state is not None and 2 <= state["counters"]["step"] < 40


@pytest.mark.parametrize("kind", ["reward_huge", "shape"])
@pytest.mark.slow
def test_in_worker_processes_the_bad_step_is_dropped_and_logged(
    tmp_path, capsys, importable_fake_envs, kind
):
    assert train(tmp_path, kind, "env.parallel=async") == 0
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    faults = [r["env/fault"] for r in lines if "env/fault" in r]
    assert faults and CASES[kind] in faults[0]
    assert checkpoint.load_latest(tmp_path)["counters"]["step"] == 40
