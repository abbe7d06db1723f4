"""Issue 28's learning evidence: one summary of every run under benchmarks/results/evidence/
beside the authors' published per-seed DreamerV3 curves, so that the numbers and plots in
docs/results.md are regenerated from the runs, never typed in.

    .venv/bin/python benchmarks/evidence.py                 # benchmarks/results/evidence/
    .venv/bin/python benchmarks/evidence.py --root /tmp/ev  # another folder of runs

Runs: `<root>/<task>/seed<k>/` holding reverie's metrics.jsonl and config.yaml; <task> is the
env id with ':' replaced by '_' (a pixel run in a folder of its own, e.g.
dmc_cartpole_swingup_pixels: the kind and the official curve follow the config's env.id and
env.pixels, the folder only names the row). Writes into <root>: summary.json (one row per
run), summary.md (one table per kind) and <kind-slug>.png (one panel per task: each seed's
mean of 10 episodes against env steps, over the authors' min-max band and median).

A row's numbers:
- env_steps: the last step in metrics.jsonl; score: the mean return of the last 10 training
  episodes; updates: the last train/updates; wall_minutes: the time between its first and
  last metrics lines, less any gap over PAUSE (a stopped and resumed run's pause).
- official_min/median/max: over the authors' seeds, each seed's curve in
  official_curves.json linearly interpolated at the run's frames (env_steps x
  env.action_repeat: the authors' x axis counts frames, see benchmarks/evidence_official.py),
  a run at most PAST_END frames past a curve's end taking its last point. Their points are one
  episode (DMC proprio) or the mean of 8 (DMC vision), so the proprio band is wider than one
  of 10-episode means would be. band: where score lies against [official_min, official_max].
- steps_to_<threshold> (tasks in THRESHOLDS, where no official curve exists): the first env
  step at which the mean of 10 consecutive episodes reaches it (null if never); best_mean10:
  the best such mean.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from reverie.viz.plot import (
    _pyplot,
    _read_config,
    load_run,
    panel_grid,
    save_panels,
    smooth,
    style_return_axes,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE / "results" / "evidence"
OFFICIAL = ROOT / "official_curves.json"
WINDOW = 10  # episodes in a run's score and its plotted mean
MEMORY_WINDOW = 500  # memory_len episodes in the share of right final actions
PAST_END = 10_000  # frames past an official curve's last point still compared with it

KINDS = ["vector, continuous", "dmc proprio", "sparse reward", "pixels", "memory", "other"]
KIND_OF_TASK = {"gym_Pendulum-v1": "vector, continuous"}
# DMC tasks whose reward is 0 until the goal is reached (ball_in_cup: only with the ball in it)
SPARSE = {"dmc_cartpole_balance_sparse", "dmc_cartpole_swingup_sparse", "dmc_ball_in_cup_catch"}
THRESHOLDS = {"gym_Pendulum-v1": -300.0}  # task -> the return a mean of 10 should reach


# ------------------------------------------------------------------ reading runs
def kind_of(task: str, pixels: bool) -> str:
    """The kind of domain a run stands for in issue 28 (pixels first: a DMC run from
    frames is the pixel evidence, whatever its task)."""
    if pixels:
        return "pixels"
    if task in KIND_OF_TASK:
        return KIND_OF_TASK[task]
    if task.startswith("bsuite_memory_len"):
        return "memory"
    if task in SPARSE or task.endswith("_sparse"):
        return "sparse reward"
    if task.startswith("dmc_"):
        return "dmc proprio"
    return "other"


def task_of(env_id: str) -> str:
    """The env id as a task name: 'dmc:walker_walk' -> 'dmc_walker_walk'; a bare Gymnasium
    id is a gym one, as reverie reads it ('Pendulum-v1' -> 'gym_Pendulum-v1')."""
    if ":" in env_id:
        return env_id.replace(":", "_")
    if re.search(r"-v\d+$", env_id) and not env_id.startswith("gym_"):
        return f"gym_{env_id}"
    return env_id


def slug(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


def find_runs(root: Path) -> list[Path]:
    """Every <task>/seed<k>/ under root with a metrics.jsonl (a task may hold a '/')."""
    found = root.rglob("metrics.jsonl")
    return sorted(p.parent for p in found if re.fullmatch(r"seed\d+", p.parent.name))


PAUSE = 600.0  # seconds without a metrics line: the run was stopped (it logs every 30 s)


def read_log(path: Path) -> dict[str, Any]:
    """First and last time, the seconds it ran (pauses of a stopped and resumed run left
    out), last step and last update count of a metrics.jsonl."""
    first = last = step = updates = None
    running = 0.0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if "time" in row:
            first = row["time"] if first is None else first
            if last is not None and row["time"] - last < PAUSE:
                running += row["time"] - last
            last = row["time"]
        if "step" in row:
            step = max(int(row["step"]), step or 0)
        if row.get("train/updates") is not None:
            updates = int(row["train/updates"])
    return {"first": first, "last": last, "running": running, "step": step, "updates": updates}


def after_resume(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The episodes of the surviving timeline: a run resumed from a checkpoint logs from that
    step again, so episodes an earlier process logged at or past it are dropped."""
    keep = np.ones(len(steps), bool)
    for i in range(1, len(steps)):
        if steps[i] < steps[i - 1]:
            keep[:i] &= steps[:i] < steps[i]
    return steps[keep], values[keep]


def mean10(returns: np.ndarray) -> np.ndarray:
    """The mean of each 10 consecutive episodes (index i: episodes i-9..i)."""
    if len(returns) < WINDOW:
        return np.zeros(0)
    return np.convolve(returns, np.ones(WINDOW) / WINDOW, mode="valid")


# ------------------------------------------------------------------ official curves
def load_official(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"suites": {}}


def official_curves(official: dict, task: str, pixels: bool) -> list[np.ndarray]:
    """The authors' per-seed curves (arrays of [frame, return]) of a task, [] without."""
    suite = "dmc_vision" if pixels else "dmc_proprio"
    entry = official["suites"].get(suite, {}).get(task)
    return [np.asarray(c, np.float64) for c in entry["curves"]] if entry else []


def official_at(curves: list[np.ndarray], frames: float) -> list[float] | None:
    """Each seed's return at `frames` (linear interpolation), None outside the curves."""
    if not curves or frames < max(c[0, 0] for c in curves):
        return None
    if frames > min(c[-1, 0] for c in curves) + PAST_END:
        return None
    return [float(np.interp(frames, c[:, 0], c[:, 1])) for c in curves]


def band_of(score: float, lo: float, hi: float) -> str:
    return "below" if score < lo else "above" if score > hi else "inside"


# ------------------------------------------------------------------ one row per run
def summarise(logdir: Path, root: Path, official: dict) -> tuple[dict, dict]:
    """(the run's row, what its plot needs)."""
    cfg = _read_config(logdir)
    env = cfg.get("env", {}) or {}
    task = logdir.parent.relative_to(root).as_posix()
    env_task = task_of(str(env.get("id", task)))
    pixels = bool(env.get("pixels", False))
    repeat = int(env.get("action_repeat", 1) or 1)
    steps, returns = after_resume(*load_run(logdir).episode)
    log = read_log(logdir / "metrics.jsonl")
    env_steps = int(log["step"] or 0)
    row: dict[str, Any] = {
        "kind": kind_of(env_task, pixels),
        "task": task,
        "seed": int(logdir.name[4:]),
        "env_steps": env_steps,
        "action_repeat": repeat,
        "episodes": len(returns),
        "score": float(returns[-WINDOW:].mean()) if len(returns) else None,
        "updates": log["updates"],
        "wall_minutes": log["running"] / 60 if log["first"] is not None else None,
    }
    curves = official_curves(official, env_task, pixels)
    row.update(compare(row["score"], official_at(curves, env_steps * repeat)))
    if env_task in THRESHOLDS:
        row.update(threshold(steps, returns, THRESHOLDS[env_task]))
    if row["kind"] == "memory":
        row.update(memory_correct(returns))
    plot = {"steps": steps * repeat, "returns": returns, "official": curves}
    plot["threshold"] = THRESHOLDS.get(env_task)
    return row, plot


def compare(score: float | None, values: list[float] | None) -> dict[str, Any]:
    """The official min/median/max at the run's frames and the band the score is in."""
    if values is None:
        return {}
    lo, mid, hi = float(np.min(values)), float(np.median(values)), float(np.max(values))
    out: dict[str, Any] = {"official_min": lo, "official_median": mid, "official_max": hi}
    out["band"] = band_of(score, lo, hi) if score is not None else None
    return out


def threshold(steps: np.ndarray, returns: np.ndarray, target: float) -> dict[str, Any]:
    """When (in env steps) the mean of 10 episodes first reached `target`, and its best."""
    means = mean10(returns)
    hit = np.flatnonzero(means >= target)
    first = int(steps[hit[0] + WINDOW - 1]) if len(hit) else None
    key = f"steps_to_{target:g}"
    return {key: first, "best_mean10": float(means.max()) if len(means) else None}


def memory_correct(returns: np.ndarray) -> dict[str, Any]:
    """bsuite memory_len rewards only the final action, +1 if right and -1 if wrong: the
    share of right ones in percent (chance: 50) over the last `MEMORY_WINDOW` episodes
    and over all."""
    right = returns > 0
    last = right[-MEMORY_WINDOW:]
    return {
        "correct_last_pct": 100 * float(last.mean()) if len(last) else None,
        "correct_all_pct": 100 * float(right.mean()) if len(right) else None,
    }


# ------------------------------------------------------------------ output
def rounded(value: Any) -> Any:
    """Floats to 1 decimal, so reruns give the same bytes."""
    if isinstance(value, float):
        return round(value, 1) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def row_order(row: dict) -> tuple:
    kind = KINDS.index(row["kind"]) if row["kind"] in KINDS else len(KINDS)
    return kind, row["task"], row["seed"]


COLUMNS = [
    ("task", "task"),
    ("seed", "seed"),
    ("env_steps", "env steps"),
    ("score", f"score (mean of last {WINDOW})"),
    ("official_min", "official min"),
    ("official_median", "official median"),
    ("official_max", "official max"),
    ("band", "band"),
    ("best_mean10", f"best mean of {WINDOW}"),
    ("correct_last_pct", f"% right final actions, last {MEMORY_WINDOW} episodes (chance 50)"),
    ("correct_all_pct", "% right final actions, all episodes"),
    ("updates", "updates"),
    ("wall_minutes", "wall min"),
]


def columns(rows: list[dict]) -> list[tuple[str, str]]:
    """COLUMNS with the rows' steps_to_* columns after the score."""
    keys = sorted({k for r in rows for k in r if k.startswith("steps_to_")})
    extra = [(k, k.replace("_", " ")) for k in keys]
    at = [c[0] for c in COLUMNS].index("score") + 1
    return COLUMNS[:at] + extra + COLUMNS[at:]


def markdown(rows: list[dict], official: dict) -> str:
    """One table per kind, with the columns any of its rows has (steps_to_* included)."""
    lines = ["# Learning evidence (issue 28)", ""]
    lines += ["Generated by `benchmarks/evidence.py` from summary.json; do not edit.", ""]
    source = official.get("source", {})
    if source:
        lines += [
            f"Official: {source['repo']} at {source['commit'][:7]}, x axis: {official['x_unit']}.",
            "",
        ]
    for kind in dict.fromkeys(r["kind"] for r in rows):  # rows come in KINDS order
        group = [r for r in rows if r["kind"] == kind]
        cols = [c for c in columns(group) if any(c[0] in r for r in group)]
        lines += [f"## {kind}", "", f"![{kind}]({slug(kind)}.png)", ""]
        lines += ["| " + " | ".join(c[1] for c in cols) + " |"]
        lines += ["|" + "---|" * len(cols)]
        for r in group:
            cells = ["" if r.get(k) is None else str(r[k]) for k, _ in cols]
            lines += ["| " + " | ".join(cells) + " |"]
        lines += [""]
    return "\n".join(lines)


def plot_kind(kind: str, rows: list[dict], plots: list[dict], out: Path) -> Path:
    """One panel per task of the kind (see draw_panel)."""
    tasks = sorted({r["task"] for r in rows})
    plt = _pyplot()
    fig, axes = panel_grid(plt, len(tasks))
    for ax, task in zip(axes.flat, tasks):
        runs = [(r, p) for r, p in zip(rows, plots) if r["task"] == task]
        draw_panel(ax, f"{task} ({kind})", runs)
    return save_panels(plt, fig, axes, len(tasks), out)


def draw_panel(ax: Any, title: str, runs: list[tuple[dict, dict]]) -> None:
    """Each seed's mean of 10 against env frames over the authors' min-max band and median
    (drawn up to their first point past the runs' last frame), and the task's threshold
    where it has one."""
    end = max((float(p["steps"][-1]) for _, p in runs if len(p["steps"])), default=0.0)
    draw_official(ax, runs[0][1]["official"], end)
    for r, p in runs:
        line = smooth(p["returns"], WINDOW)
        ax.plot(p["steps"], line, lw=1.2, label=f"reverie seed {r['seed']}")
    if runs[0][1]["threshold"] is not None:
        ax.axhline(runs[0][1]["threshold"], color="red", ls=":", lw=1, label="threshold")
    style_return_axes(ax, title)
    ax.set_xlabel("env steps x action repeat (frames)")


def draw_official(ax: Any, curves: list[np.ndarray], end: float) -> None:
    if not curves:
        return
    grid = np.unique(np.concatenate([c[:, 0] for c in curves]))
    # up to the first point at or past the runs' end, and two points at least: a band of one
    # point (a run shorter than the curves' first bin) would draw nothing
    grid = grid[: max(2, np.searchsorted(grid, end) + 1)] if end else grid
    values = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
    label = f"DreamerV3 min-max ({len(curves)} seeds)"
    ax.fill_between(grid, values.min(0), values.max(0), color="gray", alpha=0.25, label=label)
    ax.plot(grid, np.median(values, 0), color="black", ls="--", lw=1, label="DreamerV3 median")


def write(root: Path, official_path: Path) -> list[dict]:
    official = load_official(official_path)
    results = [summarise(d, root, official) for d in find_runs(root)]
    results.sort(key=lambda rp: row_order(rp[0]))
    rows = [rounded(r) for r, _ in results]
    summary = {
        "official": {k: official[k] for k in ("source", "x_unit") if k in official},
        "rows": rows,
        "window": WINDOW,
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (root / "summary.md").write_text(markdown(rows, official) if rows else "no runs\n")
    for kind in sorted({r["kind"] for r in rows}):
        pairs = [(r, p) for r, (_, p) in zip(rows, results) if r["kind"] == kind]
        plot_kind(kind, [r for r, _ in pairs], [p for _, p in pairs], root / f"{slug(kind)}.png")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="folder of <task>/seed<k>/")
    parser.add_argument("--official", type=Path, default=OFFICIAL)
    args = parser.parse_args()
    rows = write(args.root, args.official)
    print(f"{len(rows)} runs -> {args.root / 'summary.json'}, summary.md, plots")


if __name__ == "__main__":
    main()
