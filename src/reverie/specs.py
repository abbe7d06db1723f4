"""What flows between the envs, replay and the model, in one place.

- `ObsSpec`, `ActSpec`: what the model reads and writes; `specs_from_spaces` reads them
  off an env's spaces.
- The replay step schema: the keys of one stored step, and how the posterior latent of
  each step is kept (deter as fp16, stoch as uint8 class indices) and read back.
- `replay_length`: the sequence length replay serves (the trained steps plus context).

Shape legend used across the package: B batch, T time, H imagination horizon, N flattened
batch (B*T, or envs when acting), S stochastic latents, K classes per latent, D width of
the deterministic state, F feature width (D + S*K), A action dims (or actions, one-hot).

This module is the bottom layer: it imports nothing from the model or the envs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

Tensor = torch.Tensor

# the non-observation keys of a replay step; observations are ObsSpec.keys
STEP_KEYS = ("reward", "is_first", "is_last", "is_terminal", "action", "deter", "stoch")


@dataclass(frozen=True)
class ObsSpec:
    """Which observation keys the model reads: flat float vectors and uint8 HxWxC images.

    `discrete` names the vectors that are categorical (a Discrete, MultiDiscrete or
    MultiBinary observation): the class count of each part, whose one-hot segments lie
    side by side in the key's vector (their sum is its size). As in the 2024 code, the
    encoder reads them as one-hot without symlog and the decoder predicts each part with a
    categorical head; the other vectors are symlog'd numbers.
    """

    vectors: dict[str, int]  # key -> size
    images: dict[str, tuple[int, int, int]]  # key -> (H, W, C)
    discrete: dict[str, tuple[int, ...]] = field(default_factory=dict)  # key -> classes

    def __post_init__(self) -> None:
        for key, classes in self.discrete.items():
            assert key in self.vectors and sum(classes) == self.vectors[key], (key, classes)

    @property
    def image_channels(self) -> int:
        return sum(shape[-1] for shape in self.images.values())

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images, which share it (the observation wrapper resizes them)."""
        h, w, _ = next(iter(self.images.values()))
        return h, w

    @property
    def keys(self) -> list[str]:
        return [*self.vectors, *self.images]


@dataclass(frozen=True)
class ActPart:
    """One part of a composite action: discrete (a one-hot segment of `dim` actions, the
    first being `start`) or continuous (`dim` values in [-1, 1] for the bounds low/high)."""

    key: str  # the Dict key ("" for a MultiDiscrete part)
    discrete: bool
    dim: int
    start: int = 0
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def to_env(self, action: np.ndarray) -> np.ndarray:
        if self.discrete:
            return action.argmax(-1) + self.start
        return to_bounds(action, self.low, self.high)


@dataclass(frozen=True)
class ActSpec:
    """The action the model emits: one-hot over `dim` actions (discrete; the env's first
    action is `start`) or `dim` continuous values in [-1, 1] (the env's bounds `low` and
    `high`, where known; an infinite bound leaves that value as it is).

    A MultiDiscrete or Dict action space is composite: `parts` side by side in one vector
    of `dim` values, and `container` ("multidiscrete" or "dict") says how the env takes
    them back.
    """

    discrete: bool
    dim: int
    start: int = 0
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    parts: tuple[ActPart, ...] = ()
    container: str = ""

    def to_env(self, action: np.ndarray) -> Any:
        """The model's action (..., A) as the env takes it: an index for discrete actions
        (the largest entry wins); continuous ones clipped to [-1, 1] and mapped onto the
        env's bounds (float64: the env wrapper casts to the env's dtype); composite ones
        as an index array (..., P) (MultiDiscrete) or a dict of the parts (Dict)."""
        action = np.asarray(action)
        if self.parts:
            ends = np.cumsum([p.dim for p in self.parts])[:-1]
            values = [p.to_env(a) for p, a in zip(self.parts, np.split(action, ends, -1))]
            if self.container == "multidiscrete":
                return np.stack(values, -1)
            return {p.key: v for p, v in zip(self.parts, values)}
        return ActPart("", self.discrete, self.dim, self.start, self.low, self.high).to_env(action)


def to_bounds(
    action: np.ndarray, low: tuple[float, ...] | None, high: tuple[float, ...] | None
) -> np.ndarray:
    """[-1, 1] values (clipped) mapped linearly onto [low, high] where both are finite."""
    action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
    if low is None or high is None:
        return action
    scale, offset = bounds_affine(low, high)
    return action * scale + offset


def bounds_affine(
    low: tuple[float, ...] | None, high: tuple[float, ...] | None, dim: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), float64: the env's value of a [-1, 1] action is action * scale +
    offset, [-1, 1] onto [low, high] where both bounds are finite, the action itself
    elsewhere (and everywhere without bounds). The one mapping of continuous actions:
    `to_bounds` and the exported policy (`reverie.policy.EnvActionStep`) use it."""
    if low is None or high is None:
        return np.ones(dim), np.zeros(dim)
    lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
    finite = np.isfinite(lo) & np.isfinite(hi)
    scale = np.where(finite, (np.where(finite, hi, 1.0) - np.where(finite, lo, -1.0)) / 2, 1.0)
    offset = np.where(finite, (np.where(finite, hi, 0.0) + np.where(finite, lo, 0.0)) / 2, 0.0)
    return scale, offset


def specs_from_spaces(obs_space: spaces.Dict, act_space: spaces.Space) -> tuple[ObsSpec, ActSpec]:
    """The specs of an env whose observations are `reverie.envs.wrappers.DreamerObservation`'s
    Dict of float vectors (one-hot ones carrying their `classes`) and uint8 images, acting
    in a Discrete or float Box space."""
    vectors: dict[str, int] = {}
    images: dict[str, tuple[int, int, int]] = {}
    discrete: dict[str, tuple[int, ...]] = {}
    for key, space in obs_space.spaces.items():
        shape = space.shape
        assert shape is not None, (key, space)  # Box spaces have a shape
        if space.dtype == np.uint8 and len(shape) == 3:
            h, w, c = shape
            images[key] = (h, w, c)
        else:
            vectors[key] = int(shape[0])
            # the one-hot vector of a categorical observation (envs.wrappers.OneHotBox)
            classes = getattr(space, "classes", None)
            if classes is not None:
                discrete[key] = tuple(int(n) for n in classes)
    return ObsSpec(vectors, images, discrete), act_spec_of(act_space)


def act_spec_of(space: spaces.Space) -> ActSpec:
    """The spec of a Discrete, float Box, MultiDiscrete or Dict (of Discrete and Box)
    action space, as the env wrappers present it."""
    composed = getattr(space, "act_spec", None)  # envs.wrappers.ComposedBox
    if isinstance(composed, ActSpec):
        return composed
    if isinstance(space, spaces.MultiDiscrete):
        starts = np.ravel(getattr(space, "start", np.zeros_like(space.nvec)))
        indices = tuple(
            ActPart("", True, int(n), int(s)) for n, s in zip(np.ravel(space.nvec), starts)
        )
        dim = sum(p.dim for p in indices)
        return ActSpec(False, dim, parts=indices, container="multidiscrete")
    if isinstance(space, spaces.Dict):
        keyed = []
        for key, sub in space.spaces.items():
            one = act_spec_of(sub)
            keyed.append(ActPart(str(key), one.discrete, one.dim, one.start, one.low, one.high))
        return ActSpec(False, sum(p.dim for p in keyed), parts=tuple(keyed), container="dict")
    if isinstance(space, spaces.Discrete):
        return ActSpec(True, int(space.n), int(space.start))
    assert space.shape is not None, space  # a Box
    # the bounds of the env behind `NormalizeAction` (its `NormalizedBox` keeps them); a
    # Box inside a Dict keeps its own bounds
    if hasattr(space, "env_low"):
        low, high = (getattr(space, name) for name in ("env_low", "env_high"))
    else:
        low, high = (space.low, space.high) if isinstance(space, spaces.Box) else (None, None)
    return ActSpec(False, int(np.prod(space.shape)), 0, _floats(low), _floats(high))


def _floats(values: Any) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(x) for x in np.ravel(values))


def specs_state(obs: ObsSpec, act: ActSpec) -> dict[str, Any]:
    """The specs as plain containers, for a checkpoint that loads weights only."""
    return {"obs": asdict(obs), "act": asdict(act)}


def specs_from_state(state: dict[str, Any]) -> tuple[ObsSpec, ActSpec]:
    """`specs_state` read back."""
    o = state["obs"]
    images = {k: (int(v[0]), int(v[1]), int(v[2])) for k, v in o["images"].items()}
    # checkpoints written before `discrete` have none: their vectors stay numbers
    discrete = {k: tuple(int(n) for n in v) for k, v in o.get("discrete", {}).items()}
    return ObsSpec(dict(o["vectors"]), images, discrete), _act_from_state(state["act"])


def _act_from_state(a: dict[str, Any]) -> ActSpec:
    low, high = (tuple(a[k]) if a.get(k) is not None else None for k in ("low", "high"))
    parts = []
    for p in a.get("parts", ()):
        lo, hi = (tuple(p[k]) if p.get(k) is not None else None for k in ("low", "high"))
        parts.append(
            ActPart(str(p["key"]), bool(p["discrete"]), int(p["dim"]), int(p["start"]), lo, hi)
        )
    start = int(a.get("start", 0))
    container = str(a.get("container", ""))
    return ActSpec(bool(a["discrete"]), int(a["dim"]), start, low, high, tuple(parts), container)


def replay_length(run: Any, replay: Any) -> int:
    """Steps per sampled sequence: `run.batch_length` trained steps after `replay.context`
    steps whose stored latent starts the sequence."""
    return int(run.batch_length) + int(replay.context)


# ------------------------------------------------------------------ latents in replay
def encode_latent(deter: Tensor, stoch: Tensor) -> dict[str, Tensor]:
    """A posterior latent as replay stores it: deter (..., D) as fp16, one-hot stoch
    (..., S, K) as uint8 class indices (..., S)."""
    return {"deter": deter.detach().half(), "stoch": stoch.detach().argmax(-1).to(torch.uint8)}


def decode_latent(deter: Tensor, stoch: Tensor, classes: int) -> dict[str, Tensor]:
    """Stored deter (..., D) and stoch indices (..., S) back as float deter and one-hot stoch."""
    one_hot = torch.nn.functional.one_hot(stoch.long(), classes).float()
    return {"deter": deter.float(), "stoch": one_hot}


def to_numpy(tensors: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: v.cpu().numpy() for k, v in tensors.items()}


def replay_step(
    obs: dict[str, np.ndarray],
    reward: np.ndarray,
    is_first: np.ndarray,
    is_last: np.ndarray,
    is_terminal: np.ndarray,
    action: Tensor,
    latent: dict[str, Tensor],
) -> dict[str, np.ndarray]:
    """One step of N envs as replay stores it: the observation, the reward and flags that
    arrived with it, the action taken on it (N, A) and the posterior latent it gave."""
    step = {
        **obs,
        "reward": reward,
        "is_first": is_first,
        "is_last": is_last,
        "is_terminal": is_terminal,
        "action": action.float().cpu().numpy(),
        **to_numpy(encode_latent(latent["deter"], latent["stoch"])),
    }
    assert set(step) == set(obs) | set(STEP_KEYS), sorted(step)
    return step
