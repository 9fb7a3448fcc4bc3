"""Typed, frozen views of one run's hyperparameters, built from the run JSON that the workflow writes.

The workflow validates ``config.yaml`` against ``dat/schemas/config.schema.yaml`` (package data) at parse time; these
dataclasses check again when a command is run by hand on a hand-written JSON, and parse fractions such as
``"8/255"`` to floats exactly once. Unknown keys and unknown names (``dat.registry``) raise ``ValueError`` naming
the key and the block.

Defaults have one source, the schema's ``default:`` entries, and the dataclass fields read theirs from it
(:func:`schema_default`). The schema and not the dataclasses, because Snakemake's ``validate`` writes the schema
defaults into the config while the DAG is built, so every resolved ``run.json``/``train.json`` shows the values a
run uses and the workflow needs no ``.get(key, fallback)``; the dataclasses then only see a default when a command
runs on a hand-written JSON. The few fields without a schema default keep one here, each for a stated reason: the
optional blocks and batch sizes (``None``: absent, or "the method's batch_size"), and ``betas``, ``milestones`` and
``augment.bce``, which only AdamW, a multistep schedule and a method with a second batch read (a schema default
would be written into the train.json of every other run as well), and the ``snapshots`` counts (the block may be
null, and Snakemake cannot fill defaults into a null block). Every name and number stays what it was; the
schema file is read once, at import, with PyYAML (no torch: the workflow imports this module).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from dat.registry import AUGMENTATIONS, CHAIN_STARTS, DIVERGENCE_ACTIONS, NORMS, OPTIMIZERS, PRECISIONS, SCHEDULES

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"  # package data


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


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The config schema (``dat/schemas/config.schema.yaml``, package data) as a dict."""
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


# the schema object (a path of keys below the schema's root) whose ``properties`` are each dataclass's fields
_SCHEMA_BLOCKS = {
    "TrainConfig": ("$defs", "method"),
    "AttackConfig": ("$defs", "attack"),
    "OptimizerConfig": ("$defs", "method", "properties", "optimizer"),
    "AugmentConfig": ("$defs", "method", "properties", "augment"),
    "BCEConfig": ("$defs", "method", "properties", "bce"),
    "RatioConfig": ("$defs", "method", "properties", "ratio"),
    "SGLDConfig": ("$defs", "method", "properties", "sgld"),
    "EBJDATConfig": ("$defs", "method", "properties", "ebjdat"),
    "SnapshotConfig": ("$defs", "method", "properties", "snapshots"),
}


def schema_properties(block: str) -> dict:
    """The schema's ``properties`` of the config block behind dataclass ``block`` (e.g. ``"BCEConfig"``)."""
    node = load_schema()
    for key in _SCHEMA_BLOCKS[block]:
        node = node[key]
    return node["properties"]


def schema_default(block: str, key: str) -> Any:
    """The schema's default of ``key`` in the block of dataclass ``block``: lists as tuples, fractions such as
    ``"4/255"`` parsed to floats (as :func:`_build` parses a configured value).

    Raises:
        KeyError: when the schema declares no default for that key.
    """
    value = schema_properties(block)[key]["default"]
    if key in _NUMBERS.get(block, ()):
        return parse_number(value, f"{block}.{key}")
    return tuple(value) if isinstance(value, list) else value


def _check_name(value: Any, names: tuple, key: str) -> None:
    """ValueError naming ``key`` when ``value`` is not one of ``names`` (a ``dat.registry`` tuple)."""
    if value not in names:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(names)}")


_NUMBERS = {
    "AttackConfig": ("eps", "step_size"),
    "BCEConfig": ("step_size",),
    "OptimizerConfig": ("lr", "weight_decay"),
    "RatioConfig": ("eps", "step_size"),
    "SGLDConfig": ("step_size", "noise_std", "data_noise"),
    "EBJDATConfig": ("attack_eps", "attack_step_size"),
}


def _build(cls, data: dict | None, where: str):
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and recursing into nested blocks."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in data]
    if required:
        raise ValueError(f"{where}: missing key(s) {required}")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get((cls.__name__, name))
        if nested is not None:
            value = None if value is None else _build(nested, value, f"{where}.{name}")
        elif name in _NUMBERS.get(cls.__name__, ()):
            value = parse_number(value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


_d = schema_default


@dataclass(frozen=True)
class AttackConfig:
    """PGD for adversarial training (paper Eq. 10): radius and step in pixel units of [0, 1] images."""

    norm: str = _d("AttackConfig", "norm")
    eps: float = _d("AttackConfig", "eps")
    step_size: float = _d("AttackConfig", "step_size")
    steps: int = _d("AttackConfig", "steps")
    random_start: bool = _d("AttackConfig", "random_start")

    def __post_init__(self) -> None:
        _check_name(self.norm, NORMS, "train.attack.norm")


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule. ``milestones`` are fractions of the total steps (multistep)."""

    name: str = _d("OptimizerConfig", "name")
    lr: float = _d("OptimizerConfig", "lr")
    momentum: float = _d("OptimizerConfig", "momentum")
    nesterov: bool = _d("OptimizerConfig", "nesterov")
    weight_decay: float = _d("OptimizerConfig", "weight_decay")
    betas: tuple = (0.9, 0.999)  # not in the schema: only AdamW reads it (torch's default)
    schedule: str = _d("OptimizerConfig", "schedule")
    milestones: tuple = ()  # not in the schema: only the multistep schedule reads it
    gamma: float = _d("OptimizerConfig", "gamma")
    warmup_steps: int = _d("OptimizerConfig", "warmup_steps")

    def __post_init__(self) -> None:
        _check_name(self.name, OPTIMIZERS, "train.optimizer.name")
        _check_name(self.schedule, SCHEDULES, "train.optimizer.schedule")


@dataclass(frozen=True)
class AugmentConfig:
    """Decoupled augmentation (paper Sec. 3.4): strong for the AT-CE branch, mild for the BCE branch."""

    at: tuple = _d("AugmentConfig", "at")
    bce: tuple = ("crop", "flip")  # not in the schema: only a method with a second batch (bce, ratio, sgld) reads it
    crop_padding: int = _d("AugmentConfig", "crop_padding")
    cutout_size: int = _d("AugmentConfig", "cutout_size")

    def __post_init__(self) -> None:
        for branch in ("at", "bce"):
            for name in getattr(self, branch):
                _check_name(name, AUGMENTATIONS, f"train.augment.{branch}")


def _check_auxiliary_images(init: str, ood_set: str | None, block: str) -> None:
    """The ``init``/``ood_set`` pair shared by DAT's chain starts and RATIO's out-batches; ValueError naming ``block``."""
    if init not in CHAIN_STARTS:
        raise ValueError(f"{block}.init: {init!r} is not a chain start ({', '.join(CHAIN_STARTS)})")
    if init == "ood" and not ood_set:
        raise ValueError(f"{block}.init: 'ood' needs {block}.ood_set (an OOD set name or file:<path>, see "
                         "dat.data.load_ood)")


@dataclass(frozen=True)
class BCEConfig:
    """The generative branch of stage 2 (paper Eq. 9 and Algorithm 1) and its curriculum on T.

    ``init`` picks the chain starts x0 of the contrastive samples: ``noise`` (uniform pixels, the default) or
    ``ood`` (images of the auxiliary set ``ood_set``, ``ood_images`` of them, with the BCE-branch augmentation).
    ``batch_size`` None is the method's batch_size.
    """

    weight: float = _d("BCEConfig", "weight")
    batch_size: int | None = None
    step_size: float = _d("BCEConfig", "step_size")
    initial_steps: int = _d("BCEConfig", "initial_steps")
    max_steps: int = _d("BCEConfig", "max_steps")
    increment: int = _d("BCEConfig", "increment")
    auc_threshold: float = _d("BCEConfig", "auc_threshold")
    window_images: int = _d("BCEConfig", "window_images")
    init: str = _d("BCEConfig", "init")
    ood_set: str | None = None
    ood_images: int = _d("BCEConfig", "ood_images")
    conditional: bool = _d("BCEConfig", "conditional")

    def __post_init__(self) -> None:
        _check_auxiliary_images(self.init, self.ood_set, "bce")


@dataclass(frozen=True)
class RatioConfig:
    """RATIO (Augustin et al. 2020): the out-distribution term and its attack (L2, pixel units). Out-distribution
    batches are uniform noise (``init: noise``) or images of the auxiliary set ``ood_set`` (``init: ood``)."""

    lam: float = _d("RatioConfig", "lam")
    eps: float = _d("RatioConfig", "eps")
    step_size: float = _d("RatioConfig", "step_size")
    steps: int = _d("RatioConfig", "steps")
    batch_size: int | None = None
    init: str = _d("RatioConfig", "init")
    ood_set: str | None = None
    ood_images: int = _d("RatioConfig", "ood_images")

    def __post_init__(self) -> None:
        _check_auxiliary_images(self.init, self.ood_set, "ratio")


@dataclass(frozen=True)
class SGLDConfig:
    """JEM's SGLD and replay buffer (Grathwohl et al. 2020), in [0, 1] pixel units: JEM's step 1.0, noise 0.01 and
    data noise 0.03 on [-1, 1] images are 0.25, 0.005 and 0.015 here. A sample energy beyond ``energy_limit`` in
    absolute value counts as divergence (training stops like a NaN loss, keeping the last good checkpoint)."""

    buffer_size: int = _d("SGLDConfig", "buffer_size")
    reinit: float = _d("SGLDConfig", "reinit")
    steps: int = _d("SGLDConfig", "steps")
    step_size: float = _d("SGLDConfig", "step_size")
    noise_std: float = _d("SGLDConfig", "noise_std")
    data_noise: float = _d("SGLDConfig", "data_noise")
    batch_size: int | None = None
    weight_px: float = _d("SGLDConfig", "weight_px")
    weight_pyx: float = _d("SGLDConfig", "weight_pyx")
    energy_limit: float = _d("SGLDConfig", "energy_limit")


@dataclass(frozen=True)
class EBJDATConfig:
    """EB-JDAT's extra terms and attack (weights of its JEM-variant code; attack Linf 4/255, 5 steps of 1/255 in
    pixel units, random start, projected unless ``attack_project`` is false as in the released code)."""

    weight_xadv: float = _d("EBJDATConfig", "weight_xadv")
    weight_pyxadv: float = _d("EBJDATConfig", "weight_pyxadv")
    attack_eps: float = _d("EBJDATConfig", "attack_eps")
    attack_step_size: float = _d("EBJDATConfig", "attack_step_size")
    attack_steps: int = _d("EBJDATConfig", "attack_steps")
    attack_norm: str = _d("EBJDATConfig", "attack_norm")
    attack_project: bool = _d("EBJDATConfig", "attack_project")

    def __post_init__(self) -> None:
        _check_name(self.attack_norm, NORMS, "train.ebjdat.attack_norm")


@dataclass(frozen=True)
class SnapshotConfig:
    """Weights saved along training for paper Figure 4 (``dat.eval_snapshots`` measures them)."""

    every_steps: int
    # not in the schema: the block may be null, and Snakemake's validate cannot fill defaults into a null block
    n_pgd: int = 500
    n_samples: int = 200

    def __post_init__(self) -> None:
        for key in ("every_steps", "n_pgd", "n_samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.snapshots.{key}: {getattr(self, key)} is below 1")


@dataclass(frozen=True)
class TrainConfig:
    """One training stage. ``bce`` is None for stage 1 (standard AT) and set for stage 2 (DAT)."""

    batch_size: int
    epochs: float | None = None
    steps: int | None = None
    weight_ce: float = _d("TrainConfig", "weight_ce")
    freeze_batchnorm: bool = _d("TrainConfig", "freeze_batchnorm")
    ema_decay: float | None = _d("TrainConfig", "ema_decay")
    ema_warmup: bool = _d("TrainConfig", "ema_warmup")
    attack: AttackConfig = field(default_factory=AttackConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    bce: BCEConfig | None = None
    ratio: RatioConfig | None = None
    sgld: SGLDConfig | None = None
    ebjdat: EBJDATConfig | None = None
    log_every: int = _d("TrainConfig", "log_every")
    ckpt_every_steps: int = _d("TrainConfig", "ckpt_every_steps")
    ckpt_every_minutes: float | None = _d("TrainConfig", "ckpt_every_minutes")
    precision: str = _d("TrainConfig", "precision")
    channels_last: bool = _d("TrainConfig", "channels_last")
    compile: bool = _d("TrainConfig", "compile")
    compile_backend: str = _d("TrainConfig", "compile_backend")
    num_workers: int = _d("TrainConfig", "num_workers")
    on_divergence: str = _d("TrainConfig", "on_divergence")
    snapshots: SnapshotConfig | None = None

    def __post_init__(self) -> None:
        _check_name(self.on_divergence, DIVERGENCE_ACTIONS, "train.on_divergence")
        if sum(b is not None for b in (self.bce, self.ratio, self.sgld)) > 1:
            raise ValueError("train: give at most one of bce (DAT), ratio (RATIO), sgld (JEM / EB-JDAT)")
        if self.ebjdat is not None and self.sgld is None:
            raise ValueError("train.ebjdat needs the sgld block (EB-JDAT builds on JEM's sampler)")
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers: {self.num_workers} is negative")
        _check_name(self.precision, PRECISIONS, "train.precision")
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
# What only the evaluation of a run reads: its ``sampling`` and ``evaluate`` blocks and these keys of its dataset
# block. The workflow leaves them out of the data and training configs (results/data/{dataset}/dataset.json,
# results/{run}/train.json), so that changing a sample count, an OOD set (or its folder) or a counterfactual radius
# re-runs the evaluations and never data preparation or training. OOD folders (ood_roots) reach the jobs that read
# them as `dat.prepare ood --root`; the auxiliary set of a run's chain starts through its own prepare_aux_ood job,
# whose output training reads.
EVALUATION_KEYS = ("sampling", "evaluate")
EVALUATION_DATASET_KEYS = ("threat_model", "sampling_step_size", "ood_eps", "counterfactual_radii", "ood_sets", "n_ood",
                           "ood_roots")


def training_view(run: dict) -> dict:
    """The part of a resolved run config (``run.json``) that determines its training: the run without
    ``EVALUATION_KEYS`` and without ``EVALUATION_DATASET_KEYS`` in its dataset block. A ``train.json`` is its own
    training view, so checkpoints written under either file compare equal."""
    out = {k: v for k, v in run.items() if k not in EVALUATION_KEYS}
    if isinstance(out.get("dataset"), dict):
        out["dataset"] = {k: v for k, v in out["dataset"].items() if k not in EVALUATION_DATASET_KEYS}
    return out


def deep_merge(base: dict, override: dict | None) -> dict:
    """A copy of ``base`` with the keys of ``override`` set, recursing where both hold a mapping: the one merge of
    the workflow, for a dataset's ``sampling``/``evaluate`` overrides and a run's ``train_overrides``. Any other
    value (a list, a number, None) replaces the base value whole; ``base`` and ``override`` are not modified.
    """
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def threat_model(dataset: dict) -> tuple[str, float]:
    """(norm, eps) of a dataset block's ``threat_model``, with eps parsed to a float."""
    tm = dataset["threat_model"]
    return tm["norm"], parse_number(tm["eps"], "threat_model.eps")
