"""benchmarks/learning.py's record of a time-to-target result: the seed folders it keeps,
the summary over seeds run by separate invocations, and the plot redrawn from those files."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .conftest import load_benchmark


def _learning():
    return load_benchmark("learning")


def _logdir(path: Path, launched: float, returns: list[float]) -> Path:
    """A logdir as `reverie train` leaves it: one episode line per return, 10 s apart,
    100 env steps each, an update count line after each."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 0\n")
    lines = []
    for i, ret in enumerate(returns, 1):
        t, step = launched + 10 * i, 100 * i
        lines.append({"step": step, "time": t, "episode/return": ret})
        lines.append({"step": step, "time": t, "train/updates": 5 * i})
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_seeds_run_apart_add_up_to_one_summary_and_plot(tmp_path):
    learning = _learning()
    out, launched = tmp_path / "out", 1_000.0
    # seed 0 reaches a mean of 3 over the last 2 episodes at its 4th episode (40 s), seed 1
    # at its 3rd (30 s), seed 2 never
    cases = {0: [1, 1, 2, 4, 4], 1: [0, 2, 4, 4], 2: [1, 1, 1]}
    for seed, returns in cases.items():
        logdir = _logdir(tmp_path / f"run{seed}", launched, returns)
        result = learning.first_reach(logdir / "metrics.jsonl", 3, 2, launched)
        result.update(seed=seed, wall=60.0)
        learning.keep_seed(out, logdir, ["reverie", "train"], launched, result)
        # each seed as its own invocation: the summary covers every seed folder so far
        args = argparse.Namespace(out=out, env="gym:X", target=3.0, window=2, minutes=1.0)
        learning.write_summary(args, ["--size", "1m"])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert summary["seconds_to_target"] == [40.0, 30.0, None]
    assert summary["median_seconds"] == 40.0 and summary["reached"] == 2
    run = json.loads((out / "seed0" / "run.json").read_text())
    assert run["result"]["reached"] == {"step": 400, "seconds": 40.0, "updates": 20}
    assert (out / "seed1" / "metrics.jsonl").read_text().count("episode/return") == 4

    curve = learning.rolling_curve(out / "seed1", window=2)
    assert curve["mean"] == [1.0, 3.0, 4.0] and curve["minutes"][0] == 20 / 60
    png = learning.plot(out)
    assert png == out / "curves.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_runs_reverie_with_its_own_interpreter_when_path_lacks_it(tmp_path, monkeypatch):
    # a venv's python run by its path, with the venv's bin not on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    cmd = _learning().launch_command(["reverie", "--help"])
    assert cmd[0] == sys.executable
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "train" in done.stdout
