"""Projected gradient attacks (Madry et al. 2018) as pure functions of tensors.

Pixels are in [0, 1]; ``eps`` and ``step_size`` are in the same pixel units (an L2 radius of 0.5 means
||x_adv - x||_2 <= 0.5 over all C*H*W pixels). L2 steps move by ``step_size`` along the normalised gradient;
Linf steps by ``step_size * sign(grad)``. Every iterate is projected onto the eps-ball around ``x`` and clamped
to [0, 1]. The functions differentiate with ``torch.autograd.grad`` on the input only, never touch
``model.train()/.eval()`` (the caller chooses the mode) and leave parameter ``.grad`` untouched.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from dat.io import progress
from dat.models import device_of, predict_logits

Objective = Callable[[torch.Tensor], torch.Tensor]
_TINY = 1e-12


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm of (N, ...) as (N, 1, 1, ...) for broadcasting."""
    return t.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


def l2_normalize(g: torch.Tensor) -> torch.Tensor:
    """g / ||g||_2 per example. Args: g (N, ...) float. Returns the same shape; zero rows stay zero."""
    return g / _flat_norm(g)


def pgd_step_size(eps: float, steps: int, factor: float) -> float:
    """The step of a ``steps``-step PGD in an eps-ball: ``factor * eps / steps``, in the pixel units of ``eps``.

    With ``factor`` > 1 the iterates can cross the ball ``factor`` times over, so they reach its boundary even when
    the first steps go astray (Madry et al. 2018 use 2.5 * eps / steps). Every evaluation attack scales its step
    this way (``evaluate.pgd``, ``evaluate.ood``, ``evaluate.counterfactual``: ``step_size_factor``).
    """
    return eps * factor / steps


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations (N, ...) onto the ``norm`` ball of radius ``eps`` (``"L2"`` or ``"Linf"``)."""
    if norm == "L2":
        return delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    raise ValueError(f"norm must be 'L2' or 'Linf', got {norm!r}")


def pgd_maximize(
    objective: Objective,
    x: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "L2",
    random_start: bool = False,
    generator: torch.Generator | None = None,
    project_to_ball: bool = True,
    momentum: float = 0.0,
    best_iterate: bool = False,
) -> torch.Tensor:
    """Maximise a per-example objective over the eps-ball around ``x`` by projected gradient ascent.

    Args:
        objective: maps (N, C, H, W) images to (N,) values to maximise (summed for the gradient, so examples
            do not interact as long as the objective is per-example).
        x: (N, C, H, W) float32 in [0, 1], the centres of the balls.
        eps: radius in pixel units; ``eps == 0`` returns ``x`` unchanged.
        step_size: L2 step length (or Linf step) in pixel units.
        steps: number of ascent steps (0 returns the start point).
        norm: ``"L2"`` or ``"Linf"``.
        random_start: start from a uniform point of the Linf ball / a random direction of the L2 ball (radius
            uniform in [0, eps]) instead of ``x`` (the paper's training attack uses zero init).
        generator: torch generator for the random start.
        project_to_ball: project each step back onto the eps-ball (always, except to reproduce attacks that
            only clamp to [0, 1], such as EB-JDAT's released code).
        momentum: > 0 steps along a velocity ``v <- momentum * v + g / ||g||_1`` (the momentum iterative method,
            Dong et al. 2018), normalised like a gradient; 0 (the default) steps along the gradient itself.
        best_iterate: return each example's iterate with the highest objective among the start and every step
            (one more forward pass), not the last one. ``momentum=0.9, best_iterate=True`` is RATIO's ArgminPGD
            (Augustin et al. 2020; the authors' vendored InNOutRobustness/utils/adversarial_attacks/argmin_pgd.py),
            the stage-1 attack of the paper's CIFAR models (A.1.1).

    Returns:
        x_adv: (N, C, H, W) float32 in [0, 1] with ||x_adv - x|| <= eps (+1e-6) when projecting, detached.
    """
    if norm not in ("L2", "Linf"):
        raise ValueError(f"norm must be 'L2' or 'Linf', got {norm!r}")
    x = x.detach()
    if eps == 0 or (steps == 0 and not random_start):
        return x.clone()
    delta = torch.zeros_like(x)
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1
        if norm == "L2":
            radius = torch.rand(x.shape[0], generator=generator, device="cpu").to(x).view(-1, *([1] * (x.dim() - 1)))
            noise = l2_normalize(noise) * radius
        delta = project(noise * eps, eps, norm)
        delta = (x + delta).clamp(0, 1) - x
    velocity = torch.zeros_like(x) if momentum else None
    best, best_value = None, None  # best_iterate: each example's best delta so far and its objective
    for _ in range(steps):
        x_adv = (x + delta).requires_grad_(True)
        value = objective(x_adv)
        (grad,) = torch.autograd.grad(value.sum(), x_adv)
        if best_iterate:
            best, best_value = _keep_best(best, best_value, delta, value.detach())
        if velocity is not None:
            l1 = grad.flatten(1).abs().sum(1).clamp_min(_TINY).view(-1, *([1] * (grad.dim() - 1)))
            velocity = momentum * velocity + grad / l1
            grad = velocity
        step = l2_normalize(grad) if norm == "L2" else grad.sign()
        delta = delta + step_size * step
        delta = project(delta, eps, norm) if project_to_ball else delta
        delta = (x + delta).clamp(0, 1) - x
    if best_iterate:
        with torch.no_grad():
            best, _ = _keep_best(best, best_value, delta, objective(x + delta).detach())
        delta = best
    return (x + delta).detach()


def _keep_best(best: torch.Tensor | None, best_value: torch.Tensor | None, delta: torch.Tensor,
               value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, ``delta`` where its objective ``value`` exceeds ``best_value`` (ties keep the earlier one);
    ``delta`` itself at the first call (``best_value`` None)."""
    if best_value is None:
        return delta.detach().clone(), value
    better = value > best_value
    mask = better.view(-1, *([1] * (delta.dim() - 1)))
    return torch.where(mask, delta.detach(), best), torch.where(better, value, best_value)


def pgd_attack(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "L2",
    targeted: bool = False,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    momentum: float = 0.0,
    best_iterate: bool = False,
) -> torch.Tensor:
    """Cross-entropy PGD (paper Eq. 10): untargeted maximises CE(f(x'), y); targeted minimises CE(f(x'), y).

    Args:
        model: callable mapping (N, C, H, W) in [0, 1] to logits (N, K).
        x: (N, C, H, W) float32 in [0, 1].
        y: (N,) int64 true labels (untargeted) or target labels (targeted).
        eps, step_size, steps, norm, random_start, generator, momentum, best_iterate: see :func:`pgd_maximize`
            (``momentum=0.9, best_iterate=True``: RATIO's ArgminPGD).

    Returns:
        x_adv: (N, C, H, W) float32 in [0, 1] inside the eps-ball.
    """
    sign = -1.0 if targeted else 1.0

    def objective(z: torch.Tensor) -> torch.Tensor:
        return sign * F.cross_entropy(model(z), y, reduction="none")

    return pgd_maximize(
        objective, x, eps=eps, step_size=step_size, steps=steps, norm=norm, random_start=random_start, generator=generator,
        momentum=momentum, best_iterate=best_iterate,
    )


def target_logit_attack(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "L2",
) -> torch.Tensor:
    """Targeted PGD that maximises the target logit f(x')[target] = -E(x', target) in the eps-ball.

    This is the counterfactual generator of the paper (Sec. 4.4): the same normalised-gradient ascent as
    sampling, confined to an L2 ball around a real image.

    Args:
        model: callable mapping (N, C, H, W) in [0, 1] to logits (N, K).
        x: (N, C, H, W) float32 in [0, 1].
        target: (N,) int64 target classes.

    Returns:
        (N, C, H, W) float32 in [0, 1] inside the eps-ball.
    """

    def objective(z: torch.Tensor) -> torch.Tensor:
        return model(z).gather(1, target.view(-1, 1)).squeeze(1)

    return pgd_maximize(objective, x, eps=eps, step_size=step_size, steps=steps, norm=norm)


def ebjdat_attack(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
                  step_size: float, steps: int, norm: str = "Linf", project_to_ball: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The adversarial examples of EB-JDAT (as its public JEM-variant training code makes them): from a uniform
    random start in the ball around the noisy labelled batch, ascend f(x_adv)[y] + ||n(f(x)) - n(f(x_adv))||^2, the
    true-label logit -E(x_adv, y) plus the squared distance of the L2-normalised logits n(.) from those of x
    (authors' code: EB-JDAT-JEM/train_wrn_ebm.py, sampleXadv: the model's forward with y is that logit; the code
    offers CE on y as an alternative).

    Args:
        model: logits (N, K) of (N, C, H, W) images; the caller sets eval mode.
        x: (N, C, H, W) float32, the labelled batch with JEM's data noise added (about [0, 1]; x_adv is clamped to
            [0, 1], the code's data range).
        y: (N,) int64 labels of ``x``.
        eps, step_size: pixel units (the code's 8/255 and 2/255 on [-1, 1] images are 4/255 and 1/255 here); steps;
            norm Linf (the code) or L2.
        project_to_ball: True (the default) keeps x_adv in the ball; False only clamps it to the data range after the
            start and each step, as the released code does (config.yaml: train.ebjdat.attack_project false).

    Returns:
        x_adv (N, C, H, W) float32 in [0, 1], detached.
    """
    with torch.no_grad():
        direction = torch.nn.functional.normalize(model(x).float(), dim=1)

    def objective(x_adv: torch.Tensor) -> torch.Tensor:
        logits = model(x_adv).float()
        true_logit = logits.gather(1, y.view(-1, 1)).squeeze(1)
        return true_logit + (direction - torch.nn.functional.normalize(logits, dim=1)).pow(2).sum(1)

    return pgd_maximize(objective, x, eps=eps, step_size=step_size, steps=steps, norm=norm, random_start=True,
                        generator=generator, project_to_ball=project_to_ball)


def pgd_robust(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
               step_size: float, steps: int, norm: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Untargeted cross-entropy PGD (:func:`pgd_attack`, zero start) batch by batch, and its outcome per example.

    Args:
        model: an ``nn.Module`` in eval mode mapping (N, C, H, W) in [0, 1] to logits (N, K); the batches go to the
            device of its parameters.
        x: (N, C, H, W) float32 in [0, 1]; y: (N,) int64 true labels (both on the CPU).
        eps, step_size, steps, norm: see :func:`pgd_maximize`; batch_size: examples attacked at once.

    Returns:
        (correct (N,) bool: still classified right after the attack, perturbation (N,) float32: its L2 or Linf norm),
        on the CPU. Each example's outcome depends on that example alone (model in eval mode), so a prefix of the
        result is the result on that prefix of the examples.
    """
    correct, pert = [], []
    device = device_of(model)
    for i in progress(range(0, len(x), batch_size), f"PGD-{steps} {norm}"):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        x_adv = pgd_attack(model, xb, yb, eps=eps, step_size=step_size, steps=steps, norm=norm)
        correct.append(predict_logits(model, x_adv, batch_size).argmax(1) == yb.cpu())
        delta = (x_adv - xb).flatten(1)
        pert.append((delta.norm(dim=1) if norm == "L2" else delta.abs().amax(dim=1)).cpu())
    return torch.cat(correct), torch.cat(pert)
