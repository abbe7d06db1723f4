"""reverie's whole training loss against the official DreamerV3 code's, term by term.

`fixtures/official_loss.json` (written by benchmarks/record_official_loss.py, which runs the
official code, December-2024 revision, in float32 on the CPU) holds per action space
(discrete, continuous): the official parameters, a (B, T) batch with episode ends, the
random draws the official loss made, its loss terms and its gradient norms. Here reverie
builds its agent at the same sizes, takes the official parameters through an explicit name
map (`to_reverie`), draws the same samples (`PinnedDraws`) and runs `Agent._losses`, the
forward pass of `Agent.update`, then the backward pass; no optimiser step.

Both sides start the return normaliser from the same non-fresh state (the fixture's
"retnorm_before": 5th/95th percentile EMAs -2 and 3, a spread of 5), so that its scale is
not the limit 1.0 and this batch's percentiles show in the actor loss.

Not covered here: image observations (the CNN encoder and decoder), the replayed latent
that starts a sequence (`replay.context`; both sides start from zeros), bf16, and the
optimiser step (tests/test_official_parity.py checks LaProp + AGC).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reverie import distributions as D
from reverie.agent import Agent
from reverie.specs import ActSpec, ObsSpec

from .conftest import tiny_config

FIXTURE = json.loads((Path(__file__).parent / "fixtures/official_loss.json").read_text())
CASES = FIXTURE["cases"]

# float32 on both sides, in different orders of summation: terms and gradient norms agree to
# a few float32 ulps compounded through 8 posterior and 4 imagination steps (the largest
# difference seen is 1.4e-6, the critic's gradient norm in the continuous case)
RTOL = 1e-5
# reverie's loss terms by the official names
TERMS = {
    "dec_vector": "vector",
    "rew": "rew",
    "con": "con",
    "dyn": "dyn",
    "rep": "rep",
    "actor": "policy",
    "critic": "value",
    "repval": "repval",
}
# reverie's loss scales by the official scale they must equal
SCALES = {
    "dec": "rec",
    "rew": "rew",
    "con": "con",
    "dyn": "dyn",
    "rep": "rep",
    "actor": "policy",
    "critic": "value",
    "repval": "repval",
}
MODULES = ("dyn", "enc", "dec", "rew", "con", "pol", "val")


def tensor(entry: dict, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(np.asarray(entry["values"]), dtype=dtype).reshape(entry["shape"])


# ---------------------------------------------------------------- the name map
def to_reverie(p: dict[str, torch.Tensor], deter: int, blocks: int, stoch_flat: int) -> dict:
    """reverie's parameters (name -> tensor) from the official ones, by differentiable
    indexing only, so that the same map carries reverie's gradients back (its VJP).

    Official kernels are (in, out), reverie's Linear weights (out, in). The official
    `dynhid0` BlockLinear reads per block [deter slice, the three input embeddings]; reverie
    splits it into the block-diagonal `gru_hidden` and the dense `gru_hidden_in`. The
    official `obs0` reads [deter, tokens]; reverie splits it into `post_deter` and
    `post_embed` (which carries the bias). The official decoder reads [stoch, deter],
    reverie's features are [deter, stoch].
    """
    out: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = p[f"{src}/kernel"].T
        out[f"{dst}.bias"] = p[f"{src}/bias"]

    def dense(dst: str, src: str, norm: str) -> None:  # Linear -> Norm -> SiLU
        linear(f"{dst}.linear", src)
        out[f"{dst}.norm.weight"] = p[f"{norm}/scale"]

    def mlp(dst: str, src: str, layers: int) -> None:  # official nets.MLP
        for i in range(layers):
            dense(f"{dst}.layers.{i}", f"{src}/linear{i}", f"{src}/norm{i}")

    g, per = blocks, deter // blocks
    r = "wm.rssm"
    dense(f"{r}.in_deter", "dyn/dynin0", "dyn/dynin0norm")
    dense(f"{r}.in_stoch", "dyn/dynin1", "dyn/dynin1norm")
    dense(f"{r}.in_action", "dyn/dynin2", "dyn/dynin2norm")
    kernel = p["dyn/dynhid0/kernel"]  # (G, deter/G + 3 hidden, deter/G)
    out[f"{r}.gru_hidden.weight"] = kernel[:, :per]
    out[f"{r}.gru_hidden.bias"] = p["dyn/dynhid0/bias"].reshape(g, 1, per)
    # output unit j = block * per + o reads the inputs through kernel[block, per:, o]
    out[f"{r}.gru_hidden_in.weight"] = kernel[:, per:].permute(0, 2, 1).reshape(deter, -1)
    out[f"{r}.gru_hidden_norm.weight"] = p["dyn/dynhid0norm/scale"]
    out[f"{r}.gru.weight"] = p["dyn/dyngru/kernel"]  # (G, deter/G, 3 deter/G) alike
    out[f"{r}.gru.bias"] = p["dyn/dyngru/bias"].reshape(g, 1, -1)
    for i in range(2):
        dense(f"{r}.prior_net.layers.{i}", f"dyn/prior{i}", f"dyn/prior{i}norm")
    linear(f"{r}.prior_out", "dyn/priorlogit")
    obs0 = p["dyn/obs0/kernel"]  # (deter + tokens, hidden)
    out[f"{r}.post_deter.weight"] = obs0[:deter].T
    out[f"{r}.post_embed.weight"] = obs0[deter:].T
    out[f"{r}.post_embed.bias"] = p["dyn/obs0/bias"]
    out[f"{r}.post_norm.weight"] = p["dyn/obs0norm/scale"]
    linear(f"{r}.post_out", "dyn/obslogit")

    for i in range(3):
        dense(f"wm.encoder.mlp.layers.{i}", f"enc/mlp{i}", f"enc/mlp{i}norm")
    mlp("wm.decoder.mlp", "dec/mlp", 3)
    first = p["dec/mlp/linear0/kernel"]  # rows [stoch, deter] -> reverie's [deter, stoch]
    out["wm.decoder.mlp.layers.0.linear.weight"] = torch.cat(
        [first[stoch_flat:], first[:stoch_flat]], 0
    ).T
    linear("wm.decoder.vec_out", "dec/vec/vector/pred")
    mlp("wm.reward.mlp", "rew/mlp", 1)
    linear("wm.reward.out", "rew/head/logits")
    mlp("wm.cont_net", "con/mlp", 1)
    linear("wm.cont_out", "con/head/logit")

    mlp("behavior.actor.mlp", "pol/mlp", 3)
    if "pol/head/action/logits/kernel" in p:
        linear("behavior.actor.out", "pol/head/action/logits")
    else:  # bounded normal: reverie's one layer gives [mean, std] side by side
        mean, std = "pol/head/action/mean", "pol/head/action/stddev"
        out["behavior.actor.out.weight"] = torch.cat([p[f"{mean}/kernel"], p[f"{std}/kernel"]], 1).T
        out["behavior.actor.out.bias"] = torch.cat([p[f"{mean}/bias"], p[f"{std}/bias"]], 0)
    for dst, src in (("behavior.critic", "val"), ("behavior.slow_critic", "slowval")):
        mlp(f"{dst}.mlp", f"{src}/mlp", 3)
        linear(f"{dst}.out", f"{src}/head/logits")
    return out


# --------------------------------------------------------------- pinned draws
class PinnedDraws:
    """Feed the official draws, in order, to reverie's samplers: categorical draws (the
    posterior and prior latents, discrete actions) as class indices and normal draws
    (continuous actions) as unit noise. The official code draws one more action than
    reverie, for the last imagined state (it enters no loss); `leftover` holds it."""

    def __init__(self, draws: list[dict], monkeypatch):
        self.draws = list(draws)
        monkeypatch.setattr(D, "sample_categorical", self.categorical)
        monkeypatch.setattr(
            D.BoundedNormal, "sample", lambda dist, generator=None: self.normal(dist)
        )

    def next(self, kind: str, shape) -> list:
        draw = self.draws.pop(0)
        assert (draw["kind"], draw["shape"]) == (kind, list(shape)), (draw["kind"], draw["shape"])
        return draw["values"]

    def categorical(self, probs: torch.Tensor, generator=None) -> torch.Tensor:
        values = self.next("categorical", probs.shape[:-1])
        return torch.tensor(values, dtype=torch.long).reshape(probs.shape[:-1])

    def normal(self, dist: D.BoundedNormal) -> torch.Tensor:
        noise = torch.tensor(self.next("normal", dist.mean.shape)).reshape(dist.mean.shape)
        return dist.mean + dist.std * noise

    @property
    def leftover(self) -> list[tuple[str, list[int]]]:
        return [(d["kind"], d["shape"]) for d in self.draws]


# ----------------------------------------------------------------------- setup
def reverie_batch(case: dict, act: ActSpec) -> dict[str, torch.Tensor]:
    batch = case["batch"]
    data = {k: tensor(batch[k], torch.bool) for k in ("is_first", "is_last", "is_terminal")}
    data["vector"] = tensor(batch["vector"])
    data["reward"] = tensor(batch["reward"])
    if act.discrete:  # official int32 indices -> reverie's one-hot
        data["action"] = torch.eye(act.dim)[tensor(batch["action"], torch.long)]
    else:
        data["action"] = tensor(batch["action"])
    return data


def same_settings(cfg, official: dict) -> None:
    """reverie's config (TINY and its defaults) says what the official config said."""
    sizes, rssm, agent = official["sizes"], official["rssm"], official["agent"]
    mc, bc, lc = cfg.model, cfg.behavior, cfg.loss
    assert (mc.deter, mc.hidden, mc.stoch, mc.classes, mc.blocks) == tuple(
        sizes["agent.dyn.rssm"][k] for k in ("deter", "hidden", "stoch", "classes", "blocks")
    )
    assert mc.units == sizes["agent.policy.units"] == sizes["agent.value.units"]
    assert (cfg.run.batch_size, cfg.run.batch_length) == (
        sizes["batch_size"],
        sizes["batch_length"],
    )
    assert bc.horizon == sizes["agent.imag_length"]
    assert (mc.unimix, lc.free_nats) == (rssm["unimix"], rssm["free_nats"])
    assert (mc.actor_layers, mc.critic_layers) == (
        official["policy"]["layers"],
        official["value"]["layers"],
    )
    assert (mc.action_minstd, mc.action_maxstd) == (
        official["policy"]["minstd"],
        official["policy"]["maxstd"],
    )
    # the official categorical policy head takes `unimix` but does not apply it
    assert mc.actor_unimix == 0.0 and agent["policy_dist_disc"] == "categorical"
    imag, repl, retnorm = agent["imag_loss"], agent["repl_loss"], agent["retnorm"]
    assert bc.lam == imag["lam"] == repl["lam"] and lc.slowreg == imag["slowreg"] == repl["slowreg"]
    assert not imag["slowtar"] and not repl["slowtar"]  # reverie's targets: the critic itself
    assert bc.actor_entropy == imag["actent"] and bc.discount_horizon == agent["horizon"]
    assert (bc.contdisc, bc.repval_grad) == (agent["contdisc"], agent["repval_grad"])
    assert agent["reward_grad"] and agent["repval_loss"] and not agent["ac_grads"]
    assert retnorm["impl"] == "perc" and not retnorm["debias"]
    assert bc.retnorm_decay == pytest.approx(1 - retnorm["rate"])
    assert (bc.retnorm_low, bc.retnorm_high, bc.retnorm_limit) == (
        retnorm["perclo"],
        retnorm["perchi"],
        retnorm["limit"],
    )


def build(case: dict):
    """reverie's agent at the fixture's sizes with the official parameters loaded; the
    official parameters (leaf tensors) and the map's outputs, for the gradients' way back."""
    batch = case["batch"]
    if case["discrete"]:
        act = ActSpec(True, case["params"]["pol/head/action/logits/bias"]["shape"][0])
    else:
        act = ActSpec(False, batch["action"]["shape"][-1])
    cfg = tiny_config("replay.context=0")  # the official loss starts from zeros too
    same_settings(cfg, case["config"])
    mc = cfg.model
    torch.manual_seed(0)
    agent = Agent(ObsSpec({"vector": batch["vector"]["shape"][-1]}, {}), act, cfg, "cpu")
    official = {k: tensor(v).requires_grad_() for k, v in case["params"].items()}
    mapped = to_reverie(official, mc.deter, mc.blocks, mc.stoch * mc.classes)
    params = dict(agent.named_parameters())
    assert set(mapped) == set(params), sorted(set(mapped) ^ set(params))
    with torch.no_grad():
        for name, p in params.items():
            assert mapped[name].shape == p.shape, (name, mapped[name].shape, p.shape)
            p.copy_(mapped[name])
        before = case["retnorm_before"]
        agent.behavior.retnorm.spread.fill_(before["hi"] - before["lo"])
    return agent, official, mapped, act


def official_gradients(agent: Agent, official: dict, mapped: dict) -> dict[str, torch.Tensor]:
    """reverie's gradients in the official layout: the VJP of `to_reverie`."""
    params = dict(agent.named_parameters())
    names = [n for n, p in params.items() if p.grad is not None]
    leaves = {k: v for k, v in official.items() if k.startswith(tuple(f"{m}/" for m in MODULES))}
    grads = torch.autograd.grad(
        [mapped[n] for n in names],
        list(leaves.values()),
        grad_outputs=[params[n].grad for n in names],
        allow_unused=True,
    )
    return {
        k: g if g is not None else torch.zeros_like(v) for (k, v), g in zip(leaves.items(), grads)
    }


def rel(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / max(abs(theirs), 1e-30)


# ------------------------------------------------------------------------ test
def differences(case: dict, monkeypatch) -> tuple[dict[str, float], dict[str, float]]:
    """Relative differences to the official figures: per loss term, the return
    normaliser's spread after the update and the gradient norm per module; and per
    parameter, its gradient norm's difference relative to its module's gradient norm (a
    near-zero gradient has no useful relative precision of its own)."""
    agent, official, mapped, act = build(case)
    scales = case["config"]["agent"]["loss_scales"]
    assert agent.scales == {k: scales[v] for k, v in SCALES.items()}
    draws = PinnedDraws(case["draws"], monkeypatch)

    total, terms, _, _ = agent._losses(reverie_batch(case, act))
    agent.zero_grad(set_to_none=True)
    total.backward()
    # every draw the loss made came from the fixture; the one left is the official code's
    # action for the last imagined state, which no loss reads
    b, t = case["batch"]["is_first"]["shape"]
    last_action = ("categorical", [b * t]) if act.discrete else ("normal", [b * t, act.dim])
    assert draws.leftover == [last_action]

    diffs: dict[str, float] = {}
    for ours, theirs in TERMS.items():
        diffs[f"loss/{theirs}"] = rel(terms[ours].item(), case["losses"][theirs])
    diffs["loss/total"] = rel(total.item(), case["total_loss"])
    after = case["retnorm_after"]
    diffs["retnorm/spread"] = rel(agent.behavior.retnorm.spread.item(), after["hi"] - after["lo"])

    grads = official_gradients(agent, official, mapped)
    flat = lambda gs: torch.cat([g.flatten() for g in gs])  # noqa: E731
    for module in MODULES:
        norm = flat(g for k, g in grads.items() if k.startswith(f"{module}/")).norm().item()
        diffs[f"gradnorm/{module}"] = rel(norm, case["gradnorm"][module])
    diffs["gradnorm/total"] = rel(flat(grads.values()).norm().item(), case["gradnorm"]["total"])
    per_param = {}
    for key, g in grads.items():
        module_norm = case["gradnorm"][key.split("/")[0]]
        per_param[key] = abs(g.norm().item() - case["param_gradnorm"][key]) / module_norm
    return diffs, per_param


@pytest.mark.parametrize("name", list(CASES))
def test_whole_loss_matches_the_official_code(name, monkeypatch):
    diffs, per_param = differences(CASES[name], monkeypatch)
    worst = max(diffs, key=lambda k: diffs[k])
    worst_param = max(per_param, key=lambda k: per_param[k])
    report = (
        f"{name}: largest relative difference {diffs[worst]:.2e} ({worst}); per parameter "
        f"{per_param[worst_param]:.2e} of its module's gradient norm ({worst_param}); "
        f"tolerance {RTOL}"
    )
    print(report)
    bad = {k: v for k, v in {**diffs, **per_param}.items() if v > RTOL}
    assert not bad, f"{report}\n{bad}"
