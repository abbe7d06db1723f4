"""Profile one agent update on random data: top ops by self CPU time.

python benchmarks/profile_update.py --size 1m [--image] [--threads 1] [run.precision=fp32]

Ends with the self CPU time in three groups: matmuls and convs (what bf16 speeds up),
Inductor's compiled kernels and the other ops.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from reverie.agent import Agent
from reverie.config import make_config
from reverie.perf import tune_malloc
from reverie.specs import ActSpec, ObsSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests/batches.py
from tests.batches import random_batch  # noqa: E402 - test data, not in the package


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="1m")
    p.add_argument("--image", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()  # as the trainer does: large activations reuse heap pages
    cfg = make_config(args.overrides, size=args.size)
    spec = ObsSpec({}, {"image": (64, 64, 3)}) if args.image else ObsSpec({"vector": 4}, {})
    act = ActSpec(True, 2)
    agent = Agent(spec, act, cfg, "cpu")
    batch = random_batch(cfg, spec, act, seed=0, ends=0.01)
    agent.update(batch)
    t0 = time.perf_counter()
    for _ in range(args.updates):
        agent.update(batch)
    dt = (time.perf_counter() - t0) / args.updates
    print(f"{dt * 1000:.1f} ms/update ({1 / dt:.2f} updates/s)")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        agent.update(batch)
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    print_groups(averages)


MATMUL = ("mm", "linear", "conv", "matmul", "onednn", "mkldnn")


def group_of(name: str) -> str:
    """Matmuls and convs (what bf16 speeds up), Inductor's generated kernels (fused
    elementwise ops, reductions, norms: fp32 math in both precisions), or everything
    else (other ATen ops, autograd and Python overhead, copies)."""
    if name.startswith(("## Call CompiledFxGraph", "cpp_fused", "graph_", "kernel_cpp")):
        return "compiled kernels"  # a graph's self time: its fused kernels, not its matmuls
    if any(m in name.lower() for m in MATMUL):
        return "matmuls and convs"
    return "other ops"


def print_groups(averages) -> None:
    """Self CPU time per group of ops: the share bf16 can speed up is the matmuls'."""
    groups: dict[str, float] = {}
    for event in averages:
        key = group_of(event.key)
        groups[key] = groups.get(key, 0.0) + event.self_cpu_time_total
    total = sum(groups.values()) or 1.0
    for key, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{key:<20} {us / 1000:9.1f} ms  {us / total:6.1%}")


if __name__ == "__main__":
    main()
