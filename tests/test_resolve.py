"""dat.resolve, the one home of config resolution: its validation equals Snakemake's, every cross-check fails naming
the key (plain unit tests: the workflow only turns these errors into WorkflowError), and the derived facts (method
and sampling merges, auxiliary block, chain source, best-FID selection, rows present, figure groups) are decided
there once."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dat.resolve import ConfigError, Resolved, load, validate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("config.yaml", "config/smoke.yaml", "tests/config/micro.yaml")


def _config(name="config/smoke.yaml") -> dict:
    """A config file as a tree of its own: YAML anchors (``attack: *attack``) would share one dict between methods,
    so that a probe's change to one would reach the others."""
    return json.loads(json.dumps(yaml.safe_load((REPO / name).read_text())))


@pytest.mark.parametrize("name", CONFIGS)
def test_validation_fills_the_same_defaults_as_snakemake(name):
    from snakemake.utils import validate as snakemake_validate

    ours, theirs = _config(name), _config(name)
    validate(ours)
    snakemake_validate(theirs, str(REPO / "dat/schemas/config.schema.yaml"))
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def test_resolution_leaves_the_config_alone_and_merges_once():
    config = validate(_config())
    before = copy.deepcopy(config)
    r = Resolved(config)
    block = r.method_block("fmnist_dat_bn_train")  # train_overrides: freeze_batchnorm false
    assert block == {**r.method_block("fmnist_dat"), "freeze_batchnorm": False}
    block["bce"]["max_steps"] = -1  # a copy: the resolution keeps its own
    assert r.method_block("fmnist_dat_bn_train")["bce"]["max_steps"] != -1
    assert r.run_cfg("fmnist_dat")["sampling"] == r.sampling("fmnist")
    assert "sampling" not in r.train_cfg("fmnist_dat") and "evaluate" not in r.train_cfg("fmnist_dat")
    assert "ood_sets" not in r.dataset_cfg("fmnist", evaluation=False) and "label" not in r.dataset_cfg("fmnist")
    assert config == before


def test_dataset_keys_override_the_global_sampling_and_evaluate_blocks():
    config = _config()
    config["datasets"]["fmnist"]["sampling"] = {"steps_grid": [3, 4]}
    config["datasets"]["fmnist"]["evaluate"] = {"pgd": {"steps": 7}}
    r = load(config)
    assert r.sampling("fmnist")["steps_grid"] == [3, 4]
    assert r.sampling("fmnist")["n_final"] == config["sampling"]["n_final"]
    assert r.evaluate("fmnist")["pgd"]["steps"] == 7
    assert r.evaluate("fmnist")["pgd"]["step_size_factor"] == config["evaluate"]["pgd"]["step_size_factor"]


def test_derived_facts_of_each_run():
    r = load(_config())
    assert [r.objective(run) for run in ("fmnist_at", "fmnist_dat", "fmnist_ratio", "fmnist_jem", "fmnist_ebjdat")] == [
        "at", "dat", "ratio", "jem", "ebjdat"]
    assert r.aux_block("fmnist_at") == {} and r.aux_block("fmnist_dat") == r.method_block("fmnist_dat")["bce"]
    assert r.aux_block("fmnist_ratio") == r.method_block("fmnist_ratio")["ratio"]
    assert r.chain_source("fmnist_dat") == "noise" and r.chain_source("fmnist_dat_ood_starts") == "mnist5k"
    assert not any(r.selects_checkpoint(run) for run in r.runs)  # the smoke config evaluates the final models
    config = _config()
    config["evaluate"]["checkpoint"] = "best_fid"
    r = load(config)
    assert r.selects_checkpoint("fmnist_dat") and not r.selects_checkpoint("fmnist_at")  # stage 1 saves no snapshots


def test_tables_and_figures_are_derived_from_the_rows():
    config = _config()
    config["runs"]["fmnist_at"] = {k: v for k, v in config["runs"]["fmnist_at"].items() if k != "seed"} | {"seeds": [0, 1]}
    r = load(config)
    table1 = r.table_rows("table1")
    first = next(iter(table1))
    assert r.table_spec("table1")["rows"][0] == {
        "label": first, "run_dir": f"results/{table1[first]}", "seed": 0,
        "replicates": [{"seed": 0, "run_dir": "results/fmnist_at"}, {"seed": 1, "run_dir": "results/fmnist_at_seed1"}]}
    assert r.table_spec("table1")["intervals"] is True and r.table_spec("table10")["intervals"] is False
    assert r.figures_spec("main")["groups"]["samples"][0] == {"label": first, "run_dir": "results/fmnist_at"}
    assert "results/fmnist_at_seed1/metrics/robust.json" in r.table_files("table1")
    assert "results/fmnist_dat/metrics/snapshots.json" in r.metrics_files()
    assert "results/fmnist_at/metrics/snapshots.json" not in r.metrics_files()  # stage 1 saves no snapshots
    groups = r.figure_groups("main")
    assert set(groups["curves"].values()) == {run for run in table1.values() if r.has_bce(run)}
    assert set(r.figure_groups("ablations")) == {"bce_curves"}
    assert "results/tables/table1.tex" in r.all_outputs() and "results/tables/ablation_batchnorm.tex" in r.ablation_outputs()
    assert not set(r.all_outputs()) & set(r.ablation_outputs())
    with pytest.raises(KeyError, match="figure set 'other'"):
        r.figure_groups("other")


def test_rows_if_present_follow_the_published_checkpoint(tmp_path):
    config = _config()
    ckpt = tmp_path / "official.pt"
    config["runs"]["fmnist_official"] = {"dataset": "fmnist", "model": "small", "method": "at", "seed": 0,
                                         "init_from": {"path": str(ckpt), "url": "https://example.org/o.pt"}}
    config["tables"]["table1"]["rows_if_present"] = {"Official": "fmnist_official"}
    absent = load(copy.deepcopy(config))
    assert "Official" not in absent.table_rows("table1")
    assert absent.left_out == [f"tables.table1: row 'Official' (fmnist_official) left out until {ckpt} exists "
                               "(published at https://example.org/o.pt)"]
    ckpt.write_bytes(b"stand-in")
    present = load(config)
    assert list(present.table_rows("table1"))[-1] == "Official" and present.left_out == []
    assert "rows_if_present" in config["tables"]["table1"] and "Official" not in config["tables"]["table1"]["rows"]


OFFICIAL_RATIO = "resources/checkpoints/Augustin2020Adversarial_34_10.pt"


def test_the_official_ratio_checkpoint_joins_every_cifar10_comparison_when_its_file_is_there(tmp_path, monkeypatch):
    """Paper Sec. 4.1 / A.1.2: RATIO's official WRN-34-10 is the paper's RATIO model for every CIFAR-10 comparison
    (issue 21 item 5): Tables 1, 7, 8 and 10, the calibration and counterfactual tables get its row (and every
    evaluation file of their kind) once the published file is at its path, and none of them before."""
    config = _config("config.yaml")
    monkeypatch.chdir(tmp_path)  # init_from.path is relative to the working directory
    tables = {name for name, table in config["tables"].items()
              if "cifar10_ratio_official" in (table.get("rows_if_present") or {}).values()}
    assert tables == {"table1", "table7", "table8", "table10", "calibration", "counterfactual"}
    absent = load(copy.deepcopy(config))
    for name in tables:
        assert "cifar10_ratio_official" not in absent.table_rows(name).values()
        assert not [f for f in absent.table_files(name) if f.startswith("results/cifar10_ratio_official/")]
    rows_lines = [line for line in absent.left_out if line.startswith("tables.")]  # not the if_present lines
    assert sorted(line.split(":")[0] for line in rows_lines) == sorted(f"tables.{name}" for name in tables)
    (tmp_path / OFFICIAL_RATIO).parent.mkdir(parents=True)
    (tmp_path / OFFICIAL_RATIO).write_bytes(b"stand-in")
    present = load(config)
    assert not [line for line in present.left_out if line.startswith("tables.")]
    for name in tables:
        assert list(present.table_rows(name).values())[-1] == "cifar10_ratio_official", name
        assert [f for f in present.table_files(name) if f.startswith("results/cifar10_ratio_official/")], name
    groups = present.figure_groups("main")
    for group in ("counterfactual", "reliability"):  # paper Figures 1 and 3 draw it too
        assert "cifar10_ratio_official" in groups[group].values()


def test_restricted_imagenet_ratio_row_and_the_ebjdat_runs_of_the_paper_config():
    """Issue 21 items 5 and 8: RestrictedImageNet has a RATIO row in paper Tables 2, 7, 8 and 12 (trained with
    RATIO's objective against the other ImageNet classes, eps_o 7.0); EB-JDAT fine-tunes its dataset's JEM run and
    clamps its attack to the pixel range instead of projecting (its released code)."""
    r = load(_config("config.yaml"))
    for name in ("table2_rimagenet", "table7", "table8", "table12"):
        assert "rimagenet_ratio" in r.table_rows(name).values(), name
    assert r.objective("rimagenet_ratio") == "ratio" and r.dataset_of("rimagenet_ratio") == "rimagenet"
    ratio = r.train_cfg("rimagenet_ratio")["train"]["ratio"]
    assert (ratio["eps"], ratio["steps"], ratio["init"], ratio["ood_set"]) == (7.0, 20, "ood", "imagenet_minus_rimagenet")
    assert r.train_cfg("rimagenet_ratio")["train"]["attack"] == r.train_cfg("rimagenet_at")["train"]["attack"]
    assert r.chain_source("rimagenet_ratio") == r.chain_source("rimagenet_dat")  # paper Table 8: one OOD source
    for dataset in ("cifar10", "cifar100"):
        cfg = r.train_cfg(f"{dataset}_ebjdat")
        assert cfg["init_from"] == f"{dataset}_jem" and cfg["train"]["ebjdat"]["attack_project"] is False
        assert cfg["train"]["optimizer"]["lr"] == 1.0e-5 and cfg["train"]["optimizer"]["weight_decay"] == 0.0


def _smoke_with(mutate):
    config = _config()
    mutate(config)
    return config


# (mutation of config/smoke.yaml, a fragment of the message that must name the key); each fails before any job
PROBES = [
    (lambda c: c["methods"]["dat"].update(lernrate=0.1), "lernrate"),
    # out-of-range numbers (issue 24): each radius, step, rate, decay, weight and seed has its range in the schema
    (lambda c: c["datasets"]["fmnist"]["threat_model"].update(eps=-1.5), "datasets.fmnist.threat_model.eps: -1.5 is less than"),
    (lambda c: c["datasets"]["fmnist"]["threat_model"].update(eps="0/255"), "datasets.fmnist.threat_model.eps: '0/255' should not be valid"),
    (lambda c: c["datasets"]["fmnist"].update(ood_eps="-3"), "datasets.fmnist.ood_eps: '-3' does not match"),
    (lambda c: c["datasets"]["fmnist"].update(sampling_step_size=0), "datasets.fmnist.sampling_step_size: 0 is less than or equal to"),
    (lambda c: c["methods"]["at"]["attack"].update(eps=-0.5), "methods.at.attack.eps: -0.5 is less than the minimum of 0"),
    (lambda c: c["methods"]["at"]["attack"].update(step_size="1/0"), "methods.at.attack.step_size: '1/0' does not match"),
    (lambda c: c["methods"]["dat"].update(ema_decay=1.5), "methods.dat.ema_decay: 1.5 is greater than or equal to the maximum of 1"),
    (lambda c: c["methods"]["dat"]["optimizer"].update(lr=-0.1), "methods.dat.optimizer.lr: -0.1 is less than the minimum of 0"),
    (lambda c: c["methods"]["dat"]["bce"].update(weight=-1), "methods.dat.bce.weight: -1 is less than the minimum of 0"),
    (lambda c: c["evaluate"]["pgd"].update(step_size_factor=0), "evaluate.pgd.step_size_factor: 0 is less than or equal to"),
    (lambda c: c["sampling"].update(seed_final=-1), "sampling.seed_final: -1 is less than the minimum of 0"),
    (lambda c: c["datasets"]["fmnist"].update(mean=[28.6]), "datasets.fmnist.mean.0: 28.6 is greater than the maximum of 1"),
    # an integer written as a float passes plain JSON Schema, then fails inside torch (manual_seed expected a long)
    (lambda c: c["methods"]["at"].update(batch_size=32.0), "methods.at.batch_size: 32.0 is not of type 'integer'"),
    (lambda c: c["sampling"].update(n_final=500.0), "sampling.n_final: 500.0 is not of type 'integer'"),
    (lambda c: c["sampling"].update(n_final="many"), "sampling.n_final: 'many' is not of type 'integer'"),
    (lambda c: c["runs"]["fmnist_dat"].update(init_from="nope"), "runs.fmnist_dat.init_from = 'nope' is not a run"),
    (lambda c: c["runs"]["fmnist_dat"].update(init_from="fmnist_dat"), "runs.fmnist_dat.init_from names the run itself"),
    (lambda c: c["runs"]["fmnist_dat"].update(model="big"), "runs.fmnist_dat.model = 'big' is not a key of models"),
    (lambda c: c["tables"]["table1"]["rows"].update(X="nope"), "tables.table1.rows.X = 'nope' is not a run"),
    (lambda c: c["tables"]["table1"].pop("dataset"), "tables.table1.dataset is required (kind main)"),
    (lambda c: c["tables"]["table1"].update(reported=[{"label": "a", "source": "b", "dataset": "c"}]),
     "tables.table1.reported is only printed by tables of kind reproductions"),
    (lambda c: c["datasets"]["fmnist"].update(mean=[0.1, 0.2]), "datasets.fmnist.mean/std need 1 values"),
    (lambda c: c["runs"]["fmnist_at"].update(train_overrides={"bce": {"max_stepz": 3}}), "max_stepz"),
    (lambda c: c["methods"]["dat"]["bce"].update(init="ood"), "bce.ood_set"),
    (lambda c: c["datasets"]["fmnist"].update(ood_sets=["cifar10"]), "datasets.fmnist.ood_roots.cifar10"),
    (lambda c: c["methods"]["dat"]["bce"].update(init="ood", ood_set="npz:/nonexistent/aux.npz"), "/nonexistent/aux.npz"),
    (lambda c: c["methods"]["dat"]["bce"].update(init="ood", ood_set="svhn"), "ood_set 'svhn' needs datasets.fmnist.ood_roots.svhn"),
    (lambda c: c["methods"]["dat"]["bce"].update(init="ood", ood_set="mnist5k"),
     "config: tables.table1: its fmnist runs start their sampling chains from different sources ("),
    (lambda c: c["tables"]["ablation_starts"].pop("mixed_starts"),
     "(fmnist_dat: noise, fmnist_dat_ood_starts: mnist5k); give them one source"),
    (lambda c: c["sampling"].update(init="ood"), "sampling.init ood (datasets.fmnist) needs sampling.ood_set"),
    (lambda c: c["sampling"].update(init="ood", ood_set="cifar10"), "sampling.ood_set 'cifar10' needs datasets.fmnist.ood_roots.cifar10"),
    (lambda c: c["sampling"].update(seed_snapshots=2000),
     "sampling.seed_snapshots (dataset fmnist) = 2000 equals sampling.seed_final"),
    (lambda c: c["datasets"]["fmnist"].update(evaluate={"checkpoint": "best"}),
     "datasets.fmnist.sampling/evaluate overrides are invalid: evaluate.checkpoint: 'best' is not one of ['final', 'best_fid']"),
    (lambda c: c["evaluate"]["fid"].update(inception_score={"enabled": True, "sha256": "xyz"}), "'xyz' does not match"),
    (lambda c: c["evaluate"].update(weights="raw"), "hold the EMA weights only, and evaluate.weights of dataset"),
    (lambda c: c["tables"]["table1"].update(rows_if_present={"Standard AT": "fmnist_at"}),
     "tables.table1.rows_if_present.Standard AT = 'fmnist_at' must be a run with init_from: {path, ...}"),
    (lambda c: (c["datasets"].update(fmnist2={**c["datasets"]["fmnist"], "download": True, "root": "/a"}),
                c["datasets"]["fmnist"].update(download=True, root="/b")),
     "one folder per downloaded dataset"),
    (lambda c: (c["datasets"].update(fmnist2={**c["datasets"]["fmnist"],
                                              "evaluate": {"fid": {"inception_score": {"enabled": True, "url": "u"}}}}),
                c["evaluate"]["fid"].update(inception_score={"enabled": True})),
     "names the weights file weights-inception-2015-12-05-6726825d.pth with another path, url or sha256"),
]


@pytest.mark.parametrize("mutate, message", PROBES)
def test_every_check_fails_naming_the_key(mutate, message):
    with pytest.raises(ConfigError) as err:
        load(_smoke_with(mutate))
    assert message in str(err.value)


def test_a_key_given_twice_fails_naming_file_and_line(tmp_path):
    """PyYAML keeps the last of two equal keys: a table row `DAT: fmnist_dat` followed by `DAT: fmnist_at` would print
    Standard AT's numbers as DAT's. read_yaml (which the workflow applies to every config file) rejects it; a merge
    key's values may still be overridden, as YAML allows."""
    from dat.resolve import read_yaml

    text = (REPO / "config/smoke.yaml").read_text()
    assert "rows: {Standard AT: fmnist_at" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("rows: {Standard AT: fmnist_at", "rows: {DAT: fmnist_at, Standard AT: fmnist_at", 1))
    line = next(i for i, row in enumerate(bad.read_text().splitlines(), 1) if "rows: {DAT: fmnist_at" in row)
    with pytest.raises(ConfigError, match=rf"bad.yaml:{line}: key 'DAT' is given twice in one mapping"):
        read_yaml(bad)
    merged = tmp_path / "merge.yaml"
    merged.write_text("a: &x {p: 1, q: 2}\nb: {<<: *x, q: 3}\n")
    assert read_yaml(merged) == {"a": {"p": 1, "q": 2}, "b": {"p": 1, "q": 3}}
    for name in CONFIGS + ("config/rehearsal.yaml",):
        assert read_yaml(REPO / name) == yaml.safe_load((REPO / name).read_text())


def test_missing_data_is_named_where_a_job_needs_it():
    """Data checks belong to the jobs a target needs (the CIFAR tables plan without an ImageNet folder): the
    resolution answers them per dataset and OOD set, naming the key and what to fetch."""
    config = _smoke_with(lambda c: c["datasets"]["fmnist"].update(root="/nonexistent/fmnist", ood_sets=["cifar10"],
                                                                   ood_roots={"cifar10": "/nonexistent/c10"}))
    r = load(config)
    source, missing = r.dataset_download("fmnist")
    assert source is None and missing.key == "datasets.fmnist.root"
    assert "/nonexistent/fmnist/train-images-idx3-ubyte.gz" in str(missing) and "dataset-fashion-mnist" in str(missing)
    source, missing = r.ood_download("fmnist", "cifar10")
    assert missing.key == "datasets.fmnist.ood_roots.cifar10" and "/nonexistent/c10/cifar-10-batches-py" in str(missing)
    assert r.ood_download("fmnist", "mnist5k") == (None, None)  # offline sets need no folder
    assert r.inception_score_input("fmnist") == (None, None)  # IS off in the smoke config
    assert r.init_input("fmnist_dat") == ("results/fmnist_at/model.pt", None) and r.init_input("fmnist_at") == (None, None)


def test_missing_published_files_are_named_with_their_key(tmp_path):
    config = _config()
    config["evaluate"]["fid"]["inception_score"] = {"enabled": True, "weights": str(tmp_path / "w.pth")}
    config["runs"]["fmnist_official"] = {"dataset": "fmnist", "model": "small", "method": "at", "seed": 0,
                                         "init_from": {"path": str(tmp_path / "o.pt"), "url": "https://example.org/o"}}
    r = load(config)
    path, missing = r.inception_score_input("fmnist")
    assert path is None and missing.key == "evaluate.fid.inception_score.weights" and "url is null" in str(missing)
    path, missing = r.init_input("fmnist_official")
    assert path is None and str(missing).startswith("runs.fmnist_official.init_from.path: the published checkpoint")
    assert "(published at https://example.org/o)" in str(missing)
    (tmp_path / "w.pth").write_bytes(b"w")
    (tmp_path / "o.pt").write_bytes(b"o")
    assert r.inception_score_input("fmnist") == ("w.pth", None)
    assert r.init_input("fmnist_official") == (str(tmp_path / "o.pt"), None)


def test_a_non_editable_install_imports_every_command(tmp_path):
    """`pip install .` (no source tree on the path): the schema is package data, and every command imports."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    build = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(build)], check=True)
    for path in ("dat", "pyproject.toml"):  # the working tree as it is, committed or not
        subprocess.run(["rm", "-rf", str(build / path)], check=True)
        subprocess.run(["cp", "-r", str(REPO / path), str(build / path)], check=True)
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(build)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = sorted(p.stem for p in (REPO / "dat").glob("*.py") if "def main(" in p.read_text())
    code = ("import importlib, dat, dat.config, dat.resolve\n"
            "assert 'site-packages' in dat.__file__, dat.__file__\n"
            "assert dat.config.SCHEMA_PATH.is_file(), dat.config.SCHEMA_PATH\n"
            f"for m in {commands!r}: importlib.import_module('dat.' + m)\n"
            "print(len(dat.resolve.load_schema()['properties']))\n")
    proc = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) > 5 and len(commands) >= 10
