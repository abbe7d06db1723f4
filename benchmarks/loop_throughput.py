"""Env steps/s and updates/s of the whole training loop on a real env, for several
configurations measured in turns (A, B, A, B ...) so that host drift hits all alike.

    python benchmarks/loop_throughput.py --env dmc:walker_walk --preset dmc_vision \\
        "env.parallel=sync" "env.parallel=async run.threads=1" "env.parallel=async run.threads=2"

Each configuration trains one agent (its own logdir); every turn continues it for
`--seconds` after a warm-up that fills replay and compiles the update.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from reverie.build import open_trainer
from reverie.config import make_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("configs", nargs="+", help='overrides per configuration, e.g. "a=1 b=2"')
    p.add_argument("--env", default="gym:CartPole-v1")
    p.add_argument("--preset", default="")
    p.add_argument("--size", default="1m")
    p.add_argument("--train-ratio", type=float, help="default: the preset's")
    p.add_argument("--seconds", type=float, default=30, help="per configuration and turn")
    p.add_argument("--turns", type=int, default=2)
    args = p.parse_args()
    base = [
        f"env.id={args.env}",
        "run.progress=false",
        "run.tensorboard=false",
        "run.eval_every=0",
        "run.checkpoint_every=1000000",
        "replay.save=false",
    ]
    if args.train_ratio:
        base.append(f"run.train_ratio={args.train_ratio}")
    if args.preset:
        base.insert(0, f"preset={args.preset}")
    with tempfile.TemporaryDirectory() as root:
        trainers = []
        for i, overrides in enumerate(args.configs):
            cfg = make_config([*base, *overrides.split()], size=args.size)
            trainer = open_trainer(cfg, f"{root}/{i}")
            trainer.train(cfg.run.batch_length + cfg.replay.context + 200)  # fill, compile
            trainers.append(trainer)
        rates: list[list[tuple[float, float]]] = [[] for _ in trainers]
        for _ in range(args.turns):
            for trainer, out in zip(trainers, rates):
                t0, s0, u0 = time.perf_counter(), trainer.step, trainer.updates
                while time.perf_counter() - t0 < args.seconds:
                    trainer.train(trainer.step + 64)
                dt = time.perf_counter() - t0
                out.append(((trainer.step - s0) / dt, (trainer.updates - u0) / dt))
        for trainer in trainers:
            trainer.close()
    for overrides, out in zip(args.configs, rates):
        steps = statistics.median(r[0] for r in out)
        updates = statistics.median(r[1] for r in out)
        print(f"{overrides or '(defaults)':45} {steps:8.1f} env steps/s {updates:6.2f} updates/s")


if __name__ == "__main__":
    main()
