"""Layers: Linear+Norm+SiLU, block-diagonal linear, MLP, 64x64 conv encoder/decoder.

Every linear and conv layer has a bias, zero-initialised, as in the 2024 code: RMSNorm has
a scale only, so a bias-free layer before it could not see the scale of its input.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

Tensor = torch.Tensor
NORM_EPS = 1e-4
# 1 / std of a unit normal truncated at 2 std (0.8796), as the 2024 code rounds it: the
# truncated draw times this has unit std
TRUNC_UNIT = 1.1368


@torch.no_grad()
def init_linear_(weight: Tensor, outscale: float = 1.0, fan_in: int | None = None) -> None:
    """The 2024 code's `trunc_normal_in`: truncated normal, std `outscale * sqrt(1 / fan_in)`.

    `fan_in` is the input width times the kernel area (from `weight`, shaped (out, in, ...),
    unless given: a block-diagonal layer's fan_in is its whole input width). `outscale` 0
    gives zeros (the reward and critic output layers).
    """
    if outscale == 0.0:
        nn.init.zeros_(weight)
        return
    if fan_in is None:
        receptive = weight[0][0].numel() if weight.dim() > 2 else 1
        fan_in = weight.shape[1] * receptive
    std = outscale * math.sqrt(1.0 / fan_in) * TRUNC_UNIT
    nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def linear(inp: int, out: int, outscale: float = 1.0, fan_in: int | None = None) -> nn.Linear:
    """nn.Linear with the 2024 initialiser and a zero bias."""
    layer = nn.Linear(inp, out)
    init_linear_(layer.weight, outscale, fan_in)
    nn.init.zeros_(layer.bias)
    return layer


def conv(inp: int, out: int, kernel: int = 5, stride: int = 1, outscale: float = 1.0) -> nn.Conv2d:
    layer = nn.Conv2d(inp, out, kernel, stride=stride, padding=kernel // 2)
    init_linear_(layer.weight, outscale)
    assert layer.bias is not None  # Conv2d's default bias=True
    nn.init.zeros_(layer.bias)
    return layer


class RMSNorm(nn.RMSNorm):
    """RMSNorm in the input's dtype: under bf16 autocast the fused kernel needs the
    weight in bf16 too (the parameter itself stays fp32)."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


def make_norm(dim: int, kind: str) -> nn.Module:
    if kind == "rms":
        return RMSNorm(dim, eps=NORM_EPS)
    if kind == "layer":
        return nn.LayerNorm(dim, eps=NORM_EPS)
    raise ValueError(f"unknown norm {kind!r}; use 'rms' or 'layer'")


class Dense(nn.Module):
    """Linear -> Norm -> SiLU."""

    def __init__(self, inp: int, out: int, norm: str = "rms"):
        super().__init__()
        self.linear = linear(inp, out)
        self.norm = make_norm(out, norm)

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(self.norm(self.linear(x)))


class MLP(nn.Module):
    def __init__(self, inp: int, units: int, layers: int, norm: str = "rms"):
        super().__init__()
        dims = [inp] + [units] * layers
        self.layers = nn.Sequential(*[Dense(a, b, norm) for a, b in zip(dims[:-1], dims[1:])])
        self.out_dim = dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def fused_mlps(x: Tensor, mlps: list[MLP]) -> list[Tensor]:
    """Several MLPs on one input, their first linear layers as one matmul.

    Same maths as `[m(x) for m in mlps]`; the large input (e.g. 16K imagined features)
    is read once and the matmul is wider, which runs faster than one per MLP.
    """
    deep = [m for m in mlps if len(m.layers)]
    # an MLP's layers are Dense (see MLP.__init__)
    firsts = [cast(Dense, m.layers[0]) for m in deep]
    if firsts:
        weight = torch.cat([d.linear.weight for d in firsts], 0)  # (sum of widths, in)
        bias = torch.cat([d.linear.bias for d in firsts], 0)
        pre_all = nn.functional.linear(x, weight, bias)
        pre = iter(pre_all.split([d.linear.out_features for d in firsts], -1))
    outs = []
    for m in mlps:
        if not len(m.layers):
            outs.append(x)
            continue
        first = cast(Dense, m.layers[0])
        outs.append(m.layers[1:](torch.nn.functional.silu(first.norm(next(pre)))))
    return outs


class BlockLinear(nn.Module):
    """Block-diagonal linear: G independent (in/G -> out/G) maps as one batched matmul."""

    def __init__(self, inp: int, out: int, blocks: int, fan_in: int | None = None):
        super().__init__()
        assert inp % blocks == 0 and out % blocks == 0, (inp, out, blocks)
        i, o = inp // blocks, out // blocks
        self.weight = nn.Parameter(torch.empty(blocks, i, o))
        self.bias = nn.Parameter(torch.zeros(blocks, 1, o))
        # fan_in is the whole input width, as in the 2024 code, not one block's
        init_linear_(self.weight, fan_in=fan_in or inp)

    def forward(self, x: Tensor) -> Tensor:
        # x: (N, G, in/G) -> (N, G, out/G)
        return torch.baddbmm(self.bias, x.transpose(0, 1), self.weight).transpose(0, 1)

    def without_bias(self, x: Tensor) -> Tensor:
        """`forward` less the bias, for a caller that adds it with others."""
        return torch.bmm(x.transpose(0, 1), self.weight).transpose(0, 1)


class ConvEncoder(nn.Module):
    """HxW image -> 4 stages of conv (kernel 5) + norm + SiLU, halving the size each stage
    (64x64 -> 4x4, 96x96 -> 6x6)."""

    def __init__(
        self,
        channels: int,
        depth: int,
        mults=(2, 3, 4, 4),
        strided: bool = False,
        size: tuple[int, int] = (64, 64),
    ):
        super().__init__()
        self.strided = strided
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        inp = channels
        for m in mults:
            self.convs.append(conv(inp, depth * m, 5, stride=2 if strided else 1))
            self.norms.append(ChannelNorm(depth * m))
            inp = depth * m
        h, w = (side >> len(mults) for side in size)
        self.out_dim = inp * h * w
        # NHWC images permute to channels-last NCHW views; matching weights run faster
        # torch's Module.to overloads omit `memory_format`, which Module.to accepts and documents
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stub

    def forward(self, image: Tensor) -> Tensor:
        # image: (N, H, W, C) uint8 -> (N, out_dim)
        x = image.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        for layer, norm in zip(self.convs, self.norms):
            x = layer(x)
            if not self.strided:
                x = torch.nn.functional.max_pool2d(x, 2)
            x = torch.nn.functional.silu(norm(x))
        return x.flatten(1)


class ChannelNorm(nn.Module):
    """RMSNorm over the channel axis of (N, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        # channels-last activations viewed as (N, H, W, C) normalise in one fused kernel,
        # which needs the weight in the input's dtype (bf16 under autocast)
        weight = self.weight.to(x.dtype)
        y = nn.functional.rms_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, NORM_EPS)
        return y.permute(0, 3, 1, 2)


class ConvDecoder(nn.Module):
    """Latent state -> 4x4 map -> 4 stages of nearest x2 upsampling + conv -> 64x64 sigmoid
    image (a 6x6 map for 96x96: the map is the image size halved 4 times).

    The map is the 2024 code's (`bspace: 8`): `deter` through a block-diagonal linear
    and the flat `stoch` through Linear(2 units)+Norm+SiLU then Linear, summed, then
    Norm+SiLU; the block-diagonal map keeps the first layer small at large `deter`.
    """

    def __init__(
        self,
        deter: int,
        stoch: int,
        channels: int,
        depth: int,
        units: int,
        blocks: int = 8,
        mults=(2, 3, 4, 4),
        size: tuple[int, int] = (64, 64),
    ):
        super().__init__()
        depths = [depth * m for m in reversed(mults)]  # the smallest map's stage first
        self.deter, self.start = deter, depths[0]
        self.minres = tuple(side >> len(mults) for side in size)  # (4, 4) for 64x64
        cells = self.minres[0] * self.minres[1]
        self.space_deter = BlockLinear(deter, cells * depths[0], blocks)
        self.space_stoch = Dense(stoch, 2 * units)
        self.space_out = linear(2 * units, cells * depths[0])
        self.space_norm = ChannelNorm(depths[0])
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        outs = depths[1:] + [channels]
        for i, (a, b) in enumerate(zip(depths, outs)):
            self.convs.append(conv(a, b, 5))
            if i < len(outs) - 1:
                self.norms.append(ChannelNorm(b))
        # torch's Module.to overloads omit `memory_format`, which Module.to accepts and documents
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stub

    def space(self, feat: Tensor) -> Tensor:
        """The smallest map before its norm: feat (N, deter + stoch) -> (N, C, h, w)."""
        n = feat.shape[0]
        deter, stoch = feat[:, : self.deter], feat[:, self.deter :]
        blocks = self.space_deter.weight.shape[0]
        x0 = self.space_deter.without_bias(deter.reshape(n, blocks, -1)).reshape(n, -1)
        x1 = nn.functional.linear(self.space_stoch(stoch), self.space_out.weight)
        # the two maps' biases join before they meet the batch, so that their gradient is
        # one sum over it: Inductor (torch 2.13) writes C++ that does not compile for two
        # identical bf16 sums (the bf16 pixel update's backward: benchmarks/results/
        # inductor_bf16_twin_sums_2026-12-07.txt)
        bias = self.space_deter.bias.reshape(-1) + self.space_out.bias
        x = (x0 + x1 + bias).reshape(n, self.start, *self.minres)
        return x.contiguous(memory_format=torch.channels_last)

    def forward(self, feat: Tensor) -> Tensor:
        # feat: (N, F) -> (N, H, W, C) in [0, 1]
        x = torch.nn.functional.silu(self.space_norm(self.space(feat)))
        for i, layer in enumerate(self.convs):
            layer = cast(nn.Conv2d, layer)  # self.convs holds the conv() layers
            x = upsample_conv(x, layer.weight, layer.bias)
            if i < len(self.norms):
                x = torch.nn.functional.silu(self.norms[i](x))
        return torch.sigmoid(x).permute(0, 2, 3, 1)


# Which of the 5 kernel taps of a full-resolution conv fall on each of the 3 low-resolution
# neighbours (i-1, i, i+1) of a nearest-upsampled pixel, for even (row 0) and odd (row 1)
# output positions: row 2i reads i-1 through taps 0-1, i through 2-3, i+1 through 4.
_UPSAMPLE_TAPS = torch.tensor(
    [
        [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]],
        [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]],
    ],
    dtype=torch.float32,
)  # (2 parities, 3 low-res taps, 5 full-res taps)


def upsample_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=2)`
    for a 5x5 `weight`, computed at the input's resolution (sub-pixel convolution).

    Each of the four output parities sees the upsampled image as a 3x3 window of x with
    summed taps, so one 3x3 conv with 4x the output channels followed by a pixel shuffle
    gives the same sums with 9/25 of the multiply-adds. x (N, Cin, H, W) -> (N, Cout, 2H, 2W).
    """
    out_ch = weight.shape[0]
    taps = _UPSAMPLE_TAPS.to(weight.device, weight.dtype)
    # (Cout, Cin, 5, 5) -> (Cout, 2, 2, Cin, 3, 3): parities (a, b), taps (p, q)
    sub = torch.einsum("apy,bqx,oiyx->oabipq", taps, taps, weight)
    sub = sub.reshape(out_ch * 4, weight.shape[1], 3, 3)
    sub_bias = bias.repeat_interleave(4) if bias is not None else None
    y = torch.nn.functional.conv2d(x, sub, sub_bias, padding=1)  # (N, 4 Cout, H, W)
    return torch.nn.functional.pixel_shuffle(y, 2)
