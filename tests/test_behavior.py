import numpy as np
import torch

from reverie.behavior import ReturnNormalizer, lambda_return, replay_lambda_return


def numpy_lambda_return(reward, cont, value, gamma, lam):
    horizon = len(value) - 1
    ret = np.zeros((horizon, *value.shape[1:]))
    nxt = value[-1]
    for t in reversed(range(horizon)):
        nxt = reward[t + 1] + gamma * cont[t + 1] * ((1 - lam) * value[t + 1] + lam * nxt)
        ret[t] = nxt
    return ret


def test_lambda_return_hand_worked():
    # H = 2, one trajectory: R_1 = r_2 + g c_2 v_2 ; R_0 = r_1 + g c_1 ((1-l) v_1 + l R_1)
    reward = torch.tensor([[0.0], [1.0], [2.0]])
    cont = torch.tensor([[1.0], [1.0], [0.5]])
    value = torch.tensor([[0.0], [10.0], [20.0]])
    g, l = 0.9, 0.5
    r1 = 2.0 + 0.9 * 0.5 * 20.0
    r0 = 1.0 + 0.9 * 1.0 * (0.5 * 10.0 + 0.5 * r1)
    out = lambda_return(reward, cont, value, g, l)
    torch.testing.assert_close(out[:, 0], torch.tensor([r0, r1]))


def test_lambda_return_matches_numpy():
    rng = np.random.default_rng(0)
    reward, value = rng.normal(size=(16, 5)), rng.normal(size=(16, 5))
    cont = (rng.random((16, 5)) > 0.1).astype(np.float64)
    out = lambda_return(*(torch.tensor(x) for x in (reward, cont, value)), 0.997, 0.95)
    np.testing.assert_allclose(
        out.numpy(), numpy_lambda_return(reward, cont, value, 0.997, 0.95), rtol=1e-10
    )


def test_lambda_one_is_discounted_return_and_zero_is_td():
    reward = torch.tensor([[0.0], [1.0], [1.0], [1.0]])
    cont = torch.ones(4, 1)
    value = torch.tensor([[0.0], [5.0], [6.0], [7.0]])
    mc = lambda_return(reward, cont, value, 0.5, 1.0)
    assert abs(mc[0, 0].item() - (1 + 0.5 * 1 + 0.25 * 1 + 0.125 * 7)) < 1e-6
    td = lambda_return(reward, cont, value, 0.5, 0.0)
    torch.testing.assert_close(td[:, 0], reward[1:, 0] + 0.5 * value[1:, 0])


def test_replay_lambda_return_stops_at_episode_end():
    reward = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    cont = torch.ones(1, 4)
    is_last = torch.tensor([[False, True, False, False]])
    boot = torch.tensor([[3.0, 4.0, 5.0, 6.0]])
    out = replay_lambda_return(reward, cont, is_last, boot, 1.0, 1.0)
    # step 1 ends an episode: its return is its bootstrap; step 0 uses step 1's
    assert out[0, 1].item() == 4.0
    assert out[0, 0].item() == 1.0 + 4.0
    assert out[0, 3].item() == 6.0
    assert out[0, 2].item() == 0.0 + 6.0


def test_percentile_normaliser_against_numpy():
    norm = ReturnNormalizer(decay=0.99, low=5, high=95, limit=1.0)
    rng = np.random.default_rng(1)
    spread = 0.0
    for _ in range(3):
        ret = rng.normal(scale=50.0, size=(15, 64))
        norm.update(torch.tensor(ret, dtype=torch.float32))
        spread = 0.99 * spread + 0.01 * (np.percentile(ret, 95) - np.percentile(ret, 5))
    assert abs(norm.spread.item() - spread) < 1e-3 * spread
    assert abs(norm.scale().item() - max(1.0, spread)) < 1e-3 * spread


def test_percentile_normaliser_never_scales_small_returns_up():
    norm = ReturnNormalizer(0.99, 5, 95, 1.0)
    for _ in range(50):
        norm.update(torch.rand(100) * 0.01)
    assert norm.scale().item() == 1.0


def test_fused_mlps_match_separate_mlps_values_and_gradients():
    from reverie.nets import MLP, fused_mlps

    torch.manual_seed(0)
    mlps = [MLP(12, 8, 3), MLP(12, 5, 1), MLP(12, 8, 0)]
    x = torch.randn(4, 6, 12)
    fused = fused_mlps(x, mlps)
    fused_grads = torch.autograd.grad(sum(y.square().sum() for y in fused), mlps[0].parameters())
    separate = [m(x) for m in mlps]
    grads = torch.autograd.grad(sum(y.square().sum() for y in separate), mlps[0].parameters())
    assert [y.shape for y in fused] == [(4, 6, 8), (4, 6, 5), (4, 6, 12)]
    for a, b in zip(fused + list(fused_grads), separate + list(grads)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # summation order
