"""A trained policy without the trainer, and its export.

`load_policy(logdir or checkpoint file)` reads the checkpoint (weights only: no env, no
replay, no optimiser state) and returns a `Policy` that acts in the env's own action
format. `export_policy` writes its recurrent step `(obs, state) -> (action, new state)` as
ONNX or TorchScript, and `export_weights` the parameters as safetensors.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reverie.agent import Agent, act_step
from reverie.config import ConfigError
from reverie.run_dir import load_agent
from reverie.specs import ActSpec, bounds_affine

Tensor = torch.Tensor
STATE_KEYS = ("deter", "stoch", "action")  # the recurrent state, in the exported order


class PolicyStep(nn.Module):
    """One step of the recurrent policy on N observations.

    Inputs: one tensor per observation key (`ObsSpec.keys` order; vectors (N, V) float,
    images (N, H, W, C) uint8), is_first (N,) bool, then the state: deter (N, D), stoch
    (N, S, K) one-hot and the previous action (N, A). Outputs the action (N, A) (one-hot,
    or [-1, 1]) and the new deter and stoch. `sample=False` takes the mode of the
    posterior and of the policy: the same inputs give the same outputs, in any runtime.
    """

    def __init__(self, agent: Agent, sample: bool = False):
        super().__init__()
        self.encoder, self.rssm = agent.wm.encoder, agent.wm.rssm
        self.actor = agent.behavior.actor
        self.keys, self.sample = agent.obs_spec.keys, sample
        self.continuous = not agent.act_spec.discrete

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = len(self.keys)
        obs = dict(zip(self.keys, inputs[:k], strict=True))
        is_first, deter, stoch, prev_action = inputs[k:]
        state = {"deter": deter, "stoch": stoch, "action": prev_action}
        nets = (self.encoder, self.rssm, self.actor)
        action, latent = act_step(
            *nets, self.continuous, obs, is_first, state, self.sample, self.sample
        )
        return action, latent["deter"], latent["stoch"]


class EnvActionStep(nn.Module):
    """`PolicyStep` whose action output is in the env's own format: the index of a
    discrete action (N,) int64, or continuous values mapped onto the env's bounds (N, A)."""

    scale: Tensor
    offset: Tensor

    def __init__(self, step: PolicyStep, act: ActSpec):
        super().__init__()
        self.step, self.discrete, self.start = step, act.discrete, act.start
        scale, offset = bounds_affine(act.low, act.high, act.dim)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        action, deter, stoch = self.step(*inputs)
        if self.discrete:
            env_action = action.argmax(-1) + self.start
        else:
            env_action = action * self.scale + self.offset  # as ActSpec.to_env
        return env_action, action, deter, stoch


def unbatch(action: Any) -> Any:
    """The first (only) action of a batch of one, in the same form (array or dict)."""
    if isinstance(action, dict):
        return {k: v[0] for k, v in action.items()}
    return action[0]


class Policy:
    """The recurrent policy of a trained agent (encoder, RSSM posterior step, actor).

    >>> policy = load_policy("logs/cartpole")
    >>> obs, _ = env.reset()
    >>> action, state = policy.act(obs)          # a new episode: no state
    >>> obs, *_ = env.step(action)
    >>> action, state = policy.act(obs, state)   # batches (N, ...) and dicts work too
    """

    def __init__(self, agent: Agent, shared: bool = False):
        """:param shared: the agent also trains (`reverie.Dreamer`): its modules keep their
        training flag (which compiled update code is guarded on)."""
        self.agent = agent
        self.obs_spec, self.act_spec, self.device = agent.obs_spec, agent.act_spec, agent.device
        self.steps = {s: PolicyStep(agent, sample=s) for s in (False, True)}
        if not shared:
            for step in self.steps.values():
                step.eval()

    def initial_state(self, n: int) -> dict[str, Tensor]:
        """The state before the first step of n episodes (zeros)."""
        return self.agent.initial_state(n)

    @torch.inference_mode()
    def act(
        self,
        obs: Any,
        state: dict[str, Tensor] | None = None,
        deterministic: bool = False,
    ) -> tuple[Any, dict[str, Tensor]]:
        """The env's action for an observation, and the new state.

        `obs` as the env returned it (a bare array for a single-key observation, or a dict
        by key), one observation or a batch of N (N, ...); the action comes back the same
        way (one action, or N). A dict's `is_first` (N,) marks episode starts (default:
        True without a state, else False). `deterministic` takes the mode of the latent
        and of the policy.
        """
        arrays, single = self._batched(obs)
        n = len(next(iter(arrays.values())))
        first = obs.get("is_first") if isinstance(obs, dict) else None
        if first is None:
            first = np.full(n, state is None)
        state = state if state is not None else self.initial_state(n)
        tensors = [torch.as_tensor(arrays[k], device=self.device) for k in self.obs_spec.keys]
        is_first = torch.as_tensor(np.asarray(first, bool).reshape(n), device=self.device)
        inputs = (*tensors, is_first, *(state[k] for k in STATE_KEYS))
        action, deter, stoch = self.steps[not deterministic](*inputs)
        new = {"deter": deter, "stoch": stoch, "action": action}
        env_action = self.act_spec.to_env(action.float().cpu().numpy())
        return (unbatch(env_action) if single else env_action), new

    def _batched(self, obs: Any) -> tuple[dict[str, np.ndarray], bool]:
        """The observation as (N, ...) arrays by key in the model's dtypes, and whether it
        was a single one (no batch axis)."""
        keys = self.obs_spec.keys
        if not isinstance(obs, dict):
            if len(keys) != 1:
                raise ConfigError(
                    f"this policy reads the observation keys {keys}: pass a dict by key"
                )
            obs = {keys[0]: obs}
        missing = [k for k in keys if k not in obs]
        if missing:
            raise ConfigError(f"the observation lacks {missing}; this policy reads {keys}")
        shapes = {**{k: (v,) for k, v in self.obs_spec.vectors.items()}, **self.obs_spec.images}
        out: dict[str, np.ndarray] = {}
        singles: set[bool] = set()
        for key in keys:
            value, shape = np.asarray(obs[key]), shapes[key]
            if value.shape == shape:
                value, single = value[None], True
            elif value.shape[1:] == shape:
                single = False
            else:
                raise ConfigError(
                    f"observation {key!r} has shape {value.shape}; this policy expects {shape} "
                    f"(one observation) or (N, {', '.join(map(str, shape))}) (a batch of N)"
                )
            dtype = np.uint8 if key in self.obs_spec.images else np.float32
            out[key], singles = value.astype(dtype, copy=False), singles | {single}
        if len(singles) > 1:
            raise ConfigError("pass every observation key batched (N, ...) or none of them")
        return out, singles.pop()

    def example_inputs(self, n: int = 1) -> tuple[Tensor, ...]:
        """Inputs of one step of n new episodes with zero observations (for export)."""
        obs = [torch.zeros(n, size, device=self.device) for size in self.obs_spec.vectors.values()]
        obs += [
            torch.zeros(n, *shape, dtype=torch.uint8, device=self.device)
            for shape in self.obs_spec.images.values()
        ]
        state = self.initial_state(n)
        is_first = torch.ones(n, dtype=torch.bool, device=self.device)
        return (*obs, is_first, *(state[k] for k in STATE_KEYS))


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> Policy:
    """The policy of the newest checkpoint of a logdir, or of one checkpoint file.

    Loads the networks alone: no env is built, no replay read, no optimiser state kept.
    """
    return Policy(load_agent(path, device).agent)


FORMATS = ("onnx", "torchscript")


def export_policy(policy: Policy, out: str | Path, fmt: str) -> Path:
    """Write the deterministic policy step, env-format action first, as ONNX or TorchScript.

    Inputs as `PolicyStep`'s; outputs: the env action, the model's action (the next
    step's previous action), deter and stoch. `initial_state`: all state inputs zero.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    if policy.act_spec.parts:
        raise ConfigError(
            f"exporting a policy with {policy.act_spec.container} actions is not supported "
            "yet; use reverie.load_policy, or export the weights (--format safetensors)"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = EnvActionStep(policy.steps[False], policy.act_spec).eval()
    example = policy.example_inputs(2)  # a batch of 1 would fix the batch size
    names = [*policy.obs_spec.keys, "is_first", *STATE_KEYS]
    outputs = ["env_action", "next_action", "next_deter", "next_stoch"]
    with torch.no_grad(), warnings.catch_warnings():
        # torch marks TorchScript deprecated (for torch.export); the format still loads in
        # plain torch (`torch.jit.load`) and in libtorch from C++
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False)
            traced.save(str(out))
        else:
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                module,
                example,
                str(out),
                input_names=names,
                output_names=outputs,
                dynamic_shapes=(tuple({0: batch} for _ in example),),  # forward(*inputs)
                dynamo=True,
                external_data=False,
            )
    return out


def export_weights(policy: Policy, out: str | Path) -> Path:
    """All parameters of the agent (world model, actor, critic) as a safetensors file."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.agent.state_dict().items()}
    save_file(tensors, str(out))
    return out
