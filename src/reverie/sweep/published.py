"""The published DreamerV3 numbers a sweep is scored against, read from the tables the
package ships (reverie/viz/reference_scores.yaml: final scores, Atari random and human
scores; reverie/viz/reference_curves.yaml: learning curves). Their sources are noted there."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from reverie.viz.plot import reference_for, reference_scores, reference_suite

# the tables count Atari100k's steps in frames, 4 to one env step of reverie (the action
# repeat happens inside the env): its 400K published frames are the preset's 100K env steps
FRAMES_PER_STEP = {"atari100k": 4}


@dataclass(frozen=True)
class Published:
    suite: str  # dmc_proprio, dmc_vision, atari100k, crafter
    task: str
    final: float  # the published score at `steps` (a range's midpoint)
    steps: int  # the suite's budget, in env steps
    label: str


def lookup(env_id: str, pixels: bool = False) -> Published | None:
    """The published score of a run's task; None when the paper has none for it, or only
    for the other observation kind (a proprio run is not scored against vision)."""
    found = reference_suite(env_id, pixels)
    ref = reference_for(env_id, pixels)
    if found is None or ref is None:
        return None
    observation = reference_scores()["suites"][found[0]].get("observation")
    if observation is not None and (observation == "vision") != pixels:
        return None
    steps = ref.steps // FRAMES_PER_STEP.get(found[0], 1)
    return Published(found[0], found[1], ref.value, steps, ref.label)


def suite_info(suite: str) -> dict:
    """The suite's entry of reference_scores.yaml ({} for one it does not hold)."""
    return dict(reference_scores()["suites"].get(suite, {}))


def published_steps(suite: str) -> int | None:
    """The suite's published budget in env steps, None for a suite the tables do not hold."""
    steps = suite_info(suite).get("steps")
    return None if steps is None else int(steps) // FRAMES_PER_STEP.get(suite, 1)


@cache
def reference_curves() -> dict:
    from omegaconf import OmegaConf

    text = resources.files("reverie.viz").joinpath("reference_curves.yaml").read_text()
    curves = OmegaConf.to_container(OmegaConf.create(text))
    assert isinstance(curves, dict)  # suite -> steps and scores
    return curves


def curve(suite: str, task: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(env steps, mean score) of the published learning curve, None without one."""
    entry = reference_curves()["suites"].get(suite)
    if entry is None or task not in entry["scores"]:
        return None
    steps = np.asarray(entry["steps"], np.float64) / FRAMES_PER_STEP.get(suite, 1)
    values = np.asarray([np.nan if v is None else v for v in entry["scores"][task]], np.float64)
    keep = ~np.isnan(values)
    return steps[keep], values[keep]


def at_budget(published: Published, steps: int) -> float | None:
    """The published score at `steps`: the final one at or past the suite's budget, else
    the learning curve interpolated there (None below its first point or without one)."""
    if steps >= published.steps:
        return published.final
    found = curve(published.suite, published.task)
    if found is None or not len(found[0]) or steps < found[0][0]:
        return None
    return float(np.interp(steps, *found))


def random_human(task: str) -> tuple[float, float] | None:
    """The random and human scores of an Atari game ('pong'), None for another task."""
    table = suite_info("atari100k").get("random_human", {})
    if task not in table:
        return None
    low, high = table[task]
    return float(low), float(high)


def human_normalised(task: str, score: float) -> float | None:
    """(score - random) / (human - random) for an Atari game; None for another task."""
    found = random_human(task)
    if found is None:
        return None
    low, high = found
    return (score - low) / (high - low)
