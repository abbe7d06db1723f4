"""The plot of a scored sweep: one panel per task (and grid variant), the training return
over env steps (mean over seeds, min-max band), the published DreamerV3 final score as a
dashed line and, where the sweep's budget is shorter, the published learning curve up to
that budget (dotted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reverie.sweep import published
from reverie.viz.plot import (
    _pyplot,
    aggregate,
    load_run,
    panel_grid,
    save_panels,
    smooth,
    style_return_axes,
)

WINDOW = 10  # episodes in the moving average of a run's returns


def plot_sweep(root: str | Path, result: dict[str, Any], out: str | Path) -> Path:
    rows = [(suite, row) for suite, entry in result["suites"].items() for row in entry["tasks"]]
    plt = _pyplot()
    fig, axes = panel_grid(plt, len(rows))
    for ax, (suite, row) in zip(axes.flat, rows):
        _panel(ax, Path(root), suite, row, int(result["steps"]))
    return save_panels(plt, fig, axes, len(rows), out)


def _panel(ax: Any, root: Path, suite: str, row: dict[str, Any], budget: int) -> None:
    runs = [load_run(root / name) for name in row["cells"]]
    curves = [(r.episode[0], smooth(r.episode[1], WINDOW)) for r in runs]
    grid, mean, low, high, _ = aggregate(curves)
    if len(grid):
        ax.plot(grid, mean, color="C0", lw=1.6, label=f"reverie ({len(runs)} seeds)")
        if len(runs) > 1:
            ax.fill_between(grid, low, high, color="C0", alpha=0.2, lw=0)
    ref = published.lookup(runs[0].env_id, runs[0].pixels) if runs else None
    if ref is not None:
        ax.axhline(ref.final, color="0.3", ls="--", lw=1.2, label=ref.label)
        found = published.curve(ref.suite, ref.task)
        if found is not None and budget < ref.steps:
            steps, values = found
            keep = steps <= budget * 1.05
            if keep.any():
                ax.plot(
                    steps[keep],
                    values[keep],
                    color="0.3",
                    ls=":",
                    marker="o",
                    ms=3,
                    label="DreamerV3 curve (score files)",
                )
    ax.axvline(budget, color="0.6", lw=0.8)
    style_return_axes(ax, row["group"])
