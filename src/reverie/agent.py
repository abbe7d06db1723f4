"""The DreamerV3 agent: world model + actor-critic, acting and learning from replayed batches.

Shapes (legend in `reverie.specs`): a replayed batch holds (B, context + T, ...) tensors;
the world model trains on the T steps after the context; imagination starts from all
B*T = N posterior states and rolls H steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from reverie.accel import (
    compile_marked,
    describe_compile_error,
    is_compile_error,
    resolve_compile,
    resolve_cudagraphs,
    resolve_precision,
    run_eagerly,
    use_persistent_cache,
)
from reverie.behavior import Behavior
from reverie.config import Config, typed
from reverie.optim import make_optimizer
from reverie.specs import ActSpec, ObsSpec, decode_latent, encode_latent
from reverie.world_model import RSSM, WorldModel

Tensor = torch.Tensor


class Collectives(Protocol):
    """What the update needs of a data-parallel job (`reverie.distributed.Comm` has it)."""

    @property
    def active(self) -> bool: ...

    def average_(self, tensors: list[Tensor]) -> None: ...

    def broadcast_(self, tensors: list[Tensor]) -> None: ...

    def gather_flat(self, x: Tensor) -> Tensor: ...


def loss_group(name: str) -> str:
    """The scale a loss term takes: every decoder term (`dec_<key>`) shares `dec`."""
    return "dec" if name.startswith("dec_") else name


def loss_scales(cfg: Config) -> dict[str, float]:
    """The weight of every loss term of the update, by `loss_group`."""
    lc, ab = cfg.loss, cfg.ablation
    dyn, rep = (lc.dyn, lc.rep) if ab.kl_balance else ((lc.dyn + lc.rep) / 2,) * 2
    return {
        "dec": lc.dec,
        "rew": lc.rew,
        "con": lc.con,
        "dyn": dyn,
        "rep": rep,
        "actor": lc.actor,
        "critic": lc.critic,
        "repval": lc.repval,
    }


def act_step(
    encoder: nn.Module,
    rssm: RSSM,
    actor: nn.Module,
    continuous: bool,
    obs: dict[str, Tensor],
    is_first: Tensor,
    state: dict[str, Tensor],
    sample_latent: bool = True,
    sample_action: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The acting step every caller shares (training, evaluation, `reverie.policy`, its
    export, the API): observation -> posterior latent -> action.

    obs: (N, ...) tensors by `ObsSpec.keys`; is_first (N,) bool; state: deter (N, D),
    stoch (N, S, K) and the previous action (N, A). Returns the action (N, A) (one-hot,
    or clamped to [-1, 1] when `continuous`) and the new state: the posterior latent and
    that action.
    """
    embed = encoder(obs, bdims=1)
    latent, _ = rssm.obs_step(state, state["action"], embed, is_first, sample=sample_latent)
    dist = actor(rssm.feat(latent))
    action = dist.sample() if sample_action else dist.mode()
    if continuous:
        action = action.clamp(-1.0, 1.0)
    latent["action"] = action
    return action, latent


class Agent(nn.Module):
    """World model, actor and critic, their optimiser, and how the update runs.

    :param cfg: the run's config (a DictConfig is converted to its dataclasses once).
    :param device: where parameters live and the update runs.
    :param learner: False builds the networks alone, to act (no optimiser, no compilation).
    :param comm: the collectives of a data-parallel job (`reverie.distributed`): each
        update then averages its gradients, losses and metrics over the ranks, and the
        return normaliser reads the returns of all ranks. None: one process.
    """

    updates: Tensor  # buffer (register_buffer in __init__): optimiser steps taken

    def __init__(
        self,
        obs_spec: ObsSpec,
        act_spec: ActSpec,
        cfg: Config | DictConfig,
        device: torch.device | str,
        learner: bool = True,
        comm: Collectives | None = None,
    ):
        super().__init__()
        if learner:
            # before anything imports torch._dynamo (the optimiser does), which fixes
            # Inductor's cache folder for the process
            use_persistent_cache()
        cfg = typed(cfg)
        self.cfg, self.obs_spec, self.act_spec = cfg, obs_spec, act_spec
        self.device = torch.device(device)
        self.scales = loss_scales(cfg)
        self.wm = WorldModel(obs_spec, act_spec.dim, cfg)
        self.behavior = Behavior(self.wm.rssm.feat_dim, act_spec, cfg)
        self.comm = comm if comm is not None and comm.active else None
        if self.comm is not None:
            # percentiles over the returns of the global batch, not this rank's
            self.behavior.retnorm.gather_with(self.comm.gather_flat)
        self.to(self.device)
        if self.comm is not None:
            # the same seed builds the same weights on every rank; this makes sure of it
            self.comm.broadcast_(list(self.state_dict().values()))
        # acting alone (learner=False, reverie.policy) needs no optimiser: building one
        # imports torch._dynamo, most of a policy's load time
        modules = {"model": self.wm, "actor": self.behavior.actor, "critic": self.behavior.critic}
        self._opt = make_optimizer(cfg.optim, modules) if learner else None
        self.register_buffer("updates", torch.zeros((), dtype=torch.long, device=self.device))
        self.last_update_finite = True
        self.precision = resolve_precision(cfg.run.precision, self.device)  # autocast dtype
        self.compiled: list[str] = []
        self._backward_compiled = False  # the first compiled update compiles its backward
        self.cudagraphs = learner and resolve_cudagraphs(cfg.run.cudagraphs, self.device)
        if learner and resolve_compile(cfg.run.compile, self.device):
            self.compile()

    @property
    def opt(self) -> torch.optim.Optimizer:
        if self._opt is None:
            raise RuntimeError("this agent only acts (learner=False): it has no optimiser")
        return self._opt

    def compile(self) -> list[str]:  # type: ignore[override]
        """Compile the update's hot methods, those each module names in `compiled_methods`
        (unlike `nn.Module.compile`, which would compile `forward`). Returns their names."""
        if not self.compiled:
            self.compiled = compile_marked(self, cudagraphs=self.cudagraphs)
        return self.compiled

    # ----------------------------------------------------------------- acting
    def initial_state(self, n: int) -> dict[str, Tensor]:
        state = self.wm.rssm.initial(n, self.device)
        state["action"] = torch.zeros(n, self.act_spec.dim, device=self.device)
        return state

    def obs_to_tensors(self, obs: Mapping[str, np.ndarray | Tensor]) -> dict[str, Tensor]:
        keys = [*self.obs_spec.vectors, *self.obs_spec.images, "is_first"]
        return {k: torch.as_tensor(np.asarray(obs[k]), device=self.device) for k in keys}

    @torch.inference_mode()
    def policy(
        self,
        obs: Mapping[str, np.ndarray | Tensor],
        state: dict[str, Tensor] | None,
        mode: str = "sample",
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of the policy for N envs. obs values are (N, ...) with 'is_first' (N,).

        Returns actions (N, A) (one-hot for discrete, [-1, 1] for continuous) and the
        new state, which also holds the posterior latent to store in replay.
        """
        inputs = self.obs_to_tensors(obs)
        first = inputs.pop("is_first").bool()
        if state is None:
            state = self.initial_state(first.shape[0])
        nets = (self.wm.encoder, self.wm.rssm, self.behavior.actor)
        continuous, sample = not self.act_spec.discrete, mode == "sample"
        return act_step(*nets, continuous, inputs, first, state, sample_action=sample)

    # --------------------------------------------------------------- learning
    def _start_state(self, data: dict[str, Tensor], k: int) -> tuple[dict[str, Tensor], Tensor]:
        """Carry for the training sequence: the stored latent of the last context step."""
        b = data["is_first"].shape[0]
        if k == 0:
            state = self.wm.rssm.initial(b, self.device)
            return state, torch.zeros(b, self.act_spec.dim, device=self.device)
        carry = decode_latent(
            data["deter"][:, k - 1], data["stoch"][:, k - 1], self.cfg.model.classes
        )
        deter, stoch, action = carry["deter"], carry["stoch"], data["action"][:, k - 1].float()
        # a context step that ends an episode must not carry into the next one
        keep = (~data["is_last"][:, k - 1]).float()[:, None]
        deter, stoch, action = self.wm.rssm.reset_where(keep, deter, stoch, action)
        return {"deter": deter, "stoch": stoch}, action

    def _losses(self, data: dict[str, Tensor]) -> tuple:
        """The update's forward pass: total loss, its terms (scalars), posterior states
        (B, T, ...), metrics."""
        k = self.cfg.replay.context
        start, prev0 = self._start_state(data, k)
        seq = {key: v[:, k:] for key, v in data.items()}  # (B, T, ...)
        prev_actions = torch.cat([prev0[:, None], seq["action"][:, :-1].float()], 1)
        wm_losses, post, feat = self.wm.loss(seq, start, prev_actions)  # each (B, T)
        terms = {name: v.mean() for name, v in wm_losses.items()}

        b, t = feat.shape[:2]
        flat = {key: v.reshape(b * t, *v.shape[2:]).detach() for key, v in post.items()}
        start_cont = 1.0 - seq["is_terminal"].float().reshape(-1)  # (N,)
        ac, ret0, metrics = self.behavior.loss(self.wm, flat, start_cont)
        terms.update(ac)
        terms["repval"] = self.behavior.replay_value_loss(feat, seq, ret0.reshape(b, t))
        groups = {loss_group(name) for name in terms}
        assert groups == set(self.scales), f"loss terms {sorted(groups)} != {sorted(self.scales)}"
        total = sum(self.scales[loss_group(name)] * v for name, v in terms.items())
        return total, terms, post, metrics

    def update(self, data: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One gradient step on a batch of (B, context + T) sequences.

        Returns metrics (device scalars, no host sync) and the posterior latents of the
        T trained steps for replay write-back: deter (B, T, D), stoch indices (B, T, S).
        """
        # the first compiled update also compiles the backward graphs, past the reach of
        # CompiledMethod's fallback: a failure there reruns the update eagerly from here
        before = (
            self._state_for_a_rerun() if self.compiled and not self._backward_compiled else None
        )
        graphs = bool(self.compiled) and self.cudagraphs
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new update: replays may reuse memory
        with torch.autocast(
            self.device.type, self.precision or torch.bfloat16, enabled=self.precision is not None
        ):
            total, terms, post, metrics = self._losses(data)

        self.opt.zero_grad(set_to_none=True)
        try:
            total.backward()
        except Exception as e:  # noqa: BLE001 - sorted by is_compile_error
            if before is None or not is_compile_error(e):
                raise
            return self._rerun_eagerly(data, before, describe_compile_error(e))
        self._backward_compiled = bool(self.compiled)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if self.comm is not None:
            total, terms, metrics = self._average(grads, total, terms, metrics)
        # a non-finite loss or gradient skips the step: parameters, optimiser moments and
        # the slow critic stay as they were (one host read; free on CPU). In a job the
        # average of the ranks' values is checked, so all ranks skip together
        gnorm = torch.stack(torch._foreach_norm(grads))
        self.last_update_finite = bool(torch.isfinite(total) & torch.isfinite(gnorm).all())
        if self.last_update_finite:
            if self.cfg.optim.name == "adam":
                for group in self.opt.param_groups:
                    torch.nn.utils.clip_grad_norm_(group["params"], group["clip"], foreach=True)
            self.opt.step()
            self.behavior.update_slow_critic()
            self.updates += 1
        else:
            self.opt.zero_grad(set_to_none=True)

        metrics.update({f"loss/{name}": v.detach() for name, v in terms.items()})
        metrics["loss/total"] = total.detach()
        latents = encode_latent(post["deter"], post["stoch"])
        if graphs:
            # a graph's outputs live in memory its next replay overwrites, and the trainer
            # reads metrics and latents after later updates
            metrics = {k: v.clone() for k, v in metrics.items()}
            latents = {k: v.clone() for k, v in latents.items()}
        return metrics, latents

    def _state_for_a_rerun(self) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        """What an update's forward pass changes before its backward: buffers (the return
        normaliser's) and the random generators (its samples)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        buffers = {name: b.clone() for name, b in self.named_buffers()}
        return buffers, torch.get_rng_state(), cuda

    def _rerun_eagerly(
        self, data: dict[str, Tensor], before: tuple, failure: str
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """This update again from `before`, every compiled method eager from now on: the
        result an uncompiled agent gives."""
        buffers, cpu_rng, cuda_rng = before
        with torch.no_grad():
            for name, b in self.named_buffers():
                b.copy_(buffers[name])
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, self.device)
        run_eagerly(self, failure)
        self._backward_compiled = True
        warnings.warn(
            f"reverie: torch.compile failed for the update's backward pass ({failure}); the "
            "update runs eagerly instead (run.compile=off skips compilation)",
            RuntimeWarning,
            stacklevel=2,
        )
        return self.update(data)

    def _average(
        self,
        grads: list[Tensor],
        total: Tensor,
        terms: dict[str, Tensor],
        metrics: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Gradients, loss and metrics averaged over the ranks in one all-reduce.

        Each rank's loss is the mean over its equal share of the global batch, so the
        average of the ranks' gradients is the gradient of the global batch's mean loss;
        the optimiser (LaProp's clipping included) then sees that gradient on every rank.
        """
        assert self.comm is not None
        scalars = {"total": total, **{f"term/{k}": v for k, v in terms.items()}}
        scalars.update({f"metric/{k}": v for k, v in metrics.items()})
        keys = list(scalars)
        stacked = torch.stack([scalars[k].detach().float() for k in keys])  # (scalars,)
        self.comm.average_([*grads, stacked])
        mean = dict(zip(keys, stacked.unbind()))
        return (
            mean["total"],
            {k: mean[f"term/{k}"] for k in terms},
            {k: mean[f"metric/{k}"] for k in metrics},
        )

    # ------------------------------------------------------------ persistence
    def checkpoint_state(self) -> dict:
        return {"agent": self.state_dict(), "optimizer": self.opt.state_dict()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.load_state_dict(state["agent"])
        self.opt.load_state_dict(state["optimizer"])

    def param_count(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {
            "world_model": count(self.wm),
            "actor": count(self.behavior.actor),
            "critic": count(self.behavior.critic),
            "total": count(self.wm) + count(self.behavior.actor) + count(self.behavior.critic),
        }
