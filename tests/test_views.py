"""The typed frozen views of a run JSON that sampling and evaluation read (dat.config.RunConfig and its blocks): every
run of the shipped configs resolves to a run.json they accept, unknown keys fail naming the key path, fractions are
parsed once, defaults are the schema's, and the views are frozen and torch-free."""

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dat import config as cfg_lib
from dat.config import DatasetConfig, EvaluateConfig, RunConfig, SamplingConfig, ThreatModel, deep_merge, training_view
from dat.resolve import Resolved, validate

REPO = Path(__file__).resolve().parents[1]
# config files as a workflow run reads them: the rehearsal profile merges config/rehearsal.yaml into config.yaml
CONFIGS = {"config.yaml": ("config.yaml",), "config/smoke.yaml": ("config/smoke.yaml",),
           "tests/config/micro.yaml": ("tests/config/micro.yaml",),
           "rehearsal": ("config.yaml", "config/rehearsal.yaml")}
VIEWS = (cfg_lib.DatasetConfig, cfg_lib.ThreatModel, cfg_lib.SamplingConfig, cfg_lib.EvaluateConfig,
         cfg_lib.PGDConfig, cfg_lib.AutoAttackConfig, cfg_lib.FIDConfig, cfg_lib.InceptionScoreConfig,
         cfg_lib.OODEvalConfig, cfg_lib.ECEConfig, cfg_lib.CounterfactualConfig, cfg_lib.IntervalConfig)
# keys of a schema block that are no field of its view: the workflow leaves them out of the run's dataset block
# SamplingConfig.if_present: resolved away by dat.resolve (Resolved.sampling) before run.json is written
NOT_FIELDS = {"DatasetConfig": {"label", "sampling", "evaluate"}, "SamplingConfig": {"if_present"}}
EXTRA_FIELDS = {"DatasetConfig": {"name"}}  # the dataset's key, added by the workflow
# fields with a default although the schema declares none (dat.config says why)
VIEW_ONLY_DEFAULTS = {
    ("DatasetConfig", "ood_roots"), ("DatasetConfig", "threat_model"), ("DatasetConfig", "sampling_step_size"),
    ("DatasetConfig", "ood_eps"), ("DatasetConfig", "counterfactual_radii"), ("SamplingConfig", "ood_set"),
    ("DatasetConfig", "test_interpolation"),  # absent: dataset.json keeps its keys (bilinear)
    ("EvaluateConfig", "n_clean"), ("EvaluateConfig", "pgd"), ("EvaluateConfig", "autoattack"),
    ("EvaluateConfig", "fid"), ("EvaluateConfig", "ood"), ("EvaluateConfig", "ece"),
    ("EvaluateConfig", "counterfactual"), ("PGDConfig", "n_examples"), ("AutoAttackConfig", "n_examples"),
    ("FIDConfig", "n_ref"), ("FIDConfig", "inception_score"), ("OODEvalConfig", "n_in"),
    ("CounterfactualConfig", "n_images"),
}


def _resolved(name: str) -> Resolved:
    config = {}
    for path in CONFIGS[name]:
        config = deep_merge(config, yaml.safe_load((REPO / path).read_text()))
    return Resolved(validate(config), check=False)


@pytest.fixture(scope="module")
def smoke_run() -> dict:
    """results/fmnist_dat/run.json of config/smoke.yaml (global sampling/evaluate blocks, schema defaults filled)."""
    return _resolved("config/smoke.yaml").run_cfg("fmnist_dat")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_resolved_run_json_is_accepted(name):
    resolved = _resolved(name)
    for run in resolved.runs:
        raw = resolved.run_cfg(run)
        view = RunConfig.from_dict(raw)
        assert view.raw == raw and view.raw is not raw and training_view(view.raw) == resolved.train_cfg(run)
        assert view.chain_source == resolved.chain_source(run), run
        assert view.sampling.steps_grid == tuple(raw["sampling"]["steps_grid"])
        assert view.evaluate.pgd.steps == raw["evaluate"]["pgd"]["steps"]
        assert view.dataset.threat_model.eps_str == str(raw["dataset"]["threat_model"]["eps"])
    for dataset in resolved.datasets:  # the data-preparation view (dataset.json) has no evaluation keys
        prep = DatasetConfig.from_dict(resolved.dataset_cfg(dataset, evaluation=False))
        assert prep.threat_model is None and prep.name == dataset
        assert DatasetConfig.from_dict(resolved.dataset_cfg(dataset)).threat_model is not None


def test_the_smoke_run_reads_as_configured(smoke_run):
    view = RunConfig.from_dict(smoke_run)
    assert (view.run, view.method, view.seed, view.init_from) == ("fmnist_dat", "dat", 0, "fmnist_at")
    ds = view.dataset
    assert (ds.name, ds.source, ds.num_classes, ds.channels, ds.image_size) == ("fmnist", "fashion_mnist", 10, 1, 28)
    assert ds.threat_model == ThreatModel("L2", 1.5) and ds.sampling_step_size == 0.5 and ds.ood_eps == 3.0
    assert ds.counterfactual_radii == (0.5, 1.0, 2.0, 4.0, 8.0)  # [0.5, 1, 2, 4, 8]: floats, pixel units
    assert all(type(r) is float for r in ds.counterfactual_radii)
    s = view.sampling
    assert (s.steps_grid, s.n_grid, s.n_final, s.batch_size) == ((20, 40, 60, 100, 150), 100, 500, 250)
    assert (s.seed_grid, s.seed_final, s.seed_snapshots, s.conditional, s.init) == (1000, 2000, 4000, True, "train")
    ev = view.evaluate
    assert (ev.weights, ev.batch_size, ev.n_clean, ev.pgd.n_examples, ev.autoattack.n_examples) == (
        "ema", 250, 10000, 1000, 150)
    assert ev.fid.inception_score is None and ev.ece.n_bins == 15 and ev.counterfactual.n_images == 200
    assert view.train.bce is not None and view.chain_source == "noise"  # init train, the dat method trains on noise
    assert view.model == smoke_run["model"] and view.raw == smoke_run


def test_unknown_keys_fail_naming_the_key_path(smoke_run):
    cases = {("evaluate", "pgd", "stepz"): r"evaluate\.pgd: unknown key\(s\) evaluate\.pgd\.stepz",
             ("sampling", "n_finals"): r"sampling: unknown key\(s\) sampling\.n_finals",
             ("dataset", "threat_model", "radius"): r"dataset\.threat_model: unknown key\(s\) dataset\.threat_model\.radius",
             ("evaluate", "fid", "inception_score", "enable"): r"evaluate\.fid\.inception_score: unknown key\(s\) "
                                                              r"evaluate\.fid\.inception_score\.enable",
             ("train", "bce", "stepsize"): r"train\.bce: unknown key\(s\) train\.bce\.stepsize",
             ("labels",): r"run: unknown key\(s\) labels"}
    for path, message in cases.items():
        bad = copy.deepcopy(smoke_run)
        block = bad
        for key in path[:-1]:
            block = block.setdefault(key, {})
        block[path[-1]] = 1
        with pytest.raises(ValueError, match=message):
            RunConfig.from_dict(bad)
    without = copy.deepcopy(smoke_run)
    del without["sampling"]["n_final"]
    with pytest.raises(ValueError, match=r"sampling: missing key\(s\) \['n_final'\]"):
        RunConfig.from_dict(without)


def test_names_and_evaluation_keys_are_checked(smoke_run):
    bad = {("evaluate", "weights"): ("best", "evaluate.weights: 'best' is not one of ema, raw"),
           ("evaluate", "checkpoint"): ("last", "evaluate.checkpoint: 'last'"),
           ("evaluate", "autoattack", "version"): ("apgd", "evaluate.autoattack.version: 'apgd'"),
           ("evaluate", "fid", "extractor"): ("tf", "evaluate.fid.extractor: 'tf'"),
           ("sampling", "init"): ("ood", r"sampling.init: 'ood' needs sampling.ood_set"),
           ("dataset", "threat_model", "norm"): ("L1", "dataset.threat_model.norm: 'L1'"),
           ("dataset", "ood_sets"): (["noise", "mnist"], "dataset.ood_sets: 'mnist'"),
           ("dataset", "channels"): (3, r"dataset.mean/std: need 3 values")}
    for path, (value, message) in bad.items():
        changed = copy.deepcopy(smoke_run)
        block = changed
        for key in path[:-1]:
            block = block[key]
        block[path[-1]] = value
        with pytest.raises(ValueError, match=message):
            RunConfig.from_dict(changed)
    without = copy.deepcopy(smoke_run)
    del without["dataset"]["threat_model"]
    with pytest.raises(ValueError, match=r"dataset: missing key\(s\) \['threat_model'\]"):
        RunConfig.from_dict(without)  # the dataset.json view is no run's dataset block


def test_fractions_are_parsed_once_and_the_text_is_kept(smoke_run):
    run = deep_merge(smoke_run, {"dataset": {"threat_model": {"norm": "Linf", "eps": "8/255"},
                                             "sampling_step_size": "1/2", "ood_eps": 3}})
    ds = RunConfig.from_dict(run).dataset
    assert ds.threat_model.eps == 8 / 255 and ds.threat_model.eps_str == "8/255"  # robust.json's eps_str
    assert ds.sampling_step_size == 0.5 and ds.ood_eps == 3.0 and type(ds.ood_eps) is float
    assert ThreatModel("L2", 0.5).eps_str == "0.5" and ThreatModel("L2", 3).eps_str == "3"
    assert RunConfig.from_dict(run).raw["dataset"]["threat_model"]["eps"] == "8/255"  # raw stays verbatim
    with pytest.raises(ValueError, match="dataset.sampling_step_size: expected a number or a fraction"):
        RunConfig.from_dict(deep_merge(smoke_run, {"dataset": {"sampling_step_size": "half"}}))
    with pytest.raises(ValueError, match=r"dataset.counterfactual_radii\[1\]: expected a number"):
        RunConfig.from_dict(deep_merge(smoke_run, {"dataset": {"counterfactual_radii": [1, "two"]}}))
    with pytest.raises(ValueError, match="dataset.threat_model.eps: expected a number"):
        RunConfig.from_dict(deep_merge(smoke_run, {"dataset": {"threat_model": {"eps": True}}}))


def test_view_defaults_are_the_schemas():
    for cls in VIEWS:
        name = cls.__name__
        props = cfg_lib.schema_properties(name)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        assert set(fields) == (set(props) - NOT_FIELDS.get(name, set())) | EXTRA_FIELDS.get(name, set()), name
        for key, f in fields.items():
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if key in props and "default" in props[key] and f.default_factory is not dataclasses.MISSING:
                # a block whose schema default is a mapping ({}: validation fills its keys' defaults)
                assert f.default_factory() == f.default_factory(**cfg_lib.schema_default(name, key)), key
            elif key in props and "default" in props[key]:
                assert f.default == cfg_lib.schema_default(name, key), f"{name}.{key}"
            elif (name, key) not in VIEW_ONLY_DEFAULTS:
                assert not has_default, f"{name}.{key}: give its default in the schema"
    # a block without its optional keys reads as the block Snakemake's validate fills with the schema's defaults
    minimal = {"sampling": {"steps_grid": [1], "n_grid": 2, "n_final": 2},
               "evaluate": {"pgd": {}, "autoattack": {}, "fid": {"inception_score": {"enabled": False}}, "ood": {},
                            "ece": {}, "counterfactual": {"n_images": 2}},
               "dataset": {"source": "mnist", "root": "r", "num_classes": 10, "channels": 1, "image_size": 28,
                           "mean": [0.5], "std": [0.5], "threat_model": {"norm": "L2", "eps": 1},
                           "sampling_step_size": 1, "ood_eps": 1, "counterfactual_radii": [1]}}
    config = yaml.safe_load((REPO / "tests/config/micro.yaml").read_text())
    config.update(copy.deepcopy({k: v for k, v in minimal.items() if k != "dataset"}),
                  datasets={"fmnist": copy.deepcopy(minimal["dataset"])})
    filled = validate(config)
    assert filled["sampling"] != minimal["sampling"] and filled["evaluate"] != minimal["evaluate"]  # defaults added
    for cls, key in ((SamplingConfig, "sampling"), (EvaluateConfig, "evaluate")):
        assert cls.from_dict(minimal[key]) == cls.from_dict(filled[key]), key
    assert DatasetConfig.from_dict({"name": "fmnist", **minimal["dataset"]}) == DatasetConfig.from_dict(
        {"name": "fmnist", **filled["datasets"]["fmnist"]})


def test_views_are_frozen(smoke_run):
    view = RunConfig.from_dict(smoke_run)
    for obj, attr in ((view, "seed"), (view.dataset, "num_classes"), (view.dataset.threat_model, "eps"),
                      (view.sampling, "n_final"), (view.evaluate, "batch_size"), (view.evaluate.pgd, "steps"),
                      (view.evaluate.counterfactual, "seed")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, 1)
    assert RunConfig.from_dict(smoke_run) == view  # equal views of equal dicts (raw is not compared)


def test_read_names_the_file(tmp_path, smoke_run):
    good, bad, broken = tmp_path / "run.json", tmp_path / "bad.json", tmp_path / "broken.json"
    good.write_text(json.dumps(smoke_run))
    assert RunConfig.read(good).raw == smoke_run
    bad.write_text(json.dumps(deep_merge(smoke_run, {"evaluate": {"ood": {"n_outs": 3}}})))
    with pytest.raises(ValueError, match=f"{bad}: evaluate.ood: unknown key"):
        RunConfig.read(bad)
    broken.write_text("{")
    with pytest.raises(ValueError, match=f"{broken}: "):
        RunConfig.read(broken)
    with pytest.raises(FileNotFoundError):
        RunConfig.read(tmp_path / "missing.json")
    (tmp_path / "dataset.json").write_text(json.dumps({**smoke_run["dataset"], "label": "F"}))
    with pytest.raises(ValueError, match=r"dataset.json: dataset: unknown key\(s\) dataset.label"):
        DatasetConfig.read(tmp_path / "dataset.json")


def test_the_views_import_without_torch():
    code = "import dat.config, sys; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
