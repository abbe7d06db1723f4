"""Layers computed in a cheaper form than they are defined: same sums, same gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reverie.nets import ConvDecoder, upsample_conv


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_upsample_conv_is_nearest_upsampling_then_5x5_conv(channels_last, bias):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True) if bias else None
    inp = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    expected = F.conv2d(F.interpolate(inp, scale_factor=2, mode="nearest"), w, b, padding=2)
    out = upsample_conv(inp, w, b)
    assert out.shape == (3, 4, 10, 14)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    g = torch.randn_like(out)
    params = [t for t in (x, w, b) if t is not None]
    for got, want in zip(
        torch.autograd.grad(out, params, g), torch.autograd.grad(expected, params, g)
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11)


def test_decoder_matches_its_definition():
    """The 2024 decoder: deter through a block-diagonal linear plus stoch through
    Linear+Norm+SiLU+Linear, summed to the 4x4 map, Norm+SiLU, then (upsample x2, conv 5x5,
    norm, SiLU) stages and a sigmoid."""
    torch.manual_seed(0)
    deter, stoch, blocks = 16, 12, 8
    dec = ConvDecoder(deter, stoch, 3, depth=2, units=6, blocks=blocks).double()
    feat = torch.randn(5, deter + stoch, dtype=torch.float64)
    h, z = feat[:, :deter], feat[:, deter:]
    # block g maps its slice of deter to its own slice of the 4x4 map's flat units
    w, b = dec.space_deter.weight, dec.space_deter.bias  # (G, D/G, 16 C/G), (G, 1, 16 C/G)
    x0 = torch.cat([h[:, g * 2 : (g + 1) * 2] @ w[g] + b[g] for g in range(blocks)], -1)
    x1 = dec.space_out(F.silu(dec.space_stoch.norm(dec.space_stoch.linear(z))))
    x = F.silu(dec.space_norm((x0 + x1).reshape(5, dec.start, 4, 4)))
    for i, conv in enumerate(dec.convs):
        x = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        if i < len(dec.norms):
            x = F.silu(dec.norms[i](x))
    expected = torch.sigmoid(x).permute(0, 2, 3, 1)
    torch.testing.assert_close(dec(feat), expected, rtol=0, atol=1e-12)
    assert dec(feat).shape == (5, 64, 64, 3)
    # every layer has a bias, and the one-layer 2023 input is gone
    assert all(c.bias is not None for c in dec.convs) and not hasattr(dec, "linear")


@pytest.mark.slow
def test_the_bf16_image_decoder_compiles_with_its_gradients():
    """Inductor (torch 2.13) writes C++ that does not compile for two identical bf16 sums
    in one kernel, which the decoder's two first maps made when each had its bias summed
    over the batch (the pixel update's backward failed on its first step); their biases
    now join first, and both get the one sum."""
    from reverie.accel import CompiledMethod, cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    torch.manual_seed(0)
    decoder = ConvDecoder(512, 128, 3, 4, 64, 8)  # size 1m's: deter 512, 32x4 stoch, depth 4
    torch.nn.init.normal_(decoder.space_deter.bias)
    torch.nn.init.normal_(decoder.space_out.bias)
    feat = torch.randn(64, 512 + 128)

    def loss(feat: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return decoder(feat).float().square().mean()

    compiled = CompiledMethod(loss, "ConvDecoder loss")
    compiled(feat).backward()  # the backward compiles here
    assert compiled.failure is None
    deter_bias, out_bias = decoder.space_deter.bias.grad, decoder.space_out.bias.grad
    assert deter_bias is not None and out_bias is not None
    assert torch.equal(deter_bias.reshape(-1), out_bias) and out_bias.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(compiled(feat), loss(feat), rtol=2e-2)
