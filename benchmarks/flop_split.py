"""FLOPs of one update split into its two loops and the rest, and what a loop-blind count sees.

    python benchmarks/flop_split.py --sizes 1m 12m [--image]

The update runs two sequential loops: the posterior over the T=64 replayed steps
(forward and backward) and the imagination rollout over H=15 steps. The rest (heads,
losses, the imagined heads on all (H+1) x B x T states) runs once. A counter that
charges a loop body once instead of once per trip (XLA's HLO cost analysis of a
`lax.scan` while loop does this) reports `rest + observe/T + imagine/H`; this script
prints that figure beside the full count, and the GFLOP/s and fraction of the fp32
peak that a target rate needs (`--targets 1m=4.5`: size=updates/s).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests/batches.py

from reverie.agent import Agent  # noqa: E402
from reverie.config import make_config  # noqa: E402
from reverie.specs import ActSpec, ObsSpec  # noqa: E402
from tests.batches import random_batch  # noqa: E402 - test data, not in the package

PEAK_GFLOPS = float(os.environ.get("REVERIE_PEAK_GFLOPS", 190))


def count(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def split(size: str, image: bool) -> dict[str, float]:
    cfg = make_config(["run.compile=off", "run.precision=fp32"], size=size)
    spec = ObsSpec({}, {"image": (64, 64, 3)}) if image else ObsSpec({"vector": 4}, {})
    act = ActSpec(True, 2)
    torch.manual_seed(0)
    agent = Agent(spec, act, cfg, "cpu")
    batch = random_batch(cfg, spec, act, seed=0, ends=0.01)
    b, t = batch["is_first"].shape
    rssm, wm = agent.wm.rssm, agent.wm

    def observe_fwd_bwd() -> None:
        embed = torch.randn(b, t, wm.encoder.out_dim, requires_grad=True)
        prev = batch["action"].float()
        post, logits = rssm.observe(rssm.initial(b, "cpu"), prev, embed, batch["is_first"])
        (post["deter"].sum() + logits.sum()).backward()

    def imagine() -> None:
        start = rssm.initial(b * t, "cpu")
        agent.behavior.imagine(wm, start, cfg.behavior.horizon)

    total = count(lambda: agent.update(batch))
    observe, rollout = count(observe_fwd_bwd), count(imagine)
    horizon = cfg.behavior.horizon
    rest = total - observe - rollout
    return {
        "total": total / 1e9,
        "observe": observe / 1e9,
        "imagine": rollout / 1e9,
        "rest": rest / 1e9,
        "bodies_once": (rest + observe / t + rollout / horizon) / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["1m", "12m"])
    p.add_argument("--image", action="store_true", help="64x64 pixels instead of vectors")
    p.add_argument("--targets", nargs="*", default=[], help="SIZE=UPDATES_PER_S to cost")
    args = p.parse_args()
    targets = dict(t.split("=") for t in args.targets)
    torch.set_num_threads(2)
    kind = "pixels" if args.image else "vector"
    print(
        f"{'case':12} {'GFLOP/update':>12} {'observe loop':>12} {'imagine loop':>12} "
        f"{'rest':>8} {'bodies once':>11}"
    )
    for size in args.sizes:
        s = split(size, args.image)
        print(
            f"{size + ' ' + kind:12} {s['total']:12.1f} {s['observe']:12.1f} "
            f"{s['imagine']:12.1f} {s['rest']:8.1f} {s['bodies_once']:11.1f}"
        )
        if size in targets:
            rate = float(targets[size])
            need = rate * s["total"]
            print(
                f"  {rate:g} updates/s needs {need:.0f} GFLOP/s = "
                f"{need / PEAK_GFLOPS:.0%} of the {PEAK_GFLOPS:g} GFLOP/s fp32 peak"
            )


if __name__ == "__main__":
    main()
