"""Replay-shaped batches of random data, for the tests and for the update benchmarks
(benchmarks/ import this file by path): test data, so it lives beside the tests, not in
the package."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reverie.specs import ActSpec, ObsSpec, replay_length


def random_batch(
    cfg: Any, obs: ObsSpec, act: ActSpec, seed: int = 0, ends: float = 0.0
) -> dict[str, torch.Tensor]:
    """A replay-shaped batch (B, context + T, ...) of random data.

    Each sequence starts an episode; with `ends` > 0 every later step also starts (and,
    independently, ends by termination) an episode with that probability.
    """
    rng = np.random.default_rng(seed)
    b, t = cfg.run.batch_size, replay_length(cfg.run, cfg.replay)
    data: dict[str, np.ndarray] = {
        k: rng.normal(size=(b, t, n)).astype(np.float32) for k, n in obs.vectors.items()
    }
    data.update(
        {k: rng.integers(0, 255, (b, t, *s), dtype=np.uint8) for k, s in obs.images.items()}
    )
    if act.discrete:
        data["action"] = np.eye(act.dim, dtype=np.float32)[rng.integers(0, act.dim, (b, t))]
    else:
        data["action"] = rng.uniform(-1, 1, (b, t, act.dim)).astype(np.float32)
    data["reward"] = rng.normal(size=(b, t)).astype(np.float32)
    data["is_first"] = np.zeros((b, t), bool)
    data["is_first"][:, 0] = True
    data["is_last"] = np.zeros((b, t), bool)
    if ends:
        data["is_first"] |= rng.random((b, t)) < ends
        data["is_last"] = rng.random((b, t)) < ends
    data["is_terminal"] = data["is_last"].copy()
    data["deter"] = rng.normal(size=(b, t, cfg.model.deter)).astype(np.float16)
    data["stoch"] = rng.integers(0, cfg.model.classes, (b, t, cfg.model.stoch), dtype=np.uint8)
    return {k: torch.as_tensor(v) for k, v in data.items()}
