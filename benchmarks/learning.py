"""Learning runs: train `reverie train` per seed under a wall-clock budget and report when
the mean return of the last episodes first reaches a target (the run stops there unless
`--full`).

    python benchmarks/learning.py --env gym:CartPole-v1 --target 475 --minutes 10 --seeds 0 1 2
    python benchmarks/learning.py --env gym:Pendulum-v1 --target -300 --minutes 60 --seeds 0 \
        -- --train-ratio 512

Arguments after `--` go to `reverie train`. Reads each run's metrics.jsonl: the time is the
wall time from the launch of the command, the return the mean over the last `--window`
training episodes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def first_reach(metrics: Path, target: float, window: int, start: float) -> dict:
    """When the mean of `window` episode returns first reached `target`, in seconds
    since `start` (the launch of the command, so start-up and compilation count)."""
    text = metrics.read_text()
    if not text.endswith("\n"):  # the run is writing its last line
        text = text[: text.rfind("\n") + 1]
    lines = [json.loads(x) for x in text.splitlines()]
    episodes = [x for x in lines if "episode/return" in x]
    best, reached = float("-inf"), None
    for i in range(window - 1, len(episodes)):
        recent = [e["episode/return"] for e in episodes[i - window + 1 : i + 1]]
        mean = sum(recent) / window
        best = max(best, mean)
        if reached is None and mean >= target:
            step = episodes[i]["step"]
            reached = {
                "step": step,
                "seconds": episodes[i]["time"] - start,
                "updates": max(
                    (
                        x["train/updates"]
                        for x in lines
                        if x["step"] <= step and "train/updates" in x
                    ),
                    default=0,
                ),
            }
    updates = max((x.get("train/updates", 0) for x in lines), default=0)
    return {
        "reached": reached,
        "best_mean": best,
        "episodes": len(episodes),
        "final_step": lines[-1]["step"] if lines else 0,
        "updates": updates,
    }


def run_until(cmd: list[str], metrics: Path, args: argparse.Namespace, start: float) -> None:
    """Run `cmd` until the budget ends or, unless --full, until the target is reached
    (checked every 10 s; the run is stopped by SIGTERM, on which reverie saves and exits:
    SIGINT would be ignored in a job a non-interactive shell put in the background)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = start + args.minutes * 60
    while proc.poll() is None and time.time() < deadline:
        time.sleep(min(10.0, max(0.0, deadline - time.time())))
        if args.full or not metrics.exists():
            continue
        if first_reach(metrics, args.target, args.window, start)["reached"]:
            break
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="gym:CartPole-v1")
    p.add_argument("--target", type=float, default=475)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--logroot", default="logs/bench")
    p.add_argument("--full", action="store_true", help="run the whole budget, not to the target")
    args = p.parse_args(argv)

    results = []
    for seed in args.seeds:
        logdir = Path(args.logroot) / f"{args.env.split(':')[-1]}-seed{seed}"
        shutil.rmtree(logdir, ignore_errors=True)
        cmd = [
            "reverie",
            "train",
            "--env",
            args.env,
            "--logdir",
            str(logdir),
            "--seed",
            str(seed),
            "--steps",
            "100000000",
            "run.progress=false",
            *extra,
        ]
        print("$", " ".join(cmd), flush=True)
        t0 = time.time()
        run_until(cmd, logdir / "metrics.jsonl", args, t0)
        result = first_reach(logdir / "metrics.jsonl", args.target, args.window, t0)
        result.update(seed=seed, wall=time.time() - t0)
        results.append(result)
        print(json.dumps(result), flush=True)

    times = [r["reached"]["seconds"] if r["reached"] else float("inf") for r in results]
    median = statistics.median(times)
    print(
        f"{args.env}: target {args.target} reached by {sum(t < float('inf') for t in times)}"
        f"/{len(times)} seeds; median time {median:.0f}s; best means "
        f"{[round(r['best_mean'], 1) for r in results]}"
    )


if __name__ == "__main__":
    main()
