"""The return of uniform random actions on a DMC task at action repeat 1 and 2: what the
first episodes of a run score before learning, at reverie's repeat (1) and at the one the
authors' published DMC curves were made with (2). Their first curve point (10K frames) is
such early behaviour, so this tells how much of a gap there comes from the repeat alone.

    python benchmarks/dmc_random_policy.py --task cheetah_run --episodes 5
"""

from __future__ import annotations

import argparse

import numpy as np
from dm_control import suite


def random_returns(domain: str, task: str, repeat: int, episodes: int, seed: int) -> list[float]:
    """Returns over whole episodes (1000 frames) of uniform random actions, each held for
    `repeat` frames."""
    env = suite.load(domain, task, task_kwargs={"random": seed})
    spec, rng = env.action_spec(), np.random.default_rng(seed)
    returns = []
    for _ in range(episodes):
        step, total = env.reset(), 0.0
        while not step.last():
            action = rng.uniform(spec.minimum, spec.maximum)
            for _ in range(repeat):
                step = env.step(action)
                total += step.reward or 0.0
                if step.last():
                    break
        returns.append(total)
    return returns


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="cheetah_run", help="domain_task, e.g. cheetah_run")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    domain, task = args.task.split("_", 1)
    for repeat in (1, 2):
        returns = random_returns(domain, task, repeat, args.episodes, args.seed)
        shown = ", ".join(f"{r:.1f}" for r in returns)
        print(f"{args.task} repeat {repeat}: {shown}  mean {np.mean(returns):.1f}")


if __name__ == "__main__":
    main()
