"""The view of a sweep, running or not: cells done, running, failed (with the last error line
of each one's log), pending, and an ETA from the env steps per second of the running cells.

It reads only the cells' state files and the tails of their logs and metrics, so it is
cheap to call while the sweep runs (`reverie sweep --status ROOT`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from reverie.sweep import cells as cellfiles
from reverie.sweep.grid import Cell
from reverie.sweep.spec import SweepSpec

ORDER = ("running", "failed", "queued", "pending", "done")


@dataclass
class CellView:
    name: str
    status: str  # done | running | queued | failed | pending
    step: int
    steps: int
    error: str = ""
    rate: float | None = None  # env steps per second of the current or last attempt
    elapsed: float | None = None  # seconds of the current attempt


def view_cell(root: Path, cell: Cell, steps: int, now: float) -> CellView:
    logdir = root / cell.name
    state = cellfiles.read_state(logdir)
    step = max(cellfiles.metrics_step(logdir), state.step if state.status == "done" else 0)
    status = state.status
    if status in ("running", "queued") and not cellfiles.busy(logdir, state):
        reached = cellfiles.done_step(logdir)  # its process ended unrecorded (a killed sweep)
        status = "done" if reached is not None and reached >= steps else "pending"
    elif status == "interrupted":
        status = "pending"
    view = CellView(cell.name, status, min(step, steps) if status != "done" else steps, steps)
    if status == "failed":
        view.error = state.error
    if state.started is not None:
        end = state.ended if state.ended is not None and status != "running" else now
        view.elapsed = end - state.started
        if view.elapsed > 1 and step > state.start_step:
            view.rate = (step - state.start_step) / view.elapsed
    return view


def views(root: str | Path, spec: SweepSpec, cells: list[Cell]) -> list[CellView]:
    now = time.time()
    return [view_cell(Path(root), cell, spec.steps, now) for cell in cells]


def counts(cell_views: list[CellView]) -> dict[str, int]:
    return {s: sum(v.status == s for v in cell_views) for s in ORDER}


def eta_seconds(cell_views: list[CellView], jobs: int) -> tuple[float | None, float | None]:
    """(seconds left, env steps/s): the steps left over the running cells' summed rate,
    else over the finished cells' mean rate times the sweep's jobs."""
    left = sum(v.steps - v.step for v in cell_views if v.status in ("running", "pending", "queued"))
    if left == 0:
        return (0.0, None) if all(v.status == "done" for v in cell_views) else (None, None)
    running = [v.rate for v in cell_views if v.status == "running" and v.rate]
    if running:
        speed = sum(running)
    else:
        done = [v.rate for v in cell_views if v.status == "done" and v.rate]
        if not done:
            return None, None
        speed = sum(done) / len(done) * max(1, jobs)
    return left / speed, speed


def _run_info(root: Path) -> dict:
    try:
        info = json.loads((root / cellfiles.RUN_FILE).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def summary_line(root: str | Path, spec: SweepSpec, cells: list[Cell]) -> str:
    """'9 cells: 4 done, 2 running, 1 failed, 2 pending; ETA 12 min (310 env steps/s)'."""
    return _summary(Path(root), views(root, spec, cells))


def _summary(root: Path, cell_views: list[CellView]) -> str:
    n = counts(cell_views)
    parts = [f"{n[s]} {s}" for s in ("done", "running", "failed", "queued", "pending") if n[s]]
    line = f"{len(cell_views)} cells: " + ", ".join(parts)
    eta, speed = eta_seconds(cell_views, int(_run_info(root).get("jobs", 1)))
    if n["done"] == len(cell_views):
        return line + "; finished"
    if eta is None:
        return line + "; ETA unknown (no rate measured yet)"
    return line + f"; ETA {duration(eta)}" + (f" ({speed:.0f} env steps/s)" if speed else "")


def status_text(root: str | Path, spec: SweepSpec, cells: list[Cell]) -> str:
    """The full view: the summary line, then one line per cell not done (and a count of
    those done), failed ones with their last error line."""
    root = Path(root)
    cell_views = views(root, spec, cells)
    lines = [f"sweep {root}: " + _summary(root, cell_views)]
    width = max(len(v.name) for v in cell_views)
    for status in ORDER[:-1]:
        for v in (v for v in cell_views if v.status == status):
            text = f"  {status:<8} {v.name:<{width}}  step {v.step}/{v.steps}"
            text += f" ({100 * v.step / v.steps:.0f}%)"
            if v.rate:
                text += f", {v.rate:.1f} steps/s"
            if status == "running" and v.elapsed is not None:
                text += f", {duration(v.elapsed)} in"
            if v.error:
                text += f"\n           {v.error}"
            lines.append(text)
    done = counts(cell_views)["done"]
    if done:
        lines.append(f"  done     {done} cell(s)")
    lines.append(_process_note(root, cell_views))
    return "\n".join(line for line in lines if line)


def _process_note(root: Path, cell_views: list[CellView]) -> str:
    """Whether a sweep process still runs this root (said when none does and work is left)."""
    if all(v.status == "done" for v in cell_views):
        return ""
    info = _run_info(root)
    state = cellfiles.CellState(status="running", pid=info.get("pid"), host=info.get("host", ""))
    if info.get("executor", "local") == "local" and not cellfiles.alive(state):
        return "  no sweep process runs on this root: rerun its command to resume it"
    return ""
