import math

import pytest
import torch
import torch.nn.functional as F

from dat.attacks import l2_normalize, pgd_attack, pgd_maximize, project, target_logit_attack


@pytest.mark.parametrize("norm", ["L2", "Linf"])
@pytest.mark.parametrize("eps", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("random_start", [False, True])
def test_attack_stays_in_ball_and_box(tiny_model, images, norm, eps, random_start):
    x, y = images
    step = eps / 4 if norm == "L2" else eps / 8
    x_adv = pgd_attack(tiny_model, x, y, eps=eps, step_size=step, steps=7, norm=norm, random_start=random_start,
                       generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1) if norm == "L2" else delta.abs().amax(dim=1)
    assert (size <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype


def test_eps_zero_returns_input(tiny_model, images):
    x, y = images
    assert torch.equal(pgd_attack(tiny_model, x, y, eps=0.0, step_size=0.1, steps=5), x)


def test_attack_raises_loss_on_linear_model(linear_model, images):
    x, y = images
    x = 0.25 + 0.5 * x  # interior, so the box constraint does not stop the ascent
    x_adv = pgd_attack(linear_model, x, y, eps=0.5, step_size=0.1, steps=10)
    loss = lambda z: F.cross_entropy(linear_model(z), y, reduction="none")  # noqa: E731
    assert (loss(x_adv) >= loss(x) - 1e-6).all()
    assert loss(x_adv).mean() > loss(x).mean() + 1e-3


def test_targeted_attack_lowers_target_loss(linear_model, images):
    x, _ = images
    target = torch.full((len(x),), 2)
    x_adv = pgd_attack(linear_model, x, target, eps=1.0, step_size=0.2, steps=10, targeted=True)
    assert F.cross_entropy(linear_model(x_adv), target) < F.cross_entropy(linear_model(x), target)


def test_attack_leaves_parameters_and_mode_untouched(tiny_model, images):
    x, y = images
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    pgd_attack(tiny_model, x, y, eps=0.5, step_size=0.1, steps=3)
    assert tiny_model.training  # the attack never switches modes
    assert all(p.grad is None for p in tiny_model.parameters())
    tiny_model.eval()
    pgd_attack(tiny_model, x, y, eps=0.5, step_size=0.1, steps=3)
    assert not tiny_model.training
    for k, v in tiny_model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, before[k])


def test_random_start_is_reproducible(tiny_model, images):
    x, y = images
    run = lambda: pgd_attack(tiny_model, x, y, eps=0.5, step_size=0.1, steps=3, random_start=True,  # noqa: E731
                             generator=torch.Generator().manual_seed(7))
    assert torch.equal(run(), run())


def test_l2_step_is_normalised():
    g = torch.randn(5, 3, 4, 4) * torch.tensor([1e-3, 1, 10, 100, 1e4]).view(-1, 1, 1, 1)
    norms = l2_normalize(g).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(5), atol=1e-5)
    assert torch.equal(l2_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_projection_shrinks_only_outside_points():
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4]])  # norms 5 and 0.5
    out = project(delta, 1.0, "L2")
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(out[1], delta[1])
    assert torch.equal(project(torch.tensor([[2.0, -3.0, 0.1]]), 1.0, "Linf"), torch.tensor([[1.0, -1.0, 0.1]]))
    with pytest.raises(ValueError, match="norm"):
        project(delta, 1.0, "L1")


def test_single_l2_step_length():
    # one step from the centre of the box moves exactly step_size in L2 (no projection, no clamping)
    x = torch.full((2, 1, 4, 4), 0.5)
    objective = lambda z: (z * torch.arange(16.0).view(1, 1, 4, 4)).flatten(1).sum(1)  # noqa: E731
    x_adv = pgd_maximize(objective, x, eps=10.0, step_size=0.3, steps=1)
    assert torch.allclose((x_adv - x).flatten(1).norm(dim=1), torch.full((2,), 0.3), atol=1e-6)


def test_target_logit_attack_raises_target_logit(linear_model, images):
    x, _ = images
    target = torch.full((len(x),), 1)
    x_cf = target_logit_attack(linear_model, x, target, eps=1.0, step_size=0.25, steps=8)
    assert ((x_cf - x).flatten(1).norm(dim=1) <= 1.0 + 1e-6).all()
    assert (linear_model(x_cf)[:, 1] >= linear_model(x)[:, 1] - 1e-6).all()
    with torch.no_grad():
        assert not math.isclose(float(linear_model(x_cf)[:, 1].mean()), float(linear_model(x)[:, 1].mean()))
