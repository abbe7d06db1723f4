"""The path users run by default: `reverie train` with no settings but the step budget, so
the 1m model, `run.compile=auto` (compiled wherever a C++ compiler is found) and
`run.precision=auto` (bf16 matmuls where the CPU has AVX512-BF16 or AMX, else fp32); and
the same run with `run.compile=off`, which must learn the same numbers.

`make install` compiles this update once into Inductor's cache, so here the first update
takes seconds; from an empty cache (pytest without `make install`), a few minutes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reverie import checkpoint
from reverie.accel import cpu_has_bf16, cxx_compiler

pytestmark = pytest.mark.slow  # every test here takes a second or more

FIRST_UPDATE_AT = 16 * 64  # the default batch's replay steps
UPDATES = 3  # at the gym preset's train ratio 64: one update per 16 env steps
STEPS = FIRST_UPDATE_AT + 16 * UPDATES
# make install's warm-up run: these change nothing in the update, so its kernels are reused
QUIET = ["run.progress=false", "run.tensorboard=false", "run.eval_every=0", "run.log_every=0"]
BF16 = cpu_has_bf16()


def train(logdir: Path, *overrides: str) -> tuple[str, dict, dict[str, float]]:
    """stderr, the checkpoint, and the loss terms of the run's train line."""
    cmd = [sys.executable, "-m", "reverie.cli", "train", "--logdir", str(logdir)]
    cmd += ["--steps", str(STEPS), *QUIET, *overrides]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "torch.compile failed" not in out.stderr  # no fallback to eager on the way
    lines = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    losses = {k: v for line in lines for k, v in line.items() if k.startswith("loss/")}
    return out.stderr, checkpoint.load_latest(logdir), losses


def params(state: dict) -> torch.Tensor:
    weights = state["agent"]["agent"]  # the agent's state_dict
    return torch.cat([v.flatten().float() for v in weights.values() if v.is_floating_point()])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("default") / "run")


def test_default_settings_train_with_finite_losses_and_a_checkpoint(default_run):
    err, state, losses = default_run
    how = "update compiled" if cxx_compiler() else "update eager (torch.compile needs"
    dtype = "bf16 matmuls" if BF16 else "fp32"
    assert f"reverie: {how}" in err and dtype in err, err
    assert state["counters"]["step"] == STEPS
    assert int(state["agent"]["agent"]["updates"]) >= UPDATES - 1
    assert {"loss/total", "loss/dyn", "loss/actor", "loss/critic"} <= set(losses), losses
    assert all(v is not None and math.isfinite(v) for v in losses.values()), losses


@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")
def test_the_compiled_default_update_matches_eager(default_run, tmp_path):
    _, compiled, compiled_losses = default_run
    _, eager, eager_losses = train(tmp_path / "eager", "run.compile=off")
    # compiled functions are not submodules: checkpoints of both paths have the same keys
    assert compiled["agent"]["agent"].keys() == eager["agent"]["agent"].keys()
    assert compiled["counters"] == eager["counters"]
    # the same seed gives the same samples on both paths (acting too), so the same numbers
    # up to the kernels' rounding: in bf16 that is bf16's, about 1e-2 of a loss term
    rel, atol = (3e-2, 1e-3) if BF16 else (1e-3, 1e-5)
    assert compiled_losses.keys() == eager_losses.keys()
    for key, value in eager_losses.items():
        assert compiled_losses[key] == pytest.approx(value, rel=rel, abs=100 * atol), key
    assert torch.allclose(params(compiled), params(eager), atol=atol)
