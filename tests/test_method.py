"""Energy signs, the sampler, the BCE loss, BatchNorm freezing and the T curriculum."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dat.curriculum import StepCurriculum
from dat.losses import at_ce, bce_energy, dat_loss
from dat.models import WideResNet, build_model, count_parameters, energy, set_train_mode
from dat.sampling import balanced_labels, normalized_gradient_ascent


def test_energy_signs():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(energy(logits), -torch.logsumexp(logits, 1))
    assert torch.allclose(energy(logits, torch.tensor([2, 0])), torch.tensor([-3.0, 0.0]))
    # raising every logit lowers the energy (more likely)
    assert (energy(logits + 1) < energy(logits)).all()


def test_bce_loss_matches_binary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(5, 4, generator=g), torch.randn(3, 4, generator=g)
    out = bce_energy(real, fake)
    s = torch.cat([torch.logsumexp(real, 1), torch.logsumexp(fake, 1)])  # logit = -E(x)
    target = torch.cat([torch.ones(5), torch.zeros(3)])
    assert torch.allclose(out["bce"], F.binary_cross_entropy_with_logits(s, target))
    assert out["bce_real"].shape == (5,) and out["bce_fake"].shape == (3,)
    # hand-checkable: all-zero logits over K=4 classes give s = log 4 -> softplus(-log 4) = log(1.25)
    zero = bce_energy(torch.zeros(1, 4), torch.zeros(1, 4))
    assert math.isclose(zero["bce_real"].item(), math.log(1.25), rel_tol=1e-6)
    assert math.isclose(zero["bce_fake"].item(), math.log(5.0), rel_tol=1e-6)


def test_bce_gradient_lowers_real_energy_and_raises_fake_energy():
    real = torch.zeros(2, 3, requires_grad=True)
    fake = torch.zeros(2, 3, requires_grad=True)
    bce_energy(real, fake)["bce"].backward()
    assert (real.grad < 0).all()  # descent raises real logits -> lower E(real)
    assert (fake.grad > 0).all()  # descent lowers fake logits -> higher E(x_T)


def test_dat_loss_is_weighted_sum():
    g = torch.Generator().manual_seed(0)
    adv, real, fake = (torch.randn(4, 3, generator=g) for _ in range(3))
    y = torch.tensor([0, 1, 2, 0])
    out = dat_loss(adv, y, real, fake, weight_ce=0.7, weight_bce=0.3)
    assert torch.allclose(out["loss"], 0.7 * at_ce(adv, y).mean() + 0.3 * bce_energy(real, fake)["bce"])
    stage1 = dat_loss(adv, y)
    assert set(stage1) == {"ce_adv", "loss"} and torch.allclose(stage1["loss"], at_ce(adv, y).mean())


def test_sampler_stays_in_box_and_raises_target_logit(tiny_model):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 1, 6, 6, generator=g)
    y = balanced_labels(8, 4)
    x_T, snaps = normalized_gradient_ascent(tiny_model, x0, y, step_size=0.5, steps=6, record=[0, 3, 6])
    assert x_T.min() >= 0 and x_T.max() <= 1 and x_T.shape == x0.shape
    assert torch.equal(snaps[0], x0) and torch.equal(snaps[6], x_T)
    with torch.no_grad():
        gain = tiny_model(x_T).gather(1, y.view(-1, 1)) - tiny_model(x0).gather(1, y.view(-1, 1))
    assert gain.mean() > 0


def test_sampler_chain_prefix_property(tiny_model):
    x0 = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    y = balanced_labels(4, 4)
    short, _ = normalized_gradient_ascent(tiny_model, x0, y, step_size=0.3, steps=3)
    _, snaps = normalized_gradient_ascent(tiny_model, x0, y, step_size=0.3, steps=8, record=[3])
    assert torch.allclose(short, snaps[3])


def test_sampler_unconditional_lowers_energy(tiny_model):
    x0 = torch.rand(6, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    x_T, _ = normalized_gradient_ascent(tiny_model, x0, None, step_size=0.2, steps=5)
    with torch.no_grad():
        assert energy(tiny_model(x_T)).mean() < energy(tiny_model(x0)).mean()


def test_sampler_step_is_normalised(linear_model):
    x0 = torch.full((3, 1, 6, 6), 0.5)
    x1, _ = normalized_gradient_ascent(linear_model, x0, torch.tensor([0, 1, 2]), step_size=0.2, steps=1)
    assert torch.allclose((x1 - x0).flatten(1).norm(dim=1), torch.full((3,), 0.2), atol=1e-5)
    with pytest.raises(ValueError):
        normalized_gradient_ascent(linear_model, x0, None, step_size=0.2, steps=1, record=[2])


def test_frozen_batchnorm_keeps_running_statistics():
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.5], widths=[8, 16])
    model.train()
    model(torch.rand(16, 1, 12, 12))  # move the statistics away from their init
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    set_train_mode(model, freeze_batchnorm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = model(torch.rand(16, 1, 12, 12) * 3).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    set_train_mode(model, freeze_batchnorm=False)
    model(torch.rand(16, 1, 12, 12))
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_models_forward_backward_and_sizes():
    small = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.3], std=[0.35])
    assert 0.25e6 < count_parameters(small) < 0.35e6
    logits = small(torch.rand(2, 1, 28, 28))
    logits.sum().backward()
    assert logits.shape == (2, 10)
    wrn = WideResNet(num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, depth=34, widen_factor=10)
    assert 46.0e6 < count_parameters(wrn) < 46.3e6  # WRN-34-10, as in RATIO/DAT
    with pytest.raises(ValueError, match="unknown model arch"):
        build_model("nope", num_classes=2, in_channels=1, mean=[0], std=[1])


def test_curriculum_grows_when_window_passes():
    c = StepCurriculum(steps=0, max_steps=3, auc_threshold=0.8, window_images=100, increment=2)
    assert not c.update(0.9, 50)  # window not full yet
    assert c.update(0.9, 50) and c.steps == 2  # full and above the threshold
    assert not c.update(0.95, 60)  # window restarted
    for _ in range(3):
        c.update(0.5, 60)  # a full window below the threshold slides, T stays
    assert c.steps == 2
    for _ in range(4):
        c.update(0.99, 60)
    assert c.steps == 3  # capped at max_steps
    state = c.state_dict()
    d = StepCurriculum(steps=0, max_steps=3, auc_threshold=0.8, window_images=100)
    d.load_state_dict(state)
    assert d.steps == 3 and d.state_dict() == state


def test_generate_starts_from_a_pool_of_images(tiny_model):
    """sampling.init train: chains start from the run's auxiliary OOD images, each used once before any repeats,
    and the seed picks which; the uint8 starts are returned unchanged as x_init."""
    from dat.sampling import generate

    pool = np.random.default_rng(0).integers(0, 256, (6, 6, 6, 1), dtype=np.uint8)
    kw = dict(n=8, num_classes=4, image_shape=(1, 6, 6), step_size=0.2, steps=2, batch_size=3)
    out = generate(tiny_model, seed=1, starts=pool, **kw)
    used = [next(i for i in range(6) if np.array_equal(pool[i], x)) for x in out["x_init"]]
    assert sorted(used[:6]) == list(range(6)) and len(set(used[6:])) == 2  # a permutation, then the next one
    again = generate(tiny_model, seed=1, starts=pool, **kw)
    assert np.array_equal(again["x"], out["x"]) and np.array_equal(again["x_init"], out["x_init"])
    other = generate(tiny_model, seed=2, starts=pool, **kw)
    assert not np.array_equal(other["x_init"], out["x_init"])
    noise = generate(tiny_model, seed=1, **kw)
    assert not any(np.array_equal(x, p) for x in noise["x_init"] for p in pool)
    with pytest.raises(ValueError, match=r"start images are \(6, 6, 3\)"):
        generate(tiny_model, seed=1, starts=np.zeros((4, 6, 6, 3), np.uint8), **kw)
