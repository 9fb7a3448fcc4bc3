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


def _check_auxiliary_images(init: str, ood_set: str | None, block: str) -> None:
    """The ``init``/``ood_set`` pair shared by DAT's chain starts and RATIO's out-batches; ValueError naming ``block``."""
    if init not in ("noise", "ood"):
        raise ValueError(f"{block}.init: {init!r} is not a chain start (noise, ood)")
    if init == "ood" and not ood_set:
        raise ValueError(f"{block}.init: 'ood' needs {block}.ood_set (an OOD set name or file:<path>, see "
                         "dat.data.load_ood)")


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
        _check_auxiliary_images(self.init, self.ood_set, "bce")


@dataclass(frozen=True)
class RatioConfig:
    """RATIO (Augustin et al. 2020): the out-distribution term and its attack (L2, pixel units). Out-distribution
    batches are uniform noise (``init: noise``) or images of the auxiliary set ``ood_set`` (``init: ood``)."""

    lam: float = 1.0
    eps: float = 1.0
    step_size: float = 0.1
    steps: int = 20
    batch_size: int | None = None
    init: str = "noise"
    ood_set: str | None = None
    ood_images: int = 10000

    def __post_init__(self) -> None:
        _check_auxiliary_images(self.init, self.ood_set, "ratio")


@dataclass(frozen=True)
class SGLDConfig:
    """JEM's SGLD and replay buffer (Grathwohl et al. 2020), in [0, 1] pixel units: JEM's step 1.0, noise 0.01 and
    data noise 0.03 on [-1, 1] images are 0.25, 0.005 and 0.015 here. A sample energy beyond ``energy_limit`` in
    absolute value counts as divergence (training stops like a NaN loss, keeping the last good checkpoint)."""

    buffer_size: int = 10000
    reinit: float = 0.05
    steps: int = 20
    step_size: float = 0.25
    noise_std: float = 0.005
    data_noise: float = 0.015
    batch_size: int | None = None
    weight_px: float = 1.0
    weight_pyx: float = 1.0
    energy_limit: float = 1.0e4


@dataclass(frozen=True)
class EBJDATConfig:
    """EB-JDAT's extra terms and attack (weights of its JEM-variant code; attack Linf 4/255, 5 steps of 1/255 in
    pixel units, random start, projected unless ``attack_project`` is false as in the released code)."""

    weight_xadv: float = 0.05
    weight_pyxadv: float = 0.45
    attack_eps: float = 4 / 255
    attack_step_size: float = 1 / 255
    attack_steps: int = 5
    attack_norm: str = "Linf"
    attack_project: bool = True


@dataclass(frozen=True)
class SnapshotConfig:
    """Weights saved along training for paper Figure 4 (``dat.eval_snapshots`` measures them)."""

    every_steps: int = 100
    n_pgd: int = 500
    n_samples: int = 200

    def __post_init__(self) -> None:
        for key in ("every_steps", "n_pgd", "n_samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.snapshots.{key}: {getattr(self, key)} is below 1")


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
    ratio: RatioConfig | None = None
    sgld: SGLDConfig | None = None
    ebjdat: EBJDATConfig | None = None
    log_every: int = 10
    ckpt_every_steps: int = 50
    ckpt_every_minutes: float | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    num_workers: int = 0
    on_divergence: str = "fail"
    snapshots: SnapshotConfig | None = None

    def __post_init__(self) -> None:
        if self.on_divergence not in ("fail", "keep_last"):
            raise ValueError(f"train.on_divergence: {self.on_divergence!r} is not fail or keep_last")
        if sum(b is not None for b in (self.bce, self.ratio, self.sgld)) > 1:
            raise ValueError("train: give at most one of bce (DAT), ratio (RATIO), sgld (JEM / EB-JDAT)")
        if self.ebjdat is not None and self.sgld is None:
            raise ValueError("train.ebjdat needs the sgld block (EB-JDAT builds on JEM's sampler)")
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers: {self.num_workers} is negative")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision: {self.precision!r} is not fp32 or bf16")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f"train: give exactly one of 'epochs' or 'steps' (got epochs={self.epochs}, steps={self.steps})")

    @property
    def objective(self) -> str:
        """at (stage 1 / standard AT), dat (stage 2), ratio, jem or ebjdat: which blocks are set."""
        if self.bce:
            return "dat"
        if self.ratio:
            return "ratio"
        if self.sgld:
            return "ebjdat" if self.ebjdat else "jem"
        return "at"

    @property
    def aux(self) -> BCEConfig | RatioConfig | None:
        """The block whose ``init``/``ood_set`` pick the second batch's images (DAT chain starts, RATIO out-batches)."""
        return self.bce or self.ratio

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
    ("TrainConfig", "ratio"): RatioConfig,
    ("TrainConfig", "sgld"): SGLDConfig,
    ("TrainConfig", "ebjdat"): EBJDATConfig,
    ("TrainConfig", "snapshots"): SnapshotConfig,
}
_NUMBERS = {
    "AttackConfig": ("eps", "step_size"),
    "BCEConfig": ("step_size",),
    "OptimizerConfig": ("lr", "weight_decay"),
    "RatioConfig": ("eps", "step_size"),
    "SGLDConfig": ("step_size", "noise_std", "data_noise"),
    "EBJDATConfig": ("attack_eps", "attack_step_size"),
}


# What only the evaluation of a run reads: its ``sampling`` and ``evaluate`` blocks and these keys of its dataset
# block. The workflow leaves them out of the data and training configs (results/data/{dataset}/dataset.json,
# results/{run}/train.json), so that changing a sample count, an OOD set or a counterfactual radius re-runs the
# evaluations and never data preparation or training.
EVALUATION_KEYS = ("sampling", "evaluate")
EVALUATION_DATASET_KEYS = ("threat_model", "sampling_step_size", "ood_eps", "counterfactual_radii", "ood_sets", "n_ood")


def training_view(run: dict) -> dict:
    """The part of a resolved run config (``run.json``) that determines its training: the run without
    ``EVALUATION_KEYS`` and without ``EVALUATION_DATASET_KEYS`` in its dataset block. A ``train.json`` is its own
    training view, so checkpoints written under either file compare equal."""
    out = {k: v for k, v in run.items() if k not in EVALUATION_KEYS}
    if isinstance(out.get("dataset"), dict):
        out["dataset"] = {k: v for k, v in out["dataset"].items() if k not in EVALUATION_DATASET_KEYS}
    return out


def threat_model(dataset: dict) -> tuple[str, float]:
    """(norm, eps) of a dataset block's ``threat_model``, with eps parsed to a float."""
    tm = dataset["threat_model"]
    return tm["norm"], parse_number(tm["eps"], "threat_model.eps")
