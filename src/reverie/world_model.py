"""World model: encoder, RSSM (block GRU, prior, posterior), decoder, reward and continue heads."""

from __future__ import annotations

import torch
from torch import nn

from reverie import distributions as D
from reverie.config import AblationConfig, Config, ModelConfig
from reverie.nets import (
    MLP,
    BlockLinear,
    ConvDecoder,
    ConvEncoder,
    Dense,
    init_linear_,
    linear,
    make_norm,
)
from reverie.specs import ObsSpec

Tensor = torch.Tensor

# posterior steps per call of `RSSM.observe_steps` (see `RSSM.observe`)
OBSERVE_CHUNK = 4


def latent_state(deter: Tensor, stoch: Tensor) -> dict[str, Tensor]:
    return {"deter": deter, "stoch": stoch}


class RSSM(nn.Module):
    """Recurrent state-space model with 32 categorical latents and a block-diagonal GRU."""

    compiled_methods = ("observe_steps",)

    def __init__(self, mc: ModelConfig, embed_dim: int, act_dim: int):
        super().__init__()
        self.deter, self.stoch, self.classes = mc.deter, mc.stoch, mc.classes
        self.blocks, self.unimix = mc.blocks, mc.unimix
        h, g = mc.hidden, mc.blocks
        self.in_deter = Dense(mc.deter, h, mc.norm)
        self.in_stoch = Dense(mc.stoch * mc.classes, h, mc.norm)
        self.in_action = Dense(act_dim, h, mc.norm)
        # the block-diagonal hidden layer: each block reads its own slice of h plus all
        # three inputs; the shared-input part is one dense matmul instead of G copies. Both
        # parts are one layer of the 2024 code, whose fan_in is its whole input width
        # (G blocks of deter/G + 3H), and one bias (the BlockLinear's) serves both
        fan_in = mc.deter + 3 * h * g
        self.gru_hidden = BlockLinear(mc.deter, mc.deter, g, fan_in=fan_in)
        self.gru_hidden_in = nn.Linear(3 * h, mc.deter, bias=False)
        init_linear_(self.gru_hidden_in.weight, fan_in=fan_in)
        self.gru_hidden_norm = make_norm(mc.deter, mc.norm)
        self.gru = BlockLinear(mc.deter, 3 * mc.deter, g)
        self.prior_net = MLP(mc.deter, h, 2, mc.norm)
        self.prior_out = linear(h, mc.stoch * mc.classes)
        # posterior: one layer on concat(h, embed), split so the embed part runs once per
        # batch; its fan_in is the concatenation's width and the bias sits on the embed part
        fan_in = mc.deter + embed_dim
        self.post_deter = nn.Linear(mc.deter, h, bias=False)
        init_linear_(self.post_deter.weight, fan_in=fan_in)
        self.post_embed = linear(embed_dim, h, fan_in=fan_in)
        self.post_norm = make_norm(h, mc.norm)
        self.post_out = linear(h, mc.stoch * mc.classes)
        self.feat_dim = mc.deter + mc.stoch * mc.classes
        self.observe_chunk = OBSERVE_CHUNK

    def initial(self, n: int, device: torch.device) -> dict[str, Tensor]:
        return latent_state(
            torch.zeros(n, self.deter, device=device),
            torch.zeros(n, self.stoch, self.classes, device=device),
        )

    def feat(self, state: dict[str, Tensor]) -> Tensor:
        deter, stoch = state["deter"], state["stoch"]
        return torch.cat([deter, stoch.flatten(-2)], -1)

    def core(self, deter: Tensor, stoch: Tensor, action: Tensor) -> Tensor:
        """h_t = f(h_{t-1}, z_{t-1}, a_{t-1}); deter (N, D), stoch (N, S, K), action (N, A)."""
        g = self.blocks
        action = action / action.abs().clamp(min=1.0).detach()
        x = torch.cat(
            [self.in_deter(deter), self.in_stoch(stoch.flatten(1)), self.in_action(action)], -1
        )  # (N, 3H)
        n = deter.shape[0]
        x = self.gru_hidden(deter.reshape(n, g, -1)).reshape(n, -1) + self.gru_hidden_in(x)
        x = nn.functional.silu(self.gru_hidden_norm(x))
        gates = self.gru(x.reshape(n, g, -1))  # (N, G, 3D/G)
        reset, cand, update = gates.chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = D.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        deter = deter.reshape(n, g, -1)
        return (update * cand + (1 - update) * deter).reshape(n, -1)

    def prior_logits(self, deter: Tensor) -> Tensor:
        x = self.prior_out(self.prior_net(deter))
        return x.reshape(*deter.shape[:-1], self.stoch, self.classes)

    def post_logits(self, deter: Tensor, embed_proj: Tensor) -> Tensor:
        x = nn.functional.silu(self.post_norm(self.post_deter(deter) + embed_proj))
        return self.post_out(x).reshape(*deter.shape[:-1], self.stoch, self.classes)

    def dist(self, logits: Tensor) -> D.OneHot:
        return D.OneHot(logits.float(), self.unimix)

    @staticmethod
    def reset_where(
        keep: Tensor, deter: Tensor, stoch: Tensor, action: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Zero the carried state and previous action where `keep` (N, 1) is 0."""
        return deter * keep, stoch * keep.unsqueeze(-1), action * keep

    def obs_step(
        self,
        state: dict[str, Tensor],
        prev_action: Tensor,
        embed: Tensor,
        is_first: Tensor,
        sample: bool = True,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """One posterior step, resetting state and action where `is_first` (N,)."""
        keep = (~is_first).to(embed.dtype).unsqueeze(-1)
        deter, stoch, action = self.reset_where(keep, state["deter"], state["stoch"], prev_action)
        deter = self.core(deter, stoch, action)
        logits = self.post_logits(deter, self.post_embed(embed))
        dist = self.dist(logits)
        stoch = dist.sample() if sample else dist.mode()
        return latent_state(deter, stoch), logits

    def observe_steps(
        self, deter: Tensor, stoch: Tensor, actions: Tensor, keep: Tensor, embed_proj: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior steps over a chunk of K steps: actions (N, K, A), keep (N, K, 1),
        embed_proj (N, K, H) from the carry deter (N, D), stoch (N, S, C).

        Returns deters (N, K, D), stochs (N, K, S, C) and logits (N, K, S, C).
        """
        deters, stochs, logits = [], [], []
        for t in range(actions.shape[1]):
            deter, stoch, action = self.reset_where(keep[:, t], deter, stoch, actions[:, t])
            deter = self.core(deter, stoch, action)
            logit = self.post_logits(deter, embed_proj[:, t])
            stoch = self.dist(logit).sample()
            deters.append(deter)
            stochs.append(stoch)
            logits.append(logit)
        return torch.stack(deters, 1), torch.stack(stochs, 1), torch.stack(logits, 1)

    def observe(
        self, state: dict[str, Tensor], prev_actions: Tensor, embed: Tensor, is_first: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Posterior over a sequence: prev_actions (B, T, A) holds a_{t-1} at index t.

        Returns states with (B, T, ...) tensors and posterior logits (B, T, S, K).
        """
        embed_proj = self.post_embed(embed)  # (B, T, H)
        keep = (~is_first).to(embed.dtype).unsqueeze(-1)  # (B, T, 1)
        deter, stoch = state["deter"], state["stoch"]
        deters, stochs, logits = [], [], []
        # chunks of steps, not single steps: each call of the compiled function costs a
        # fixed overhead forward and backward, paid once per chunk (docs/speed.md)
        for t in range(0, embed.shape[1], self.observe_chunk):
            chunk = slice(t, t + self.observe_chunk)
            ds, ss, ls = self.observe_steps(
                deter, stoch, prev_actions[:, chunk], keep[:, chunk], embed_proj[:, chunk]
            )
            deter, stoch = ds[:, -1], ss[:, -1]
            deters.append(ds)
            stochs.append(ss)
            logits.append(ls)
        return latent_state(torch.cat(deters, 1), torch.cat(stochs, 1)), torch.cat(logits, 1)

    def img_step(self, state: dict[str, Tensor], action: Tensor) -> dict[str, Tensor]:
        deter = self.core(state["deter"], state["stoch"], action)
        stoch = self.dist(self.prior_logits(deter)).sample()
        return latent_state(deter, stoch)


class Encoder(nn.Module):
    # the CNN as the update runs it (with gradients); acting keeps the eager module (any
    # batch size, no compilation on the first policy step). Compiling fuses the norms,
    # SiLUs and pooling between the convolutions, which speeds up a pixel update
    # (docs/speed.md)
    compiled_methods = ("train_cnn",)

    def __init__(self, spec: ObsSpec, mc: ModelConfig, use_symlog: bool):
        super().__init__()
        self.spec, self.use_symlog = spec, use_symlog
        self.out_dim = 0
        vec = sum(spec.vectors.values())
        if vec:
            self.mlp = MLP(vec, mc.units, mc.enc_layers, mc.norm)
            self.out_dim += self.mlp.out_dim
        if spec.images:
            self.cnn = ConvEncoder(
                spec.image_channels, mc.depth, strided=mc.cnn_strided, size=spec.image_size
            )
            self.out_dim += self.cnn.out_dim

    def forward(self, obs: dict[str, Tensor], bdims: int = 2) -> Tensor:
        lead = next(iter(obs.values())).shape[:bdims]
        outs = []
        if self.spec.vectors:
            outs.append(self.mlp(self.vector_input(obs)))
        if self.spec.images:
            x = torch.cat([obs[k] for k in self.spec.images], -1)
            cnn = self.train_cnn if torch.is_grad_enabled() else self.cnn
            x = cnn(x.reshape(-1, *x.shape[bdims:])).reshape(*lead, -1)
            outs.append(x)
        return torch.cat(outs, -1)

    def vector_input(self, obs: dict[str, Tensor]) -> Tensor:
        """The vectors side by side, symlog'd (unless ablated) but for the one-hot ones of
        categorical keys, which the 2024 code's `DictConcat` one-hot encodes unsquished."""
        discrete = self.spec.discrete
        if not discrete:
            x = torch.cat([obs[k].float() for k in self.spec.vectors], -1)
            return D.symlog(x) if self.use_symlog else x
        squish = D.symlog if self.use_symlog else D.identity
        parts = [obs[k].float() for k in self.spec.vectors]
        parts = [x if k in discrete else squish(x) for k, x in zip(self.spec.vectors, parts)]
        return torch.cat(parts, -1)

    def train_cnn(self, x: Tensor) -> Tensor:
        return self.cnn(x)


class Decoder(nn.Module):
    def __init__(self, spec: ObsSpec, feat_dim: int, mc: ModelConfig, use_symlog: bool):
        super().__init__()
        self.spec = spec
        self.fwd = D.symlog if use_symlog else D.identity
        self.bwd = D.symexp if use_symlog else D.identity
        vec = sum(spec.vectors.values())
        if vec:
            self.mlp = MLP(feat_dim, mc.units, mc.dec_layers, mc.norm)
            self.vec_out = linear(mc.units, vec)
        if spec.images:
            stoch = feat_dim - mc.deter
            self.cnn = ConvDecoder(
                mc.deter,
                stoch,
                spec.image_channels,
                mc.depth,
                mc.units,
                mc.decoder_blocks,
                size=spec.image_size,
            )

    def forward(self, feat: Tensor) -> dict[str, D.MSE | D.Categoricals]:
        """Distributions per observation key; their log_prob takes the raw observation.

        Vectors get symlog MSE, categorical keys (`ObsSpec.discrete`) categoricals over
        their classes from logits in the same slice (the 2024 code's `Decoder`: output
        'categorical' for a discrete space, 'symlog_mse' for the others).
        """
        out: dict[str, D.MSE | D.Categoricals] = {}
        if self.spec.vectors:
            pred = self.vec_out(self.mlp(feat)).float()
            start = 0
            for k, size in self.spec.vectors.items():
                part = pred[..., start : start + size]
                classes = self.spec.discrete.get(k)
                if classes:
                    out[k] = D.Categoricals(part, classes)
                else:
                    out[k] = D.MSE(part, 1, self.fwd, self.bwd)
                start += size
        if self.spec.images:
            lead = feat.shape[:-1]
            img = self.cnn(feat.reshape(-1, feat.shape[-1])).float()
            img = img.reshape(*lead, *img.shape[1:])
            start = 0
            for k, (_, _, c) in self.spec.images.items():
                out[k] = D.MSE(img[..., start : start + c], 3, _scale_image, _unscale_image)
                start += c
        return out


def _scale_image(x: Tensor) -> Tensor:
    return x.float() / 255.0


def _unscale_image(x: Tensor) -> Tensor:
    return x * 255.0


def kl_losses(
    post: Tensor, prior: Tensor, unimix: float, free_nats: float | None
) -> tuple[Tensor, Tensor]:
    """The dynamics and representation losses (...) from posterior and prior logits (..., S, K).

    KL[post || prior] of the unimix categoricals, summed over the S latents, with the
    gradient into the prior (dyn) or into the posterior (rep); both are clipped from below
    at `free_nats` (free bits) unless it is None.
    """
    post_lp = torch.log(D.unimix_probs(post.float(), unimix))
    prior_lp = torch.log(D.unimix_probs(prior.float(), unimix))
    dyn = D.categorical_kl(post_lp.detach(), prior_lp).sum(-1)
    rep = D.categorical_kl(post_lp, prior_lp.detach()).sum(-1)
    if free_nats is not None:
        dyn = dyn.clamp(min=free_nats)
        rep = rep.clamp(min=free_nats)
    return dyn, rep


class WorldModel(nn.Module):
    compiled_methods = ("heads_loss",)

    def __init__(self, spec: ObsSpec, act_dim: int, cfg: Config):
        super().__init__()
        mc, ab = cfg.model, cfg.ablation
        self.cfg = cfg
        self.encoder = Encoder(spec, mc, ab.symlog)
        self.rssm = RSSM(mc, self.encoder.out_dim, act_dim)
        feat = self.rssm.feat_dim
        self.decoder = Decoder(spec, feat, mc, ab.symlog)
        self.reward = ValueHead(feat, mc, ab, mc.reward_layers)
        self.cont_net = MLP(feat, mc.units, mc.cont_layers, mc.norm)
        self.cont_out = linear(mc.units, 1)
        # `behavior.contdisc` (2024 code): the continue target carries the discount,
        # (1 - is_terminal) * (1 - 1/horizon), and imagination uses no separate gamma
        bc = cfg.behavior
        self.cont_target_scale = 1.0 - 1.0 / bc.discount_horizon if bc.contdisc else 1.0

    def cont_target(self, is_terminal: Tensor) -> Tensor:
        """The continue head's target: 1 - is_terminal, times the discount under contdisc."""
        return (1.0 - is_terminal.float()) * self.cont_target_scale

    def cont(self, feat: Tensor) -> D.Bernoulli:
        return self.cont_head(self.cont_net(feat))

    def cont_head(self, hidden: Tensor) -> D.Bernoulli:
        """The continue distribution from the output of `cont_net`."""
        return D.Bernoulli(self.cont_out(hidden).squeeze(-1).float())

    def loss(
        self, data: dict[str, Tensor], state: dict[str, Tensor], prev_actions: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """World-model losses per term, each (B, T); posterior states; features (B, T, F)."""
        embed = self.encoder(data)
        post_state, post = self.rssm.observe(state, prev_actions, embed, data["is_first"])
        feat = self.rssm.feat(post_state)
        return self.heads_loss(data, feat, post), post_state, feat

    def open_loop(self, obs: dict[str, Tensor], prev_actions: Tensor) -> Tensor:
        """Features (N, T, F) of sequences whose first C steps are observed, `obs` (N, C, ...),
        and whose remaining T - C steps are imagined by the prior from the real actions.

        prev_actions (N, T, A) holds a_{t-1} at index t; the sequences start from scratch.
        """
        embed = self.encoder(obs)  # (N, C, E)
        n, context = embed.shape[:2]
        is_first = torch.zeros(n, context, dtype=torch.bool, device=embed.device)
        is_first[:, 0] = True
        start = self.rssm.initial(n, embed.device)
        post, _ = self.rssm.observe(start, prev_actions[:, :context], embed, is_first)
        feats = [self.rssm.feat(post)]
        state = latent_state(post["deter"][:, -1], post["stoch"][:, -1])
        for t in range(context, prev_actions.shape[1]):
            state = self.rssm.img_step(state, prev_actions[:, t])
            feats.append(self.rssm.feat(state)[:, None])
        return torch.cat(feats, 1)

    def heads_loss(self, data: dict[str, Tensor], feat: Tensor, post: Tensor) -> dict[str, Tensor]:
        """`loss` after the posterior: feat (B, T, F), posterior logits (B, T, S, K)."""
        lc, ab = self.cfg.loss, self.cfg.ablation
        prior = self.rssm.prior_logits(feat[..., : self.rssm.deter])
        losses = {}
        dec_feat = feat if ab.recon_grad else feat.detach()
        for key, dist in self.decoder(dec_feat).items():
            losses[f"dec_{key}"] = -dist.log_prob(data[key])
        task_feat = feat if ab.task_grad else feat.detach()
        losses["rew"] = -self.reward(task_feat).log_prob(data["reward"])
        losses["con"] = -self.cont(task_feat).log_prob(self.cont_target(data["is_terminal"]))
        free_nats = lc.free_nats if ab.free_bits else None
        losses["dyn"], losses["rep"] = kl_losses(post, prior, self.rssm.unimix, free_nats)
        return losses


class ValueHead(nn.Module):
    """MLP -> twohot over 255 bins (zero-initialised output), or one MSE value (twohot off).

    The 2024 code's `symexp_twohot` (`model.twohot_space=raw`): bins at
    `symexp(linspace(-20, 20))`, the target interpolated between its raw-space neighbours
    and the prediction `probs @ bins`. `model.twohot_space=symlog` is the 2023 form, twohot
    of `symlog(y)` over `linspace(-20, 20)` predicting `symexp(probs @ bins)`, which is
    biased toward 0 for stochastic targets (tests/test_distributions.py).
    """

    bins: Tensor  # buffer (register_buffer in __init__)

    def __init__(self, inp: int, mc: ModelConfig, ab: AblationConfig, layers: int):
        super().__init__()
        self.twohot = ab.twohot
        squash = ab.symlog and not (self.twohot and mc.twohot_space == "raw")
        self.fwd = D.symlog if squash else D.identity
        self.bwd = D.symexp if squash else D.identity
        self.mlp = MLP(inp, mc.units, layers, mc.norm)
        self.out = linear(mc.units, mc.bins if self.twohot else 1, outscale=0.0)
        raw = ab.symlog and not squash
        bins = D.symexp_bins(mc.bins, 20.0) if raw else D.symmetric_bins(mc.bins, 20.0)
        self.register_buffer("bins", bins, persistent=False)

    def forward(self, feat: Tensor) -> D.TwoHot | D.MSE:
        return self.head(self.mlp(feat))

    def head(self, hidden: Tensor) -> D.TwoHot | D.MSE:
        """The output distribution from the output of `mlp`."""
        x = self.out(hidden)
        if self.twohot:
            return D.TwoHot(x.float(), self.bins, self.fwd, self.bwd)
        return D.MSE(x.squeeze(-1).float(), 0, self.fwd, self.bwd)
