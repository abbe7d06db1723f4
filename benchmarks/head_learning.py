"""Updates a zero-initialised twohot head needs to fit a constant target, by MLP width.

The reward and critic heads start at a uniform distribution over 255 bins (loss
log 255 = 5.54). With LaProp each weight moves about lr per update whatever the
gradient's scale, so the logits (a sum over `units` hidden activations) move about
lr * units per update: wider presets learn these heads in fewer updates. This bounds
how few updates any task needs at a given size with the paper's lr and warm-up.

python benchmarks/head_learning.py [--units 32 64 256 1024] [--max-updates 6000]
"""

from __future__ import annotations

import argparse

import torch

from reverie.config import make_config
from reverie.optim import LaProp
from reverie.world_model import ValueHead


def updates_to_fit(units: int, feat_dim: int, max_updates: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = make_config([f"model.units={units}"], size="1m")
    head = ValueHead(feat_dim, cfg.model, cfg.model.reward_layers, cfg)
    oc = cfg.optim
    opt = LaProp(
        head.parameters(), oc.lr, oc.beta1, oc.beta2, oc.eps, oc.warmup, oc.agc, oc.agc_pmin
    )
    feats = torch.randn(4096, feat_dim)
    target = torch.ones(256)
    reached: dict[float, int | None] = {3.0: None, 1.0: None}
    for update in range(1, max_updates + 1):
        rows = torch.randint(0, len(feats), (len(target),))
        loss = -head(feats[rows]).log_prob(target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for level in reached:
            if reached[level] is None and loss.item() < level:
                reached[level] = update
        if all(v is not None for v in reached.values()):
            break
    return {"units": units, "loss<3": reached[3.0], "loss<1": reached[1.0]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--units", type=int, nargs="+", default=[32, 64, 256, 1024])
    p.add_argument("--feat", type=int, default=640, help="input width (1m: 512 + 32 * 4)")
    p.add_argument("--max-updates", type=int, default=6000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'units':>6} {'updates to loss<3':>18} {'updates to loss<1':>18}")
    for units in args.units:
        r = updates_to_fit(units, args.feat, args.max_updates)
        fmt = lambda v: str(v) if v is not None else f">{args.max_updates}"  # noqa: E731
        print(f"{units:>6} {fmt(r['loss<3']):>18} {fmt(r['loss<1']):>18}", flush=True)


if __name__ == "__main__":
    main()
