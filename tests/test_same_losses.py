"""Refactors keep the maths: a few seeded updates give the losses recorded before them.

`tests/fixtures/same_losses.json` holds the loss terms of every train line of three short
runs (discrete vectors, continuous vectors, images), recorded with
`REVERIE_RECORD_LOSSES=1 pytest tests/test_same_losses.py` before the house refactor
(issue 14). A change that moves code without changing the algorithm keeps them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import TINY, train_tiny

FIXTURE = Path(__file__).parent / "fixtures" / "same_losses.json"
RECORD = os.environ.get("REVERIE_RECORD_LOSSES") == "1"
CASES = {
    "cartpole": "gym:CartPole-v1",
    "pendulum": "gym:Pendulum-v1",
    "image": "gym:fake_envs:fake_envs/Image-v0",
}
STEPS = 48


def loss_lines(logdir: Path, env_id: str) -> list[dict[str, float]]:
    """Each train line's loss terms of a short run (a train line after every env step)."""
    overrides = [
        *TINY,
        "run.train_fill=16",
        "run.train_ratio=64",
        "run.log_every=0",
        "run.checkpoint_every=1e9",
        "replay.save=false",
        f"env.id={env_id}",
    ]
    train_tiny(logdir, STEPS, overrides, seed=5)
    lines = [json.loads(s) for s in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [
        {"step": r["step"], **{k: v for k, v in r.items() if k.startswith("loss/")}}
        for r in lines
        if "loss/total" in r
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_losses_match_the_recording(tmp_path, case):
    got = loss_lines(tmp_path, CASES[case])
    assert len(got) >= 5, "the run made too few updates to compare"
    if RECORD:
        recorded = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}
        recorded[case] = got
        FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        pytest.skip("recorded")
    want = json.loads(FIXTURE.read_text())[case]
    assert [r["step"] for r in got] == [r["step"] for r in want]
    actor_off = []
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key in w:
            close = g[key] == pytest.approx(w[key], rel=1e-3, abs=1e-5)
            if key == "loss/actor" and not close:
                actor_off.append((g["step"], g[key], w[key]))
                continue
            assert close, (g["step"], key, g[key], w[key])
    # the actor loss (~1e-4) is a REINFORCE estimate over sampled imagined actions: on
    # another CPU, rounding at the 1e-7 level can draw one action differently and move
    # one update's value by ~1e-3 (the CartPole recording, from an AMD EPYC, has such a
    # spike at step 47 that an Intel Xeon does not draw); one such line is tolerated
    assert len(actor_off) <= 1, actor_off
