"""Learning curves from logdirs: return vs env steps, mean and min-max over seeds, with the
published DreamerV3 score as a reference line; Crafter achievement success rates."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import ReverieError


@dataclass
class Run:
    logdir: Path
    env_id: str
    pixels: bool
    seed: int
    episode: tuple[np.ndarray, np.ndarray]  # (steps, returns) of training episodes
    eval: tuple[np.ndarray, np.ndarray]  # (steps, returns) of evaluations
    achievements: list[dict[str, float]] = field(default_factory=list)  # one per episode

    @property
    def group(self) -> str:
        return self.env_id + (" (pixels)" if self.pixels else "")

    @property
    def last_step(self) -> int:
        steps = [s[-1] for s, _ in (self.episode, self.eval) if len(s)]
        return int(max(steps)) if steps else 0


@dataclass
class Reference:
    value: float  # the line (midpoint of a range)
    band: tuple[float, float] | None  # the published range, if any
    label: str
    source: str
    steps: int


class NoRunsError(ReverieError, FileNotFoundError):
    """A path given to plot holds no run (no metrics.jsonl at any depth)."""


def find_logdirs(paths: Sequence[str | Path]) -> list[Path]:
    """Each path that holds a metrics.jsonl, or its subfolders (at any depth) that do."""
    found = []
    for p in map(Path, paths):
        if (p / "metrics.jsonl").exists():
            found.append(p)
        elif p.is_dir():
            found += sorted(m.parent for m in p.rglob("metrics.jsonl"))
        else:
            raise NoRunsError(f"no metrics.jsonl in {p}: pass a logdir of `reverie train`")
    if not found:
        raise NoRunsError(
            f"no metrics.jsonl under {', '.join(map(str, paths))}: pass logdirs of "
            "`reverie train`, or folders holding them"
        )
    return found


def _read_config(logdir: Path) -> dict:
    path = logdir / "config.yaml"
    if not path.exists():
        return {}
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.create(path.read_text()), resolve=False) or {}
    assert isinstance(cfg, dict), path  # a run's config is a mapping
    return cfg


def load_run(logdir: str | Path) -> Run:
    """Episode and eval returns (and Crafter achievements) of one logdir's metrics.jsonl."""
    logdir = Path(logdir)
    cfg = _read_config(logdir)
    env = cfg.get("env", {}) or {}
    ep_steps, ep_ret, ev_steps, ev_ret, achievements = [], [], [], [], []
    with open(logdir / "metrics.jsonl") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            step = row.get("step")
            if step is None:
                continue
            if row.get("episode/return") is not None:
                ep_steps.append(step)
                ep_ret.append(row["episode/return"])
            if row.get("eval/return") is not None:
                ev_steps.append(step)
                ev_ret.append(row["eval/return"])
            ach = {k[12:]: float(v or 0) for k, v in row.items() if k.startswith("achievement/")}
            if ach:
                achievements.append(ach)
    arr = lambda x: np.asarray(x, np.float64)  # noqa: E731
    return Run(
        logdir=logdir,
        env_id=str(env.get("id", "unknown")),
        pixels=bool(env.get("pixels", False)),
        seed=int(cfg.get("seed", 0)),
        episode=(arr(ep_steps), arr(ep_ret)),
        eval=(arr(ev_steps), arr(ev_ret)),
        achievements=achievements,
    )


# ---------------------------------------------------------------- references
@cache
def reference_scores() -> dict:
    """The published scores shipped with the package (reference_scores.yaml)."""
    from omegaconf import OmegaConf

    text = resources.files("reverie.viz").joinpath("reference_scores.yaml").read_text()
    scores = OmegaConf.to_container(OmegaConf.create(text))
    assert isinstance(scores, dict)  # env family -> scores
    return scores


def reference_suite(env_id: str, pixels: bool = False) -> tuple[str, str] | None:
    """(suite, task) of `env_id` in the published table ('dmc:walker_walk' ->
    ('dmc_proprio', 'walker_walk'), or dmc_vision with `pixels`), None if it has no score."""
    table = reference_scores()
    prefix, _, name = env_id.partition(":")
    matches = []
    for key, suite in table["suites"].items():
        task = name or suite.get("default_task", prefix)
        if suite["env_prefix"] != prefix or task not in suite["scores"]:
            continue
        obs = suite.get("observation")
        other = obs is not None and (obs == "vision") != pixels
        matches.append((int(other), key, task))  # the other observation kind: a fallback
    if not matches:
        return None
    _, key, task = min(matches, key=lambda m: m[0])
    return key, task


def reference_for(env_id: str, pixels: bool = False) -> Reference | None:
    """The published DreamerV3 score of `env_id` ('dmc:walker_walk', 'atari100k:pong',
    'crafter'), or None when the paper reports none for it."""
    found = reference_suite(env_id, pixels)
    if found is None:
        return None
    table = reference_scores()
    suite, task = table["suites"][found[0]], found[1]
    score = suite["scores"][task]
    if isinstance(score, list):
        lo, hi = float(score[0]), float(score[1])
        value, band, text = (lo + hi) / 2, (lo, hi), f"{_short(lo)}-{_short(hi)}"
    else:
        value, band, text = float(score), None, _short(float(score))
    steps = int(suite["steps"])
    note = suite.get("notes", {}).get(task)
    label = f"DreamerV3 {suite['label']} {text} at {_short(steps)} steps"
    if note:
        label += f" ({note})"
    if "score_percent" in suite:
        label += f", score {suite['score_percent']}%"
    return Reference(value, band, label, str(table["source"]), steps)


def _short(x: float) -> str:
    for div, unit in ((1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


# ------------------------------------------------------------------ curves
def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over the last `window` points (shorter at the start)."""
    if window <= 1 or len(values) < 2:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def aggregate(
    curves: list[tuple[np.ndarray, np.ndarray]], points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate curves onto one step grid; mean, min, max and the number of runs there.

    A run counts only within its own step range, so runs of different lengths mix.
    """
    curves = [(s, v) for s, v in curves if len(s)]
    if not curves:
        empty = np.zeros(0)
        return empty, empty, empty, empty, empty
    start = min(s[0] for s, _ in curves)
    end = max(s[-1] for s, _ in curves)
    grid = np.linspace(start, end, points) if end > start else np.array([start], np.float64)
    values = np.full((len(curves), len(grid)), np.nan)
    for i, (s, v) in enumerate(curves):
        inside = (grid >= s[0]) & (grid <= s[-1])
        values[i, inside] = np.interp(grid[inside], s, v)
    count = np.sum(~np.isnan(values), 0)
    keep = count > 0
    values, grid, count = values[:, keep], grid[keep], count[keep]
    return grid, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0), count


def success_rates(runs: list[Run]) -> dict[str, float]:
    """Percent of episodes (over all runs) in which each achievement was unlocked."""
    episodes = [a for r in runs for a in r.achievements]
    names = sorted({k for a in episodes for k in a})
    return {n: 100.0 * float(np.mean([a.get(n, 0.0) > 0 for a in episodes])) for n in names}


def crafter_score(rates: dict[str, float]) -> float:
    """The Crafter score of success rates in % (see reverie.envs.episode_stats)."""
    from reverie.envs.episode_stats import crafter_score as score

    return score(list(rates.values())) if rates else float("nan")


# ------------------------------------------------------------------ figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel_grid(plt, panels: int) -> tuple[Any, np.ndarray]:
    """A figure of up to 3 panels a row for `panels` panels, and its axes (rows, cols)."""
    cols = min(3, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    return fig, axes


def style_return_axes(ax: Any, title: str) -> None:
    """Title, env-step x axis, return y axis, grid and legend of one return panel."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("env steps")
    ax.xaxis.set_major_formatter(lambda x, _: _short(x) if x else "0")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def save_panels(plt, fig: Any, axes: np.ndarray, used: int, out: str | Path) -> Path:
    """Hide the unused panels, write the figure to `out` (its folder made), close it."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_runs(
    logdirs: Sequence[str | Path],
    out: str | Path,
    window: int = 10,
    on_run: Callable[[Path], None] | None = None,
) -> dict:
    """Return curves of all runs, one panel per env, and (for Crafter runs) a bar chart of
    achievement success rates at `<out>-achievements.png`.

    Returns {"paths": {...}, "groups": {env: {"runs", "steps", "final_return",
    "final_eval", "reference"}}}.
    """
    runs = []
    for d in find_logdirs(list(logdirs)):
        runs.append(load_run(d))
        if on_run is not None:
            on_run(d)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)

    plt = _pyplot()
    n = len(groups)
    fig, axes = panel_grid(plt, n)
    summary: dict = {}
    for ax, (name, members) in zip(axes.flat, groups.items()):
        info: dict[str, float] = {"runs": len(members), "steps": max(r.last_step for r in members)}
        series = (
            ("train", "C0", [(r.episode[0], smooth(r.episode[1], window)) for r in members]),
            ("eval", "C1", [r.eval for r in members]),
        )
        for kind, colour, curves in series:
            grid, mean, lo, hi, _ = aggregate(curves)
            if not len(grid):
                continue
            seeds = f"{len(members)} seed{'s' if len(members) > 1 else ''}"
            few = len(grid) < 30  # a handful of points: show them, not only the line
            style = {"marker": "o", "ms": 3} if kind == "eval" or few else {}
            ax.plot(grid, mean, color=colour, lw=1.6, label=f"{kind} return ({seeds})", **style)
            if len(members) > 1:
                ax.fill_between(grid, lo, hi, color=colour, alpha=0.2, lw=0)
            info[f"final_{'return' if kind == 'train' else 'eval'}"] = float(mean[-1])
        ref = reference_for(members[0].env_id, members[0].pixels)
        if ref is not None:
            if ref.band is not None:
                ax.axhspan(*ref.band, color="0.5", alpha=0.2, lw=0)
            ax.axhline(ref.value, color="0.3", ls="--", lw=1.2, label=ref.label)
            ax.text(
                0.01,
                0.01,
                ref.source,
                transform=ax.transAxes,
                fontsize=6,
                color="0.35",
                va="bottom",
            )
            info["reference"] = ref.value
        style_return_axes(ax, name)
        summary[name] = info
    out = save_panels(plt, fig, axes, n, out)
    paths = {"returns": out}

    crafter = {name: m for name, m in groups.items() if any(r.achievements for r in m)}
    if crafter:
        path = out.with_name(out.stem + "-achievements.png")
        paths["achievements"] = achievement_chart(crafter, path)
        for name, members in crafter.items():
            summary[name]["crafter_score"] = crafter_score(success_rates(members))
    return {"paths": paths, "groups": summary}


def achievement_chart(groups: dict[str, list[Run]], path: str | Path) -> Path:
    """Bars of achievement success rates (% of episodes), one panel per group of runs."""
    plt = _pyplot()
    ref = reference_scores()["suites"]["crafter"]
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.8 * len(groups)), squeeze=False)
    for ax, (name, members) in zip(axes[:, 0], groups.items()):
        rates = success_rates(members)
        names = list(rates)
        bars = ax.bar(range(len(names)), [rates[k] for k in names], color="C2")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(
            range(len(names)),
            [k.replace("_", " ") for k in names],
            rotation=60,
            ha="right",
            fontsize=7,
        )
        ax.set_ylim(0, 105)
        ax.set_ylabel("success rate (%)")
        episodes = sum(len(r.achievements) for r in members)
        ax.set_title(
            f"{name}: {episodes} episodes, score {crafter_score(rates):.1f}% "
            f"(DreamerV3 {ref['score_percent']}% at {_short(ref['steps'])} steps)",
            fontsize=9,
        )
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
