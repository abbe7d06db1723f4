"""LaProp with adaptive gradient clipping and linear warm-up (2024 code), and the paper's Adam."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class LaProp(torch.optim.Optimizer):
    """AGC per tensor -> RMS-normalise (beta2, eps) -> momentum (beta1) -> lr with warm-up.

    AGC: a gradient whose norm exceeds `agc * max(pmin, ||param||)` is scaled down to it.
    Runs as foreach ops over all tensors; no host synchronisation.
    """

    def __init__(
        self, params, lr=4e-5, beta1=0.9, beta2=0.999, eps=1e-20, warmup=1000, agc=0.3, pmin=1e-3
    ):
        defaults = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, warmup=warmup, agc=agc, pmin=pmin)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), device=p.device)
                    state["nu"] = torch.zeros_like(p)
                    state["mu"] = torch.zeros_like(p)
            states = [self.state[p] for p in params]
            step = states[0]["step"]
            for s in states:
                s["step"].add_(1)
            if group["agc"] > 0:
                pnorm = torch._foreach_norm(params)
                gnorm = torch._foreach_norm(grads)
                limit = torch._foreach_clamp_min(pnorm, group["pmin"])
                torch._foreach_mul_(limit, group["agc"])
                torch._foreach_add_(gnorm, 1e-12)
                factor = torch._foreach_div(limit, gnorm)
                torch._foreach_clamp_max_(factor, 1.0)
                grads = torch._foreach_mul(grads, factor)
            b1, b2 = group["beta1"], group["beta2"]
            nus = [s["nu"] for s in states]
            mus = [s["mu"] for s in states]
            torch._foreach_mul_(nus, b2)
            torch._foreach_addcmul_(nus, grads, grads, 1 - b2)
            # bias-corrected RMS, then momentum on the normalised gradient
            denom = torch._foreach_div(nus, 1 - b2**step)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, group["eps"])
            normed = torch._foreach_div(grads, denom)
            torch._foreach_mul_(mus, b1)
            torch._foreach_add_(mus, normed, alpha=1 - b1)
            # the 2024 code's linear warm-up is read at the step count before this step
            # (0, 1, 2, ...), so with a warm-up the first step moves nothing
            warm = torch.clamp((step - 1) / group["warmup"], max=1.0) if group["warmup"] else 1.0
            lr = -group["lr"] * warm / (1 - b1**step)
            torch._foreach_add_(params, torch._foreach_mul(mus, lr))
        return None


def make_optimizer(oc, modules: dict[str, torch.nn.Module]) -> torch.optim.Optimizer:
    """One optimiser over all modules: LaProp (2024) or per-module Adam groups (2023 paper)."""
    if oc.name == "laprop":
        params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        return LaProp(params, oc.lr, oc.beta1, oc.beta2, oc.eps, oc.warmup, oc.agc, oc.agc_pmin)
    groups = []
    for name, module in modules.items():
        lr, eps, clip = (
            (oc.model_lr, oc.model_eps, oc.model_clip)
            if name == "model"
            else (oc.actor_lr if name == "actor" else oc.critic_lr, oc.ac_eps, oc.ac_clip)
        )
        params = [p for p in module.parameters() if p.requires_grad]
        groups.append({"params": params, "lr": lr, "eps": eps, "clip": clip, "name": name})
    opt = torch.optim.Adam(groups, foreach=True)
    return opt
