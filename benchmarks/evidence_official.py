"""Per-seed DreamerV3 learning curves from the authors' score files, for the tasks issue 28
compares, cut at 200K env steps (the first point at or past it kept) and written to one
small committed fixture (benchmarks/results/evidence/official_curves.json) that
`benchmarks/evidence.py` reads.

reverie already ships the published curves (src/reverie/viz/reference_curves.yaml), but only
as the mean over seeds every 5% of the budget; the evidence needs each seed's curve to draw
the authors' min-max band, hence this fixture.

The score files (github.com/danijar/dreamerv3, scores/<suite>-dreamerv3.json.gz, last changed
in commit 2411f7d, 2024-04-15) are gzipped JSON lists of runs {task, method, seed, xs, ys}.

x axis: env frames, i.e. agent steps x action repeat. The runs behind the files used action
repeat 2 on DMC (configs.yaml at 2411f7d: `dmc: {repeat: 2}`), and that code's logger writes
`step * repeat` (main.py: `multiplier = config.env.<suite>.repeat`). The vision file shows
it: each env's episodes lie 1002 x units apart (501 agent steps, the reset included, x 2),
8 parallel envs logging 2 units apart. A DMC episode is 1000 frames either way, and
reverie's DMC presets run action repeat 1, so one reverie env step is one frame.

What a point is:
- dmc_proprio: the file holds one value per 10K-frame bin (49 per seed, x = 10K..490K); on
  tasks with integer returns 88-94% of the values are integers and all are multiples of 0.5,
  so a point is one logged episode (sometimes the mean of two), kept as is.
- dmc_vision: the file holds every logged episode (192 per seed below 200K), in groups of 8
  (one per parallel env) every ~8016 frames; a point is the mean of a group, at its last x.

    python benchmarks/evidence_official.py --repo /path/to/dreamerv3
    # --repo: a checkout, or a bare git dir (then the files are read from its HEAD)
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "evidence" / "official_curves.json"
MAX_STEP = 200_000
MAX_POINTS = 100  # per seed, to keep the fixture small
GROUP_GAP = 1000  # x units between episode groups in the vision file (within one: 2)

# suite -> the tasks issue 28 compares (bsuite memory_len: the authors publish no bsuite file)
TASKS = {
    "dmc_proprio": [
        "dmc_cartpole_balance",
        "dmc_cartpole_swingup",
        "dmc_walker_stand",
        "dmc_cheetah_run",
        "dmc_cartpole_balance_sparse",
        "dmc_ball_in_cup_catch",
    ],
    "dmc_vision": ["dmc_cartpole_swingup", "dmc_reacher_easy"],
}
MISSING = {"bsuite_memory_len": "no bsuite score file in the authors' scores/ folder"}
X_UNIT = (
    "env frames = agent steps x action repeat (2 in the authors' DMC runs); a DMC episode "
    "is 1000 frames; one reverie env step at env.action_repeat=1"
)
POINTS = {
    "dmc_proprio": "the file's values as they are: one per 10K-frame bin, each one logged "
    "episode's return (sometimes the mean of two), at the bin's x",
    "dmc_vision": "the mean return of each group of 8 episodes (one per parallel env) that "
    "end within a few frames of each other, at the group's last x",
}


def score_file(suite: str) -> str:
    return f"scores/{suite}-dreamerv3.json.gz"


def read_blob(repo: Path, path: str) -> bytes:
    """A file of the official repo: from the work tree of a checkout, else from HEAD of a
    bare git dir (a mirror has no work tree)."""
    if (repo / path).exists():
        return (repo / path).read_bytes()
    return subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout


def head_commit(repo: Path) -> str:
    """The commit the files were read at, so the fixture names its source exactly."""
    flag = ["-C", str(repo)] if (repo / ".git").exists() else ["--git-dir", str(repo)]
    cmd = ["git", *flag, "rev-parse", "HEAD"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def group_means(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One point per run of x values closer than GROUP_GAP: (last x, mean y)."""
    breaks = np.flatnonzero(np.diff(xs) > GROUP_GAP) + 1
    parts = np.split(np.arange(len(xs)), breaks)
    return np.array([xs[p[-1]] for p in parts]), np.array([ys[p].mean() for p in parts])


def thin(xs: np.ndarray, ys: np.ndarray, points: int = MAX_POINTS) -> tuple:
    """Keep at most `points` points, evenly spaced by index (the last one kept)."""
    if len(xs) <= points:
        return xs, ys
    keep = np.unique(np.linspace(len(xs) - 1, 0, points).round().astype(int))
    return xs[keep], ys[keep]


def curve(suite: str, run: dict, max_step: int) -> list[list[float]]:
    """One seed's [[frame, return], ...] up to the first point at or past `max_step`, so
    that a run of `max_step` frames lies inside the curve (see POINTS)."""
    xs, ys = np.asarray(run["xs"], np.float64), np.asarray(run["ys"], np.float64)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    if suite == "dmc_vision":
        xs, ys = group_means(xs, ys)
    end = np.searchsorted(xs, max_step) + 1  # up to the first point at or past max_step
    xs, ys = thin(xs[:end], ys[:end])
    return [[int(x), round(float(y), 1)] for x, y in zip(xs, ys)]


def extract(repo: Path, max_step: int) -> dict:
    """The fixture: per suite and task, the seeds and their curves, and where they came from."""
    suites: dict = {}
    missing = dict(MISSING)
    for suite, tasks in TASKS.items():
        runs = json.loads(gzip.decompress(read_blob(repo, score_file(suite))))
        for task in tasks:
            found = sorted((r for r in runs if r["task"] == task), key=lambda r: int(r["seed"]))
            if not found:
                missing[f"{suite}/{task}"] = "not in the score file"
                continue
            suites.setdefault(suite, {})[task] = {
                "seeds": [int(r["seed"]) for r in found],
                "curves": [curve(suite, r, max_step) for r in found],
            }
    return {
        "source": {
            "repo": "github.com/danijar/dreamerv3",
            "commit": head_commit(repo),
            "files": {s: score_file(s) for s in TASKS},
            "files_changed_in": "2411f7d136832378c0291c587cdbf2fca6506873",
        },
        "x_unit": X_UNIT,
        "max_step": max_step,
        "points": POINTS,
        "missing": dict(sorted(missing.items())),
        "suites": suites,
    }


def dumps(fixture: dict) -> str:
    """Indented JSON with each curve on one line: small, and readable in a diff."""
    curves = {}
    for suite in fixture["suites"].values():
        for entry in suite.values():
            for i, c in enumerate(entry["curves"]):
                key = f"@curve{len(curves)}@"
                curves[key] = json.dumps(c, separators=(",", ":"))
                entry["curves"][i] = key
    text = json.dumps(fixture, indent=1, sort_keys=True)
    for key, value in curves.items():
        text = text.replace(f'"{key}"', value)
    return text + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="danijar/dreamerv3 checkout")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--max-step", type=int, default=MAX_STEP)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(extract(args.repo, args.max_step)))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
