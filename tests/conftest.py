from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reverie.config import make_config

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


def random_batch(cfg, spec, act, seed: int = 0) -> dict[str, torch.Tensor]:
    """A replay-shaped batch (B, context + T, ...) of random data."""
    rng = np.random.default_rng(seed)
    b, t = cfg.run.batch_size, cfg.run.batch_length + cfg.replay.context
    data = {k: rng.normal(size=(b, t, n)).astype(np.float32) for k, n in spec.vectors.items()}
    data.update(
        {k: rng.integers(0, 255, (b, t, *s), dtype=np.uint8) for k, s in spec.images.items()}
    )
    if act.discrete:
        data["action"] = np.eye(act.dim, dtype=np.float32)[rng.integers(0, act.dim, (b, t))]
    else:
        data["action"] = rng.uniform(-1, 1, (b, t, act.dim)).astype(np.float32)
    data["reward"] = rng.normal(size=(b, t)).astype(np.float32)
    data["is_first"] = np.zeros((b, t), bool)
    data["is_first"][:, 0] = True
    data["is_last"] = np.zeros((b, t), bool)
    data["is_terminal"] = np.zeros((b, t), bool)
    data["deter"] = rng.normal(size=(b, t, cfg.model.deter)).astype(np.float16)
    data["stoch"] = rng.integers(0, cfg.model.classes, (b, t, cfg.model.stoch), dtype=np.uint8)
    return {k: torch.as_tensor(v) for k, v in data.items()}


def train_tiny(logdir, steps: int, overrides: list[str], **flags):
    """Train a Trainer from `overrides` (resuming what `logdir` holds) to `steps`; closed."""
    from reverie.trainer import Trainer, resolve_config

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
