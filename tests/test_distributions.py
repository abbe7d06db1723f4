import math

import numpy as np
import pytest
import torch

from reverie import distributions as D

BINS = D.symmetric_bins(255, 20.0)  # the 2023 form's, in symlog space
RAW_BINS = D.symexp_bins(255, 20.0)  # the 2024 code's


def test_symlog_symexp_values_and_inverse():
    x = torch.tensor([-1000.0, -1.0, 0.0, 0.5, 3.0, 1e4])
    expected = np.sign(x.numpy()) * np.log1p(np.abs(x.numpy()))
    np.testing.assert_allclose(D.symlog(x).numpy(), expected, rtol=1e-6)
    torch.testing.assert_close(D.symexp(D.symlog(x)), x, rtol=1e-5, atol=1e-5)
    assert D.symlog(torch.tensor(math.e - 1)).item() == torch.tensor(1.0).item()


def test_twohot_hand_worked():
    bins = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    enc = D.twohot(torch.tensor([0.25, -1.0, 5.0, -7.0]), bins)
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.75, 0.25, 0.0],  # between 0 and 1, closer to 0
            [0.0, 1.0, 0.0, 0.0, 0.0],  # exactly on a bin
            [0.0, 0.0, 0.0, 0.0, 1.0],  # above the range: all on the edge bin
            [1.0, 0.0, 0.0, 0.0, 0.0],  # below the range
        ]
    )
    torch.testing.assert_close(enc, expected)
    torch.testing.assert_close(enc.sum(-1), torch.ones(4))


def test_twohot_round_trip_255_bins():
    y = torch.tensor([-123.4, -1.0, 0.0, 0.3, 7.0, 5000.0])
    enc = D.twohot(y, RAW_BINS)  # 2024: the raw target between raw-space bins
    torch.testing.assert_close(enc @ RAW_BINS, y, rtol=1e-5, atol=1e-5)
    enc = D.twohot(D.symlog(y), BINS)  # 2023: in symlog space
    torch.testing.assert_close(D.symexp(enc @ BINS), y, rtol=1e-4, atol=1e-4)


def test_twohot_log_prob_matches_dense_cross_entropy():
    logits = torch.randn(6, 255)
    y = torch.tensor([-50.0, -0.2, 0.0, 1.0, 30.0, 1e9])
    for bins, fwd in ((RAW_BINS, D.identity), (BINS, D.symlog)):
        dist = D.TwoHot(logits, bins, fwd, D.identity)
        dense = (D.twohot(fwd(y), bins) * torch.log_softmax(logits, -1)).sum(-1)
        torch.testing.assert_close(dist.log_prob(y), dense, rtol=1e-5, atol=1e-5)
        other = (D.twohot(fwd(y.flip(0)), bins) * torch.log_softmax(logits, -1)).sum(-1)
        both = dist.log_prob(y, y.flip(0))
        torch.testing.assert_close(both, dense + other, rtol=1e-5, atol=1e-5)


def test_symmetric_bins_are_linspace():
    torch.testing.assert_close(BINS, torch.linspace(-20.0, 20.0, 255))
    assert torch.all(BINS == -BINS.flip(0))
    assert len(D.symmetric_bins(8, 1.0)) == 8 and torch.all(D.symmetric_bins(8) > -21)


def test_raw_bins_are_symexp_of_linspace_and_symmetric():
    torch.testing.assert_close(RAW_BINS, D.symexp(torch.linspace(-20.0, 20.0, 255)))
    assert torch.all(RAW_BINS == -RAW_BINS.flip(0)) and RAW_BINS[127] == 0.0


def test_twohot_zero_logits_predict_exactly_zero():
    for bins in (BINS, RAW_BINS):
        pred = D.TwoHot(torch.zeros(3, 255), bins).pred()
        assert torch.all(pred == 0.0)


def test_twohot_pred_is_expected_bin():
    logits = torch.randn(4, 255)
    probs = torch.softmax(logits, -1).double()
    torch.testing.assert_close(
        D.TwoHot(logits, RAW_BINS).pred().double(), probs @ RAW_BINS.double(), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        D.TwoHot(logits, BINS, D.symlog, D.symexp).pred().double(),
        D.symexp(probs @ BINS.double()),
        rtol=1e-4,
        atol=1e-5,
    )


def test_raw_twohot_resolves_small_predictions_beside_huge_bins():
    """A near-uniform head whose mass shifts slightly toward +1: a dot product over each
    half of the raw bins (up to 4.85e8) rounded such a prediction to 0 in float32."""
    logits = torch.zeros(4, 255)
    logits[:, 128:131] += torch.tensor([[0.01], [0.05], [0.2], [1.0]])  # bins 0.17-0.6
    expected = torch.softmax(logits.double(), -1) @ RAW_BINS.double()
    pred = D.TwoHot(logits, RAW_BINS).pred()
    assert torch.all(expected > 4e-5)
    torch.testing.assert_close(pred.double(), expected, rtol=1e-3, atol=1e-6)


def fit_to_mixture(values, probs, bins, fwd, bwd, steps=3000) -> float:
    """Prediction of a free twohot head fitted to targets `values` drawn with `probs`."""
    logits = torch.zeros(255, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    values, probs = torch.tensor(values), torch.tensor(probs)
    for _ in range(steps):
        dist = D.TwoHot(logits[None].expand(len(values), 255), bins, fwd, bwd)
        loss = -(probs * dist.log_prob(values)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return D.TwoHot(logits.detach(), bins, fwd, bwd).pred().item()


@pytest.mark.parametrize("values,probs", [([0.0, 100.0], [0.5, 0.5]), ([0.0, 10.0], [0.9, 0.1])])
@pytest.mark.slow
def test_twohot_head_fitted_to_a_mixture_predicts_its_mean(values, probs):
    mean = sum(v * p for v, p in zip(values, probs))
    raw = fit_to_mixture(values, probs, RAW_BINS, D.identity, D.identity)
    assert abs(raw - mean) < 0.01 * mean, (raw, mean)
    # the 2023 form (twohot in symlog space) predicts symexp(E[symlog y]), far below the mean
    old = fit_to_mixture(values, probs, BINS, D.symlog, D.symexp)
    assert old < 0.3 * mean, (old, mean)


def test_unimix_probabilities():
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    probs = D.unimix_probs(logits, 0.01)
    soft = torch.softmax(logits, -1)
    torch.testing.assert_close(probs, 0.99 * soft + 0.01 / 4)
    assert probs.min() >= 0.01 / 4
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))


def test_onehot_sample_straight_through_gradient():
    logits = torch.randn(5, 3, 4, requires_grad=True)
    dist = D.OneHot(logits, 0.01)
    sample = dist.sample()
    # forward value is exactly one-hot
    assert torch.all((sample == 0) | (sample == 1))
    torch.testing.assert_close(sample.sum(-1), torch.ones(5, 3))
    # backward is the gradient of the probabilities
    weights = torch.randn(5, 3, 4)
    (sample * weights).sum().backward()
    expected = torch.autograd.grad((D.unimix_probs(logits, 0.01) * weights).sum(), logits)[0]
    torch.testing.assert_close(logits.grad, expected)


def test_onehot_sampling_frequencies():
    probs_logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).expand(20000, 4)
    counts = D.OneHot(probs_logits).sample().sum(0) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015, rtol=0)


def test_categorical_kl_against_numpy():
    p = np.array([0.1, 0.6, 0.3])
    q = np.array([0.3, 0.3, 0.4])
    kl = D.categorical_kl(torch.tensor(np.log(p)), torch.tensor(np.log(q))).item()
    assert abs(kl - np.sum(p * np.log(p / q))) < 1e-9


def test_bounded_normal_bounds_and_log_prob():
    dist = D.BoundedNormal(torch.tensor([[100.0, -100.0]]), torch.tensor([[100.0, -100.0]]))
    torch.testing.assert_close(dist.mean, torch.tensor([[1.0, -1.0]]))
    torch.testing.assert_close(dist.std, torch.tensor([[1.0, 0.1]]))
    x = torch.tensor([[0.5, -0.5]])
    ref = torch.distributions.Normal(dist.mean, dist.std).log_prob(x).sum(-1)
    torch.testing.assert_close(dist.log_prob(x), ref)
    ent = torch.distributions.Normal(dist.mean, dist.std).entropy().sum(-1)
    torch.testing.assert_close(dist.entropy(), ent)
    # std at zero input: 0.9 * sigmoid(2) + 0.1
    d0 = D.BoundedNormal(torch.zeros(1), torch.zeros(1))
    assert abs(d0.std.item() - (0.9 / (1 + math.exp(-2)) + 0.1)) < 1e-6


def test_fast_tanh_and_softmax_match_torch():
    x = torch.randn(100, 7) * 5
    torch.testing.assert_close(D.tanh(x), torch.tanh(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(D.softmax(x), torch.softmax(x, -1))


def test_peaked_policy_log_probs_and_entropy_stay_finite():
    logits = torch.tensor([[200.0, -200.0, 0.0]], requires_grad=True)
    dist = D.OneHot(logits)  # no unimix, as the policy
    onehot = torch.tensor([[0.0, 1.0, 0.0]])
    assert torch.isfinite(dist.log_prob(onehot)).all() and torch.isfinite(dist.entropy()).all()
    (dist.log_prob(onehot) + dist.entropy()).sum().backward()
    assert torch.isfinite(logits.grad).all()
