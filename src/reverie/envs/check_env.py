"""`reverie check-env`: run an env through reverie's checks before a run wastes hours on it.

The env is built as training builds it (`make_env`: your env, then `StrictEnv`, the action
and observation wrappers), and a `Recorder` sits right under `StrictEnv` to see what the
raw env returns. Random actions (seeded) run for `steps` steps over as many episodes as
fit; each check is one small function that turns what was seen into `Finding`s, each
with its fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reverie.envs.checks import EnvContractError, StrictEnv, nonfinite_keys
from reverie.envs.custom import CUSTOM, CustomEnvError, EnvFactory, custom_env_id
from reverie.envs.wrappers import _is_image, _leaves

Level = Literal["error", "warning", "ok"]


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str  # short name: spaces, api, observations, finite, episode-ends, seeding, ...
    message: str  # what was found
    fix: str = ""  # what to do ("" for ok)

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.level:<7} {self.check}: {self.message}{fix}"


class Recorder(gym.Wrapper):
    """What the raw env returns (API form, observation dtypes and shapes), checked on the
    fly so that a long check keeps no frames; the first problem of each kind is kept."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.leaves = _leaves(env.observation_space, "obs")
        self.api: dict[str, str] = {}  # "reset"/"step" -> what was wrong
        self.obs_issues: dict[tuple[str, str], Finding] = {}

    def reset(self, **kwargs: Any) -> Any:
        out = self.env.reset(**kwargs)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
            self._observe(out[0], "reset")
        else:
            self.api.setdefault("reset", "reset returned the observation alone, not (obs, info)")
        return out

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        if isinstance(out, tuple) and len(out) == 5:
            self._observe(out[0], "step")
        else:
            n = len(out) if isinstance(out, tuple) else 1
            self.api.setdefault("step", f"step returned {n} values, not 5")
        return out

    def _observe(self, obs: Any, where: str) -> None:
        for key, path, space in self.leaves:
            value = obs
            try:
                for p in path:
                    value = value[p]
            except (KeyError, IndexError, TypeError):
                continue  # DreamerObservation names a missing key
            self._leaf(key, space, value, where)

    def _leaf(self, key: str, space: spaces.Space, value: Any, where: str) -> None:
        if not isinstance(space, (spaces.Box, spaces.MultiBinary, spaces.MultiDiscrete)):
            return
        array = np.asarray(value)
        if array.shape != space.shape and (key, "shape") not in self.obs_issues:
            self.obs_issues[(key, "shape")] = Finding(
                "error",
                "observations",
                f"observation {key!r} from {where} has shape {array.shape}, its space "
                f"declares {space.shape}",
                "return arrays of the declared shape, or declare the shape you return",
            )
        if not isinstance(space, spaces.Box) or array.dtype == space.dtype:
            return
        if (key, "dtype") in self.obs_issues:
            return
        image = _is_image(space)
        self.obs_issues[(key, "dtype")] = Finding(
            "error" if image else "warning",
            "observations",
            f"observation {key!r} from {where} is {array.dtype}, its space declares "
            f"{space.dtype}"
            + (
                ": the image is read as uint8 frames"
                if image
                else f" (reverie casts it to float32; {array.dtype} values a {space.dtype} "
                "space rules out break Gymnasium's checker and other libraries)"
            ),
            f"return np.asarray(obs, dtype=np.{space.dtype}) in reset and step, or "
            f"declare dtype=np.{array.dtype} in the observation space",
        )


@dataclass
class Trace:
    """What one check run saw."""

    steps: int = 0
    episodes: list[tuple[int, bool, bool]] = field(default_factory=list)  # length, term, trunc
    nonfinite: dict[str, int] = field(default_factory=dict)  # key -> first step with NaN/inf
    failure: BaseException | None = None
    failed_at: str = ""


# ---------------------------------------------------------------- building


def resolve_target(target: str) -> tuple[str, EnvFactory | None]:
    """`ID`, `module:factory` or `path/to/file.py:factory` -> (env id, factory or None).

    `module:factory` counts as a factory when `module` imports (from the current directory
    too) and `factory` is a Python name in it; anything else (`gym:CartPole-v1`,
    gymnasium's own `module:Env-v0`) is an env id.
    """
    from reverie.envs import SUITES

    head, sep, name = target.rpartition(":")
    if not sep or not name.replace(".", "_").isidentifier():
        return target, None
    if head.endswith(".py"):
        module = _load_file(Path(head))
    elif head in SUITES or head == CUSTOM or ":" in head:
        return target, None
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(head)
        except ImportError:
            return target, None  # not a module here: make_env says what is wrong with the id
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise CustomEnvError(f"{head} has no {name!r}: name a class or function in it")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CustomEnvError(f"{head}:{name} is {type(obj).__name__}, not a factory")
    return custom_env_id(obj), obj


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise CustomEnvError(f"no file {path}: give path/to/file.py:factory")
    spec = importlib.util.spec_from_file_location(f"reverie_check_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pickling and dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def _build(
    env_id: str, factory: EnvFactory | None, seed: int, pixels: bool
) -> tuple[gym.Env | None, Recorder | None, list[Finding]]:
    from reverie.envs import UnsupportedSpaceError, make_env

    try:
        env = make_env(env_id, pixels=pixels, seed=seed, factory=factory)
    except UnsupportedSpaceError as e:
        return None, None, [Finding("error", "spaces", str(e), "wrap the env as the message says")]
    except Exception as e:  # noqa: BLE001 - any failure to build is the one finding
        fix = "" if isinstance(e, CustomEnvError) else "make the env build on its own first"
        return None, None, [Finding("error", "build", f"{type(e).__name__}: {e}", fix)]
    strict: Any = env
    while not isinstance(strict, StrictEnv):
        strict = strict.env
    recorder = Recorder(strict.env)
    strict.env = recorder
    found = Finding(
        "ok",
        "spaces",
        f"observation {_short(recorder.observation_space)} and action "
        f"{_short(recorder.action_space)} are supported",
    )
    return env, recorder, [found]


def _short(space: spaces.Space) -> str:
    """Box(4,) float32 rather than Box's full bounds."""
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {_short(s)}" for k, s in space.spaces.items()) + ")"
    if isinstance(space, spaces.Box):
        return f"Box{space.shape} {space.dtype}"
    return str(space)


# ---------------------------------------------------------------- running


def _run(env: gym.Env, steps: int, seed: int) -> Trace:
    trace = Trace()
    length, where = 0, "reset"
    try:
        obs, _ = env.reset(seed=seed)
        _nonfinite(trace, obs, 0.0)
        for _ in range(steps):
            where = f"step {trace.steps + 1}"
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.steps, length = trace.steps + 1, length + 1
            _nonfinite(trace, obs, reward)
            if terminated or truncated:
                trace.episodes.append((length, bool(terminated), bool(truncated)))
                where, length = "reset", 0
                obs, _ = env.reset()
                _nonfinite(trace, obs, 0.0)
    except Exception as e:  # noqa: BLE001 - the env's failure is a finding, not a crash
        trace.failure, trace.failed_at = e, where
    return trace


def _nonfinite(trace: Trace, obs: dict[str, np.ndarray], reward: Any) -> None:
    for key in nonfinite_keys(obs, np.asarray([reward], dtype=np.float64)):
        trace.nonfinite.setdefault(key, trace.steps)


# ---------------------------------------------------------------- checks


def check_api(recorder: Recorder) -> list[Finding]:
    if not recorder.api:
        return [Finding("ok", "api", "reset returns (obs, info) and step returns 5 values")]
    return [
        Finding(
            "error",
            "api",
            f"{what} (the old gym API)",
            "return (obs, info) from reset and (obs, reward, terminated, truncated, info) "
            "from step, as Gymnasium does",
        )
        for what in recorder.api.values()
    ]


def check_observations(recorder: Recorder) -> list[Finding]:
    if recorder.obs_issues:
        return list(recorder.obs_issues.values())
    return [Finding("ok", "observations", "dtypes and shapes match the observation space")]


def check_finite(trace: Trace) -> list[Finding]:
    if not trace.nonfinite:
        return [Finding("ok", "finite", f"no NaN or inf in {trace.steps} steps")]
    where = ", ".join(f"{k} (first at step {s})" for k, s in trace.nonfinite.items())
    return [
        Finding(
            "error",
            "finite",
            f"NaN or inf in {where}: it would reach the world model's loss",
            "clean them in the env (np.nan_to_num, or end the episode), or train with "
            "env.parallel=async, which ends such episodes as truncated",
        )
    ]


def declared_time_limit(env: gym.Env) -> int | None:
    """spec.max_episode_steps, or a `max_episode_steps` attribute of the env itself."""
    for source in (env, env.unwrapped):
        spec = getattr(source, "spec", None)
        if spec is not None and spec.max_episode_steps:
            return int(spec.max_episode_steps)
    for attr in ("max_episode_steps", "_max_episode_steps"):
        value = getattr(env.unwrapped, attr, None)
        if isinstance(value, (int, np.integer)) and value > 0:
            return int(value)
    return None


_BOOTSTRAP = (
    "terminated=True tells reverie the episode is over for good (no value after it); a "
    "time limit is truncated=True, after which the critic's value is bootstrapped"
)
_TRUNCATE_FIX = "return terminated=False, truncated=True when the time limit ends an episode"


def check_episode_ends(trace: Trace, limit: int | None) -> list[Finding]:
    episodes = trace.episodes
    if not episodes:
        return [
            Finding(
                "ok",
                "episode-ends",
                f"no episode ended in {trace.steps} steps (more --steps checks episode ends)",
            )
        ]
    at_limit = [n for n, term, _ in episodes if term and limit and n == limit]
    if at_limit:
        return [
            Finding(
                "warning",
                "episode-ends",
                f"{len(at_limit)} of {len(episodes)} episodes ended with terminated=True at "
                f"exactly the time limit ({limit} steps): {_BOOTSTRAP}",
                _TRUNCATE_FIX,
            )
        ]
    lengths = {n for n, _, _ in episodes}
    all_terminated = all(term and not trunc for _, term, trunc in episodes)
    if limit and all_terminated and len(lengths) == 1 and len(episodes) >= 2:
        (n,) = lengths
        return [
            Finding(
                "warning",
                "episode-ends",
                f"all {len(episodes)} episodes ended with terminated=True after exactly {n} "
                f"steps while the spec has a time limit ({limit}): if that is a time "
                f"limit, {_BOOTSTRAP}",
                _TRUNCATE_FIX + " (ignore this if the task really ends there)",
            )
        ]
    ends = f"{sum(t for _, t, _ in episodes)} terminated, {sum(t for *_, t in episodes)} truncated"
    return [Finding("ok", "episode-ends", f"{len(episodes)} episodes ({ends})")]


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a
    )


def check_seeding(env: gym.Env, seed: int) -> list[Finding]:
    try:
        first, _ = env.reset(seed=seed)
        again, _ = env.reset(seed=seed)
        other, _ = env.reset(seed=seed + 1)
    except Exception as e:  # noqa: BLE001 - reported by the run as well
        return [Finding("error", "seeding", f"reset(seed=...) raised {type(e).__name__}: {e}")]
    if not _same(first, again):
        return [
            Finding(
                "warning",
                "seeding",
                f"two reset(seed={seed}) calls gave different first observations: runs "
                "cannot be reproduced",
                "call super().reset(seed=seed) in reset and draw all randomness from "
                "self.np_random",
            )
        ]
    note = "" if not _same(first, other) else " (other seeds too: a fixed start)"
    return [Finding("ok", "seeding", f"the same seed gives the same first observation{note}")]


def check_render(env: gym.Env) -> list[Finding]:
    fix = (
        "make render() return an (H, W, 3) uint8 frame: construct the env with "
        "render_mode='rgb_array'"
    )
    try:
        env.reset()
        frame = env.render()
    except Exception as e:  # noqa: BLE001 - a failing render is the finding
        return [Finding("error", "render", f"render() raised {type(e).__name__}: {e}", fix)]
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        what = "None" if array is None else f"{array.dtype} array of shape {array.shape}"
        return [Finding("error", "render", f"render() returned {what}", fix)]
    return [Finding("ok", "render", f"render() returns {array.shape} uint8 frames")]


def check_failure(trace: Trace, explained: bool) -> list[Finding]:
    e = trace.failure
    if e is None or explained:
        return []
    if isinstance(e, EnvContractError):
        return [
            Finding("error", "contract", f"at {trace.failed_at}: {e}", "return what the spaces say")
        ]
    return [
        Finding(
            "error",
            "crash",
            f"at {trace.failed_at}: {type(e).__name__}: {e}",
            "the env raised under random actions; fix it in the env",
        )
    ]


def check_env(
    env_id: str,
    factory: EnvFactory | None = None,
    steps: int = 200,
    seed: int = 0,
    pixels: bool = False,
) -> list[Finding]:
    """Build `env_id` (or `factory`) as training would, run `steps` random actions and
    return what each check found."""
    env, recorder, findings = _build(env_id, factory, seed, pixels)
    if env is None or recorder is None:
        return findings
    try:
        trace = _run(env, steps, seed)
        findings += check_api(recorder)
        findings += check_observations(recorder)
        explained = any(f.level == "error" for f in findings)
        findings += check_failure(trace, explained)
        findings += check_finite(trace)
        findings += check_episode_ends(trace, declared_time_limit(recorder))
        if trace.failure is None:
            findings += check_seeding(env, seed)
            if pixels:
                findings += check_render(env)
    finally:
        try:
            env.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken env must not hide findings
            pass
    return findings


def summary(target: str, findings: list[Finding]) -> str:
    count = {level: sum(f.level == level for f in findings) for level in ("ok", "warning", "error")}
    verdict = "fix the errors before training" if count["error"] else "ready to train"
    return (
        f"check-env {target}: {count['ok']} ok, {count['warning']} warnings, "
        f"{count['error']} errors; {verdict}"
    )
