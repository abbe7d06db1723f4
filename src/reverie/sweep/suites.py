"""The paper's benchmark suites as sweeps, for `reverie reproduce`: their tasks, seeds and
step budgets; the train ratio and the rest come from the suite's preset
(reverie/configs/domains.yaml) and the model size is the paper's (`--size paper`).

Tasks and seed counts of DMC and Atari100k are those of the authors' score files (the
published tables, reverie/viz/reference_scores.yaml); the score files hold no Crafter or
BSuite runs, so their seed counts, and BSuite's budget, are reverie's choices.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from reverie.config import DOMAINS, ConfigError
from reverie.sweep.spec import SweepSpec, make_spec
from reverie.viz.plot import reference_scores

# the 23 BSuite experiments, each at its first setting (bsuite:<experiment>/0)
BSUITE = (
    "bandit",
    "bandit_noise",
    "bandit_scale",
    "cartpole",
    "cartpole_noise",
    "cartpole_scale",
    "cartpole_swingup",
    "catch",
    "catch_noise",
    "catch_scale",
    "deep_sea",
    "deep_sea_stochastic",
    "discounting_chain",
    "memory_len",
    "memory_size",
    "mnist",
    "mnist_noise",
    "mnist_scale",
    "mountain_car",
    "mountain_car_noise",
    "mountain_car_scale",
    "umbrella_distract",
    "umbrella_length",
)
BSUITE_STEPS = 100_000  # not the paper's: each experiment ends after its own episode count


@dataclass(frozen=True)
class PaperSuite:
    name: str
    prefix: str  # env ids are <prefix>:<task>
    tasks: tuple[str, ...]
    seeds: int
    steps: int
    overrides: tuple[str, ...] = ()  # what picks the suite's preset, where its id does not


def _published_tasks(suite: str) -> tuple[str, ...]:
    return tuple(reference_scores()["suites"][suite]["scores"])


def _preset_steps(preset: str) -> int:
    return int(DOMAINS[preset]["run"]["steps"])


def paper_suites() -> dict[str, PaperSuite]:
    return {
        "dmc_proprio": PaperSuite(
            "dmc_proprio", "dmc", _published_tasks("dmc_proprio"), 5, _preset_steps("dmc_proprio")
        ),
        "dmc_vision": PaperSuite(
            "dmc_vision",
            "dmc",
            _published_tasks("dmc_vision"),
            10,
            _preset_steps("dmc_vision"),
            ("preset=dmc_vision",),
        ),
        "atari100k": PaperSuite(
            "atari100k", "atari100k", _published_tasks("atari100k"), 5, _preset_steps("atari100k")
        ),
        "crafter": PaperSuite("crafter", "crafter", ("reward",), 5, _preset_steps("crafter")),
        "bsuite": PaperSuite("bsuite", "bsuite", tuple(f"{t}/0" for t in BSUITE), 5, BSUITE_STEPS),
    }


def paper_suite(name: str) -> PaperSuite:
    suites = paper_suites()
    if name not in suites:
        raise ConfigError(f"unknown suite {name!r}; reproducible suites: {', '.join(suites)}")
    return suites[name]


def pick_tasks(suite: PaperSuite, wanted: str | None) -> tuple[str, ...]:
    """The suite's env ids, or those of `wanted` ('cartpole_balance,walker_walk', with or
    without the 'dmc:' prefix; a BSuite experiment without '/0' means its first setting)."""
    ids = tuple(f"{suite.prefix}:{t}" for t in suite.tasks)
    if not wanted:
        return ids
    out = []
    for name in (n.strip() for n in wanted.split(",")):
        task = name.split(":", 1)[1] if name.startswith(f"{suite.prefix}:") else name
        if suite.name == "bsuite" and task and "/" not in task:
            task += "/0"
        if task not in suite.tasks:
            close = difflib.get_close_matches(task, suite.tasks, n=3)
            hint = f"closest: {', '.join(close)}" if close else f"tasks: {', '.join(suite.tasks)}"
            raise ConfigError(f"{suite.name} has no task {name!r}; {hint}")
        out.append(f"{suite.prefix}:{task}")
    return tuple(dict.fromkeys(out))


def reproduce_spec(
    name: str,
    tasks: str | None = None,
    steps: int | None = None,
    seeds: str | int | None = None,
    size: str | None = None,
    overrides: list[str] | None = None,
) -> SweepSpec:
    """The sweep of `name` with the paper's settings; tasks, steps, seeds and size by flag."""
    suite = paper_suite(name)
    return make_spec(
        list(pick_tasks(suite, tasks)),
        seeds if seeds is not None else suite.seeds,
        steps if steps is not None else suite.steps,
        size=size or "paper",
        overrides=[*suite.overrides, *(overrides or [])],
        suite=suite.name,
    )
