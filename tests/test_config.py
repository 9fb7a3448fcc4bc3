"""Config declarations: every schema enum equals its dat.registry tuple, every default is declared once (the schema's,
read by dat.config), the workflow's imports never load torch, and the resolved training configs of every run of the
three shipped configs are what tests/config/train_json.sha256.json records (a change there retrains a workspace).

After a deliberate change of a resolved training config, rewrite the record with
``python tests/test_config.py --update`` and say in the commit which runs retrain."""

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dat import config as cfg_lib
from dat import registry

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "dat" / "schemas" / "config.schema.yaml"
CONFIGS = ("config.yaml", "config/smoke.yaml", "tests/config/micro.yaml")
TRAIN_JSON_RECORD = REPO / "tests" / "config" / "train_json.sha256.json"

# JSON path of each enum in the schema (array items and $defs resolved by hand) -> its registry tuple
ENUMS = {
    "$defs.attack.properties.norm": registry.NORMS,
    "$defs.method.properties.augment.properties.fill": registry.FILLS,
    "$defs.augmentation": registry.AUGMENTATIONS,
    "$defs.method.properties.optimizer.properties.name": registry.OPTIMIZERS,
    "$defs.method.properties.optimizer.properties.schedule": registry.SCHEDULES,
    "$defs.method.properties.bce.properties.init": registry.CHAIN_STARTS,
    "$defs.method.properties.ratio.properties.init": registry.CHAIN_STARTS,
    "$defs.method.properties.ebjdat.properties.attack_norm": registry.NORMS,
    "$defs.method.properties.precision": registry.PRECISIONS,
    "$defs.method.properties.on_divergence": registry.DIVERGENCE_ACTIONS,
    "properties.datasets.additionalProperties.properties.source": registry.SOURCES,
    "properties.datasets.additionalProperties.properties.channels": registry.CHANNELS,
    "properties.datasets.additionalProperties.properties.ood_sets.items": registry.ALL_OOD_SETS,
    "properties.datasets.additionalProperties.properties.threat_model.properties.norm": registry.NORMS,
    "properties.datasets.additionalProperties.properties.test_interpolation": registry.INTERPOLATIONS,
    "properties.models.additionalProperties.properties.arch": registry.ARCHITECTURES,
    "properties.models.additionalProperties.properties.kwargs.properties.norm": registry.WIDE_RESNET_NORMS,
    "properties.runs.additionalProperties.properties.init_from.oneOf.1.properties.format": registry.INIT_FORMATS,
    "properties.sampling.properties.init": registry.SAMPLING_STARTS,
    # if_present blocks (dat.resolve.Resolved._if_present): their set is one read from a folder (ood_roots)
    "$defs.aux_if_present.properties.init": registry.CHAIN_STARTS,
    "$defs.aux_if_present.properties.ood_set": registry.ROOTED_OOD_SETS,
    "properties.sampling.properties.if_present.properties.init": registry.SAMPLING_STARTS,
    "properties.sampling.properties.if_present.properties.ood_set": registry.ROOTED_OOD_SETS,
    "properties.evaluate.properties.weights": registry.WEIGHTS,
    "properties.evaluate.properties.checkpoint": registry.CHECKPOINTS,
    "properties.evaluate.properties.autoattack.properties.version": registry.AUTOATTACK_VERSIONS,
    "properties.evaluate.properties.fid.properties.extractor": registry.FID_EXTRACTORS,
    "properties.tables.additionalProperties.properties.kind": registry.TABLE_KINDS,
    "properties.cpu_kernels": tuple(registry.CPU_KERNEL_ENV),
}
# dataclass fields whose default lives in dat.config, not in the schema (the reasons are in dat.config's docstring)
DATACLASS_ONLY_DEFAULTS = {
    ("TrainConfig", "epochs"), ("TrainConfig", "steps"), ("TrainConfig", "attack"), ("TrainConfig", "optimizer"),
    ("TrainConfig", "augment"), ("TrainConfig", "bce"), ("TrainConfig", "ratio"), ("TrainConfig", "sgld"),
    ("TrainConfig", "ebjdat"), ("TrainConfig", "snapshots"),
    ("OptimizerConfig", "betas"), ("OptimizerConfig", "milestones"), ("AugmentConfig", "bce"),
    ("BCEConfig", "batch_size"), ("BCEConfig", "ood_set"), ("RatioConfig", "batch_size"), ("RatioConfig", "ood_set"),
    ("SGLDConfig", "batch_size"), ("SnapshotConfig", "n_pgd"), ("SnapshotConfig", "n_samples"),
    # RATIO's ArgminPGD and mean fills (issue 21 item 7): absent from a block, its train.json stays what it was
    ("AttackConfig", "momentum"), ("AttackConfig", "best_iterate"), ("AugmentConfig", "fill"),
    # the OOD images' own augmentation (issue 21 item 3): absent, the starts take the bce list as before
    ("AugmentConfig", "ood"),
}
DATACLASSES = (cfg_lib.TrainConfig, cfg_lib.AttackConfig, cfg_lib.OptimizerConfig, cfg_lib.AugmentConfig,
               cfg_lib.BCEConfig, cfg_lib.RatioConfig, cfg_lib.SGLDConfig, cfg_lib.EBJDATConfig, cfg_lib.SnapshotConfig)


def _enums(node, path=""):
    """(JSON path, enum list) of every enum below ``node``."""
    if isinstance(node, dict):
        if "enum" in node:
            yield path.lstrip("."), node["enum"]
        for key, value in node.items():
            yield from _enums(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _enums(value, f"{path}.{i}")


def test_every_schema_enum_is_its_registry_tuple():
    found = dict(_enums(cfg_lib.load_schema()))
    assert set(found) == set(ENUMS), "an enum of the schema without a registry tuple here, or one that went away"
    for path, names in found.items():
        assert tuple(names) == ENUMS[path], f"{path}: schema {names} != dat.registry {ENUMS[path]}"


def test_ood_set_names_and_roots_follow_the_registry():
    method = cfg_lib.load_schema()["$defs"]["method"]["properties"]
    for block in ("bce", "ratio"):
        pattern = method[block]["properties"]["ood_set"]["pattern"]
        names = re.fullmatch(r"\^\((.*)\|\((.*)\):\.\+\)\$", pattern)
        assert names, pattern
        assert tuple(names.group(1).split("|")) == registry.ALL_OOD_SETS
        assert tuple(names.group(2).split("|")) == registry.FILE_OOD_PREFIXES
    sampling = cfg_lib.load_schema()["properties"]["sampling"]["properties"]["ood_set"]["pattern"]
    assert sampling == method["bce"]["properties"]["ood_set"]["pattern"]  # the test-time chain source (init ood)
    dataset = cfg_lib.load_schema()["properties"]["datasets"]["additionalProperties"]["properties"]
    assert tuple(dataset["ood_roots"]["properties"]) == registry.ROOTED_OOD_SETS


def test_library_dispatch_covers_exactly_the_registry():
    import torch

    from dat import checkpoint, data, models

    assert tuple(models.MODELS) == registry.ARCHITECTURES
    assert checkpoint.INIT_FORMATS is registry.INIT_FORMATS and data.AUGMENTATIONS is registry.AUGMENTATIONS
    image = torch.rand(3, 32, 32)
    for name in registry.AUGMENTATIONS:  # every name builds, and keeps shape and range
        out = data.build_transform([name], 32)(image)
        assert out.shape == image.shape and 0 <= float(out.min()) and float(out.max()) <= 1, name
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        data.build_transform(["mixup"], 32)


# schema properties that dat.resolve resolves away before any JSON a command reads is written: no dataclass field
RESOLVED_AWAY = {"BCEConfig": {"if_present"}, "RatioConfig": {"if_present"}}


def test_defaults_are_declared_once():
    for cls in DATACLASSES:
        props = {k: v for k, v in cfg_lib.schema_properties(cls.__name__).items()
                 if k not in RESOLVED_AWAY.get(cls.__name__, ())}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(fields) == set(props), f"{cls.__name__}: dataclass fields != schema properties"
        for name, f in fields.items():
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if "default" in props[name]:
                assert f.default == cfg_lib.schema_default(cls.__name__, name), f"{cls.__name__}.{name}"
            elif (cls.__name__, name) not in DATACLASS_ONLY_DEFAULTS:
                assert not has_default, f"{cls.__name__}.{name}: give its default in the schema"


def test_fraction_defaults_are_parsed_and_names_are_checked():
    assert cfg_lib.EBJDATConfig().attack_eps == 4 / 255  # schema default "4/255"
    with pytest.raises(ValueError, match="train.optimizer.schedule: 'step' is not one of cosine"):
        cfg_lib.TrainConfig.from_dict({"batch_size": 8, "steps": 1, "optimizer": {"schedule": "step"}})
    with pytest.raises(ValueError, match="train.augment.bce: 'mixup'"):
        cfg_lib.TrainConfig.from_dict({"batch_size": 8, "steps": 1, "augment": {"bce": ["crop", "mixup"]}})
    with pytest.raises(ValueError, match=r"train: missing key\(s\) \['batch_size'\]"):
        cfg_lib.TrainConfig.from_dict({"steps": 1})


def test_deep_merge_recurses_into_mappings_only():
    base = {"bce": {"max_steps": 50, "init": "noise"}, "augment": {"at": ["crop"], "bce": ["crop", "flip"]}, "x": 1}
    out = cfg_lib.deep_merge(base, {"bce": {"max_steps": 40}, "augment": {"bce": ["none"]}, "ema_decay": None})
    assert out == {"bce": {"max_steps": 40, "init": "noise"}, "augment": {"at": ["crop"], "bce": ["none"]}, "x": 1,
                   "ema_decay": None}
    assert base["bce"]["max_steps"] == 50 and base["augment"]["bce"] == ["crop", "flip"]  # inputs untouched
    assert cfg_lib.deep_merge(base, None) == base and cfg_lib.deep_merge(base, {"bce": None})["bce"] is None


def _workflow_imports():
    """The dat modules that the Snakefile and the rule files import (what building the DAG loads)."""
    modules = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        modules |= set(re.findall(r"^\s*from (dat(?:\.\w+)*) import", text, re.M))
        modules |= set(re.findall(r"^\s*import (dat(?:\.\w+)*)", text, re.M))
        modules |= {f"dat.{m}" for m in re.findall(r"^\s*from dat import (\w+)", text, re.M)}
    return sorted(modules)


def test_building_the_dag_never_imports_torch():
    modules = _workflow_imports()
    assert "dat.resolve" in modules and "dat.io" in modules
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "import dat.config\ndat.config.load_schema()\n"
            + "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'numpy') if m in sys.modules)\n"
            + "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def resolved_train_configs(configfile: str, tmp_path: Path) -> dict[str, str]:
    """run -> the content of results/{run}/train.json (json.dumps(train_cfg(run), sort_keys=True)), as the workflow
    resolves it from ``configfile``."""
    out = tmp_path / f"{configfile.replace('/', '_')}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAT_DUMP_TRAIN_CONFIGS": str(out)}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "tests/config/dump_train_configs.smk"),
                           "--configfile", str(REPO / configfile), "--directory", str(tmp_path), "--list-rules"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("configfile", CONFIGS)
def test_resolved_training_configs_are_unchanged(configfile, tmp_path):
    """A refactor of the config resolution (defaults, merges) must leave every train.json as it was: training reruns
    exactly when that file changes."""
    record = json.loads(TRAIN_JSON_RECORD.read_text())[configfile]
    resolved = resolved_train_configs(configfile, tmp_path)
    assert set(resolved) == set(record), "runs added or removed: update the record (see the module docstring)"
    changed = {run: json.loads(text) for run, text in resolved.items() if _sha(text) != record[run]}
    assert not changed, f"resolved train.json changed (these runs retrain): {json.dumps(changed, indent=1)[:6000]}"


if __name__ == "__main__":  # python tests/test_config.py --update
    import tempfile

    assert sys.argv[1:] == ["--update"], __doc__
    with tempfile.TemporaryDirectory() as tmp:
        TRAIN_JSON_RECORD.write_text(json.dumps(
            {c: {run: _sha(text) for run, text in sorted(resolved_train_configs(c, Path(tmp)).items())} for c in CONFIGS},
            indent=1) + "\n")
    print(f"wrote {TRAIN_JSON_RECORD}")


def test_paper_grids_contain_the_papers_chosen_steps():
    """The grid search can only choose a T it tries: each paper-scale grid holds paper Table 8's optimum for its
    dataset (CIFAR-10 33, CIFAR-100 32, RestrictedImageNet 13) and the low T that the paper's other optima reach
    (12, 13, 22, 31)."""
    import yaml

    paper = yaml.safe_load((REPO / "config.yaml").read_text())

    def grid(dataset):
        return set((paper["datasets"][dataset].get("sampling") or {}).get("steps_grid", paper["sampling"]["steps_grid"]))

    assert 33 in grid("cifar10") and 32 in grid("cifar100") and 13 in grid("rimagenet")
    assert {12, 13, 22, 31} <= grid("cifar10") == grid("cifar100")
    assert min(grid("cifar10")) <= 10


def test_ood_folders_and_inception_score_are_evaluation_keys():
    """Adding an OOD set with its folder (ood_sets, ood_roots: e.g. ImageNetOD for CIFAR) or switching IS on
    (evaluate.fid.inception_score) changes neither train.json nor the data config: nothing is re-prepared or retrained."""
    from dat.config import training_view

    run = {"run": "r", "dataset": {"name": "c", "root": "resources/c", "ood_sets": ["svhn"],
                                   "ood_roots": {"svhn": "resources/svhn"}},
           "train": {"steps": 1}, "evaluate": {"fid": {"extractor": "auto"}}}
    more = json.loads(json.dumps(run))
    more["dataset"]["ood_sets"].append("imagenet_minus_rimagenet")
    more["dataset"]["ood_roots"]["imagenet_minus_rimagenet"] = "resources/imagenet"
    more["evaluate"]["fid"]["inception_score"] = {"enabled": True}
    assert training_view(more) == training_view(run) == {"run": "r", "dataset": {"name": "c", "root": "resources/c"},
                                                         "train": {"steps": 1}}
