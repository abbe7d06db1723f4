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

from reverie import checkpoint
from reverie.agent import Agent
from reverie.config import from_yaml, make_config
from reverie.specs import ActSpec, specs_from_state

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
        embed = self.encoder(obs, bdims=1)
        state = {"deter": deter, "stoch": stoch}
        latent, _ = self.rssm.obs_step(state, prev_action, embed, is_first, sample=self.sample)
        dist = self.actor(self.rssm.feat(latent))
        action = dist.sample() if self.sample else dist.mode()
        if self.continuous:
            action = action.clamp(-1.0, 1.0)
        return action, latent["deter"], latent["stoch"]


class EnvActionStep(nn.Module):
    """`PolicyStep` whose action output is in the env's own format: the index of a
    discrete action (N,) int64, or continuous values mapped onto the env's bounds (N, A)."""

    finite: Tensor
    low: Tensor
    high: Tensor

    def __init__(self, step: PolicyStep, act: ActSpec):
        super().__init__()
        self.step, self.discrete, self.start = step, act.discrete, act.start
        low = torch.tensor(act.low if act.low is not None else [-1.0] * act.dim)
        high = torch.tensor(act.high if act.high is not None else [1.0] * act.dim)
        finite = torch.isfinite(low) & torch.isfinite(high)
        self.register_buffer("finite", finite)
        self.register_buffer("low", torch.where(finite, low, -1.0))
        self.register_buffer("high", torch.where(finite, high, 1.0))

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        action, deter, stoch = self.step(*inputs)
        if self.discrete:
            env_action = action.argmax(-1) + self.start
        else:
            scaled = self.low + (action + 1.0) / 2.0 * (self.high - self.low)
            env_action = torch.where(self.finite, scaled, action)
        return env_action, action, deter, stoch


class Policy:
    """The recurrent policy of a trained agent (encoder, RSSM posterior step, actor).

    >>> policy = load_policy("logs/cartpole")
    >>> action, state = policy.act({"vector": obs[None]})   # a new episode: no state
    >>> action, state = policy.act({"vector": obs[None]}, state)
    """

    def __init__(self, agent: Agent):
        self.agent = agent
        self.obs_spec, self.act_spec, self.device = agent.obs_spec, agent.act_spec, agent.device
        self.steps = {s: PolicyStep(agent, sample=s).eval() for s in (False, True)}

    def initial_state(self, n: int) -> dict[str, Tensor]:
        """The state before the first step of n episodes (zeros)."""
        return self.agent.initial_state(n)

    @torch.inference_mode()
    def act(
        self,
        obs: dict[str, Any],
        state: dict[str, Tensor] | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        """Actions for N observations (N, ...) in the env's own format, and the new state.

        `obs['is_first']` (N,) marks episode starts (default: True without a state, else
        False). `deterministic` takes the mode of the latent and of the policy.
        """
        n = len(np.asarray(next(v for k, v in obs.items() if k != "is_first")))
        first = obs.get("is_first", np.full(n, state is None))
        state = state if state is not None else self.initial_state(n)
        dev = self.device
        tensors = [torch.as_tensor(np.asarray(obs[k]), device=dev) for k in self.obs_spec.keys]
        is_first = torch.as_tensor(np.asarray(first, bool), device=dev)
        inputs = (*tensors, is_first, *(state[k] for k in STATE_KEYS))
        action, deter, stoch = self.steps[not deterministic](*inputs)
        new = {"deter": deter, "stoch": stoch, "action": action}
        return self.act_spec.to_env(action.float().cpu().numpy()), new

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


def _read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    state = checkpoint.load_file(path) if path.is_file() else checkpoint.load_latest(path)
    if state is None:
        raise FileNotFoundError(
            f"no checkpoint in {path}: train there first (reverie train --logdir {path})"
        )
    return state


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> Policy:
    """The policy of the newest checkpoint of a logdir, or of one checkpoint file.

    Loads the networks alone: no env is built, no replay read, no optimiser state kept.
    """
    state = _read_checkpoint(path)
    cfg = make_config(["run.compile=off"], base=from_yaml(state["config"]))
    if "specs" in state:
        obs_spec, act_spec = specs_from_state(state["specs"])
    else:  # written before specs were stored: ask the env
        from reverie.envs import describe_spaces, env_kwargs, make_env

        env = make_env(str(cfg.env.id), **env_kwargs(cfg.env))
        obs_spec, act_spec = describe_spaces(env)
        env.close()
    agent = Agent(obs_spec, act_spec, cfg, device, learner=False)
    agent.load_state_dict(state["agent"]["agent"])
    del state
    agent.requires_grad_(False)
    return Policy(agent.eval())


FORMATS = ("onnx", "torchscript")


def export_policy(policy: Policy, out: str | Path, fmt: str) -> Path:
    """Write the deterministic policy step, env-format action first, as ONNX or TorchScript.

    Inputs as `PolicyStep`'s; outputs: the env action, the model's action (the next
    step's previous action), deter and stoch. `initial_state`: all state inputs zero.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    if policy.act_spec.parts:
        raise ValueError(
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
