"""reverie against figures computed by the official DreamerV3 code on fixed inputs.

`fixtures/official_parity.json` holds the inputs and the official outputs (its "source"
field says which commit and JAX computed them; the script stays outside this repo). Each
test feeds the same inputs through reverie's own code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from reverie import distributions as D
from reverie.behavior import Behavior, ReturnNormalizer, lambda_return, replay_lambda_return
from reverie.config import make_config, typed
from reverie.nets import BlockLinear, conv, linear
from reverie.optim import LaProp
from reverie.specs import ActSpec, ObsSpec
from reverie.world_model import WorldModel, kl_losses

OFFICIAL = json.loads((Path(__file__).parent / "fixtures/official_parity.json").read_text())


def t(x, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=dtype)


# ------------------------------------------------------------------------ twohot
def test_twohot_bins_predictions_and_losses():
    ref = OFFICIAL["twohot"]
    bins = D.symexp_bins(255, 20.0)
    # equal up to float32 rounding of linspace (one ulp of 20 is 2e-6 relative after exp)
    torch.testing.assert_close(bins, t(ref["bins"]), rtol=5e-6, atol=0)
    dist = D.TwoHot(t(ref["logits"]), bins)
    torch.testing.assert_close(dist.pred(), t(ref["pred"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        -dist.log_prob(t(ref["targets"])), t(ref["loss"]), rtol=1e-5, atol=1e-5
    )
    assert D.TwoHot(torch.zeros(255), bins).pred().item() == ref["uniform_logits_pred"] == 0.0
    # logits peaked near the middle bins: predictions of order 0.1 beside bins of 4.85e8
    dist = D.TwoHot(t(ref["centered_logits"]), bins)
    torch.testing.assert_close(dist.pred(), t(ref["centered_pred"]), rtol=1e-4, atol=1e-6)
    loss = -dist.log_prob(t(ref["targets"]))
    torch.testing.assert_close(loss, t(ref["centered_loss"]), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_twohot_mixture_fits_like_the_official_head():
    from .test_distributions import fit_to_mixture

    for case in OFFICIAL["twohot"]["mixture"]:
        ours = fit_to_mixture(
            case["values"], case["probs"], D.symexp_bins(), D.identity, D.identity
        )
        mean = sum(v * p for v, p in zip(case["values"], case["probs"]))
        assert abs(ours - case["pred"]) < 0.01 * mean, (ours, case)


# ---------------------------------------------------------------- lambda returns
def test_imagination_lambda_returns():
    """The official (B, T) form with last=0 is reverie's (H+1, N) form, transposed."""
    for case in OFFICIAL["lambda_return"]["cases"][:2]:
        rew, term, boot = t(case["rew"]).T, t(case["term"]).T, t(case["val"]).T
        ours = lambda_return(rew, 1 - term, boot, case["disc"], case["lam"]).T  # (B, T-1)
        torch.testing.assert_close(ours, t(case["ret"]), rtol=1e-5, atol=1e-5)


def test_replay_lambda_returns():
    case = OFFICIAL["lambda_return"]["cases"][2]
    assert case["name"] == "replay_last_ones"
    last = t(case["last"]).bool()
    rew, term, boot = t(case["rew"]), t(case["term"]), t(case["boot"])
    ours = replay_lambda_return(rew, 1 - term, last, boot, case["disc"], case["lam"])[:, :-1]
    # episode ends have weight 0 in both codes' replay value loss: compare the others
    keep = ~last[:, :-1]
    torch.testing.assert_close(ours[keep], t(case["ret"])[keep], rtol=1e-5, atol=1e-5)


def test_contdisc_weights_and_returns():
    ref = OFFICIAL["lambda_return"]["imag"]
    con = t(ref["con"])  # (B, T) continue probabilities
    behavior = Behavior(8, ActSpec(True, 2), typed(make_config([])))
    logits = torch.log(con) - torch.log1p(-con)
    cont, gamma, weight = behavior.discounts(D.Bernoulli(logits.T), torch.ones(con.shape[0]))
    official_weight = t(ref["weight"])  # (B, T); the losses read [:, :-1]
    torch.testing.assert_close(weight.T, official_weight[:, :-1], rtol=1e-5, atol=1e-6)
    ret = lambda_return(t(ref["rew"]).T, cont, t(ref["val"]).T, gamma, ref["lam"]).T
    torch.testing.assert_close(ret, t(ref["ret"]), rtol=1e-5, atol=1e-5)


def test_continue_target():
    """The world model's continue target under the default config, whose horizon is the
    official one, for the official inputs."""
    ref = OFFICIAL["contdisc"]
    cfg = typed(make_config([]))
    assert cfg.behavior.contdisc and cfg.behavior.discount_horizon == ref["horizon"]
    wm = WorldModel(ObsSpec({"vector": 2}, {}), 2, cfg)
    ours = wm.cont_target(t(ref["is_terminal"], torch.bool))
    torch.testing.assert_close(ours, t(ref["con"]), rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------- return normaliser
def test_percentile_return_normaliser():
    ref = OFFICIAL["retnorm"]
    cfg = ref["config"]
    norm = ReturnNormalizer(1 - cfg["rate"], cfg["perclo"], cfg["perchi"], cfg["limit"])
    scales = []
    for batch in ref["batches"]:
        norm.update(t(batch))
        scales.append(norm.scale().item())
    np.testing.assert_allclose(scales, ref["scale"], rtol=1e-5)
    assert scales[-1] > 1.0  # the last batches are large enough to be scaled down


# ------------------------------------------------------------------ LaProp + AGC
@pytest.mark.parametrize("name", ["warmup1000", "warmup0"])
def test_laprop_with_agc_steps(name):
    ref = OFFICIAL["laprop_agc"]
    run = ref[name]
    oc = run["config"]
    params = {k: torch.nn.Parameter(t(v, torch.float64)) for k, v in ref["params"].items()}
    opt = LaProp(
        list(params.values()),
        lr=oc["lr"],
        beta1=oc["beta1"],
        beta2=oc["beta2"],
        eps=oc["eps"],
        warmup=oc["warmup"],
        agc=oc["agc"],
    )
    for grads, step in zip(ref["grads"], run["steps"]):
        for k, p in params.items():
            p.grad = t(grads[k], torch.float64)
        before = {k: p.detach().clone() for k, p in params.items()}
        opt.step()
        for k, p in params.items():
            # the updates (float32 in the official code), and the parameters they give
            update = p.detach() - before[k]
            np.testing.assert_allclose(update, step["updates"][k], rtol=2e-4, atol=1e-11)
            np.testing.assert_allclose(p.detach(), step["params"][k], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- initialisation
def build_layer(case: dict) -> torch.Tensor:
    """The official case's layer as reverie's constructors build it (they pick the fan_in);
    its weight, checked to hold the official kernel in reverie's layout."""
    shape, outscale = case["shape"], case["outscale"]
    if case["module"] == "Linear":  # kernel (in, out); reverie's weight (out, in)
        weight = linear(shape[0], shape[1], outscale=outscale).weight
        assert weight.shape == (shape[1], shape[0])
    elif case["module"] == "Conv2D":  # kernel (k, k, in, out); reverie's (out, in, k, k)
        weight = conv(shape[2], shape[3], shape[0], outscale=outscale).weight
        assert weight.shape == (shape[3], shape[2], shape[0], shape[1])
    else:  # BlockLinear kernel (G, in/G, out/G), stored alike
        assert case["module"] == "BlockLinear" and outscale == 1.0
        blocks, inp, out = shape
        weight = BlockLinear(blocks * inp, blocks * out, blocks).weight
        assert weight.shape == tuple(shape)
    return weight.detach()


@pytest.mark.parametrize("case", OFFICIAL["init_std"]["cases"], ids=lambda c: str(c["shape"]))
@pytest.mark.slow
def test_init_std_per_layer_shape(case):
    reps = max(1, math.ceil(2_000_000 / math.prod(case["shape"])))
    torch.manual_seed(0)
    sample = torch.cat([build_layer(case).flatten() for _ in range(reps)]).double()
    assert sample.std().item() == pytest.approx(case["empirical_std"], rel=0.01)
    assert sample.std().item() == pytest.approx(case["analytic_std"], rel=0.01)
    # truncated at 2 std of the underlying normal, as jax.random.truncated_normal(-2, 2)
    unit = case["outscale"] * 1.1368 / math.sqrt(case["fan_in"])  # the official scale
    assert sample.abs().max().item() <= 2 * unit * (1 + 1e-6)
    assert sample.abs().max().item() >= 1.99 * unit


# ------------------------------------------------------------------ KL, free bits
def test_kl_with_free_bits():
    """The world model's dyn and rep losses (`kl_losses`, as `heads_loss` calls it under
    the default config, whose unimix and free nats are the official ones)."""
    ref = OFFICIAL["kl_free_bits"]
    cfg = typed(make_config([]))
    assert cfg.model.unimix == ref["unimix"] and cfg.loss.free_nats == ref["free_nats"]
    assert cfg.ablation.free_bits
    post = t(ref["post_logits"]).requires_grad_()  # (B, 32 latents, 4 classes)
    prior = t(ref["prior_logits"]).requires_grad_()
    dyn, rep = kl_losses(post, prior, cfg.model.unimix, cfg.loss.free_nats)  # (B,)
    torch.testing.assert_close(dyn, t(ref["dyn"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rep, t(ref["rep"]), rtol=1e-5, atol=1e-5)
    # without free bits: the sums over latents, and each latent's own as a one-latent state
    dyn, rep = kl_losses(post, prior, cfg.model.unimix, None)
    torch.testing.assert_close(dyn, t(ref["dyn_noclip"]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rep, t(ref["rep_noclip"]), rtol=1e-5, atol=1e-5)
    per_latent, _ = kl_losses(post[:, :, None], prior[:, :, None], cfg.model.unimix, None)
    torch.testing.assert_close(per_latent, t(ref["kl_per_latent"]), rtol=1e-5, atol=1e-6)
    # equal in value, they differ in where the gradient goes: dyn trains the prior only,
    # rep the posterior only
    dyn, rep = kl_losses(post, prior, cfg.model.unimix, None)
    for loss, moved, kept in ((dyn, prior, post), (rep, post, prior)):
        grads = torch.autograd.grad(loss.sum(), [moved, kept], allow_unused=True)
        assert grads[0] is not None and grads[0].abs().sum() > 0
        assert grads[1] is None
