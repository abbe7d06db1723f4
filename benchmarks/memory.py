"""Replay memory stays bounded: RSS while adding pixel steps past capacity and sampling.

Adds 64x64x3 uint8 steps (plus the scalars and latents a training step stores) to a
Replay of `--capacity` steps, samples a 16 x 65 batch every `--sample-every` steps as
training does, and prints the process RSS (VmRSS) every `--every` steps. Once the replay
is full, RSS should stay flat: evicted chunks are freed and reused.

    python benchmarks/memory.py                     # capacity 20k, 100k steps
    python benchmarks/memory.py --capacity 5000 --steps 30000 --chunk 256
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reverie.perf import tune_malloc
from reverie.replay import Replay


def rss_mb() -> float:
    """Resident set size of this process in MiB, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def pixel_step(rng: np.random.Generator, i: int, shape=(64, 64, 3)) -> dict[str, np.ndarray]:
    return {
        "image": rng.integers(0, 255, shape, dtype=np.uint8),
        "reward": np.float32(1.0),
        "is_first": np.bool_(i % 500 == 0),
        "is_last": np.bool_(i % 500 == 499),
        "is_terminal": np.bool_(False),
        "action": np.zeros(17, np.float32),
        "deter": np.zeros(512, np.float16),
        "stoch": np.zeros(32, np.uint8),
    }


def measure(
    capacity: int,
    chunk: int,
    steps: int,
    every: int,
    sample_every: int = 16,
    batch: tuple[int, int] = (16, 65),
    shape: tuple[int, ...] = (64, 64, 3),
    on_row=None,
) -> list[tuple[int, int, float]]:
    """(steps added, replay size, RSS MiB) every `every` steps."""
    rng = np.random.default_rng(0)
    frames = [pixel_step(rng, i, shape) for i in range(64)]  # reused: no generation cost
    replay = Replay(capacity, chunk, seed=0)
    rows = []
    for i in range(1, steps + 1):
        replay.add(0, frames[i % len(frames)])
        if i % sample_every == 0 and replay.can_sample(batch[1]):
            replay.sample(*batch)
        if i % every == 0:
            rows.append((i, replay.size, rss_mb()))
            if on_row is not None:
                on_row(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=5_000)
    parser.add_argument("--sample-every", type=int, default=16)
    args = parser.parse_args()
    tune_malloc()  # as the trainer does: freed memory stays in the heap for reuse
    step_bytes = sum(v.nbytes for v in pixel_step(np.random.default_rng(0), 0).values())
    print(
        f"capacity {args.capacity} steps x {step_bytes} B = "
        f"{args.capacity * step_bytes / 2**20:.0f} MiB; start RSS {rss_mb():.0f} MiB"
    )
    print(f"{'steps':>8} {'replay':>8} {'RSS MiB':>8}")
    start = time.time()
    rows = measure(
        args.capacity,
        args.chunk,
        args.steps,
        args.every,
        args.sample_every,
        on_row=lambda r: print(f"{r[0]:>8} {r[1]:>8} {r[2]:>8.0f}", flush=True),
    )
    full = [rss for step, _, rss in rows if step >= 2 * args.capacity]
    if full:
        print(
            f"after 2x capacity: RSS {min(full):.0f}..{max(full):.0f} MiB "
            f"({(max(full) - min(full)) / min(full):.1%} spread); {time.time() - start:.0f}s"
        )


if __name__ == "__main__":
    main()
