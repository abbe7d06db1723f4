"""The December-2024 details of the authors' code, each checked where reverie once differed.

Twohot in raw space lives in test_distributions.py and the decoder's input in test_nets.py;
figures computed by the official code itself are checked in test_official_parity.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from reverie import distributions as D
from reverie.agent import Agent
from reverie.config import ConfigError, make_config, size_note, train_fill
from reverie.specs import ActSpec, ObsSpec

from .conftest import TINY, random_batch, tiny_config, train_tiny

VEC = ObsSpec({"vector": 5}, {})
PIX = ObsSpec({}, {"image": (64, 64, 3)})
DISCRETE = ActSpec(True, 3)


def make(cfg, spec=VEC, act=DISCRETE, seed=0) -> Agent:
    torch.manual_seed(seed)
    return Agent(spec, act, cfg, "cpu")


def grad_norm(loss: torch.Tensor, module: nn.Module) -> float:
    grads = torch.autograd.grad(loss, list(module.parameters()), allow_unused=True)
    return sum(g.abs().sum().item() for g in grads if g is not None)


def wm_forward(agent: Agent, terminal_at: int | None = None):
    """World-model losses, the (B, T) sequence and its features, from a random batch."""
    seq = {k: v[:, 1:] for k, v in random_batch(agent.cfg, VEC, DISCRETE).items()}
    if terminal_at is not None:
        seq["is_terminal"][:, terminal_at] = True
    start = agent.wm.rssm.initial(seq["is_first"].shape[0], "cpu")
    losses, _, feat = agent.wm.loss(seq, start, seq["action"].float())
    return losses, seq, feat


# ------------------------------------------------------------------ 1. twohot
def test_value_heads_use_raw_space_twohot_by_default():
    agent = make(tiny_config())
    for head in (agent.wm.reward, agent.behavior.critic):
        torch.testing.assert_close(head.bins, D.symexp_bins(255))
        assert head.fwd is D.identity and head.bwd is D.identity
    old = make(tiny_config("model.twohot_space=symlog"))
    torch.testing.assert_close(old.wm.reward.bins, D.symmetric_bins(255))
    assert old.wm.reward.fwd is D.symlog


# ------------------------------------------------------------------ 2. biases
# layers whose bias another layer carries: two linear maps summed before one norm
SHARED_BIAS = {"wm.rssm.gru_hidden_in", "wm.rssm.post_deter"}


@pytest.mark.parametrize("spec", [VEC, PIX])
def test_every_linear_and_conv_has_a_bias(spec):
    agent = make(tiny_config(), spec)
    layers = {name: m for name, m in agent.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    assert layers
    missing = sorted(n for n, m in layers.items() if m.bias is None and n not in SHARED_BIAS)
    assert not missing, missing
    # the biases start at zero, as in the 2024 code
    assert all(torch.all(m.bias == 0) for m in layers.values() if m.bias is not None)


def test_vector_encoder_sees_the_scale_of_its_input():
    """Bias-free Linear before RMSNorm is blind to a positive rescaling of its input."""
    agent = make(tiny_config())
    mlp = agent.wm.encoder.mlp
    x = torch.randn(64, 5)
    # with zero biases (init) the first layer is still scale-free; a learned bias breaks it
    for layer in mlp.layers:
        nn.init.normal_(layer.linear.bias, std=0.5)
    out, doubled = mlp(x), mlp(2 * x)
    assert (out - doubled).abs().max() > 0.05
    # and the biases learn: they get gradients from the decoder loss
    losses, _, _ = wm_forward(agent)
    grad = torch.autograd.grad(losses["dec_vector"].mean(), mlp.layers[0].linear.bias)[0]
    assert grad.abs().sum() > 0


# --------------------------------------------------------- 3. replay value grad
def replay_value_setup(*overrides):
    agent = make(tiny_config(*overrides))
    # the critic's output layer starts at zero, passing no gradient: give it some weights
    nn.init.normal_(agent.behavior.critic.out.weight, std=0.1)
    _, seq, feat = wm_forward(agent)
    return agent, seq, feat, torch.randn(*feat.shape[:2])


def test_replay_value_loss_trains_the_world_model():
    agent, seq, feat, boot = replay_value_setup()
    loss = agent.behavior.replay_value_loss(feat, seq, boot)
    assert grad_norm(loss, agent.wm.encoder) > 0
    agent, seq, feat, boot = replay_value_setup("behavior.repval_grad=false")
    loss = agent.behavior.replay_value_loss(feat, seq, boot)
    assert grad_norm(loss, agent.wm.encoder) == 0
    assert grad_norm(agent.behavior.replay_value_loss(feat, seq, boot), agent.behavior.critic)


def test_replay_value_loss_ignores_the_last_step_and_episode_ends():
    agent, seq, feat, boot = replay_value_setup()
    seq["is_last"][:, 3] = True
    feat = feat.detach()
    base = agent.behavior.replay_value_loss(feat, seq, boot)
    for t in (3, feat.shape[1] - 1):  # an episode end, the sequence's last step
        moved = feat.clone()
        moved[:, t] += torch.randn_like(moved[:, t])
        assert agent.behavior.replay_value_loss(moved, seq, boot) == base
    moved = feat.clone()
    moved[:, 2] += 1.0
    assert agent.behavior.replay_value_loss(moved, seq, boot) != base


# ------------------------------------------------------------ 5. initialisation
def weight_std(weight: torch.Tensor) -> float:
    return weight.detach().double().std().item()


def test_init_stds_follow_trunc_normal_fan_in():
    """std = outscale * sqrt(1 / fan_in); a block-diagonal layer's fan_in is its input width."""
    cfg = make_config(["run.compile=off", "run.precision=fp32", "run.device=cpu"])  # 1m
    agent = make(cfg)
    rssm, mc = agent.wm.rssm, cfg.model
    h, g, deter = mc.hidden, mc.blocks, mc.deter
    cases = {
        "encoder layer 1": (agent.wm.encoder.mlp.layers[1].linear.weight, 1 / math.sqrt(mc.units)),
        "gru hidden (deter part)": (rssm.gru_hidden.weight, 1 / math.sqrt(deter + 3 * h * g)),
        "gru hidden (input part)": (rssm.gru_hidden_in.weight, 1 / math.sqrt(deter + 3 * h * g)),
        "gru gates": (rssm.gru.weight, 1 / math.sqrt(deter)),
        "prior logits": (rssm.prior_out.weight, 1 / math.sqrt(h)),
        "posterior": (rssm.post_deter.weight, 1 / math.sqrt(deter + rssm.post_embed.in_features)),
        "policy output": (agent.behavior.actor.out.weight, 0.01 / math.sqrt(mc.units)),
    }
    for name, (weight, std) in cases.items():
        assert weight_std(weight) == pytest.approx(std, rel=0.12), name
        # truncated at 2 std of the untruncated normal
        assert weight.abs().max().item() <= 2 * std * 1.1368 + 1e-6, name
    assert torch.all(agent.wm.reward.out.weight == 0)
    assert torch.all(agent.behavior.critic.out.weight == 0)


def test_conv_init_std_uses_kernel_area():
    cfg = tiny_config("model.depth=8")
    agent = make(cfg, PIX)
    conv = agent.wm.encoder.cnn.convs[1]
    fan_in = conv.in_channels * 25
    assert weight_std(conv.weight) == pytest.approx(1 / math.sqrt(fan_in), rel=0.12)


# ---------------------------------------------------------- 6. when training starts
@pytest.mark.slow
def test_training_starts_after_one_batch_of_replay_steps(tmp_path):
    assert train_fill(make_config([]).run) == 16 * 64
    overrides = [*TINY, "run.train_ratio=64", "replay.chunk=64"]
    fill = 4 * 8  # tiny: batch 4 x length 8
    trainer, summary = train_tiny(tmp_path / "a", fill - 1, overrides)
    assert summary["updates"] == 0 and trainer.replay.size == fill - 1
    trainer, summary = train_tiny(tmp_path / "a", fill + 2, overrides)
    assert summary["updates"] >= 1 and trainer.train_start == fill
    # an explicit fill in replay steps
    trainer, summary = train_tiny(tmp_path / "b", 50, [*overrides, "run.train_fill=48"])
    assert trainer.train_start == 48


# ------------------------------------------------------------ 7. continue and discount
def con_loss_target(agent: Agent) -> tuple[torch.Tensor, torch.Tensor]:
    """The target the world model's continue loss pulls toward, read off its gradient, and
    is_terminal (B, T): for a Bernoulli, d(-log p(target)) / d logit = sigmoid(logit) - target."""
    logits = []
    hook = agent.wm.cont_out.register_forward_hook(lambda module, inp, out: logits.append(out))
    try:
        losses, seq, _ = wm_forward(agent, terminal_at=5)
    finally:
        hook.remove()
    (logit,) = logits  # the loss reads the continue head once: (B, T, 1)
    grad = torch.autograd.grad(losses["con"].sum(), logit)[0]
    return (torch.sigmoid(logit) - grad).squeeze(-1).detach(), seq["is_terminal"]


def test_continue_target_carries_the_discount():
    # the official code's targets for a non-terminal and a terminal step (horizon 333)
    ref = json.loads((Path(__file__).parent / "fixtures/official_parity.json").read_text())
    official = dict(zip(ref["contdisc"]["is_terminal"], ref["contdisc"]["con"]))
    target, is_terminal = con_loss_target(make(tiny_config()))
    assert is_terminal.any() and not is_terminal.all()
    expected = torch.where(is_terminal, official[True], official[False])
    torch.testing.assert_close(target, expected, rtol=0, atol=1e-6)
    # the 2023 form: the plain continue flag
    target, is_terminal = con_loss_target(make(tiny_config("behavior.contdisc=false")))
    torch.testing.assert_close(target, (~is_terminal).float(), rtol=0, atol=1e-6)


def test_imagination_discounts_by_continue_probabilities():
    agent = make(tiny_config())
    logits = torch.randn(5, 3)  # (H+1, N)
    cont, gamma, weight = agent.behavior.discounts(D.Bernoulli(logits), torch.ones(3))
    prob = torch.sigmoid(logits)
    torch.testing.assert_close(cont, prob)
    assert gamma == 1.0
    # the start state's own predicted continue weights it, as in the 2024 code
    torch.testing.assert_close(weight, torch.cumprod(prob, 0)[:-1])
    old = make(tiny_config("behavior.contdisc=false"))
    start = torch.tensor([1.0, 0.0, 1.0])
    cont, gamma, weight = old.behavior.discounts(D.Bernoulli(logits), start)
    assert gamma == pytest.approx(1 - 1 / 333)
    torch.testing.assert_close(cont[0], start)
    torch.testing.assert_close(weight[0], torch.ones(3))


def test_update_runs_with_either_continue_form():
    for flag in ("true", "false"):
        cfg = tiny_config(f"behavior.contdisc={flag}")
        metrics, _ = make(cfg).update(random_batch(cfg, VEC, DISCRETE))
        assert all(torch.isfinite(v) for v in metrics.values())


# ---------------------------------------------------------------------- 8. sizes
def test_paper_size_by_one_flag():
    assert make_config([], size="paper").size == "200m"
    assert make_config([], size="paper", **{"env.id": "dmc:walker_walk"}).size == "1m"
    assert make_config([], size="paper", **{"env.id": "atari:pong"}).model.deter == 8192
    assert make_config([], size="paper", **{"env.id": "crafter"}).size == "200m"
    # the default stays small, and says it is not the paper's
    cfg = make_config([], **{"env.id": "atari:pong"})
    assert cfg.size == "1m" and "not the paper's" in size_note(cfg) and "200m" in size_note(cfg)
    cfg = make_config([], **{"env.id": "dmc:walker_walk"})
    assert size_note(cfg) == "size 1m, the paper's for this domain"
    with pytest.raises(ConfigError, match="paper"):
        make_config([], size="huge")


def test_every_run_prints_its_size(tmp_path, capsys):
    train_tiny(tmp_path, 5, TINY)
    assert "reverie: size 1m, not the paper's" in capsys.readouterr().err
