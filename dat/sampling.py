"""Energy-driven generation by normalised-gradient ascent (paper Eq. 8 and Algorithm 1, lines 6-10).

The same sampler makes the contrastive samples of stage 2 and the test-time samples:
x_{t+1} = clamp(x_t + step_size * g / ||g||_2, 0, 1) with g = grad_x f(x_t)[y] (conditional, ascent on
-E(x, y)) or g = grad_x logsumexp_k f(x_t)[k] (unconditional, ascent on -E(x)). There is no eps-ball and no
noise. A chain to T steps passes through every T' < T, so one chain yields the samples of a whole grid of T.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from dat.attacks import l2_normalize
from dat.models import energy


def normalized_gradient_ascent(
    model: Callable[[torch.Tensor], torch.Tensor],
    x_init: torch.Tensor,
    y: torch.Tensor | None,
    *,
    step_size: float,
    steps: int,
    record: Iterable[int] = (),
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Run the sampler from ``x_init`` for ``steps`` steps.

    Args:
        model: callable mapping (N, C, H, W) in [0, 1] to logits (N, K). The caller sets its mode (eval).
        x_init: (N, C, H, W) float32 in [0, 1], chain starts (noise or OOD images).
        y: (N,) int64 target classes for conditional sampling, or None for unconditional sampling.
        step_size: L2 length of each step in pixel units (eta in the paper).
        steps: T >= 0.
        record: step counts t in [0, steps] whose iterates are returned (t = 0 is ``x_init``).

    Returns:
        (x_T, snapshots): x_T (N, C, H, W) float32 in [0, 1], detached; ``snapshots[t]`` the detached iterate
        after t steps for each t in ``record``.

    Raises:
        ValueError: if a recorded step lies outside [0, steps] or ``steps`` is negative.
    """
    record = sorted(set(int(t) for t in record))
    if steps < 0 or any(t < 0 or t > steps for t in record):
        raise ValueError(f"record steps {record} must lie in [0, steps={steps}]")
    x = x_init.detach().clamp(0, 1)
    snapshots = {0: x.clone()} if 0 in record else {}
    for t in range(1, steps + 1):
        x_req = x.requires_grad_(True)
        neg_energy = -energy(model(x_req), y)  # (N,): f(x)[y] or logsumexp f(x)
        (grad,) = torch.autograd.grad(neg_energy.sum(), x_req)
        x = (x_req.detach() + step_size * l2_normalize(grad)).clamp(0, 1)
        if t in record:
            snapshots[t] = x.clone()
    return x.detach(), snapshots


def balanced_labels(n: int, num_classes: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Class-balanced targets y = arange(n) % K as (n,) int64 (the protocol's conditional sampling labels)."""
    return torch.arange(n, device=device) % num_classes


def uniform_noise(n: int, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """(n, C, H, W) float32 uniform in [0, 1) from ``generator`` (the default chain start)."""
    return torch.rand((n, *shape), generator=generator)
