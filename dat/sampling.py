"""Energy-driven generation by normalised-gradient ascent (paper Eq. 8 and Algorithm 1, lines 6-10).

The same sampler makes the contrastive samples of stage 2 and the test-time samples:
x_{t+1} = clamp(x_t + step_size * g / ||g||_2, 0, 1) with g = grad_x f(x_t)[y] (conditional, ascent on
-E(x, y)) or g = grad_x logsumexp_k f(x_t)[k] (unconditional, ascent on -E(x)). There is no eps-ball and no
noise. A chain to T steps passes through every T' < T, so one chain yields the samples of a whole grid of T.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from dat.attacks import l2_normalize
from dat.data import to_tensor, to_uint8
from dat.io import progress
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


def start_indices(n: int, pool: int, generator: torch.Generator) -> np.ndarray:
    """``n`` indices into a pool of ``pool`` start images: one random permutation after another (no image is
    reused before every image has been used), int64 (n,).

    Raises:
        ValueError: the pool is empty.
    """
    if pool < 1:
        raise ValueError("the pool of start images is empty")
    perms = [torch.randperm(pool, generator=generator) for _ in range(-(-n // pool))]
    return torch.cat(perms)[:n].numpy()


def generate(
    model: Callable[[torch.Tensor], torch.Tensor],
    *,
    n: int,
    num_classes: int,
    image_shape: tuple[int, int, int],
    step_size: float,
    steps: int,
    seed: int,
    record: list[int] | None = None,
    conditional: bool = True,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
    starts=None,
) -> dict:
    """Class-balanced test-time samples: :func:`normalized_gradient_ascent` from uniform noise (or images of
    ``starts``), batch by batch.

    Args:
        model: classifier in eval mode, inputs (N, C, H, W) in [0, 1].
        n: number of samples; labels are ``arange(n) % num_classes``.
        image_shape: (C, H, W).
        step_size: L2 step in pixel units; steps: T.
        seed: seeds the noise starts (use different seeds for grid-search and final samples).
        record: step counts whose iterates are also returned (the grid of T: one chain serves all).
        conditional: ascend f(x)[y] (True) or logsumexp f(x) (False).
        batch_size: chains run at once.
        device: where the chains run (the model's device); the noise is drawn on the CPU from ``seed``, so the
            samples do not depend on the device beyond floating-point rounding.
        starts: None (uniform noise) or a pool of start images, uint8 (M, H, W, C) array or
            :class:`dat.data.ImageFiles`; ``seed`` permutes it (drawn without replacement while n <= M).

    Raises:
        ValueError: ``starts`` images of another shape than ``image_shape`` (both named).

    Returns:
        dict with ``x`` uint8 (n, H, W, C) at T = steps, ``y`` int64 (n,), ``x_init`` uint8 (n, H, W, C),
        and ``snapshots`` {t: uint8 (n, H, W, C)} for t in ``record``.
    """
    generator = torch.Generator().manual_seed(seed)
    y_all = balanced_labels(n, num_classes)
    record = sorted(set(record or []))
    order = None
    if starts is not None:
        c, h, w = image_shape
        if tuple(starts.shape[1:]) != (h, w, c):
            raise ValueError(f"start images are {tuple(starts.shape[1:])} (H, W, C); the model samples {(h, w, c)}")
        order = start_indices(n, len(starts), generator)
    outs, inits, snaps = [], [], {t: [] for t in record}
    for start in progress(range(0, n, batch_size), f"sampling T={steps}"):
        y = y_all[start:start + batch_size]
        if order is None:
            x0 = uniform_noise(len(y), image_shape, generator)
        else:
            x0 = to_tensor(starts[order[start:start + len(y)]])
        x_T, snapshots = normalized_gradient_ascent(
            model, x0.to(device), y.to(device) if conditional else None, step_size=step_size, steps=steps, record=record
        )
        outs.append(to_uint8(x_T))
        inits.append(to_uint8(x0))
        for t in record:
            snaps[t].append(to_uint8(snapshots[t]))
    return {
        "x": np.concatenate(outs),
        "y": y_all.numpy(),
        "x_init": np.concatenate(inits),
        "snapshots": {t: np.concatenate(v) for t, v in snaps.items()},
    }


# -- JEM / EB-JDAT: stochastic gradient Langevin dynamics over a replay buffer --------------------------------------
def sgld(
    model: Callable[[torch.Tensor], torch.Tensor],
    x_init: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    noise_std: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SGLD as JEM runs it (Grathwohl et al. 2020, Eq. 7 with their decoupled step and noise):
    x_{t+1} = x_t + step_size * grad_x logsumexp f(x_t) + noise_std * N(0, I), i.e. descent on E(x) = -LSE.

    Args:
        model: maps (N, C, H, W) to logits (N, K); the caller sets its mode.
        x_init: (N, C, H, W) float32 chain starts, in [0, 1] pixel units.
        steps, step_size, noise_std: chain length and the two SGLD scales in [0, 1] pixel units (JEM's step 1 and
            noise 0.01 on [-1, 1] images are 0.25 and 0.005 here: the gradient doubles and the step halves).
        generator: CPU generator of the noise (deterministic chains).

    Returns:
        (N, C, H, W) float32 samples, detached; not clamped (JEM's chains may leave [0, 1]).
    """
    x = x_init.detach().clone()
    for _ in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(-energy(model(x)).sum(), x)
        noise = torch.randn(x.shape, generator=generator, device="cpu").to(x)
        x = (x.detach() + step_size * grad + noise_std * noise).detach()
    return x


class ReplayBuffer:
    """JEM's persistent sample buffer (Grathwohl et al. 2020, Sec. 5; Du & Mordatch 2019).

    ``size`` images, uniform noise at the start; :meth:`sample` draws a batch of buffer entries and replaces a
    ``reinit`` fraction of them (each independently) by fresh uniform noise; :meth:`update` writes the chains'
    results back. The buffer's tensor is part of the training checkpoint (``state_dict``).
    """

    def __init__(self, size: int, shape: tuple[int, int, int], reinit: float, generator: torch.Generator):
        if size < 1 or not 0 <= reinit <= 1:
            raise ValueError(f"replay buffer: size {size} must be >= 1 and reinit {reinit} in [0, 1]")
        self.reinit, self.generator = reinit, generator
        self.buffer = torch.rand((size, *shape), generator=generator)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 (n, C, H, W) float32, idx (n,) int64): buffer entries idx, a ``reinit`` fraction replaced by noise."""
        idx = torch.randint(len(self.buffer), (n,), generator=self.generator)
        x0 = self.buffer[idx].clone()
        fresh = torch.rand(n, generator=self.generator) < self.reinit
        x0[fresh] = torch.rand((int(fresh.sum()), *x0.shape[1:]), generator=self.generator)
        return x0, idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        self.buffer[idx] = x.detach().to(self.buffer.device, self.buffer.dtype)

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["buffer"].shape != self.buffer.shape:
            raise ValueError(f"replay buffer of shape {tuple(state['buffer'].shape)}, expected {tuple(self.buffer.shape)}")
        self.buffer = state["buffer"].clone()
