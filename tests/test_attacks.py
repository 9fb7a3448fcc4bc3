import math

import pytest
import numpy as np
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


def test_pgd_step_size_scales_with_the_radius():
    """factor * eps / steps, the same float as the formulas it replaced (eps * factor / steps and
    factor * eps / steps), so no evaluation number moves."""
    from dat.attacks import pgd_step_size

    for eps, steps, factor in ((1.5, 20, 2.5), (0.5, 20, 2.5), (3.0, 20, 2.0), (7.0, 20, 2.0), (1 / 3, 7, 2.5)):
        assert pgd_step_size(eps, steps, factor) == eps * factor / steps == factor * eps / steps
    assert pgd_step_size(7.0, 20, 2.0) == pytest.approx(0.7)  # RestrictedImageNet's eps_o


def test_pgd_robust_matches_the_attack_and_prefixes(tiny_model, images):
    """Batch by batch, the outcome of each example is that of pgd_attack on it, and a prefix of the examples gives
    the prefix of the result (eval_robust serves PGD and AutoAttack rows from one pass)."""
    from dat.attacks import pgd_robust

    x, y = images
    kw = dict(eps=0.5, step_size=0.125, steps=5, norm="L2")
    correct, pert = pgd_robust(tiny_model, x, y, batch_size=3, **kw)
    x_adv = pgd_attack(tiny_model, x, y, **kw)
    assert torch.equal(correct, tiny_model(x_adv).argmax(1) == y)
    assert torch.allclose(pert, (x_adv - x).flatten(1).norm(dim=1), atol=1e-6) and (pert <= 0.5 + 1e-6).all()
    head, _ = pgd_robust(tiny_model, x[:5], y[:5], batch_size=3, **kw)
    assert torch.equal(head, correct[:5])


def test_autoattack_with_nine_classes_targets_the_eight_others(images, monkeypatch):
    """pyautoattack's standard version targets 9 classes in APGD-T and FAB-T (the 10th-largest logit), which fails
    for RestrictedImageNet's 9 classes; a real run on a 9-class model uses 8 and says so. Every attack of the
    version runs over every target, with fewer iterations than the standard 100 (and 5000 Square queries) to keep
    the test short; the iteration counts do not touch the target indexing."""
    import pyautoattack
    from conftest import TinyConv

    from dat.eval_robust import autoattack_accuracy

    standard = pyautoattack.AutoAttack._set_version

    def short(self, version="standard"):
        standard(self, version)
        self.apgd.n_iter = self.apgd_targeted.n_iter = self.fab.n_iter = 3
        self.square.n_queries = 10

    monkeypatch.setattr(pyautoattack.AutoAttack, "_set_version", short)

    torch.manual_seed(0)
    model = TinyConv(num_classes=9).eval()
    x = images[0][:4]
    with torch.no_grad():
        y = model(x).argmax(1)  # every example starts correct, so every attack of the version runs
    out = autoattack_accuracy(model, x, y, eps=1e-3, norm="L2", version="standard", batch_size=4, seed=0)
    assert out["n_target_classes"] == {"apgd-t": 8, "fab-t": 8}
    assert out["acc_clean"] == 1.0 and 0.0 <= out["acc_robust"] <= 1.0
    assert out["max_perturbation"] <= 1e-3 + 1e-6
    assert any("apgd-t" in line for line in out["log"]) and any("fab-t" in line for line in out["log"])


def test_autoattack_runs_on_images_converted_from_nhwc_arrays():
    """dat.data.to_tensor gives (N, C, H, W) views of NHWC arrays (channels-last strides), whose input gradients
    pyautoattack cannot .view(): a 3-channel model that classifies its examples correctly must still be attacked
    (the rehearsal of the paper config found this; 1-channel smoke images never hit it)."""
    from conftest import TinyConv

    from dat.data import to_tensor
    from dat.eval_robust import autoattack_accuracy

    torch.manual_seed(0)
    model = TinyConv(channels=3, num_classes=10).eval()
    x = to_tensor(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))
    assert not x.is_contiguous()
    with torch.no_grad():
        y = model(x).argmax(1)  # every example starts correct, so APGD-CE runs
    out = autoattack_accuracy(model, x, y, eps=8.0, norm="L2", version="standard", batch_size=4, seed=0)
    assert out["acc_clean"] == 1.0 and out["acc_robust"] == 0.0  # a radius of 8 breaks a random tiny network


def test_autoattack_keeps_its_target_counts_with_ten_or_more_classes():
    from pyautoattack import AutoAttack

    from dat.eval_robust import autoattack_target_classes

    for k, want in ((10, 9), (100, 9), (4, 3)):
        adversary = AutoAttack(torch.nn.Linear(2, k), norm="L2", eps=0.5, version="standard", device="cpu", seed=0)
        assert autoattack_target_classes(adversary, k) == {"apgd-t": want, "fab-t": want}
    rand = AutoAttack(torch.nn.Linear(2, 9), norm="L2", eps=0.5, version="rand", device="cpu", seed=0)
    assert autoattack_target_classes(rand, 9) == {}  # the rand version runs no targeted attack


@pytest.mark.parametrize("score", ["energy", "max_softmax"])
def test_adversarial_ood_attack_reaches_the_ball_boundary_at_eps_o_7(score):
    """RestrictedImageNet's eps_o 7.0: with the step scaled from the radius (factor 2, 20 steps) the attack reaches
    the boundary of the ball around each image of a linear model (whose score keeps rising outward); the fixed
    step of 0.1 it had before moved at most 20 * 0.1 = 2.0."""
    from dat.attacks import pgd_step_size
    from dat.eval_ood import adversarial_images

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 9)).eval()
    x = torch.full((4, 3, 32, 32), 0.5)  # the box [0, 1] is 0.5 * sqrt(3072) = 27.7 away: it never binds
    kw = dict(steps=20, batch_size=3)
    x_adv = adversarial_images(model, x, score, eps=7.0, step_size=pgd_step_size(7.0, 20, 2.0), **kw)
    dist = (x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(dist, torch.full_like(dist, 7.0), atol=1e-3), dist
    old = adversarial_images(model, x, score, eps=7.0, step_size=0.1, **kw)
    assert ((old - x).flatten(1).norm(dim=1) <= 2.0 + 1e-4).all()


def _periodic(x: torch.Tensor) -> torch.Tensor:
    """A per-example objective with many local maxima along every direction: plain PGD's last iterate overshoots."""
    return torch.sin(7.0 * x.flatten(1)).sum(1)


def test_best_iterate_keeps_the_highest_objective_seen(images):
    """ArgminPGD's best iterate (RATIO's code keeps the lowest loss, i.e. the highest objective here): never below
    the start or the last iterate, per example, and the last iterate whenever the objective only rose."""
    x, _ = images
    kw = dict(eps=1.0, step_size=0.4, steps=6, norm="L2")
    last = pgd_maximize(_periodic, x, **kw)
    best = pgd_maximize(_periodic, x, best_iterate=True, **kw)
    assert (_periodic(best) >= _periodic(last) - 1e-5).all() and (_periodic(best) >= _periodic(x) - 1e-5).all()
    assert (_periodic(best) > _periodic(last) + 1e-3).any()  # the case it exists for happens here
    assert ((best - x).flatten(1).norm(dim=1) <= 1.0 + 1e-6).all() and best.min() >= 0 and best.max() <= 1
    w = torch.randn(1, *x.shape[1:])
    rising = lambda z: (z * w).flatten(1).sum(1)  # noqa: E731  linear: every step raises it until the ball's edge
    assert torch.allclose(pgd_maximize(rising, x, best_iterate=True, **kw), pgd_maximize(rising, x, **kw))


def test_momentum_steps_follow_the_l1_normalised_velocity():
    """The momentum iterative method (Dong et al. 2018) as RATIO's ArgminPGD runs it: v <- mu v + g / ||g||_1, an L2
    step of step_size along v / ||v||_2, then projection and clamping; computed here by hand for three steps."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 4, 4) * 0.5 + 0.25
    a, c = torch.randn(1, 1, 4, 4), torch.rand(1, 1, 4, 4) * 4 + 0.5
    objective = lambda z: -(c * (z - a) ** 2).flatten(1).sum(1)  # noqa: E731  gradient 2 c (a - z): turns as z moves
    mu, step = 0.9, 0.3
    out = pgd_maximize(objective, x, eps=10.0, step_size=step, steps=3, momentum=mu)
    z, v = x.clone(), torch.zeros_like(x)
    for _ in range(3):
        g = 2 * c * (a - z)
        v = mu * v + g / g.flatten(1).abs().sum(1).view(-1, 1, 1, 1)
        z = (z + step * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(out, z, atol=1e-6)
    assert not torch.allclose(out, pgd_maximize(objective, x, eps=10.0, step_size=step, steps=3), atol=1e-4)


def test_argmin_pgd_is_a_stronger_or_equal_training_attack(tiny_model, images):
    """On the cross-entropy attack: the best iterate never lowers the loss below the final one's, and the default
    arguments give the plain PGD of the paper's stage 2 (bit for bit)."""
    x, y = images
    kw = dict(eps=0.5, step_size=0.3, steps=5, norm="L2")
    plain = pgd_attack(tiny_model, x, y, **kw)
    assert torch.equal(plain, pgd_attack(tiny_model, x, y, momentum=0.0, best_iterate=False, **kw))
    argmin = pgd_attack(tiny_model, x, y, momentum=0.9, best_iterate=True, **kw)
    last = pgd_attack(tiny_model, x, y, momentum=0.9, **kw)
    ce = lambda z: F.cross_entropy(tiny_model(z), y, reduction="none")  # noqa: E731
    with torch.no_grad():
        assert (ce(argmin) >= ce(last) - 1e-5).all()
