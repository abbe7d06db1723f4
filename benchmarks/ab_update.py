"""Two or more update configurations timed in one process, their updates interleaved.

The benchmark machines are shared and their speed drifts over minutes; interleaving A, B,
A, B ... exposes both to the same drift, so their ratio is trustworthy where two separate
runs are not.

    python benchmarks/ab_update.py "run.precision=fp32" "run.precision=bf16"
    python benchmarks/ab_update.py "run.compile=off" "" --size 12m --updates 6
    python benchmarks/ab_update.py "" "inductor.cpp.dynamic_threads=false" --threads 1

Each argument is one configuration: space-separated key=value overrides ("" = defaults);
`inductor.<option>=<value>` sets a torch.compile option of the agent's compiled methods.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from reverie.accel import CompiledMethod, cpu_kind
from reverie.agent import Agent
from reverie.config import make_config
from reverie.perf import tune_malloc
from reverie.specs import ActSpec, ObsSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests/batches.py
from tests.batches import random_batch  # noqa: E402 - test data, not in the package


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("configs", nargs="+", help='overrides per configuration, e.g. "a=1 b=2"')
    p.add_argument("--size", default="1m")
    p.add_argument("--image", action="store_true", help="64x64 pixels instead of vectors")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--updates", type=int, default=10, help="timed updates per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed first updates (compilation)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_kind()}; torch {torch.__version__}; {args.threads} threads", flush=True)
    tune_malloc()  # as the trainer does: large activations reuse heap pages
    spec = ObsSpec({}, {"image": (64, 64, 3)}) if args.image else ObsSpec({"vector": 4}, {})
    act = ActSpec(True, 2)
    agents, batches = [], []
    for overrides in args.configs:
        inductor = [x for x in overrides.split() if x.startswith("inductor.")]
        rest = [x for x in overrides.split() if not x.startswith("inductor.")]
        cfg = make_config(rest, size=args.size)
        torch.manual_seed(cfg.seed)
        agents.append(with_inductor_options(Agent(spec, act, cfg, "cpu"), inductor))
        batches.append(random_batch(cfg, spec, act, seed=0, ends=0.01))
    times: list[list[float]] = [[] for _ in agents]
    for round_ in range(args.warmup + args.updates):
        for i, (agent, batch) in enumerate(zip(agents, batches)):
            start = time.perf_counter()
            agent.update(batch)
            if round_ >= args.warmup:
                times[i].append(time.perf_counter() - start)
    base = min(times[0])
    for overrides, ts in zip(args.configs, times):
        print(
            f"{overrides or '(defaults)':40} min {min(ts) * 1000:7.1f} ms  median "
            f"{statistics.median(ts) * 1000:7.1f} ms  speed vs first {base / min(ts):5.2f}x"
        )


def with_inductor_options(agent: Agent, settings: list[str]) -> Agent:
    """`agent` with each `inductor.<option>=<value>` set on its compiled methods (before
    their first call, which compiles them)."""
    options = {}
    for setting in settings:
        key, value = setting.removeprefix("inductor.").split("=", 1)
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    for module in agent.modules() if options else ():
        for name in getattr(module, "compiled_methods", ()):
            method = getattr(module, name)
            if isinstance(method, CompiledMethod) and method.options is not None:
                method.set_options(options)
    return agent


if __name__ == "__main__":
    main()
