"""Actor and critic learned in imagination (the paper, Methods: critic learning and actor
learning)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reverie import distributions as D
from reverie.config import Config, ModelConfig
from reverie.nets import MLP, fused_mlps, linear
from reverie.specs import ActSpec
from reverie.world_model import ValueHead, WorldModel

Tensor = torch.Tensor


def lambda_return(reward: Tensor, cont: Tensor, value: Tensor, gamma: float, lam: float) -> Tensor:
    """R_t = r_{t+1} + gamma c_{t+1} ((1 - lam) v_{t+1} + lam R_{t+1}),  R_H = v_H.

    reward, cont, value: (H+1, N) where index 0 is the start state (its reward and
    continue unused). Returns (H, N) for t = 0 .. H-1.
    """
    horizon = value.shape[0] - 1
    ret = value[-1]
    out = []
    for t in reversed(range(horizon)):
        ret = reward[t + 1] + gamma * cont[t + 1] * ((1 - lam) * value[t + 1] + lam * ret)
        out.append(ret)
    return torch.stack(out[::-1], 0)


def replay_lambda_return(
    reward: Tensor, cont: Tensor, is_last: Tensor, boot: Tensor, gamma: float, lam: float
) -> Tensor:
    """Lambda returns along real replayed steps (B, T), bootstrapped from `boot` (B, T).

    Episode ends (`is_last`) fall back to the bootstrap value, so returns never
    reach across an episode boundary.
    """
    ret = boot[:, -1]
    out = [ret]
    for t in reversed(range(reward.shape[1] - 1)):
        nxt = reward[:, t + 1] + gamma * cont[:, t + 1] * ((1 - lam) * boot[:, t + 1] + lam * ret)
        ret = torch.where(is_last[:, t], boot[:, t], nxt)
        out.append(ret)
    return torch.stack(out[::-1], 1)


class ReturnNormalizer(nn.Module):
    """scale = max(limit, EMA(Per(R, high) - Per(R, low))); kept on device, no host syncs."""

    quantiles: Tensor  # buffers (register_buffer in __init__)
    spread: Tensor

    def __init__(self, decay: float, low: float, high: float, limit: float):
        super().__init__()
        self.decay, self.limit = decay, limit
        self.register_buffer("quantiles", torch.tensor([low / 100, high / 100]))
        self.register_buffer("spread", torch.zeros(()))
        self.gather: Callable[[Tensor], Tensor] | None = None

    def gather_with(self, gather: Callable[[Tensor], Tensor]) -> None:
        """Take the percentiles over what `gather` returns for the batch's returns: in a
        data-parallel job, every rank's (so each rank keeps the scale a single process
        training on the whole global batch would)."""
        # a collective: the compiled imagination loss breaks its graph here. Wrapped here,
        # not at import, since torch.compiler.disable imports torch._dynamo (slow, and it
        # fixes Inductor's cache folder before reverie.accel can choose it)
        self.gather = torch.compiler.disable(gather)

    def update(self, ret: Tensor) -> None:
        ret = ret.detach().float()
        if self.gather is not None:
            ret = self.gather(ret)  # (H, N) per rank -> (ranks * H * N,)
        lo, hi = torch.quantile(ret.flatten(), self.quantiles)
        new = self.decay * self.spread + (1 - self.decay) * (hi - lo)
        self.spread.copy_(torch.where(torch.isfinite(new), new, self.spread))  # skip NaN batches

    def scale(self) -> Tensor:
        return self.spread.clamp(min=self.limit)


class Actor(nn.Module):
    """MLP -> one-hot categorical (discrete), bounded normal (continuous), or one of those
    per part side by side (composite: MultiDiscrete and Dict action spaces)."""

    def __init__(self, feat_dim: int, act: ActSpec, mc: ModelConfig):
        super().__init__()
        self.discrete, self.unimix = act.discrete, mc.actor_unimix
        self.minstd, self.maxstd = mc.action_minstd, mc.action_maxstd
        # composite: (discrete?, width of the part's outputs) per part
        self.parts = [(p.discrete, p.dim if p.discrete else 2 * p.dim) for p in act.parts]
        out = sum(w for _, w in self.parts) if act.parts else act.dim * (1 if act.discrete else 2)
        self.mlp = MLP(feat_dim, mc.units, mc.actor_layers, mc.norm)
        self.out = linear(mc.units, out, outscale=0.01)

    def forward(self, feat: Tensor) -> D.OneHot | D.BoundedNormal | D.Joint:
        return self.head(self.mlp(feat))

    def head(self, hidden: Tensor) -> D.OneHot | D.BoundedNormal | D.Joint:
        """The action distribution from the output of `mlp`."""
        x = self.out(hidden).float()
        if self.parts:
            chunks = torch.split(x, [w for _, w in self.parts], -1)
            dists = [self._dist(c, discrete) for c, (discrete, _) in zip(chunks, self.parts)]
            widths = [w if discrete else w // 2 for discrete, w in self.parts]
            return D.Joint(dists, widths)
        return self._dist(x, self.discrete)

    def _dist(self, x: Tensor, discrete: bool) -> D.OneHot | D.BoundedNormal:
        if discrete:
            return D.OneHot(x, self.unimix)
        mean, std = x.chunk(2, -1)
        return D.BoundedNormal(mean, std, self.minstd, self.maxstd)


class Behavior(nn.Module):
    """Actor, critic, slow critic and return normaliser, with their imagination losses."""

    compiled_methods = ("imagine_step", "imagination_loss", "replay_value_loss")

    def __init__(self, feat_dim: int, act: ActSpec, cfg: Config):
        super().__init__()
        self.cfg = cfg
        mc, bc = cfg.model, cfg.behavior
        self.actor = Actor(feat_dim, act, mc)
        self.critic = ValueHead(feat_dim, mc, cfg.ablation, mc.critic_layers)
        self.slow_critic = ValueHead(feat_dim, mc, cfg.ablation, mc.critic_layers)
        self.slow_critic.load_state_dict(self.critic.state_dict())
        self.slow_critic.requires_grad_(False)
        self.retnorm = ReturnNormalizer(
            bc.retnorm_decay, bc.retnorm_low, bc.retnorm_high, bc.retnorm_limit
        )
        self.gamma = 1.0 - 1.0 / bc.discount_horizon

    def imagine_step(self, rssm, feat: Tensor) -> tuple[Tensor, Tensor]:
        """One imagined step from features (N, F): the actor's sample, then the prior.

        Returns the next features (N, F) and the action (N, A).
        """
        n = feat.shape[0]
        deter = feat[:, : rssm.deter]
        stoch = feat[:, rssm.deter :].reshape(n, rssm.stoch, rssm.classes)
        action = self.actor(feat).sample()
        state = rssm.img_step({"deter": deter, "stoch": stoch}, action)
        return rssm.feat(state), action

    @torch.no_grad()
    def imagine(
        self, wm: WorldModel, start: dict[str, Tensor], horizon: int
    ) -> tuple[Tensor, Tensor]:
        """Roll the prior forward with actor samples from (N,) start states, without gradients.

        The features are stop-gradient for the actor and critic, so the policy is
        re-evaluated on all imagined states in one batch afterwards (see `loss`).
        Returns features (H+1, N, F) and actions (H, N, A).
        """
        first = wm.rssm.feat(start)  # (N, F)
        # each step writes into one buffer: no stacking of states and features afterwards
        feats = first.new_empty(horizon + 1, *first.shape)
        feats[0] = first
        actions = []
        for t in range(horizon):
            feat, action = self.imagine_step(wm.rssm, feats[t])
            feats[t + 1] = feat
            actions.append(action)
        return feats, torch.stack(actions, 0)

    def loss(
        self, wm: WorldModel, start: dict[str, Tensor], start_cont: Tensor
    ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """Actor and critic losses (scalars) on imagined rollouts from every start state.

        start: states with (N, ...) tensors; start_cont (N,): 1 - is_terminal of the start.
        Returns losses, the imagined return of each start (N,), metrics.
        """
        feats, actions = self.imagine(wm, start, self.cfg.behavior.horizon)
        return self.imagination_loss(wm, feats, actions, start_cont)

    def imagination_loss(
        self, wm: WorldModel, feats: Tensor, actions: Tensor, start_cont: Tensor
    ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """`loss` after imagination: feats (H+1, N, F), actions (H, N, A), start_cont (N,)."""
        bc, ab = self.cfg.behavior, self.cfg.ablation
        with torch.no_grad():
            # five heads read the same (H+1, N, F) features: their first layers run as two
            # matmuls, one without gradients and one with (see nets.fused_mlps)
            rew_h, cont_h, slow_h = fused_mlps(
                feats, [wm.reward.mlp, wm.cont_net, self.slow_critic.mlp]
            )
            # the start state's reward is never used; its continue: see `discounts`
            reward = wm.reward.head(rew_h[1:]).pred()  # (H, N)
            reward = torch.cat([torch.zeros_like(reward[:1]), reward], 0)  # (H+1, N)
            cont, gamma, weight = self.discounts(wm.cont_head(cont_h), start_cont)
            slow = self.slow_critic.head(slow_h[:-1]).pred()
        critic_h, actor_h = fused_mlps(feats, [self.critic.mlp, self.actor.mlp])
        critic_dist = self.critic.head(critic_h)
        value = critic_dist.pred().detach()  # (H+1, N)
        ret = lambda_return(reward, cont, value, gamma, bc.lam)  # (H, N)

        adv = ret - value[:-1]
        if ab.retnorm == "percentile":
            self.retnorm.update(ret)
            adv = adv / self.retnorm.scale()
        elif ab.retnorm == "advstd":
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy = self.actor.head(actor_h[:-1])
        logp = policy.log_prob(actions)  # (H, N)
        ent = policy.entropy()
        actor = -(weight * (adv.detach() * logp + bc.actor_entropy * ent)).mean()

        critic_now = self.critic_slice(critic_dist, slice(0, -1))
        critic = -(weight * self._critic_logp(critic_now, ret.detach(), slow)).mean()
        metrics = {
            "imag/return": ret.mean(),
            "imag/value": value.mean(),
            "imag/reward": reward[1:].mean(),
            "imag/cont": cont[1:].mean(),
            "actor/entropy": ent.mean(),
            "actor/logp": logp.mean(),
            "actor/adv_abs": adv.abs().mean(),
            "retnorm/scale": self.retnorm.scale(),
        }
        return {"actor": actor, "critic": critic}, ret[0].detach(), metrics

    def discounts(self, cont_dist: D.Bernoulli, start_cont: Tensor) -> tuple[Tensor, float, Tensor]:
        """Continues (H+1, N), the gamma that multiplies them, and the weights (H, N).

        contdisc (2024 code): the continue probability of every state, start included,
        already holds the discount (its target is (1 - is_terminal) * gamma); state t is
        weighted by the product of the continues up to and including its own.
        Otherwise (2023 code): the mode of the continue head after the start, the start's
        own from the data, times gamma; the first state is weighted 1.
        """
        if self.cfg.behavior.contdisc:
            cont = cont_dist.prob()
            return cont, 1.0, torch.cumprod(cont, 0)[:-1]
        cont = cont_dist.mode()[1:]
        cont = torch.cat([start_cont[None].to(cont.dtype), cont], 0)
        weight = torch.cumprod(cont, 0)
        weight = torch.cat([torch.ones_like(weight[:1]), weight[1:-1]], 0)
        return cont, self.gamma, weight

    @staticmethod
    def critic_slice(dist, index) -> D.TwoHot | D.MSE:
        if isinstance(dist, D.TwoHot):
            return D.TwoHot(dist.logits[index], dist.bins, dist.fwd, dist.bwd)
        return D.MSE(dist._pred[index], dist.dims, dist.fwd, dist.bwd)

    def replay_value_loss(self, feat: Tensor, data: dict[str, Tensor], boot: Tensor) -> Tensor:
        """Critic on replayed states toward real-reward lambda returns (2024 code).

        feat (B, T, F) carries gradients into the world model unless
        `behavior.repval_grad` is off. As in the 2024 code, the last step of the sequence
        (no real successor) and episode ends (`is_last`) have weight 0.
        """
        bc = self.cfg.behavior
        feat = feat if bc.repval_grad else feat.detach()
        cont = 1.0 - data["is_terminal"].float()
        ret = replay_lambda_return(
            data["reward"].float(), cont, data["is_last"], boot, self.gamma, bc.lam
        )
        dist = self.critic(feat)
        with torch.no_grad():
            slow = self.slow_critic(feat).pred()
        logp = self._critic_logp(dist, ret.detach(), slow)  # (B, T)
        weight = (~data["is_last"]).to(logp.dtype)
        return -(weight * logp)[:, :-1].mean()

    def _critic_logp(self, dist, ret: Tensor, slow: Tensor) -> Tensor:
        """log p(ret) + slowreg * log p(slow critic's prediction)."""
        reg = self.cfg.loss.slowreg
        if isinstance(dist, D.TwoHot) and reg == 1.0:
            return dist.log_prob(ret, slow)
        return dist.log_prob(ret) + reg * dist.log_prob(slow)

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        rate = self.cfg.behavior.slow_critic_rate
        src: list[Tensor] = list(self.critic.parameters())
        dst: list[Tensor] = list(self.slow_critic.parameters())
        torch._foreach_lerp_(dst, src, rate)
