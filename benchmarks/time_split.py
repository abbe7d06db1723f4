"""Where a training run's wall time goes: `reverie train`'s loop for a fixed time, split into
start-up, compilation (the first update), updates, policy steps, env steps, replay
sampling, replay writes (steps and latent write-back), logging, evaluation/dreams/
checkpoints, and the rest; then the update alone on a replay batch in the same process,
for updates/s in the loop beside updates/s of the update by itself.

    python benchmarks/time_split.py --seconds 300                 # the default run (CartPole)
    python benchmarks/time_split.py --seconds 120 -- --train-ratio 512 run.precision=fp32

Arguments after `--` go to the run's config as in `reverie train` (`--env`, `--size`,
`--train-ratio`, key=value). Timers wrap the trainer's methods from outside; nothing in
reverie changes. Wall times include whatever else the machine runs: compare splits taken
in the same conditions.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

T0 = time.perf_counter()  # before reverie and torch's heavier imports

from reverie.build import open_trainer  # noqa: E402
from reverie.callbacks import Callback  # noqa: E402
from reverie.config import make_config  # noqa: E402
from reverie.trainer import Trainer  # noqa: E402


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: Any, method: str, label: str | Callable[[], str]) -> None:
        """Time every call of `owner.method` under `label` (a callable picks it per call)."""
        inner = getattr(owner, method)

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            name = label() if callable(label) else label
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
                self.calls[name] += 1

        setattr(owner, method, timed)


class Deadline(Callback):
    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def on_step(self, trainer: Trainer) -> bool | None:
        return None if time.perf_counter() < self.end else False  # False stops the run


def instrument(trainer: Trainer, timers: Timers) -> None:
    first = {"done": False}

    def update_label() -> str:
        if first["done"]:
            return "updates"
        first["done"] = True
        return "compile (first update)"

    timers.wrap(trainer.agent, "update", update_label)
    timers.wrap(trainer.agent, "policy", "policy steps")
    timers.wrap(trainer, "send_actions", "env steps")
    timers.wrap(trainer, "receive", "env steps")
    timers.wrap(trainer.replay, "sample", "replay sampling")
    timers.wrap(trainer, "store", "replay writes")
    timers.wrap(trainer.replay, "write_latents", "replay writes")
    timers.wrap(trainer, "_log_train", "logging")
    timers.wrap(trainer, "evaluate", "eval, dreams, checkpoints")
    timers.wrap(trainer, "_dream", "eval, dreams, checkpoints")
    timers.wrap(trainer, "save", "eval, dreams, checkpoints")


def standalone_updates(trainer: Trainer, count: int) -> float:
    """Updates/s of the update alone, on batches from this run's replay."""
    data, _ = trainer.replay.sample(trainer.batch_size, trainer.seq_len)
    batch = {k: torch.as_tensor(v, device=trainer.device) for k, v in data.items()}
    trainer.agent.update(batch)
    t = time.perf_counter()
    for _ in range(count):
        trainer.agent.update(batch)
    return count / (time.perf_counter() - t)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300, help="the loop's wall time")
    p.add_argument("--standalone", type=int, default=20, help="updates timed alone after")
    p.add_argument("--json", help="write the split here too")
    args = p.parse_args(argv)
    flags = argparse.ArgumentParser()
    flags.add_argument("--env")
    flags.add_argument("--size")
    flags.add_argument("--train-ratio", type=float)
    known, overrides = flags.parse_known_args(extra)
    if known.train_ratio is not None:
        overrides.append(f"run.train_ratio={known.train_ratio}")
    overrides += ["run.progress=false", "run.tensorboard=false"]

    timers = Timers()
    with tempfile.TemporaryDirectory() as logdir:
        cfg = make_config(overrides, **{"env.id": known.env, "size": known.size})
        trainer = open_trainer(cfg, logdir)
        timers.seconds["start-up (imports, build)"] = time.perf_counter() - T0
        instrument(trainer, timers)
        t = time.perf_counter()
        trainer.train(10**9, callbacks=[Deadline(args.seconds)])
        loop_s = time.perf_counter() - t
        steps, updates = trainer.step, trainer.updates
        seconds, calls = dict(timers.seconds), dict(timers.calls)  # the loop's alone
        alone = standalone_updates(trainer, args.standalone) if updates else float("nan")
        trainer.close()

    timed = sum(v for k, v in seconds.items() if not k.startswith("start-up"))
    seconds["other"] = max(0.0, loop_s - timed)
    total = seconds["start-up (imports, build)"] + loop_s
    print(f"{cfg.env.id} size {cfg.size} ratio {cfg.run.train_ratio:g}, {total:.0f} s in all")
    print(f"{'part':<28} {'seconds':>8} {'share':>6} {'calls':>7}")
    for name, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"{name:<28} {sec:8.1f} {sec / total:6.1%} {calls.get(name, 0):7d}")
    update_s = seconds.get("updates", 0.0)
    n = max(0, updates - 1)
    result = {
        "env": cfg.env.id,
        "size": cfg.size,
        "train_ratio": cfg.run.train_ratio,
        "seconds": seconds,
        "calls": calls,
        "env_steps": steps,
        "updates": updates,
        "loop_env_steps_per_s": steps / loop_s,
        "loop_updates_per_s": updates / loop_s,
        "updates_per_s_in_loop": n / update_s if update_s else float("nan"),
        "updates_per_s_alone": alone,
    }
    print(
        f"env steps {steps} ({result['loop_env_steps_per_s']:.1f}/s), updates {updates} "
        f"({result['loop_updates_per_s']:.2f}/s over the loop); the update itself "
        f"{result['updates_per_s_in_loop']:.2f}/s in the loop, {alone:.2f}/s alone"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
