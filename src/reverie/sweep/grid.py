"""The cells of a sweep: every task x grid variant x seed, its logdir under the root and its
`reverie train` command."""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from reverie.clocks import TrainRatio
from reverie.config import PAPER, ConfigError
from reverie.errors import MissingExtraError, install_command
from reverie.sweep.spec import SweepSpec


@dataclass(frozen=True)
class Cell:
    task: str  # env id
    seed: int
    variant: tuple[tuple[str, str], ...]  # this cell's grid keys and values
    name: str  # its logdir relative to the root, e.g. gym-CartPole-v1/seed0

    @property
    def group(self) -> str:
        """The task and variant: the cells that differ only in the seed share it."""
        if not self.variant:
            return self.task
        return f"{self.task} [{', '.join(f'{k}={v}' for k, v in self.variant)}]"

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.variant]


def slug(text: str) -> str:
    """A path part: 'gym:CartPole-v1' -> 'gym-CartPole-v1', 'bsuite:catch/0' -> 'bsuite-catch-0'."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-") or "-"


def variants(spec: SweepSpec) -> list[tuple[tuple[str, str], ...]]:
    """The grid's cartesian product; one empty variant without a grid."""
    keys = [k for k, _ in spec.grid]
    return [tuple(zip(keys, values)) for values in itertools.product(*(v for _, v in spec.grid))]


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of the spec, in a fixed order (task, variant, seed)."""
    cells = []
    for task, variant, seed in itertools.product(spec.tasks, variants(spec), spec.seeds):
        parts = [slug(task)]
        if variant:
            parts.append(slug("+".join(f"{k}={v}" for k, v in variant)))
        cells.append(Cell(task, seed, variant, "/".join([*parts, f"seed{seed}"])))
    seen: dict[str, Cell] = {}
    for cell in cells:
        other = seen.setdefault(cell.name, cell)
        if other is not cell:
            raise ConfigError(
                f"{other.group} and {cell.group} would share the logdir {cell.name}: "
                "rename one of the tasks or grid values"
            )
    return cells


def cell_flags(spec: SweepSpec, cell: Cell) -> dict[str, Any]:
    """The config flags of a cell, as `make_config` and `Dreamer` take them."""
    flags: dict[str, Any] = {"env.id": cell.task, "seed": cell.seed, "run.steps": spec.steps}
    if spec.size is not None:
        flags["size"] = spec.size
    if spec.train_ratio is not None:
        flags["run.train_ratio"] = spec.train_ratio
    return flags


def cell_config(spec: SweepSpec, cell: Cell) -> DictConfig:
    """The resolved config the cell's run starts with."""
    from reverie.config import make_config

    return make_config([*spec.overrides, *cell.overrides()], **cell_flags(spec, cell))


def command(spec: SweepSpec, cell: Cell, root: str | Path, python: str = "") -> list[str]:
    """The `reverie train` command line of a cell; rerunning it resumes the cell. A size
    `paper` is given as the size it stands for (`reverie train` resumes a run only with
    its own size)."""
    argv = [python or sys.executable, "-m", "reverie.cli", "train", "--env", cell.task]
    argv += ["--logdir", str(Path(root) / cell.name), "--steps", str(spec.steps)]
    argv += ["--seed", str(cell.seed)]
    if spec.size is not None:
        argv += ["--size", str(cell_config(spec, cell).size) if spec.size == PAPER else spec.size]
    if spec.train_ratio is not None:
        argv += ["--train-ratio", f"{spec.train_ratio:g}"]
    return [*argv, *spec.overrides, *cell.overrides()]


def check_cells(spec: SweepSpec, cells: list[Cell]) -> None:
    """Refuse, in one line and before anything runs, a cell whose config is invalid or whose
    env suite is not installed."""
    from reverie.envs import SUITE_INFO, split_id, suite_installed

    checked: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for cell in cells:
        if (cell.task, cell.variant) in checked:
            continue
        checked.add((cell.task, cell.variant))
        try:
            cell_config(spec, cell)
        except ConfigError as e:
            raise ConfigError(f"cell {cell.group}: {e}") from None
        suite = split_id(cell.task)[0]
        if not suite_installed(suite):
            extra = SUITE_INFO[suite][1]
            raise MissingExtraError(
                f"cell {cell.group}: the {suite} suite is not installed: {install_command(extra)}"
            )


def cost(spec: SweepSpec, cells: list[Cell]) -> dict[str, Any]:
    """What the sweep asks for: cells, env steps, updates (steps x train ratio / the replayed
    steps of one update) and the model sizes."""
    from reverie.config import train_fill

    updates, sizes = 0, set[str]()
    for cell in cells:
        cfg = cell_config(spec, cell)
        updates += TrainRatio.from_run(cfg.run).budget(spec.steps, train_fill(cfg.run))
        sizes.add(str(cfg.size))
    return {
        "cells": len(cells),
        "env_steps": spec.steps * len(cells),
        "updates": updates,
        "sizes": sorted(sizes),
    }
