"""Baseline losses and samplers on hand-checkable inputs: RATIO's KL term, JEM's SGLD and replay buffer, EB-JDAT's
objective and attack."""

import math

import pytest
import torch
import torch.nn.functional as F

from dat.attacks import ebjdat_attack
from dat.losses import ebjdat_loss, jem_loss, kl_uniform, ratio_loss
from dat.sampling import ReplayBuffer, sgld


def test_kl_to_uniform_is_zero_at_uniform_predictions_and_log_k_at_certainty():
    K = 10
    assert kl_uniform(torch.zeros(3, K)).abs().max() < 1e-6  # equal logits: p = U
    p = torch.tensor([[0.7, 0.2, 0.1]])
    want = sum(1 / 3 * math.log((1 / 3) / q) for q in p[0].tolist())  # sum_k u_k log(u_k / p_k)
    assert kl_uniform(p.log()).item() == pytest.approx(want, rel=1e-6)
    assert kl_uniform(torch.tensor([[50.0] + [0.0] * 9])).item() > 40 / 10  # confident -> large


def test_ratio_loss_halves_the_two_terms():
    torch.manual_seed(0)
    logits, y, out = torch.randn(4, 5), torch.tensor([0, 1, 2, 3]), torch.randn(6, 5)
    res = ratio_loss(logits, y, out, lam=2.0)
    want = 0.5 * F.cross_entropy(logits, y) + 0.5 * 2.0 * kl_uniform(out).mean()
    torch.testing.assert_close(res["loss"], want)
    assert ratio_loss(logits, y, torch.zeros(6, 5))["loss"].item() == pytest.approx(0.5 * F.cross_entropy(logits, y).item(), abs=1e-6)


def test_jem_and_ebjdat_losses_are_their_weighted_sums():
    torch.manual_seed(1)
    lab, y, data, q, adv = torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.randn(5, 3), torch.randn(6, 3), torch.randn(4, 3)
    lse = lambda t: torch.logsumexp(t, 1).mean()  # noqa: E731
    res = jem_loss(lab, y, data, q)
    torch.testing.assert_close(res["loss"], F.cross_entropy(lab, y) + (-lse(data) + lse(q)))
    w = dict(weight_px=0.45, weight_pyx=0.45, weight_xadv=0.05, weight_pyxadv=0.45)
    res = ebjdat_loss(lab, y, data, q, adv, **w)
    want = (0.45 * (lse(q) - lse(data)) + 0.45 * F.cross_entropy(lab, y) + 0.05 * (lse(adv) - lse(data))
            + 0.45 * F.cross_entropy(adv, y))
    torch.testing.assert_close(res["loss"], want)


class Quadratic(torch.nn.Module):
    """logits (N, 1) = -||x - c||^2 / 2: E(x) = ||x - c||^2 / 2, minimised at c."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return -0.5 * (x - self.c).pow(2).flatten(1).sum(1, keepdim=True)


def test_sgld_moves_samples_down_a_quadratic_energy():
    c = torch.full((1, 1, 4, 4), 0.5)
    model = Quadratic(c)
    x0 = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    energy0 = 0.5 * (x0 - c).pow(2).flatten(1).sum(1)
    # without noise one step of size s scales the distance to c by (1 - s) exactly
    x1 = sgld(model, x0, steps=1, step_size=0.25, noise_std=0.0)
    torch.testing.assert_close(x1 - c, 0.75 * (x0 - c))
    x = sgld(model, x0, steps=20, step_size=0.1, noise_std=0.01, generator=torch.Generator().manual_seed(1))
    assert (0.5 * (x - c).pow(2).flatten(1).sum(1)).mean() < 0.1 * energy0.mean()


def test_replay_buffer_reinitialises_the_configured_fraction_and_stores_updates():
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(1000, (1, 2, 2), reinit=0.05, generator=g)
    buf.buffer.fill_(-1.0)  # mark every stored entry; fresh noise lies in [0, 1)
    x0, idx = buf.sample(20000)
    fresh = (x0 >= 0).flatten(1).all(1).float().mean().item()
    assert fresh == pytest.approx(0.05, abs=0.005)
    buf.update(idx[:3], torch.full((3, 1, 2, 2), 0.25))
    assert torch.all(buf.buffer[idx[:3]] == 0.25)
    state = buf.state_dict()
    other = ReplayBuffer(1000, (1, 2, 2), reinit=0.05, generator=torch.Generator())
    other.load_state_dict(state)
    assert torch.equal(other.buffer, buf.buffer)
    with pytest.raises(ValueError, match="reinit"):
        ReplayBuffer(10, (1, 2, 2), reinit=1.5, generator=g)


def test_ebjdat_attack_stays_in_its_ball_and_raises_the_true_logits(tiny_model):
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(16) % 4  # TinyConv: K = 4
    eps = 4 / 255
    x_adv = ebjdat_attack(tiny_model, x, y, eps=eps, step_size=1 / 255, steps=5,
                          generator=torch.Generator().manual_seed(3))
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        true_logit = lambda z: tiny_model(z).gather(1, y.view(-1, 1)).sum()  # noqa: E731
        assert true_logit(x_adv) > true_logit(x)
    free = ebjdat_attack(tiny_model, x, y, eps=eps, step_size=4 / 255, steps=5, project_to_ball=False,
                         generator=torch.Generator().manual_seed(3))
    assert (free - x).abs().max() > eps + 1e-4  # the released code's variant leaves the ball


def test_ebjdat_attack_ascends_the_true_label_logit_not_the_sum_of_logits():
    """EB-JDAT's attack (authors' code: sampleXadv, the forward with y) raises f(x_adv)[y]. On a linear model whose
    logit sum falls where logit 0 rises (f = (w.x) [1, -3]), ascending the sum would lower the true logit of y = 0;
    the logit direction n(f) stays the same inside the ball, so only the true-label term moves x_adv."""
    w = torch.full((1, 4, 4), 1.0 / 16)
    model = lambda z: (z * w).flatten(1).sum(1, keepdim=True) * torch.tensor([[1.0, -3.0]])  # noqa: E731
    x = torch.full((6, 1, 4, 4), 0.5)
    for label, sign in ((0, 1.0), (1, -1.0)):
        y = torch.full((6,), label)
        x_adv = ebjdat_attack(model, x, y, eps=4 / 255, step_size=2 / 255, steps=5,
                              generator=torch.Generator().manual_seed(0))
        gain = (model(x_adv) - model(x))[:, label]
        assert (gain > 0).all(), (label, gain)  # the true-label logit rises for either label
        torch.testing.assert_close(x_adv, torch.full_like(x, 0.5 + sign * 4 / 255))  # the ball's corner on its side


def test_ebjdat_attack_without_projection_only_clamps_to_the_pixel_range():
    """EB-JDAT's released attack (jkcjkc/EB-JDAT EB-JDAT-JEM/train_wrn_ebm.py sampleXadv, lines 327-349): a uniform
    start in the eps-box, clamped to the data range, then sign steps each clamped to the data range and never projected
    back to the box (attack_project false, the paper config's setting). On a one-logit linear model with positive
    weights every sign step is +1, so x_adv is clamp(clamp(x + eps u) + steps alpha) exactly; with the projection
    (the default) it stops at x + eps."""
    w = torch.full((1, 4, 4), 0.25)
    model = lambda z: (z * w).flatten(1).sum(1, keepdim=True)  # noqa: E731  (N, 1) logits, positive on [0, 1]
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    y = torch.zeros(6, dtype=torch.int64)
    eps, alpha, steps = 4 / 255, 1 / 255, 30
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(7)) * 2 - 1
    start = (x + noise * eps).clamp(0, 1)
    free = ebjdat_attack(model, x, y, eps=eps, step_size=alpha, steps=steps, project_to_ball=False,
                         generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(free, (start + steps * alpha).clamp(0, 1))
    assert free.min() >= 0 and free.max() <= 1 and (free - x).abs().max() > eps
    projected = ebjdat_attack(model, x, y, eps=eps, step_size=alpha, steps=steps,
                              generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(projected, (x + eps).clamp(0, 1))
