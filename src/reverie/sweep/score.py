"""The score of a sweep: per task, the mean and spread over seeds of each run's final score
next to the published DreamerV3 score (and its ratio); per suite, the mean, median and IQM
over tasks with 95% stratified-bootstrap intervals, on the suite's own scale (DMC: return,
Atari100k: human-normalised score, Crafter: the Crafter score). Written as Markdown and
JSON; `reverie.sweep.plot` draws the curves.

A run's final score depends on its suite's protocol, and each suite's section names the
window it used (`window_text`):

- Atari100k (the paper's protocol): the mean return of the evaluation episodes logged at the
  end of training, i.e. the `eval/return` rows of metrics.jsonl at the run's last evaluation,
  which must lie at or past the sweep's budget (the preset's 100,000 agent steps = 400K
  frames; the action repeat of 4 happens inside the env). A run without such an evaluation
  (`run.eval_every=0`, or a budget the evaluation clock does not land on) falls back to the
  rule below, and its task row says so (`fallback`, and a mark in the Markdown table).
- every other suite: the mean return of its training episodes in the last 10% of the
  sweep's step budget (its last episode's return when none ended there).

Only finished cells count; the table says how many of each task's seeds it holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from reverie.config import PROTOCOL, make_config
from reverie.sweep import cells as cellfiles
from reverie.sweep import published, stats
from reverie.sweep.grid import Cell, expand
from reverie.sweep.spec import SweepSpec, load_spec
from reverie.viz.plot import (
    Run,
    _read_config,
    _short,
    crafter_score,
    load_run,
    success_rates,
)

WINDOW = 0.1  # the last share of the budget whose episodes make a run's final score
EVAL_SUITES = {"atari100k"}  # suites scored by the evaluation at the end of training
FINAL_EVAL, LAST_TRAIN = "final_eval", "train_last"  # a run's window (RunScore.window)
SCALES = {  # suite -> the scale its aggregates are on
    "dmc_proprio": "return",
    "dmc_vision": "return",
    "atari100k": "human-normalised score",
    "crafter": "Crafter score (%)",
}


@dataclass
class RunScore:
    cell: Cell
    run: Run
    final: float  # its score: the final evaluation's mean, or its training episodes' mean
    crafter: float | None  # the Crafter score (%) of its episodes, Crafter runs only
    window: str = LAST_TRAIN  # FINAL_EVAL or LAST_TRAIN: which episodes `final` averages
    fallback: bool = False  # its suite scores FINAL_EVAL, but the run had no final evaluation


def final_return(run: Run, budget: int, window: float = WINDOW) -> float:
    """Mean return of the episodes that ended in the last `window` of `budget` steps; the
    last episode's return when none did; nan without episodes."""
    steps, returns = run.episode
    if not len(steps):
        return float("nan")
    late = steps >= (1 - window) * budget
    return float(returns[late].mean() if late.any() else returns[-1])


def final_eval(run: Run, budget: int) -> float | None:
    """Mean return of the evaluation logged at the run's last evaluation step (each row
    is the mean over `run.eval_episodes` episodes; rows repeated at that step, e.g. by a
    resumed run, are averaged), if that step is at or past `budget`; else None."""
    steps, returns = run.eval
    if not len(steps) or steps.max() < budget:
        return None
    return float(returns[steps == steps.max()].mean())


def run_score(run: Run, budget: int, suite: str) -> tuple[float, str, bool]:
    """(score, window, fallback) of a run in `suite`: see the module's docstring."""
    if suite in EVAL_SUITES:
        found = final_eval(run, budget)
        if found is not None:
            return found, FINAL_EVAL, False
        return final_return(run, budget), LAST_TRAIN, True
    return final_return(run, budget), LAST_TRAIN, False


def window_text(suite: str, steps: int) -> str:
    """The window a suite's runs are scored over, for the score's Markdown and JSON."""
    label = published.suite_info(suite).get("label", suite)
    if suite in EVAL_SUITES:
        frames = steps * published.FRAMES_PER_STEP.get(suite, 1)
        return (
            f"{label}: mean of the evaluation episodes at {steps:,} agent steps "
            f"({_short(frames)} frames)"
        )
    return f"{label}: mean of the training episodes in the last {WINDOW:.0%} of the budget"


def suite_key(run: Run) -> str:
    """The published suite of the run's task, else its env suite ('gym', 'bsuite')."""
    found = published.lookup(run.env_id, run.pixels)
    if found is not None:
        return found.suite
    prefix = run.env_id.split(":", 1)[0] if ":" in run.env_id else "gym"
    if prefix == "dmc":
        return "dmc_vision" if run.pixels else "dmc_proprio"
    return prefix


def collect(root: Path, spec: SweepSpec, cells: list[Cell]) -> tuple[list[RunScore], list[str]]:
    """The finished cells' scores, and the names of the cells left out (unfinished)."""
    scores, left_out = [], []
    for cell in cells:
        logdir = root / cell.name
        if not (logdir / "metrics.jsonl").exists() or not _finished(logdir, spec.steps):
            left_out.append(cell.name)
            continue
        run = load_run(logdir)
        rates = success_rates([run]) if run.achievements else {}
        final, window, fallback = run_score(run, spec.steps, suite_key(run))
        crafter = crafter_score(rates) if rates else None
        scores.append(RunScore(cell, run, final, crafter, window, fallback))
    return scores, left_out


def _finished(logdir: Path, steps: int) -> bool:
    state = cellfiles.read_state(logdir)
    if state.status == "done" and state.step >= steps:
        return True
    reached = cellfiles.done_step(logdir)
    return reached is not None and reached >= steps


def departures(logdir: Path) -> dict[str, list[Any]]:
    """The protocol keys (`config.PROTOCOL`: train ratio, action repeat) that the run's
    config.yaml sets away from its domain preset: key -> [the run's, the preset's]."""
    stored = _read_config(logdir)
    env_id = (stored.get("env") or {}).get("id")
    if not env_id:
        return {}
    reference = make_config([], **{"env.id": env_id, "preset": stored.get("preset") or ""})
    found = {}
    for key in PROTOCOL:
        section, name = key.split(".")
        value, preset = (stored.get(section) or {}).get(name), OmegaConf.select(reference, key)
        if value is not None and value != preset:
            found[key] = [value, preset]
    return found


def task_row(group: list[RunScore], budget: int, suite: str) -> dict[str, Any]:
    """One task (and grid variant) over its seeds."""
    first = group[0]
    finals = np.array([r.final for r in group if math.isfinite(r.final)])
    row: dict[str, Any] = {
        "group": first.cell.group,
        "task": first.cell.task,
        "variant": dict(first.cell.variant),
        "seeds": [r.cell.seed for r in group],
        "cells": [r.cell.name for r in group],
        "scores": [r.final for r in group],
        "windows": [r.window for r in group],
    }
    fallback = [r.cell.name for r in group if r.fallback]
    if fallback:  # never silently: these are not scored by the suite's own window
        row["fallback"] = fallback
    row.update(_spread(finals))
    left = {k: v for r in group for k, v in departures(r.run.logdir).items()}
    if left:  # scored, but not against the paper's number as if it were comparable
        row["not_comparable"] = left
    ref = published.lookup(first.run.env_id, first.run.pixels)
    if ref is not None:
        row["published"] = ref.final
        row["published_steps"] = ref.steps
        row["published_at_budget"] = published.at_budget(ref, budget)
        compare = row["published_at_budget"]
        if compare is not None and len(finals) and compare != 0:
            row["ratio"] = row["mean"] / compare
    if suite == "atari100k" and len(finals):
        row["hns"] = [published.human_normalised(ref.task if ref else "", x) for x in finals]
    crafter = [r.crafter for r in group if r.crafter is not None]
    if crafter:
        row["crafter_score"] = float(np.mean(crafter))
        row["crafter_scores"] = crafter
        row["published_crafter_score"] = published.suite_info("crafter").get("score_percent")
    return row


def _spread(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {"mean": None, "std": None, "min": None, "max": None}
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {
        "mean": float(values.mean()),
        "std": std,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def normalised(row: dict[str, Any], suite: str) -> list[float] | None:
    """The run scores of a task row on its suite's aggregate scale, None if it has none."""
    if suite == "atari100k":
        values = row.get("hns") or []
        return [v for v in values if v is not None] or None
    if suite == "crafter":
        return row.get("crafter_scores")
    if suite in SCALES:
        return [x for x in row["scores"] if math.isfinite(x)] or None
    return None


def published_normalised(row: dict[str, Any], suite: str) -> float | None:
    """The published score of a task row on its suite's aggregate scale, at the budget."""
    if suite == "crafter":
        return row.get("published_crafter_score")
    value = row.get("published_at_budget")
    if value is None:
        return None
    if suite == "atari100k":
        task = row["task"].split(":", 1)[-1]
        return published.human_normalised(task, value)
    return value


def suite_aggregates(rows: list[dict[str, Any]], suite: str, reps: int) -> dict[str, Any]:
    """Per grid variant: the aggregates over its tasks, with intervals, and the published
    ones over the same tasks (point values)."""
    out: dict[str, Any] = {}
    for variant in dict.fromkeys(json.dumps(r["variant"], sort_keys=True) for r in rows):
        members = [r for r in rows if json.dumps(r["variant"], sort_keys=True) == variant]
        scores = [normalised(r, suite) for r in members]
        if any(s is None for s in scores):
            continue
        entry: dict[str, Any] = {
            "scale": SCALES[suite],
            "tasks": len(members),
            "runs": sum(len(s or []) for s in scores),
            **stats.summarise([s for s in scores if s], reps=reps),
        }
        refs = [published_normalised(r, suite) for r in members]
        if all(x is not None for x in refs):
            entry["published"] = stats.aggregates([[float(x)] for x in refs if x is not None])
        out[_variant_label(json.loads(variant))] = entry
    return out


def _variant_label(variant: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant.items()) or "all"


def score_sweep(
    root: str | Path, reps: int = 2000, on_run: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The whole score of the sweep in `root`, as the JSON `write_score` writes."""
    root = Path(root)
    spec = load_spec(root)
    cells = expand(spec)
    scores, left_out = collect(root, spec, cells)
    suites: dict[str, Any] = {}
    by_suite: dict[str, dict[str, list[RunScore]]] = {}
    for s in scores:
        by_suite.setdefault(suite_key(s.run), {}).setdefault(s.cell.group, []).append(s)
        if on_run is not None:
            on_run(s.cell.name)
    for suite, groups in by_suite.items():
        rows = [task_row(group, spec.steps, suite) for group in groups.values()]
        info = published.suite_info(suite)
        suites[suite] = {
            "label": info.get("label", suite),
            "window": window_text(suite, spec.steps),
            "published_steps": published.published_steps(suite),
            "tasks": rows,
            "aggregates": suite_aggregates(rows, suite, reps) if suite in SCALES else {},
        }
        if suite == "atari100k":
            suites[suite]["published_paper"] = info.get("human_normalised")
    return {
        "root": str(root),
        "steps": spec.steps,
        "window": WINDOW,
        "cells": len(cells),
        "finished": len(scores),
        "left_out": left_out,
        "reps": reps,
        "suites": suites,
    }


def _finite(value: Any) -> Any:
    """The result with nan and inf as None (null): JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ----------------------------------------------------------------- Markdown
def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _ci(entry: dict[str, Any]) -> str:
    low, high = entry["ci"]
    return f"{_num(entry['value'])} [{_num(low)}, {_num(high)}]"


def to_markdown(result: dict[str, Any]) -> str:
    steps = result["steps"]
    lines = [
        f"# Scores of the sweep {result['root']}",
        "",
        f"{result['finished']} of {result['cells']} cells finished ({_short(steps)} env steps "
        f"each). A run's score: as each suite's window says. Spread: std over seeds (min, "
        f"max). Intervals: 95% stratified bootstrap ({result['reps']} samples).",
    ]
    if result["left_out"]:
        lines.append(f"Left out (not finished): {', '.join(result['left_out'])}.")
    for suite, entry in result["suites"].items():
        lines += ["", *_suite_markdown(suite, entry, steps)]
    return "\n".join(lines) + "\n"


def _suite_markdown(suite: str, entry: dict[str, Any], steps: int) -> list[str]:
    pub_steps = entry["published_steps"]
    title = f"## {entry['label']}"
    if pub_steps:
        title += f" (DreamerV3 published at {_short(pub_steps)} steps)"
    short = pub_steps is not None and steps < pub_steps
    head = ["task", "seeds", "mean", "std (min, max)", "DreamerV3"]
    if short:
        head.append(f"DreamerV3 at {_short(steps)}")
    head.append("ratio")
    extra = {"atari100k": "human-normalised", "crafter": "Crafter score (DreamerV3)"}.get(suite)
    if extra:
        head.append(extra)
    lines = [title, "", f"Window — {entry['window']}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    apart, fell_back = [], []
    for row in entry["tasks"]:
        name = row["group"]
        if row.get("fallback"):
            name += " ‡"
            fell_back += row["fallback"]
        if row.get("not_comparable"):
            name += " †"
            what = ", ".join(
                f"{k}={v[0]:g} (preset {v[1]:g})" for k, v in row["not_comparable"].items()
            )
            apart.append(f"{row['group']}: {what}")
        cells = [name, str(len(row["seeds"])), _num(row["mean"])]
        cells.append(f"{_num(row['std'])} ({_num(row['min'])}, {_num(row['max'])})")
        cells.append(_num(row.get("published")))
        if short:
            cells.append(_num(row.get("published_at_budget")))
        ratio = row.get("ratio")
        cells.append("—" if ratio is None else f"{ratio:.2f}")
        if suite == "atari100k":
            hns = [h for h in row.get("hns") or [] if h is not None]
            cells.append(_num(float(np.mean(hns))) if hns else "—")
        elif suite == "crafter":
            cells.append(
                f"{_num(row.get('crafter_score'))}% ({_num(row.get('published_crafter_score'))}%)"
            )
        lines.append("| " + " | ".join(cells) + " |")
    if apart:
        lines.append(
            "\n† not comparable to the published score: the run leaves the domain preset's "
            f"protocol ({'; '.join(apart)})."
        )
    if fell_back:
        lines.append(
            f"\n‡ no evaluation at the end of training ({_short(steps)} steps) in "
            f"{', '.join(fell_back)}: scored instead by the mean of the training episodes in "
            f"the last {WINDOW:.0%} of the budget (run.eval_every=0, or evaluations that do not "
            "land on the last step)."
        )
    lines += _aggregate_markdown(entry, steps, short)
    if suite == "atari100k" and entry.get("published_paper"):
        paper = entry["published_paper"]
        lines.append(
            f"\nThe paper (2023): human-normalised mean {paper['mean']}, median "
            f"{paper['median']} over all 26 games."
        )
    return lines


def _aggregate_markdown(entry: dict[str, Any], steps: int, short: bool) -> list[str]:
    if not entry["aggregates"]:
        return ["", "No suite aggregates: the paper publishes no scores for these tasks."]
    lines = []
    for variant, agg in entry["aggregates"].items():
        where = "" if variant == "all" else f" ({variant})"
        lines += [
            "",
            f"Aggregates{where} of the {agg['scale']} over {agg['tasks']} task(s), "
            f"{agg['runs']} run(s):",
            "",
            "| | mean | median | IQM |",
            "|---|---|---|---|",
            f"| reverie | {_ci(agg['mean'])} | {_ci(agg['median'])} | {_ci(agg['iqm'])} |",
        ]
        if "published" in agg:
            p = agg["published"]
            at = f", at {_short(steps)}" if short else ""
            lines.append(
                f"| DreamerV3 (same tasks{at}) | {_num(p['mean'])} | {_num(p['median'])} "
                f"| {_num(p['iqm'])} |"
            )
    return lines


def write_score(root: str | Path, out: str | Path | None = None, reps: int = 2000) -> dict:
    """score.md, score.json and score.png into `out` (default: the root); returns the
    result with its paths."""
    from reverie.files import atomic_write
    from reverie.sweep.plot import plot_sweep

    root = Path(root)
    out = Path(out) if out else root
    out.mkdir(parents=True, exist_ok=True)
    result = score_sweep(root, reps=reps)
    if not result["finished"]:
        from reverie.config import ConfigError

        raise ConfigError(
            f"no cell of the sweep {root} has finished yet: `reverie sweep --status {root}` "
            "shows where it stands"
        )
    paths = {"markdown": out / "score.md", "json": out / "score.json", "plot": out / "score.png"}
    atomic_write(paths["markdown"], to_markdown(result).encode())
    text = json.dumps(_finite(result), indent=1, allow_nan=False)
    atomic_write(paths["json"], (text + "\n").encode())
    plot_sweep(root, result, paths["plot"])
    return {**result, "paths": {k: str(v) for k, v in paths.items()}}
