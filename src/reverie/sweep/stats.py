"""Aggregate scores over tasks and seeds, with stratified-bootstrap confidence intervals, as
rliable computes them (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"): mean and median of the per-task means, the interquartile mean (IQM: the mean
of the middle 50% of all runs pooled), and percentile intervals of each over bootstrap
samples that resample the runs of every task on their own.

numpy only: rliable 1.2 does not run with pandas 3 and arch 7, nor with arch 8
(tests/test_sweep.py checks the aggregates against numpy and scipy's trim_mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("mean", "median", "iqm")


def trimmed_mean(values: np.ndarray, cut: float = 0.25, axis: int = -1) -> np.ndarray:
    """The mean after dropping int(cut * n) values at each end (scipy's trim_mean)."""
    values = np.sort(np.asarray(values, np.float64), axis=axis)
    n = values.shape[axis]
    low = int(cut * n)
    kept = np.take(values, np.arange(low, n - low), axis=axis)
    return np.mean(kept, axis=axis)


def aggregates(scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """Mean and median over tasks of each task's mean over runs; IQM of all runs pooled.
    `scores`: one sequence of run scores per task."""
    tasks = _tasks(scores)
    means = np.array([t.mean() for t in tasks])
    return {
        "mean": float(means.mean()),
        "median": float(np.median(means)),
        "iqm": float(trimmed_mean(np.concatenate(tasks))),
    }


def bootstrap(
    scores: Sequence[Sequence[float]], reps: int = 2000, size: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile confidence intervals (`size`, 95%) of the aggregates over `reps`
    stratified bootstrap samples: each task's runs drawn with replacement, that task's
    number of times."""
    tasks = _tasks(scores)
    rng = np.random.default_rng(seed)
    samples = [t[rng.integers(0, len(t), (reps, len(t)))] for t in tasks]  # (reps, n_t)
    means = np.stack([s.mean(1) for s in samples], 1)  # (reps, tasks)
    values = {
        "mean": means.mean(1),
        "median": np.median(means, 1),
        "iqm": trimmed_mean(np.concatenate(samples, 1), axis=1),
    }
    tail = 100 * (1 - size) / 2
    return {k: _interval(v, tail) for k, v in values.items()}


def _interval(values: np.ndarray, tail: float) -> tuple[float, float]:
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def summarise(
    scores: Sequence[Sequence[float]], reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, object]]:
    """{'mean': {'value': v, 'ci': [lo, hi]}, 'median': ..., 'iqm': ...}."""
    points, intervals = aggregates(scores), bootstrap(scores, reps, seed=seed)
    return {k: {"value": points[k], "ci": list(intervals[k])} for k in METRICS}


def _tasks(scores: Sequence[Sequence[float]]) -> list[np.ndarray]:
    tasks = [np.asarray(t, np.float64) for t in scores]
    if not tasks or any(t.ndim != 1 or not len(t) for t in tasks):
        raise ValueError("aggregates need at least one task, each with at least one run")
    if any(not np.all(np.isfinite(t)) for t in tasks):
        raise ValueError("aggregates need finite scores")
    return tasks
