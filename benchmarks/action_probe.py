"""Train a gym task through the Python API and, every `--every` env steps, roll the current
policy out on fresh episodes of the task, writing what it does: the return, the mean
action, the mean |action| and the share of actions at the bounds (within 5% of the range's
ends), greedy and sampled. For a policy that learns and then falls back (Pendulum seeds 1
and 2 in docs/results.md): does it saturate, i.e. spin the pendulum at full torque?

    taskset -c 1 python benchmarks/action_probe.py --env gym:Pendulum-v1 --seed 1 \
        --steps 80000 --every 5000 --logdir ~/reverie-evidence/probe/pendulum-seed1

The probe's rollouts run under their own random state (torch's is forked and restored), so
the training run is the one `reverie train` would make with the same flags. One JSON line
per probe goes to `<logdir>/action_probe.jsonl`, and to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from reverie import Dreamer
from reverie.callbacks import Callback, TrainingRun
from reverie.policy import Policy


def rollout(policy: Policy, env_id: str, seed: int, deterministic: bool) -> dict:
    """One episode of `env_id` (a plain gymnasium id) under `policy`: its return and its
    actions' statistics, each as a share of the action range."""
    env = gym.make(env_id)
    assert isinstance(env.action_space, gym.spaces.Box), "the probe is for continuous actions"
    low, high = env.action_space.low, env.action_space.high
    obs, _ = env.reset(seed=seed)
    state, actions, ret, done = None, [], 0.0, False
    while not done:
        action, state = policy.act(obs, state, deterministic=deterministic)
        obs, reward, term, trunc, _ = env.step(action)
        actions.append((np.asarray(action, np.float64) - low) / (high - low) * 2 - 1)
        ret, done = ret + float(reward), term or trunc
    env.close()
    a = np.stack(actions)  # (T, A), scaled to [-1, 1]
    return {
        "return": ret,
        "mean_action": float(a.mean()),
        "mean_abs_action": float(np.abs(a).mean()),
        "at_bounds": float((np.abs(a) > 0.95).mean()),
    }


class ActionProbe(Callback):
    def __init__(self, env_id: str, every: int, episodes: int, out: Path):
        self.env_id, self.every, self.episodes, self.out = env_id, every, episodes, out
        self.next = every

    def on_step(self, trainer: TrainingRun) -> bool | None:
        if trainer.step < self.next:
            return None
        self.next = (trainer.step // self.every + 1) * self.every
        policy = Policy(trainer.agent, shared=True)
        row: dict = {"step": trainer.step, "updates": trainer.updates}
        with torch.random.fork_rng():
            for name, greedy in (("greedy", True), ("sampled", False)):
                runs = [
                    rollout(policy, self.env_id, 10**6 + i, greedy) for i in range(self.episodes)
                ]
                row[name] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        line = json.dumps(row)
        print(line, flush=True)
        with open(self.out, "a") as f:
            f.write(line + "\n")
        return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="gym:Pendulum-v1", help="a gym: task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=80_000)
    p.add_argument("--every", type=int, default=5_000)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--logdir", type=Path, required=True)
    p.add_argument("overrides", nargs="*", help="config overrides, as for reverie train")
    args = p.parse_args()
    if not args.env.startswith("gym:"):
        p.error(f"--env {args.env}: the probe steps gymnasium tasks only (gym:<id>)")
    agent = Dreamer(env=args.env, logdir=args.logdir, seed=args.seed, overrides=args.overrides)
    probe = ActionProbe(args.env[4:], args.every, args.episodes, args.logdir / "action_probe.jsonl")
    print(json.dumps(agent.learn(args.steps, callbacks=[probe]), default=str))


if __name__ == "__main__":
    main()
