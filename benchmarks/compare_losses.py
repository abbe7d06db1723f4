"""Loss curves of two or more runs side by side, per update: e.g. fp32 against bf16.

    reverie train --logdir runs/fp32 --steps 19200 run.precision=fp32
    reverie train --logdir runs/bf16 --steps 19200 run.precision=bf16
    python benchmarks/compare_losses.py runs/fp32 runs/bf16 --plot losses.png

Prints each metric averaged over bins of updates (train lines of metrics.jsonl are
already averages over their logging interval) and, with --plot, draws one panel per
metric with updates on the x axis.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KEYS = [
    "loss/dec_vector",
    "loss/rew",
    "loss/con",
    "loss/dyn",
    "loss/critic",
    "loss/repval",
    "imag/return",
    "actor/entropy",
]


def train_lines(logdir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if "train/updates" in x]


def binned(lines: list[dict], key: str, edges: np.ndarray) -> list[float]:
    ups = np.array([x["train/updates"] for x in lines])
    vals = np.array([x.get(key, np.nan) for x in lines], float)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (ups > lo) & (ups <= hi) & np.isfinite(vals)
        out.append(float(vals[sel].mean()) if sel.any() else float("nan"))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("logdirs", nargs="+", type=Path)
    p.add_argument("--bins", type=int, default=6)
    p.add_argument("--keys", nargs="+", default=KEYS)
    p.add_argument("--plot", type=Path, help="write a PNG with one panel per metric")
    args = p.parse_args()
    runs = {d.name: train_lines(d) for d in args.logdirs}
    last = min(max(x["train/updates"] for x in lines) for lines in runs.values())
    edges = np.linspace(0, last, args.bins + 1)
    keys = [k for k in args.keys if any(k in x for lines in runs.values() for x in lines)]
    header = " ".join(f"{int(hi):>8}" for hi in edges[1:])
    print(f"{'metric':16} {'run':8} {header}   (mean over updates up to the column's value)")
    for key in keys:
        for name, lines in runs.items():
            row = " ".join(f"{v:8.3g}" for v in binned(lines, key, edges))
            print(f"{key:16} {name[:8]:8} {row}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = 4
        rows = -(-len(keys) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            for name, lines in runs.items():
                pts = [(x["train/updates"], x[key]) for x in lines if key in x]
                ax.plot(*zip(*pts), label=name)
            ax.set_title(key)
            ax.set_xlabel("updates")
        axes.flat[0].legend()
        for ax in list(axes.flat)[len(keys) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
