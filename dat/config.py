"""Typed, frozen views of one run's hyperparameters, built from the run JSON that the workflow writes.

The workflow validates ``config.yaml`` against ``dat/schemas/config.schema.yaml`` (package data) at parse time; these
dataclasses check again when a command is run by hand on a hand-written JSON, and parse fractions such as
``"8/255"`` to floats exactly once. Unknown keys and unknown names (``dat.registry``) raise ``ValueError`` naming
the key and the block.

Defaults have one source, the schema's ``default:`` entries, and the dataclass fields read theirs from it
(:func:`schema_default`). The schema and not the dataclasses, because the workflow's validation
(:func:`dat.resolve.validate`) writes the schema defaults into the config while the DAG is built, so every resolved
``run.json``/``train.json`` shows the values a run uses and the workflow needs no ``.get(key, fallback)``; the dataclasses then only see a default when a command
runs on a hand-written JSON. The few fields without a schema default keep one here, each for a stated reason: the
optional blocks and batch sizes (``None``: absent, or "the method's batch_size"), and ``betas``, ``milestones`` and
``augment.bce``, which only AdamW, a multistep schedule and a method with a second batch read (a schema default
would be written into the train.json of every other run as well), and the ``snapshots`` counts (the block may be
null, and no default can be filled into a null block). Every name and number stays what it was; the
schema file is read once, at import, with PyYAML (no torch: the workflow imports this module).

Training reads :class:`TrainConfig`; sampling and evaluation read :class:`RunConfig` (``RunConfig.read`` of the run
JSON), whose ``dataset``, ``sampling`` and ``evaluate`` are :class:`DatasetConfig`, :class:`SamplingConfig` and
:class:`EvaluateConfig`; data preparation reads :class:`DatasetConfig` of ``dataset.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from dat.registry import (ALL_OOD_SETS, AUGMENTATIONS, AUTOATTACK_VERSIONS, CHAIN_STARTS, CHANNELS, CHECKPOINTS,
                          DIVERGENCE_ACTIONS, FID_EXTRACTORS, FILLS, INTERPOLATIONS, NORMS, OPTIMIZERS, PRECISIONS,
                          ROOTED_OOD_SETS, SAMPLING_STARTS, SCHEDULES, SOURCES, WEIGHTS)

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
    "DatasetConfig": ("properties", "datasets", "additionalProperties"),
    "ThreatModel": ("properties", "datasets", "additionalProperties", "properties", "threat_model"),
    "SamplingConfig": ("properties", "sampling"),
    "EvaluateConfig": ("properties", "evaluate"),
    "PGDConfig": ("properties", "evaluate", "properties", "pgd"),
    "AutoAttackConfig": ("properties", "evaluate", "properties", "autoattack"),
    "FIDConfig": ("properties", "evaluate", "properties", "fid"),
    "InceptionScoreConfig": ("properties", "evaluate", "properties", "fid", "properties", "inception_score"),
    "OODEvalConfig": ("properties", "evaluate", "properties", "ood"),
    "ECEConfig": ("properties", "evaluate", "properties", "ece"),
    "CounterfactualConfig": ("properties", "evaluate", "properties", "counterfactual"),
    "IntervalConfig": ("properties", "evaluate", "properties", "intervals"),
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
        return _numbers(value, f"{block}.{key}")
    return tuple(value) if isinstance(value, list) else value


def _check_name(value: Any, names: tuple, key: str) -> None:
    """ValueError naming ``key`` when ``value`` is not one of ``names`` (a ``dat.registry`` tuple)."""
    if value not in names:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(map(str, names))}")


_NUMBERS = {
    "AttackConfig": ("eps", "step_size"),
    "BCEConfig": ("step_size",),
    "OptimizerConfig": ("lr", "weight_decay"),
    "RatioConfig": ("eps", "step_size"),
    "SGLDConfig": ("step_size", "noise_std", "data_noise"),
    "EBJDATConfig": ("attack_eps", "attack_step_size"),
    "DatasetConfig": ("mean", "std", "sampling_step_size", "ood_eps", "counterfactual_radii"),
}
# list fields kept as tuples (a frozen view holds no mutable list); those of _NUMBERS become tuples of floats
_TUPLES = {"DatasetConfig": ("ood_sets",), "SamplingConfig": ("steps_grid",)}


def _numbers(value: Any, key: str) -> float | tuple:
    """:func:`parse_number` of ``value``, or of each item of a list (a tuple of floats); ValueError naming ``key``."""
    if isinstance(value, (list, tuple)):
        return tuple(parse_number(v, f"{key}[{i}]") for i, v in enumerate(value))
    return parse_number(value, key)


def _key(where: str, name: str) -> str:
    """The dotted path of key ``name`` in block ``where`` (``""``: the top level of a run JSON)."""
    return f"{where}.{name}" if where else name


def _build(cls, data: dict | None, where: str):
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and recursing into nested blocks (its
    ``init`` fields are the keys; the others are derived)."""
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{where or 'run'}: expected a mapping, got {data!r}")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where or 'run'}: unknown key(s) {', '.join(_key(where, k) for k in unknown)}; "
                         f"allowed: {sorted(fields)}")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in data]
    if required:
        raise ValueError(f"{where or 'run'}: missing key(s) {required}")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get((cls.__name__, name))
        if nested is not None:
            value = None if value is None else _build(nested, value, _key(where, name))
        elif name in _NUMBERS.get(cls.__name__, ()):
            value = _numbers(value, _key(where, name))
        elif name in _TUPLES.get(cls.__name__, ()) and isinstance(value, list):
            value = tuple(value)
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
    # not in the schema's defaults, so that a block without them resolves to the train.json it always had
    momentum: float = 0.0
    best_iterate: bool = False

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
    fill: str = "zero"  # not a schema default (train.json keeps its keys when absent); ``mean``: RATIO's fills
    ood: tuple | None = None  # auxiliary OOD images (chain starts, RATIO's out-batches); None: as ``bce``

    def __post_init__(self) -> None:
        _check_name(self.fill, FILLS, "train.augment.fill")
        for branch in ("at", "bce", "ood"):
            for name in getattr(self, branch) or ():
                _check_name(name, AUGMENTATIONS, f"train.augment.{branch}")

    @property
    def ood_images(self) -> tuple:
        """The augmentation of the auxiliary OOD stream: ``ood`` when given, else the BCE branch's."""
        return self.bce if self.ood is None else self.ood


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


@dataclass(frozen=True)
class ThreatModel:
    """The evaluation threat model of a dataset (robust accuracy, Figure 4): ``norm`` L2 or Linf and radius ``eps``
    in pixel units of [0, 1] images (L2: over all C*H*W pixels), a fraction such as ``"8/255"`` parsed to a float.
    ``eps_str`` is the configured text (``str`` of the YAML value), which robust.json records beside ``eps``."""

    norm: str
    eps: float
    eps_str: str = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.norm, NORMS, "dataset.threat_model.norm")
        object.__setattr__(self, "eps_str", str(self.eps))
        object.__setattr__(self, "eps", parse_number(self.eps, "dataset.threat_model.eps"))


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset block: ``dataset`` of a run JSON, or the data-preparation view results/data/{dataset}/dataset.json,
    which leaves out :data:`EVALUATION_DATASET_KEYS` (then ``threat_model``, ``sampling_step_size``, ``ood_eps`` and
    ``counterfactual_radii`` are None, the others their defaults). Images are ``image_size`` pixels square with
    ``channels`` channels; ``mean``/``std`` normalise [0, 1] pixels inside the model; ``sampling_step_size`` (eta of
    test-time sampling), ``ood_eps`` (adversarial OOD radius) and ``counterfactual_radii`` are L2, pixel units.
    ``ood_roots`` maps a dataset or folder OOD set to its folder (``{}``: none given)."""

    name: str
    source: str
    root: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple
    std: tuple
    download: bool = _d("DatasetConfig", "download")
    crop_fraction: float = _d("DatasetConfig", "crop_fraction")
    test_interpolation: str = "bilinear"  # not a schema default: dataset.json keeps its keys when absent
    n_train: int | None = _d("DatasetConfig", "n_train")
    subset_seed: int = _d("DatasetConfig", "subset_seed")
    ood_sets: tuple = _d("DatasetConfig", "ood_sets")
    ood_roots: dict = field(default_factory=dict)  # no schema default: {} gives no folder
    n_ood: int = _d("DatasetConfig", "n_ood")
    # evaluation keys: required by the schema, absent from dataset.json (RunConfig checks them)
    threat_model: ThreatModel | None = None
    sampling_step_size: float | None = None
    ood_eps: float | None = None
    counterfactual_radii: tuple | None = None

    def __post_init__(self) -> None:
        _check_name(self.source, SOURCES, "dataset.source")
        _check_name(self.channels, CHANNELS, "dataset.channels")
        _check_name(self.test_interpolation, INTERPOLATIONS, "dataset.test_interpolation")
        for name in self.ood_sets:
            _check_name(name, ALL_OOD_SETS, "dataset.ood_sets")
        for name in self.ood_roots or {}:
            _check_name(name, ROOTED_OOD_SETS, "dataset.ood_roots")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"dataset.mean/std: need {self.channels} values (channels), got {self.mean}, {self.std}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "dataset") -> "DatasetConfig":
        """Raises ValueError naming the key path below ``where`` (an unknown or missing key, a name, a number)."""
        return _build(cls, data, where)

    @classmethod
    def read(cls, path: str | Path) -> "DatasetConfig":
        """The dataset JSON at ``path``; ValueError naming the file when it is no valid dataset block."""
        return _read(cls, path)


@dataclass(frozen=True)
class SamplingConfig:
    """Test-time sampling (paper Table 8): the grid of step counts T searched by the FID of ``n_grid`` held-out
    samples, ``n_final`` class-balanced samples for FID/IS, the seeds of the grid, final and weight-snapshot chains
    (distinct, so no chain is reused), ``batch_size`` chains at once, and the chain starts ``init``: noise (uniform
    pixels), train (the run's auxiliary set: :attr:`RunConfig.chain_source`) or ood (``ood_images`` training images
    of ``ood_set``). The step size is the dataset's ``sampling_step_size``."""

    steps_grid: tuple
    n_grid: int
    n_final: int
    seed_grid: int = _d("SamplingConfig", "seed_grid")
    seed_final: int = _d("SamplingConfig", "seed_final")
    seed_snapshots: int = _d("SamplingConfig", "seed_snapshots")
    conditional: bool = _d("SamplingConfig", "conditional")
    init: str = _d("SamplingConfig", "init")
    ood_set: str | None = None  # not in the schema: only init ood reads it
    ood_images: int = _d("SamplingConfig", "ood_images")
    batch_size: int = _d("SamplingConfig", "batch_size")

    def __post_init__(self) -> None:
        if not self.steps_grid:
            raise ValueError("sampling.steps_grid: give at least one T")
        _check_name(self.init, SAMPLING_STARTS, "sampling.init")
        if self.init == "ood" and not self.ood_set:
            raise ValueError("sampling.init: 'ood' needs sampling.ood_set")

    @classmethod
    def from_dict(cls, data: dict, where: str = "sampling") -> "SamplingConfig":
        return _build(cls, data, where)


# The counts below default to None, the schema's null ("all"): it declares no default, so a run JSON may lack them.
@dataclass(frozen=True)
class PGDConfig:
    """L2/Linf PGD of the robust accuracy (our upper bound beside AutoAttack): ``steps`` steps of
    ``step_size_factor * eps / steps`` (eps: the dataset's threat model), zero start, on ``n_examples`` test images."""

    steps: int = _d("PGDConfig", "steps")
    step_size_factor: float = _d("PGDConfig", "step_size_factor")
    n_examples: int | None = None


@dataclass(frozen=True)
class AutoAttackConfig:
    """AutoAttack (Croce & Hein 2020, pyautoattack) ``version`` on ``n_examples`` test images, ``batch_size`` at once."""

    version: str = _d("AutoAttackConfig", "version")
    n_examples: int | None = None
    batch_size: int = _d("AutoAttackConfig", "batch_size")

    def __post_init__(self) -> None:
        _check_name(self.version, AUTOATTACK_VERSIONS, "evaluate.autoattack.version")


@dataclass(frozen=True)
class InceptionScoreConfig:
    """The Inception Score network: the TF Inception-v3 weights at ``weights`` (sha256 ``sha256``, a full digest or a
    prefix of >= 8 hex digits; downloaded from ``url`` by the workflow), used when ``enabled``."""

    enabled: bool
    weights: str = _d("InceptionScoreConfig", "weights")
    url: str | None = _d("InceptionScoreConfig", "url")
    sha256: str = _d("InceptionScoreConfig", "sha256")


@dataclass(frozen=True)
class FIDConfig:
    """FID features (``extractor``), the reference size ``n_ref`` (training images) and the optional IS block
    (None: IS is n/a)."""

    n_ref: int | None = None
    extractor: str = _d("FIDConfig", "extractor")
    inception_score: InceptionScoreConfig | None = None

    def __post_init__(self) -> None:
        _check_name(self.extractor, FID_EXTRACTORS, "evaluate.fid.extractor")


@dataclass(frozen=True)
class OODEvalConfig:
    """OOD detection (paper Tables 10-12): ``n_in`` test images, ``n_out`` per OOD set, adversarial L2 PGD of
    ``steps`` steps of ``step_size_factor * ood_eps / steps`` (ood_eps: the dataset's, pixel units)."""

    n_in: int | None = None
    n_out: int = _d("OODEvalConfig", "n_out")
    steps: int = _d("OODEvalConfig", "steps")
    step_size_factor: float = _d("OODEvalConfig", "step_size_factor")


@dataclass(frozen=True)
class ECEConfig:
    """Expected calibration error over ``n_bins`` equal-width confidence bins."""

    n_bins: int = _d("ECEConfig", "n_bins")


@dataclass(frozen=True)
class CounterfactualConfig:
    """Counterfactuals (paper Figure 1): ``n_images`` training images (None: all) drawn with ``seed``, targeted L2
    PGD of ``steps`` steps of ``step_size_factor * eps / steps`` at each of the dataset's radii (pixel units)."""

    n_images: int | None = None
    steps: int = _d("CounterfactualConfig", "steps")
    step_size_factor: float = _d("CounterfactualConfig", "step_size_factor")
    seed: int = _d("CounterfactualConfig", "seed")


@dataclass(frozen=True)
class IntervalConfig:
    """Intervals of the single-run numbers: confidence ``level`` of every interval; ``n_resamples`` bootstrap
    resamples drawn from ``numpy.random.default_rng(seed)``, a fresh Generator per interval; ``fid_groups`` groups
    of the FID's delete-a-group jackknife (``dat.metrics.fid_jackknife``), split by the same seed."""

    level: float = _d("IntervalConfig", "level")
    n_resamples: int = _d("IntervalConfig", "n_resamples")
    seed: int = _d("IntervalConfig", "seed")
    fid_groups: int = _d("IntervalConfig", "fid_groups")


@dataclass(frozen=True)
class EvaluateConfig:
    """What every evaluation of a run measures: its ``weights`` (ema or raw) of the ``checkpoint`` (final, or the
    best-FID weight snapshot), ``batch_size`` images at once, ``n_clean`` test images (None: all) for clean accuracy
    and ECE, and the blocks of each evaluation."""

    weights: str = _d("EvaluateConfig", "weights")
    checkpoint: str = _d("EvaluateConfig", "checkpoint")
    batch_size: int = _d("EvaluateConfig", "batch_size")
    n_clean: int | None = None
    # required blocks of a config (Snakemake fills their defaults); a hand-written JSON may leave one out
    pgd: PGDConfig = field(default_factory=PGDConfig)
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)
    fid: FIDConfig = field(default_factory=FIDConfig)
    ood: OODEvalConfig = field(default_factory=OODEvalConfig)
    ece: ECEConfig = field(default_factory=ECEConfig)
    counterfactual: CounterfactualConfig = field(default_factory=CounterfactualConfig)
    intervals: IntervalConfig = field(default_factory=IntervalConfig)

    def __post_init__(self) -> None:
        _check_name(self.weights, WEIGHTS, "evaluate.weights")
        _check_name(self.checkpoint, CHECKPOINTS, "evaluate.checkpoint")

    @classmethod
    def from_dict(cls, data: dict, where: str = "evaluate") -> "EvaluateConfig":
        return _build(cls, data, where)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run's commands read: results/{run}/run.json as the workflow writes it (``model`` stays the
    dict of ``models.<name>`` without its label; ``init_from`` a run name, a published checkpoint block or None).
    ``raw`` is the dict it was built from (None when built by hand), for what must be stored verbatim
    (:func:`training_view`)."""

    run: str
    method: str
    seed: int
    dataset: DatasetConfig
    model: dict
    train: TrainConfig
    sampling: SamplingConfig
    evaluate: EvaluateConfig
    init_from: str | dict | None = None
    raw: dict | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        missing = [k for k in ("threat_model", "sampling_step_size", "ood_eps", "counterfactual_radii")
                   if getattr(self.dataset, k) is None]
        if missing:
            raise ValueError(f"dataset: missing key(s) {missing} (a run's dataset block holds its evaluation keys)")

    @property
    def chain_source(self) -> str:
        """Where the test-time chains start, the ``starts`` that grid.json and fid.json record
        (:func:`dat.report_spec.chain_source` of the raw sampling and method blocks)."""
        from dat.report_spec import chain_source  # dat.report_spec imports this module

        return chain_source(self.raw["sampling"], self.raw["train"])

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """Raises ValueError naming the key path (``evaluate.pgd: unknown key(s) evaluate.pgd.stepz; ...``)."""
        run = _build(cls, copy.deepcopy(data), "")
        object.__setattr__(run, "raw", copy.deepcopy(data))
        return run

    @classmethod
    def read(cls, path: str | Path) -> "RunConfig":
        """The run JSON at ``path``; ValueError naming the file when it is no valid run config."""
        return _read(cls, path)


def _read(cls, path: str | Path):
    """``cls.from_dict`` of the JSON file at ``path``, with ``path`` at the head of a ValueError's message
    (invalid JSON included); FileNotFoundError when it is missing."""
    try:
        return cls.from_dict(json.loads(Path(path).read_text()))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


_NESTED = {
    ("TrainConfig", "attack"): AttackConfig,
    ("TrainConfig", "optimizer"): OptimizerConfig,
    ("TrainConfig", "augment"): AugmentConfig,
    ("TrainConfig", "bce"): BCEConfig,
    ("TrainConfig", "ratio"): RatioConfig,
    ("TrainConfig", "sgld"): SGLDConfig,
    ("TrainConfig", "ebjdat"): EBJDATConfig,
    ("TrainConfig", "snapshots"): SnapshotConfig,
    ("DatasetConfig", "threat_model"): ThreatModel,
    ("EvaluateConfig", "pgd"): PGDConfig,
    ("EvaluateConfig", "autoattack"): AutoAttackConfig,
    ("EvaluateConfig", "fid"): FIDConfig,
    ("EvaluateConfig", "ood"): OODEvalConfig,
    ("EvaluateConfig", "ece"): ECEConfig,
    ("EvaluateConfig", "counterfactual"): CounterfactualConfig,
    ("EvaluateConfig", "intervals"): IntervalConfig,
    ("FIDConfig", "inception_score"): InceptionScoreConfig,
    ("RunConfig", "dataset"): DatasetConfig,
    ("RunConfig", "train"): TrainConfig,
    ("RunConfig", "sampling"): SamplingConfig,
    ("RunConfig", "evaluate"): EvaluateConfig,
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


def auxiliary_block(method: dict) -> dict:
    """The block of a method dict (``train_overrides`` merged) whose ``init``/``ood_set`` choose the second batch's
    auxiliary images: DAT's ``bce`` or RATIO's ``ratio``; ``{}`` for any other method (the dict form of
    :attr:`TrainConfig.aux`, for code that holds the raw block: the workflow's resolution, the chain source)."""
    return method.get("bce") or method.get("ratio") or {}

