from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from reverie.accel import use_persistent_cache
from reverie.config import make_config

from .batches import random_batch  # noqa: F401 - the tests import it from here
from .tiny import TINY_MODEL

torch.set_num_threads(1)

# torch.optim imports torch._dynamo on the first optimiser, seconds of imports that would
# land in whichever test builds the first agent: import it here, at collection, so that
# `--durations` times the tests (the slow marker and `make test-fast` go by them). Inductor's
# cache folder first, as the learner does before its optimiser (tests/test_accel.py)
use_persistent_cache()
import torch._dynamo  # noqa: E402, F401

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # fake_envs, for env ids like gym:fake_envs:fake_envs/Image-v0

TINY = [
    *TINY_MODEL,  # tests/tiny.py, shared with the benchmarks
    "run.progress=false",
    "run.tensorboard=false",
    "run.eval_every=0",
    "run.device=cpu",
    "run.threads=1",
    "run.compile=off",
    "run.precision=fp32",
    "env.num_envs=1",
]


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(*overrides: str, **flags):
    return make_config([*TINY, *overrides], **flags)


@pytest.fixture
def importable_fake_envs(monkeypatch):
    # spawned env workers import the fake envs' module by name: make it importable there
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


@pytest.fixture
def tiny():
    return tiny_config


def train_tiny(logdir, steps: int, overrides: list[str], **flags):
    """Train a Trainer from `overrides` (resuming what `logdir` holds) to `steps`; closed."""
    from reverie.build import open_trainer
    from reverie.run_dir import resolve_config

    trainer = open_trainer(resolve_config(logdir, list(overrides), **flags), logdir)
    try:
        summary = trainer.train(steps)
    finally:
        trainer.close()
    return trainer, summary


def cli_train_command(logdir, steps: int, *overrides: str, pause_points=False) -> list[str]:
    """`reverie train` as a subprocess command line with the tiny config; `pause_points`:
    launched through tests/pause_points.py, which adds the kill test's pause points."""
    launcher = [str(TESTS / "pause_points.py")] if pause_points else ["-m", "reverie.cli"]
    return [
        sys.executable,
        *launcher,
        "train",
        "--logdir",
        str(logdir),
        "--steps",
        str(steps),
        *TINY,
        *overrides,
    ]
