"""Typed, frozen views of one run's hyperparameters, built from the run JSON that the workflow writes.

The workflow validates ``config.yaml`` against ``workflow/schemas/config.schema.yaml`` at parse time; these
dataclasses check again when a command is run by hand on a hand-written JSON, and parse fractions such as
``"8/255"`` to floats exactly once. Unknown keys raise ``ValueError`` naming the key and the block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any


def parse_number(value: Any, key: str = "value") -> float:
    """Parse a number or a fraction string such as ``"8/255"`` into a float.

    Raises:
        ValueError: naming ``key`` when ``value`` is neither.
    """
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"{key}: expected a number or a fraction like '8/255', got {value!r}")


def _build(cls, data: dict | None, where: str):
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and recursing into nested blocks."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get((cls.__name__, name))
        if nested is not None:
            value = None if value is None else _build(nested, value, f"{where}.{name}")
        elif name in _NUMBERS.get(cls.__name__, ()):
            value = parse_number(value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class AttackConfig:
    """PGD for adversarial training (paper Eq. 10): radius and step in pixel units of [0, 1] images."""

    norm: str = "L2"
    eps: float = 0.5
    step_size: float = 0.1
    steps: int = 10
    random_start: bool = False


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule. ``milestones`` are fractions of the total steps (multistep)."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple = (0.9, 0.999)
    schedule: str = "cosine"
    milestones: tuple = ()
    gamma: float = 0.1
    warmup_steps: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    """Decoupled augmentation (paper Sec. 3.4): strong for the AT-CE branch, mild for the BCE branch."""

    at: tuple = ("crop", "flip")
    bce: tuple = ("crop", "flip")
    crop_padding: int = 4
    cutout_size: int = 16


@dataclass(frozen=True)
class BCEConfig:
    """The generative branch of stage 2 (paper Eq. 9 and Algorithm 1) and its curriculum on T.

    ``init`` picks the chain starts x0 of the contrastive samples: ``noise`` (uniform pixels, the default) or
    ``ood`` (images of the auxiliary set ``ood_set``, ``ood_images`` of them, with the BCE-branch augmentation).
    """

    weight: float = 1.0
    batch_size: int | None = None
    step_size: float = 0.1
    initial_steps: int = 0
    max_steps: int = 50
    increment: int = 1
    auc_threshold: float = 0.8
    window_images: int = 1000
    init: str = "noise"
    ood_set: str | None = None
    ood_images: int = 10000
    conditional: bool = True

    def __post_init__(self) -> None:
        if self.init not in ("noise", "ood"):
            raise ValueError(f"bce.init: {self.init!r} is not a chain start (noise, ood)")
        if self.init == "ood" and not self.ood_set:
            raise ValueError("bce.init: 'ood' needs bce.ood_set (mnist5k, digits, photos, noise or npz:<path>)")


@dataclass(frozen=True)
class TrainConfig:
    """One training stage. ``bce`` is None for stage 1 (standard AT) and set for stage 2 (DAT)."""

    batch_size: int = 128
    epochs: float | None = None
    steps: int | None = None
    weight_ce: float = 1.0
    freeze_batchnorm: bool = False
    ema_decay: float | None = 0.999
    ema_warmup: bool = True
    attack: AttackConfig = field(default_factory=AttackConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    bce: BCEConfig | None = None
    log_every: int = 10
    ckpt_every_steps: int = 50
    ckpt_every_minutes: float | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers: {self.num_workers} is negative")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision: {self.precision!r} is not fp32 or bf16")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f"train: give exactly one of 'epochs' or 'steps' (got epochs={self.epochs}, steps={self.steps})")

    def total_steps(self, n_train: int) -> int:
        """Optimizer updates for the budget: ``steps``, or ceil(epochs * n_train / batch_size)."""
        if self.steps is not None:
            return int(self.steps)
        return max(1, -(-int(self.epochs * n_train) // self.batch_size))

    @classmethod
    def from_dict(cls, data: dict, where: str = "train") -> "TrainConfig":
        return _build(cls, data, where)


_NESTED = {
    ("TrainConfig", "attack"): AttackConfig,
    ("TrainConfig", "optimizer"): OptimizerConfig,
    ("TrainConfig", "augment"): AugmentConfig,
    ("TrainConfig", "bce"): BCEConfig,
}
_NUMBERS = {
    "AttackConfig": ("eps", "step_size"),
    "BCEConfig": ("step_size",),
    "OptimizerConfig": ("lr", "weight_decay"),
}


def threat_model(dataset: dict) -> tuple[str, float]:
    """(norm, eps) of a dataset block's ``threat_model``, with eps parsed to a float."""
    tm = dataset["threat_model"]
    return tm["norm"], parse_number(tm["eps"], "threat_model.eps")
