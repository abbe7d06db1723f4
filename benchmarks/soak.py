"""A long run holds: train for a fixed time with replay past its capacity and a disk
budget, kill -9 and resume the trainer every few minutes, and sample its RSS, open file
descriptors and logdir size; none may grow without bound.

    python benchmarks/soak.py --minutes 30 --kill-every 300 --logdir logs/soak --json soak.json

The trainer is `reverie train` in a subprocess (tiny model by default, `--size` for a
real one). Samples are read from /proc every `--sample-every` seconds; the report gives
start, middle and end (each averaged over the samples of its tenth of the run) and the
growth of the last half over the first half, which stays near 1 for a bounded run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests/tiny.py
from tests.tiny import TINY_MODEL  # noqa: E402 - the tests' tiny model, one definition

TINY = [*TINY_MODEL, "run.compile=off", "run.train_fill=64"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def command(args, logdir: Path) -> list[str]:
    model = ["--size", args.size] if args.size else TINY
    return [
        sys.executable,
        "-m",
        "reverie.cli",
        "train",
        "--logdir",
        str(logdir),
        "--steps",
        str(10**9),
        "--env",
        args.env,
        *model,
        f"replay.capacity={args.capacity}",
        "replay.chunk=256",
        f"replay.disk_budget_mb={args.disk_budget_mb}",
        "run.train_ratio=32",
        "run.checkpoint_every=20",
        "run.log_every=10",
        "run.eval_every=5000",
        "run.progress=false",
        "run.threads=1",
    ]


def summarize(samples: list[dict]) -> dict:
    n = len(samples)
    tenth = max(1, n // 10)

    def mean(part: list[dict], key: str) -> float:
        return sum(s[key] for s in part) / len(part)

    parts = {
        "start": samples[:tenth],
        "middle": samples[n // 2 - tenth // 2 : n // 2 - tenth // 2 + tenth],
        "end": samples[-tenth:],
    }
    out = {
        name: {k: round(mean(p, k), 2) for k in ("rss_mb", "fds", "disk_mb")}
        for name, p in parts.items()
    }
    first, last = samples[: n // 2], samples[n // 2 :]
    out["growth_last_half_over_first"] = {
        k: round(mean(last, k) / max(mean(first, k), 1e-9), 3) for k in ("rss_mb", "fds", "disk_mb")
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--kill-every", type=float, default=300, help="seconds between kill -9s")
    p.add_argument("--sample-every", type=float, default=5)
    p.add_argument("--env", default="gym:CartPole-v1")
    p.add_argument("--size", default="", help="a size preset (default: a tiny model)")
    p.add_argument("--capacity", type=int, default=5000, help="replay.capacity (steps)")
    p.add_argument("--disk-budget-mb", type=float, default=20)
    p.add_argument("--logdir", default="logs/soak")
    p.add_argument("--json", help="also write samples and summary here")
    args = p.parse_args()
    logdir = Path(args.logdir)
    shutil.rmtree(logdir, ignore_errors=True)
    start = time.time()
    end = start + 60 * args.minutes
    samples: list[dict] = []
    kills = 0
    while time.time() < end:
        proc = subprocess.Popen(
            command(args, logdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        born = time.time()
        while proc.poll() is None and time.time() < end and time.time() - born < args.kill_every:
            time.sleep(args.sample_every)
            try:
                sample = {
                    "t": round(time.time() - start, 1),
                    "rss_mb": rss_mb(proc.pid),
                    "fds": open_fds(proc.pid),
                    "disk_mb": round(disk_mb(logdir), 2),
                }
            except (FileNotFoundError, ProcessLookupError):
                break
            samples.append(sample)
        if proc.poll() is not None:
            raise SystemExit(f"soak: the trainer exited by itself ({proc.returncode})")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    lines = (logdir / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    report = {
        "minutes": args.minutes,
        "kills": kills,
        "samples": len(samples),
        "last_step": last.get("step"),
        "summary": summarize(samples),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "series": samples}, indent=1))


if __name__ == "__main__":
    main()
