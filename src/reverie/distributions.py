"""Transforms and output distributions of DreamerV3 (the paper, Methods: robust predictions;
the twohot details follow the authors' 2024 code).

Every distribution here is a thin object over tensors with the few methods the
agent needs (`log_prob`, `mode`/`pred`, `sample`, `entropy`), so the update stays
free of `torch.distributions` validation overhead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))


def identity(x: Tensor) -> Tensor:
    return x


def symmetric_bins(num: int = 255, limit: float = 20.0) -> Tensor:
    """`linspace(-limit, limit, num)` built from one half so that bins[i] == -bins[-1-i]."""
    if num % 2:
        half = torch.linspace(0.0, limit, num // 2 + 1)
        return torch.cat([-half[1:].flip(0), half])
    half = torch.linspace(limit / (num - 1), limit, num // 2)
    return torch.cat([-half.flip(0), half])


def symexp_bins(num: int = 255, limit: float = 20.0) -> Tensor:
    """The 2024 code's twohot bins in raw space: `symexp(linspace(-limit, limit, num))`,
    symmetric around an exact 0."""
    return symexp(symmetric_bins(num, limit))


def twohot_weights(y: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
    """Lower bin index k (...) and weight of the upper bin k+1 (...) for targets y (...).

    Values outside the bin range go wholly to the edge bin.
    """
    y = y.clamp(bins[0], bins[-1])
    k = torch.searchsorted(bins, y.detach().contiguous(), right=True).clamp(1, len(bins) - 1)
    lo, hi = bins[k - 1], bins[k]
    w_hi = ((y - lo) / (hi - lo)).clamp(0, 1)
    return k - 1, w_hi


def twohot(y: Tensor, bins: Tensor) -> Tensor:
    """Encode `y` (...) as weights on two neighbouring `bins` (K,): returns (..., K)."""
    k, w_hi = twohot_weights(y, bins)
    out = torch.zeros(*y.shape, len(bins), dtype=y.dtype, device=y.device)
    out.scatter_(-1, k.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, (k + 1).unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


def symmetric_expectation(probs: Tensor, bins: Tensor) -> Tensor:
    """`probs @ bins` for bins symmetric around zero, summed as the 2024 code sums it: each
    pair of mirrored bins first (from the middle out), then the pairs.

    Raw-space bins reach 4.85e8: a dot product over each half would leave two sums near
    1e7 whose difference loses everything below float32's resolution there (about 1), so a
    head predicting 0.3 would read 0. Mirrored bins whose probabilities are equal (all the
    far bins a head has not learned to tell apart) cancel exactly pair by pair, and an
    all-equal distribution gives exactly 0.
    """
    n = bins.shape[0]
    half = n // 2
    lower = (probs[..., :half] * bins[:half]).flip(-1)  # (..., half), nearest the middle first
    upper = probs[..., n - half :] * bins[n - half :]
    total = (lower + upper).sum(-1)
    return total + probs[..., half] * bins[half] if n % 2 else total


class TwoHot:
    """Categorical over fixed bins, trained with twohot targets.

    `fwd`/`bwd` map values into the bins' space and back. The 2024 code's form is the
    default: bins in raw space (`symexp_bins`), the target itself interpolated between its
    two neighbouring bins, the prediction `probs @ bins`. With `fwd=symlog, bwd=symexp`
    over linspace bins it is the 2023 form, `twohot(symlog(y))` predicting
    `symexp(probs @ bins)`, which a mixture of targets pulls toward 0.
    """

    def __init__(self, logits: Tensor, bins: Tensor, fwd=identity, bwd=identity):
        self.logits = logits
        self.bins = bins
        self.fwd, self.bwd = fwd, bwd

    def pred(self) -> Tensor:
        probs = torch.softmax(self.logits, -1)
        return self.bwd(symmetric_expectation(probs, self.bins))

    def log_prob(self, target: Tensor, *more: Tensor) -> Tensor:
        """Twohot log-likelihood of `target`; extra targets add their log-likelihoods.

        Reads the two logits each target touches instead of a dense (..., K) product,
        and shares one logsumexp across targets.
        """
        total: Tensor | float = 0.0
        for y in (target, *more):
            k, w_hi = twohot_weights(self.fwd(y), self.bins)
            pair = torch.gather(self.logits, -1, torch.stack([k, k + 1], -1))  # (..., 2)
            total = total + pair[..., 0] * (1 - w_hi) + pair[..., 1] * w_hi
        return total - (1 + len(more)) * torch.logsumexp(self.logits, -1)


class MSE:
    """Deterministic prediction scored by a negative squared error in transformed space.

    Used for vector decoders (symlog MSE) and for the 'twohot off' ablation.
    """

    def __init__(self, pred: Tensor, dims: int = 0, fwd=symlog, bwd=symexp):
        self._pred = pred  # in transformed space
        self.dims = dims  # trailing dims summed into one log-prob
        self.fwd, self.bwd = fwd, bwd

    def pred(self) -> Tensor:
        return self.bwd(self._pred)

    def log_prob(self, target: Tensor) -> Tensor:
        err = -((self._pred - self.fwd(target)) ** 2)
        return err.sum(tuple(range(-self.dims, 0))) if self.dims else err


class Categoricals:
    """Independent categoricals side by side: logits (..., sum(classes)) in one segment per
    part, scored against the one-hot observation of the same layout.

    The 2024 code's `categorical` output for a discrete observation (no unimix), its
    log-probabilities summed over the parts; `pred` is the most likely class of each part,
    one-hot, in the observation's own layout.
    """

    def __init__(self, logits: Tensor, classes: tuple[int, ...]):
        self.logits = logits
        self.classes = classes

    def _parts(self, x: Tensor) -> list[Tensor]:
        return list(x.split(self.classes, -1))

    def pred(self) -> Tensor:
        parts = [F.one_hot(p.argmax(-1), p.shape[-1]) for p in self._parts(self.logits)]
        return torch.cat(parts, -1).to(self.logits.dtype)

    def log_prob(self, onehot: Tensor) -> Tensor:
        onehot = onehot.to(self.logits.dtype)
        if len(set(self.classes)) == 1:  # equal parts: one log-softmax over (..., P, K)
            shape = (*self.logits.shape[:-1], len(self.classes), self.classes[0])
            logp = torch.log_softmax(self.logits.reshape(shape), -1)
            return (onehot.reshape(shape) * logp).sum((-2, -1))
        pairs = zip(self._parts(onehot), self._parts(self.logits))
        return sum_tensors([(t * torch.log_softmax(p, -1)).sum(-1) for t, p in pairs])


class Bernoulli:
    def __init__(self, logits: Tensor):
        self.logits = logits

    def mode(self) -> Tensor:
        return (self.logits > 0).to(self.logits.dtype)

    def prob(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def log_prob(self, target: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, target, reduction="none")


def tanh(x: Tensor) -> Tensor:
    """tanh as 2 sigmoid(2x) - 1: the same function, faster than torch.tanh on CPU."""
    return 2.0 * torch.sigmoid(2.0 * x) - 1.0


def softmax(logits: Tensor) -> Tensor:
    """Softmax over a short last axis; written out, it runs faster than torch.softmax
    on CPU for the 4 to 96 classes of the latents."""
    e = torch.exp(logits - logits.amax(-1, keepdim=True).detach())
    return e / e.sum(-1, keepdim=True)


def log_softmax(logits: Tensor) -> Tensor:
    """Log-probabilities over a short last axis, finite however peaked (see `softmax`)."""
    shifted = logits - logits.amax(-1, keepdim=True).detach()
    return shifted - torch.log(torch.exp(shifted).sum(-1, keepdim=True))


def sample_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Class indices (...) drawn from probs (..., K) by inverting the CDF with one uniform."""
    u = torch.rand(
        probs.shape[:-1] + (1,), generator=generator, device=probs.device, dtype=probs.dtype
    )
    return (probs.cumsum(-1) < u).sum(-1).clamp(max=probs.shape[-1] - 1)


def unimix_probs(logits: Tensor, unimix: float) -> Tensor:
    """`(1 - unimix) * softmax(logits) + unimix / K`."""
    probs = softmax(logits)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return probs


class OneHot:
    """Categorical with unimix whose samples are one-hot with straight-through gradients."""

    def __init__(self, logits: Tensor, unimix: float = 0.0):
        self.probs = unimix_probs(logits, unimix)
        # with unimix every probability is at least unimix / K, so its log is finite
        self.logits = torch.log(self.probs) if unimix > 0 else log_softmax(logits)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        idx = sample_categorical(self.probs.detach(), generator)
        onehot = F.one_hot(idx, self.probs.shape[-1]).to(self.probs.dtype)
        if not (torch.is_grad_enabled() and self.probs.requires_grad):
            return onehot  # no gradient to pass straight through
        return onehot + (self.probs - self.probs.detach())

    def mode(self) -> Tensor:
        idx = self.probs.argmax(-1)
        onehot = F.one_hot(idx, self.probs.shape[-1]).to(self.probs.dtype)
        return onehot + (self.probs - self.probs.detach())

    def log_prob(self, onehot: Tensor) -> Tensor:
        return (onehot.detach() * self.logits).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum(-1)


def categorical_kl(lhs_logits: Tensor, rhs_logits: Tensor) -> Tensor:
    """KL[p || q] between categoricals given normalised log-probs, summed over classes."""
    return (lhs_logits.exp() * (lhs_logits - rhs_logits)).sum(-1)


class BoundedNormal:
    """Normal with `mean = tanh(x)` and `std` in [minstd, maxstd]; not squashed.

    Samples may leave [-1, 1]; the environment wrapper clips them.
    """

    def __init__(self, mean_raw: Tensor, std_raw: Tensor, minstd: float = 0.1, maxstd: float = 1.0):
        self.mean = tanh(mean_raw)
        self.std = (maxstd - minstd) * torch.sigmoid(std_raw + 2.0) + minstd

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return self.mean + self.std * noise.to(self.mean.dtype)

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, x: Tensor) -> Tensor:
        z = (x.detach() - self.mean) / self.std
        logp = -0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)
        return logp.sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.std)).sum(-1)


class Joint:
    """Independent action parts side by side (MultiDiscrete and Dict actions): one-hot
    segments and bounded normals whose samples are concatenated (..., A) and whose
    log-probabilities and entropies add up."""

    def __init__(self, parts: list[OneHot | BoundedNormal], widths: list[int]):
        self.parts, self.widths = parts, widths

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        return torch.split(x, self.widths, -1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return torch.cat([d.sample(generator) for d in self.parts], -1)

    def mode(self) -> Tensor:
        return torch.cat([d.mode() for d in self.parts], -1)

    def log_prob(self, x: Tensor) -> Tensor:
        return sum_tensors([d.log_prob(v) for d, v in zip(self.parts, self._split(x))])

    def entropy(self) -> Tensor:
        return sum_tensors([d.entropy() for d in self.parts])


def sum_tensors(values: list[Tensor]) -> Tensor:
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total
