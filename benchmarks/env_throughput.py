"""Env steps per second of each installed suite, built as the trainer builds them
(config -> make_vector_env), with 1 env and with 4 envs in worker processes
(env.parallel=async). Random actions; no agent.

    python benchmarks/env_throughput.py [--steps 400] [--suites dmc-proprio,atari ...]
"""

from __future__ import annotations

import argparse
import time

from reverie.config import make_config
from reverie.envs import make_vector_env, split_id, suite_installed

SUITES = {
    "gym": ("gym:CartPole-v1", []),
    "dmc-proprio": ("dmc:walker_walk", []),
    "dmc-vision": ("dmc:walker_walk", ["preset=dmc_vision"]),
    "atari": ("atari:pong", []),
    "atari100k": ("atari100k:pong", []),
    "crafter": ("crafter", []),
    "bsuite": ("bsuite:catch/0", []),
    "memmaze": ("memmaze:9x9", []),
    "procgen": ("procgen:coinrun", []),
}


def throughput(env_id: str, extra: list[str], envs: int, steps: int) -> float:
    parallel = "async" if envs > 1 else "sync"
    cfg = make_config(
        [f"env.id={env_id}", f"env.num_envs={envs}", f"env.parallel={parallel}", *extra]
    )
    venv = make_vector_env(cfg.env, seed=0)
    try:
        venv.reset(seed=0)
        for _ in range(5):  # warm-up (first renders, worker start)
            venv.step(venv.action_space.sample())
        start = time.perf_counter()
        iters = max(1, steps // envs)
        for _ in range(iters):
            venv.step(venv.action_space.sample())
        return iters * envs / (time.perf_counter() - start)
    finally:
        venv.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="env steps per measurement")
    parser.add_argument("--suites", default=",".join(SUITES))
    args = parser.parse_args()
    print(f"{'suite':<12} {'id':<20} {'1 env':>10} {'4 async':>10}  (env steps/s)")
    for name in args.suites.split(","):
        env_id, extra = SUITES[name]
        if not suite_installed(split_id(env_id)[0]):
            print(f"{name:<12} {env_id:<20} {'not installed':>21}")
            continue
        one = throughput(env_id, extra, 1, args.steps)
        four = throughput(env_id, extra, 4, args.steps)
        print(f"{name:<12} {env_id:<20} {one:>10.0f} {four:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
