"""Learning runs: train `reverie train` per seed under a wall-clock budget and report when
the mean return of the last episodes first reaches a target (the run stops there unless
`--full`).

    python benchmarks/learning.py --env gym:CartPole-v1 --target 475 --minutes 10 --seeds 0 1 2
    python benchmarks/learning.py --env gym:Pendulum-v1 --target -300 --minutes 60 --seeds 0 \
        -- --train-ratio 512

Arguments after `--` go to `reverie train`. Reads each run's metrics.jsonl: the time is the
wall time from the launch of the command, the return the mean over the last `--window`
training episodes.

With `--out DIR` it keeps what a result needs (no checkpoints or replay): per seed
`seed<k>/` with the run's config.yaml, metrics.jsonl and run.json (command, launch time,
result), and `summary.json` and `curves.png` (mean return against minutes since launch and
against env steps). `--replot DIR` redraws `curves.png` from those files alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def read_rows(metrics: Path) -> list[dict]:
    """The complete lines of a metrics.jsonl (a run may be writing its last one)."""
    text = metrics.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return [json.loads(x) for x in text.splitlines()]


def episodes_and_means(rows: list[dict], window: int) -> tuple[list[dict], list[float]]:
    """The episode lines of `rows` from the `window`-th on, and at each the mean of the
    last `window` returns."""
    episodes = [x for x in rows if "episode/return" in x]
    returns = [e["episode/return"] for e in episodes]
    means = [sum(returns[i : i + window]) / window for i in range(len(returns) - window + 1)]
    return episodes[window - 1 :], means


def first_reach(metrics: Path, target: float, window: int, start: float) -> dict:
    """When the mean of `window` episode returns first reached `target`, in seconds
    since `start` (the launch of the command, so start-up and compilation count)."""
    lines = read_rows(metrics)
    ends, means = episodes_and_means(lines, window)
    first = next((i for i, mean in enumerate(means) if mean >= target), None)
    reached = None
    if first is not None:
        step = ends[first]["step"]
        reached = {
            "step": step,
            "seconds": ends[first]["time"] - start,
            "updates": max(
                (x["train/updates"] for x in lines if x["step"] <= step and "train/updates" in x),
                default=0,
            ),
        }
    updates = max((x.get("train/updates", 0) for x in lines), default=0)
    return {
        "reached": reached,
        "best_mean": max(means, default=float("-inf")),
        "episodes": sum("episode/return" in x for x in lines),
        "final_step": lines[-1]["step"] if lines else 0,
        "updates": updates,
    }


def launch_command(cmd: list[str]) -> list[str]:
    """`reverie ...` as this interpreter's `python -m reverie ...`: the reverie this script
    imports, whether or not its venv is on PATH."""
    return [sys.executable, "-m", "reverie", *cmd[1:]]


def run_until(cmd: list[str], metrics: Path, args: argparse.Namespace, start: float) -> None:
    """Run `cmd` until the budget ends or, unless --full, until the target is reached
    (checked every 10 s; the run is stopped by SIGTERM, on which reverie saves and exits:
    SIGINT would be ignored in a job a non-interactive shell put in the background)."""
    proc = subprocess.Popen(launch_command(cmd), stdout=subprocess.DEVNULL)
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


def keep_seed(out: Path, logdir: Path, cmd: list[str], launched: float, result: dict) -> None:
    """The files a seed's result rests on, copied out of its logdir (which the next launch
    of the same seed would delete)."""
    folder = out / f"seed{result['seed']}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "metrics.jsonl"):
        if (logdir / name).exists():
            shutil.copy(logdir / name, folder / name)
    run = {"command": " ".join(cmd), "launched": launched, "result": result}
    (folder / "run.json").write_text(json.dumps(run, indent=1) + "\n")


def machine() -> str:
    from reverie.accel import cpu_kind

    return f"{cpu_kind()}; Python {platform.python_version()}"


def rolling_curve(folder: Path, window: int) -> dict[str, list[float]]:
    """Minutes since launch, env steps and the mean of the last `window` returns, at each
    training episode from the `window`-th on."""
    launched = json.loads((folder / "run.json").read_text())["launched"]
    ends, means = episodes_and_means(read_rows(folder / "metrics.jsonl"), window)
    return {
        "minutes": [(e["time"] - launched) / 60 for e in ends],
        "steps": [e["step"] for e in ends],
        "mean": means,
    }


def plot(out: Path) -> Path:
    """curves.png of a `--out` folder: each seed's rolling mean against minutes since its
    launch (start-up and compilation included) and against env steps, with the target."""
    from reverie.viz.plot import _pyplot

    summary = json.loads((out / "summary.json").read_text())
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 3.8))
    for seed in summary["seeds"]:
        curve = rolling_curve(out / f"seed{seed}", summary["window"])
        for ax, x in zip(axes, ("minutes", "steps")):
            ax.plot(curve[x], curve["mean"], lw=1.2, label=f"seed {seed}")
    target = summary["target"]
    for ax, label in zip(axes, ("minutes since launch", "env steps")):
        ax.axhline(target, color="red", ls=":", lw=1, label=f"target {target:g}")
        ax.set_xlabel(label)
        ax.set_ylabel(f"mean return of the last {summary['window']} episodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{summary['env']}: {summary['line']}", fontsize=9)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    p.add_argument("--out", type=Path, help="keep each seed's metrics, a summary and a plot here")
    p.add_argument("--replot", type=Path, help="redraw the plot of an --out folder and exit")
    args = p.parse_args(argv)
    if args.replot:
        print(plot(args.replot))
        return

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
        if args.out:
            keep_seed(args.out, logdir, cmd, t0, result)

    print(f"{args.env}: {outcome(results)}")
    if args.out:
        write_summary(args, extra)
        print(plot(args.out))


def times_to_target(results: list[dict]) -> tuple[list[float | None], float | None]:
    """Each seed's seconds to the target (None: not reached) and their median (None when
    the middle seed did not reach it)."""
    times = [r["reached"]["seconds"] if r["reached"] else None for r in results]
    median = statistics.median([t if t is not None else float("inf") for t in times])
    return times, None if median == float("inf") else median


def outcome(results: list[dict]) -> str:
    times, median = times_to_target(results)
    middle = "not reached" if median is None else f"{median:.0f}s"
    return (
        f"target reached by {sum(t is not None for t in times)}/{len(times)} seeds; "
        f"median time {middle}; best means {[round(r['best_mean'], 1) for r in results]}"
    )


def write_summary(args: argparse.Namespace, extra: list[str]) -> None:
    """summary.json over every seed folder of `--out`: seeds run by separate invocations
    (one per core, say) add up to one result."""
    folders = sorted(args.out.glob("seed*/run.json"), key=lambda p: int(p.parent.name[4:]))
    results = [json.loads(p.read_text())["result"] for p in folders]
    times, median = times_to_target(results)
    summary = {
        "env": args.env,
        "target": args.target,
        "window": args.window,
        "minutes": args.minutes,
        "train_args": extra,
        "machine": machine(),
        "seeds": [r["seed"] for r in results],
        "seconds_to_target": times,
        "median_seconds": median,
        "reached": sum(t is not None for t in times),
        "line": outcome(results),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
