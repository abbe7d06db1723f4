"""What a sweep is: tasks, seeds, a step budget, flags, override grids; stored in ROOT/sweep.yaml.

The spec fixes the set of cells and each cell's `reverie train` command, so a root holds one
spec: a rerun with the same one resumes the sweep, a different one is refused in one line.
How the cells run (`--jobs`, the executor, GPUs) is not part of it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from reverie.config import ConfigError
from reverie.files import atomic_write

SPEC_FILE = "sweep.yaml"
VERSION = 1
MAX_SEED = 2**32 - 1
MAX_SEEDS = 1000  # seeds in one sweep: more is a typo, not a plan


@dataclass(frozen=True)
class SweepSpec:
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int  # total env steps of every cell
    size: str | None = None  # --size of every cell (None: the preset's)
    train_ratio: float | None = None  # --train-ratio of every cell (None: the preset's)
    grid: tuple[tuple[str, tuple[str, ...]], ...] = ()  # key -> values, crossed
    overrides: tuple[str, ...] = ()  # key=value for every cell
    suite: str = ""  # the paper suite a `reverie reproduce` sweep reproduces

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks"], out["seeds"] = list(self.tasks), list(self.seeds)
        out["grid"] = {k: list(v) for k, v in self.grid}
        out["overrides"] = list(self.overrides)
        return {"version": VERSION, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known - {"version"})
        if extra or data.get("version") != VERSION:
            raise ValueError(f"unknown keys {extra}" if extra else "another version")
        return cls(
            tasks=tuple(map(str, data["tasks"])),
            seeds=tuple(int(s) for s in data["seeds"]),
            steps=int(data["steps"]),
            size=None if data.get("size") is None else str(data["size"]),
            train_ratio=None if data.get("train_ratio") is None else float(data["train_ratio"]),
            grid=tuple((str(k), tuple(map(str, v))) for k, v in (data.get("grid") or {}).items()),
            overrides=tuple(map(str, data.get("overrides") or ())),
            suite=str(data.get("suite") or ""),
        )


def make_spec(
    tasks: str | list[str],
    seeds: str | int,
    steps: int | None,
    *,
    size: str | None = None,
    train_ratio: float | None = None,
    grid: list[str] | None = None,
    overrides: list[str] | None = None,
    suite: str = "",
) -> SweepSpec:
    """A spec from command-line values, each checked with a one-line ConfigError."""
    if steps is None or steps <= 0:
        raise ConfigError(f"--steps must be a positive number of env steps per cell, not {steps}")
    if train_ratio is not None and not train_ratio > 0:
        raise ConfigError(f"--train-ratio must be > 0, not {train_ratio}")
    return SweepSpec(
        tasks=parse_tasks(tasks),
        seeds=parse_seeds(seeds),
        steps=int(steps),
        size=size,
        train_ratio=train_ratio,
        grid=parse_grid(grid or []),
        overrides=tuple(overrides or ()),
        suite=suite,
    )


def parse_tasks(tasks: str | list[str]) -> tuple[str, ...]:
    """'gym:CartPole-v1,bsuite:catch/0' (or a list of such strings) -> the env ids."""
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    out = [t.strip() for item in items for t in item.split(",")]
    if not out or any(not t for t in out):
        raise ConfigError(
            f"--tasks {','.join(items)!r} has an empty env id: give comma-separated ids, "
            "e.g. --tasks gym:CartPole-v1,gym:Pendulum-v1"
        )
    duplicates = sorted({t for t in out if out.count(t) > 1})
    if duplicates:
        raise ConfigError(f"--tasks names {', '.join(duplicates)} more than once")
    return tuple(out)


def parse_seeds(seeds: str | int) -> tuple[int, ...]:
    """'3' -> (0, 1, 2): a count; '0,4,7' or '3-5' (inclusive) or a mix: those seeds."""
    text = str(seeds).strip()
    hint = "--seeds is a count (3: seeds 0 1 2), a list (0,4,7) or a range (3-5)"
    if re.fullmatch(r"\d+", text):
        count = int(text)
        if not 1 <= count <= MAX_SEEDS:
            raise ConfigError(f"--seeds {text}: a sweep takes 1 to {MAX_SEEDS} seeds ({hint})")
        return tuple(range(count))
    out: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"--seeds {text!r}: cannot read {part!r} ({hint})")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise ConfigError(f"--seeds {text!r}: the range {part.strip()} runs backwards")
        if len(out) + high - low + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds {text!r}: a sweep takes at most {MAX_SEEDS} seeds")
        out += range(low, high + 1)
    if len(set(out)) != len(out):
        raise ConfigError(f"--seeds {text!r} names a seed more than once")
    if max(out) > MAX_SEED:
        raise ConfigError(f"--seeds {text!r}: seeds must be <= {MAX_SEED}")
    return tuple(out)


def parse_grid(items: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """['run.train_ratio=32,64', 'model.units=64,128'] -> the keys and their values."""
    grid: dict[str, tuple[str, ...]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parts = tuple(v.strip() for v in values.split(","))
        if not sep or not key.strip() or not values.strip() or any(not v for v in parts):
            raise ConfigError(
                f"--grid {item!r} is not key=value,value,... (e.g. --grid run.train_ratio=32,64)"
            )
        if key.strip() in grid:
            raise ConfigError(f"--grid names {key.strip()} twice: give its values in one --grid")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"--grid {item!r} repeats a value")
        grid[key.strip()] = parts
    return tuple(grid.items())


def load_spec(root: str | Path) -> SweepSpec:
    """The spec stored in `root`, or a ConfigError saying why there is none."""
    path = Path(root) / SPEC_FILE
    if not path.is_file():
        raise ConfigError(
            f"{root} is not a sweep root (no {SPEC_FILE}): pass the --root of a `reverie sweep`"
        )
    try:
        return SweepSpec.from_dict(yaml.safe_load(path.read_text()))
    except Exception as e:  # noqa: BLE001 - unreadable YAML, missing or mistyped keys
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"{path} is corrupt ({problem}): restore it, or pick a new --root"
        ) from None


def bind_root(root: str | Path, spec: SweepSpec) -> Path:
    """Store `spec` in a new root, or check that an existing root holds the same one."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"sweep root {root} is a file, not a directory: pick a new --root")
    if (root / SPEC_FILE).exists():
        stored = load_spec(root)
        if stored != spec:
            raise ConfigError(
                f"{root} holds another sweep ({spec_difference(stored, spec)}): rerun it "
                "with the arguments it was started with, or pick a new --root"
            )
        return root
    root.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    atomic_write(root / SPEC_FILE, text.encode())
    return root


def spec_difference(old: SweepSpec, new: SweepSpec) -> str:
    """The first field that differs, as 'steps 5000 there, 6000 here'."""
    for f in fields(SweepSpec):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            if f.name == "grid":
                a, b = dict(a), dict(b)
            return f"{f.name} {a} there, {b} here"
    return "no difference"
