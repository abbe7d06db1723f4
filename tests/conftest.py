from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from reverie.config import make_config
from reverie.specs import random_batch  # noqa: F401 - the tests' batches come from here

torch.set_num_threads(1)

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # fake_envs, for env ids like gym:fake_envs:fake_envs/Image-v0

TINY = [
    "model.deter=32",
    "model.hidden=16",
    "model.classes=4",
    "model.stoch=4",
    "model.units=16",
    "model.depth=2",
    "model.blocks=4",
    "run.batch_size=4",
    "run.batch_length=8",
    "behavior.horizon=4",
    "run.progress=false",
    "run.tensorboard=false",
    "run.eval_every=0",
    "run.device=cpu",
    "run.threads=1",
    "run.compile=off",
    "run.precision=fp32",
    "env.num_envs=1",
]


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
    from reverie.config import resolve_config
    from reverie.trainer import Trainer

    trainer = Trainer(resolve_config(logdir, list(overrides), **flags), logdir)
    try:
        summary = trainer.train(steps)
    finally:
        trainer.close()
    return trainer, summary


def cli_train_command(logdir, steps: int, *overrides: str) -> list[str]:
    """`reverie train` as a subprocess command line with the tiny config."""
    import sys

    return [
        sys.executable,
        "-m",
        "reverie.cli",
        "train",
        "--logdir",
        str(logdir),
        "--steps",
        str(steps),
        *TINY,
        *overrides,
    ]
