"""The Snakemake workflow: dry runs of the smoke and paper DAGs, parse-time config errors, lint, and an
end-to-end run of the real rules on a micro configuration of real Fashion-MNIST images."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dat.checkpoint import load_model

REPO = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_fmnist = pytest.mark.skipif(not FMNIST.exists(), reason="Debian package dataset-fashion-mnist not installed (run ./setup.sh)")


def snakemake(*args, cwd=REPO, check=True):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_rules(output: str) -> set[str]:
    return {line.split("rule ")[1].split(":")[0] for line in output.splitlines() if line.startswith("rule ")}


PIPELINE = {"prepare_data", "fid_ref", "train_model", "grid_search_steps", "sample_images", "compute_fid", "eval_robust",
            "make_table"}


@needs_fmnist
def test_smoke_profile_dry_run_plans_the_whole_pipeline(tmp_path):
    out = snakemake("-n", "--profile", str(REPO / "profiles/smoke"), "--configfile", str(REPO / "config/smoke.yaml"),
                    "--directory", str(tmp_path), "all", "ablations")
    rules = planned_rules(out.stdout)
    assert PIPELINE | {"eval_ood", "eval_calibration", "eval_counterfactual", "make_figures", "fid_floor", "prepare_ood",
                       "make_figure2", "eval_snapshots"} <= rules
    assert "fmnist_dat" in out.stdout and "fmnist_at" in out.stdout
    # Figure 2 plots robust accuracy and FID of the snapshots of each BCE-augmentation run (paper Figure 2)
    figure2 = out.stdout.split("rule make_figure2:")[1].split("output:")[0]
    for run in ("fmnist_dat_bce_none", "fmnist_dat_bce_crop", "fmnist_dat", "fmnist_dat_bce_autoaugment"):
        assert f"results/{run}/metrics/snapshots.json" in figure2 and f"results/{run}/model.pt" in figure2


@needs_fmnist
def test_auxiliary_ood_starts_plan_their_own_rule(tmp_path):
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["methods"]["dat"]["bce"].update(init="ood", ood_set="mnist5k", ood_images=5000)
    for table in config["tables"].values():  # its DAT rows now sample from MNIST, its AT rows from noise
        table["mixed_starts"] = True
    out = snakemake("-n", "-p", "--configfile", str(_with(config, tmp_path / "ood.yaml")), "--directory", str(tmp_path),
                    "--cores", "1", "results/fmnist_dat/model.pt")
    assert "prepare_aux_ood" in planned_rules(out.stdout)
    assert "--name mnist5k --n 5000" in out.stdout and "--aux-ood results/fmnist_dat/aux_ood.npz" in out.stdout
    # sampling.init train (config/smoke.yaml): the test-time chains of that run start from the same images, those of
    # a run trained on noise from noise
    out = snakemake("-n", "-p", "--configfile", str(tmp_path / "ood.yaml"), "--directory", str(tmp_path),
                    "--cores", "1", "results/fmnist_dat/samples_uncond.npz", "results/fmnist_at/samples.npz")
    for rule in ("grid_search --config results/fmnist_dat/", "sample --config results/fmnist_dat/",
                 "sample --config results/fmnist_at/"):
        command = next(line for line in out.stdout.splitlines() if f"python -m dat.{rule}" in line)
        assert ("--starts results/fmnist_dat/aux_ood.npz" in command) == ("fmnist_at" not in command), command
    assert "--unconditional" in out.stdout


@needs_fmnist
def test_every_run_of_a_dataset_samples_from_its_one_chain_source(tmp_path):
    """sampling.init ood: every run of the dataset starts its test-time chains from the dataset's start images (paper
    Table 8: one OOD data source per dataset), prepared once; RATIO's label says it trained on noise."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["sampling"].update(init="ood", ood_set="mnist5k", ood_images=3000)
    cfg = _with(config, tmp_path / "starts.yaml")
    out = snakemake("-n", "-p", "--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1",
                    "results/fmnist_at/samples.npz", "results/fmnist_dat/grid.json", "results/fmnist_ratio/samples.npz")
    assert "prepare_sampling_starts" in planned_rules(out.stdout)
    assert "--name mnist5k --n 3000 --split train --out results/data/fmnist/sampling_starts.npz" in " ".join(out.stdout.split())
    commands = [line for line in out.stdout.splitlines() if "python -m dat.grid_search" in line or
                "python -m dat.sample" in line]
    assert len(commands) == 5 and all("--starts results/data/fmnist/sampling_starts.npz" in c for c in commands)
    snakemake("--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1", "results/tables/table1.spec.json")
    labels = [row["label"] for row in json.loads((tmp_path / "results/tables/table1.spec.json").read_text())["rows"]]
    assert sorted(labels) == ["DAT", "EB-JDAT", "JEM", "RATIO (noise OOD)", "Standard AT"]


@needs_fmnist
def test_best_fid_checkpoint_feeds_every_evaluation_and_never_retrains(tmp_path):
    """evaluate.checkpoint best_fid: the evaluations of a run with weight snapshots read selected.pt (rule
    select_checkpoint, from the snapshot FIDs at the final model's grid T); a run without snapshots and every run
    under final read model.pt, with no selection rule in the DAG; switching it rewrites run.json, never train.json."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    assert config["evaluate"].get("checkpoint", "final") == "final"  # the smoke numbers are the final models'
    targets = [f"results/{run}/{name}" for run in ("fmnist_dat", "fmnist_at")
               for name in ("metrics/robust.json", "metrics/fid.json", "metrics/ood.json", "metrics/calibration.json",
                            "metrics/counterfactual.json", "samples_uncond.npz")]
    evaluations = ("grid_search", "sample", "eval_robust", "eval_ood", "eval_calibration", "eval_counterfactual")

    def plan(checkpoint):
        config["evaluate"]["checkpoint"] = checkpoint
        out = snakemake("-n", "-p", "--configfile", str(_with(config, tmp_path / f"{checkpoint}.yaml")),
                        "--directory", str(tmp_path), "--cores", "1", *targets).stdout
        commands = [line for line in out.splitlines() if line.startswith("Shell command: python -m dat.")]
        return planned_rules(out), commands

    rules, commands = plan("best_fid")
    assert {"select_checkpoint", "eval_snapshots", "grid_search_final"} <= rules
    for run, model in (("fmnist_dat", "selected.pt"), ("fmnist_at", "model.pt")):  # stage 1 saves no snapshots
        for e in evaluations:
            found = [c for c in commands if f"python -m dat.{e} --config results/{run}/" in c
                     and "grid_final.json" not in c]
            assert found and all(f"--model results/{run}/{model}" in c for c in found), (run, e, found)
    assert "--model results/fmnist_dat/model.pt --ref" in next(c for c in commands if "grid_final.json" in c)
    snapshots = next(c for c in commands if "dat.eval_snapshots" in c)
    assert "--grid results/fmnist_dat/grid_final.json" in snapshots and "--final results/fmnist_dat/model.pt" in snapshots
    rules, commands = plan("final")
    assert not rules & {"select_checkpoint", "eval_snapshots", "grid_search_final"}, rules
    assert not [c for c in commands if "selected.pt" in c or "grid_final.json" in c]
    # the choice is evaluation-only: written under final, train.json is up to date under best_fid
    config["evaluate"]["checkpoint"] = "final"
    configs = {c: _with({**config, "evaluate": {**config["evaluate"], "checkpoint": c}}, tmp_path / f"{c}.yaml")
               for c in ("final", "best_fid")}
    written = ["results/fmnist_dat/train.json", "results/fmnist_dat/run.json"]
    snakemake("--configfile", str(configs["final"]), "--directory", str(tmp_path), "--cores", "1", *written)
    again = snakemake("-n", "--configfile", str(configs["best_fid"]), "--directory", str(tmp_path), "--cores", "1",
                      *written)
    assert planned_rules(again.stdout) == {"write_run_config"}, again.stdout


@pytest.mark.parametrize("table, dataset", [("table1", "cifar10"), ("table2", "cifar100")])
def test_paper_config_dry_run_plans_each_table(tmp_path, table, dataset):
    out = snakemake("-n", "-p", "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path), "--cores", "1",
                    f"results/tables/{table}.tex")
    assert PIPELINE | {"download_data"} <= planned_rules(out.stdout)
    for method in ("at", "ratio", "jem", "ebjdat", "dat"):  # every row trained and evaluated by this pipeline
        assert f"results/{dataset}_{method}/model.pt" in out.stdout and f"results/{dataset}_{method}/metrics/fid.json" in out.stdout
    assert f"--source {dataset} --root resources/{dataset}" in out.stdout  # torchvision's downloader, one job


def test_slurm_profile_dry_run_puts_gpu_rules_on_the_gpu_partition(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = snakemake("-n", "--profile", str(REPO / "profiles/slurm"), "results/tables/table1.tex", "--configfile",
                    str(REPO / "config.yaml"), "--directory", str(tmp_path))
    assert PIPELINE <= planned_rules(out.stdout)
    train = out.stdout.split("rule train_model:")[1].split("Shell command")[0]
    assert "slurm_partition=gpu" in train and "gpu=1" in train and "cpus_per_gpu=8" in train
    # the GPU rules are declared once (common.smk: gpu_resources): every job asking for a GPU is on the GPU partition
    # with the CPUs beside it, and every other job on the CPU partition, so a GPU rule missing from the profile fails
    jobs = [block for block in out.stdout.split("\nrule ")[1:] if "resources:" in block]
    assert len(jobs) > 20
    for block in jobs:
        resources = block.split("resources:")[1].splitlines()[0]
        on_gpu = "gpu=1" in resources.replace(" ", "").split(",")
        assert ("slurm_partition=gpu" in resources and "cpus_per_gpu=8" in resources) == on_gpu, block[:600]


def test_multi_gpu_training_runs_under_torchrun(tmp_path):
    out = snakemake("-n", "-p", "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path), "--cores", "1",
                    "--set-resources", "train_model:gpu=4", "--", "results/cifar10_at/model.pt")
    assert "python -m torch.distributed.run --standalone --nproc_per_node=4 -m dat.train" in out.stdout
    single = snakemake("-n", "-p", "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path), "--cores",
                       "1", "--", "results/cifar10_at/model.pt")
    assert "python -m dat.train --config" in single.stdout and "torch.distributed" not in single.stdout


def test_paper_config_dry_run_of_every_output(tmp_path):
    """Every output of the CIFAR part of config.yaml (the ImageNet tables need an ImageNet folder: test_imagenet.py
    dry-runs `all` with one). The CIFAR OOD tables read ImageNetOD from an ImageNet folder too: without it the dry run
    says what to download and where; with its train/ and val/ folders everything plans."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    imagenet = {name for name, ds in config["datasets"].items() if "imagenet" in ds["source"]}
    config["runs"] = {k: r for k, r in config["runs"].items() if r["dataset"] not in imagenet}
    config["tables"] = {k: t for k, t in config["tables"].items() if set(t["rows"].values()) <= set(config["runs"])}
    proc = snakemake("-n", "--configfile", str(_with(config, tmp_path / "cifar.yaml")), "--directory", str(tmp_path),
                     "--cores", "1", "results/tables/table10.tex", check=False)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "datasets.cifar10.ood_roots.imagenet_minus_rimagenet" in message
    assert "image-net.org" in message and not (tmp_path / "results").exists()
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split).mkdir(parents=True)
    for name in ("cifar10", "cifar100"):
        config["datasets"][name]["ood_roots"]["imagenet_minus_rimagenet"] = str(tmp_path / "imagenet")
    out = snakemake("-n", "-p", "--configfile", str(_with(config, tmp_path / "cifar.yaml")), "--directory",
                    str(tmp_path), "--cores", "1", "all")
    rules = planned_rules(out.stdout)
    assert PIPELINE | {"eval_ood", "eval_calibration", "eval_counterfactual", "make_figures", "prepare_ood"} <= rules
    for ood in ("cifar100", "svhn", "imagenet_minus_rimagenet", "noise"):  # paper Table 10's OOD sets for CIFAR-10
        assert f"results/data/cifar10/ood_{ood}.npz" in out.stdout
    assert f"--name imagenet_minus_rimagenet --n 1024 --root {tmp_path / 'imagenet'}" in out.stdout
    assert "results/data/cifar100/ood_imagenet_minus_rimagenet.npz" in out.stdout
    assert "--source svhn --root resources/svhn" in out.stdout
    # Inception Score: one download job for the TF weights (sha256-checked), an input of every compute_fid job
    weights = "weights-inception-2015-12-05-6726825d.pth"
    assert out.stdout.count("rule download_is_weights:") == 1 and "--sha256 6726825d" in out.stdout
    assert f"--url https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{weights}" in out.stdout
    compute_fid = out.stdout.split("rule compute_fid:")[1].split("output:")[0]
    assert f"results/downloads/inception/{weights}.json" in compute_fid


def test_table7_plans_baselines_reported_numbers_and_a_published_checkpoint(tmp_path):
    """Table 7 of the paper config: our baseline runs are trained and evaluated, the reported numbers are passed as
    cited constants, and RATIO's published checkpoint joins Tables 1 and 7 as a row once its file is there."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    # RestrictedImageNet's RATIO row needs an ImageNet folder (tests/test_imagenet.py plans it): the CIFAR rows here
    rows = config["tables"]["table7"]["rows"]
    config["tables"]["table7"]["rows"] = {k: r for k, r in rows.items() if config["runs"][r]["dataset"] != "rimagenet"}
    cfg = _with(config, tmp_path / "t7.yaml")
    args = ("-n", "-p", "--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1", "results/tables/table7.tex")
    # without the file the row is left out (and the dry run says which file adds it); named in `rows`, it fails
    absent = snakemake(*args, "results/tables/table1.tex")
    assert "row 'RATIO (official checkpoint)' (cifar10_ratio_official) left out until " \
           "resources/checkpoints/Augustin2020Adversarial_34_10.pt exists" in absent.stderr
    assert "cifar10_ratio_official" not in absent.stdout and "results/cifar10_ratio/metrics/fid.json" in absent.stdout
    forced = json.loads(json.dumps(config))
    forced["tables"]["table7"]["rows"]["RATIO (official)"] = "cifar10_ratio_official"
    missing = snakemake("-n", "--configfile", str(_with(forced, tmp_path / "forced.yaml")), "--directory",
                        str(tmp_path), "--cores", "1", "results/tables/table7.tex", check=False)
    assert missing.returncode != 0
    assert "resources/checkpoints/Augustin2020Adversarial_34_10.pt is not there" in missing.stdout + missing.stderr
    ckpt = tmp_path / "resources/checkpoints/Augustin2020Adversarial_34_10.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"stand-in: a dry run only checks that the file is there")
    out = snakemake(*args).stdout
    snakemake("--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1", "results/tables/table1.spec.json")
    table1 = json.loads((tmp_path / "results/tables/table1.spec.json").read_text())
    assert table1["rows"][-1] == {"label": "RATIO (official checkpoint)", "run_dir": "results/cifar10_ratio_official",
                                  "seed": 0}
    for run in ("cifar10_ratio", "cifar10_jem", "cifar10_ebjdat", "cifar100_ratio", "cifar10_ratio_official"):
        assert f"results/{run}/metrics/robust.json" in out and f"results/{run}/metrics/fid.json" in out
    assert "--init-format robustbench" in out
    # the table is declared once, in the spec file a local rule writes from the config, which dat.report reads
    assert "python -m dat.report table --spec results/tables/table7.spec.json" in out
    target = ("--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1", "results/tables/table7.spec.json")
    snakemake(*target)
    spec = json.loads((tmp_path / "results/tables/table7.spec.json").read_text())
    assert spec["kind"] == "reproductions"
    assert {"label": "RATIO (official checkpoint)", "run_dir": "results/cifar10_ratio_official",
            "dataset": "CIFAR-10", "architecture": "WRN-34-10", "seed": 0} in spec["rows"]
    reported = {(r["label"], r["dataset"]): (r.get("acc"), r.get("robust_acc")) for r in spec["reported"]}
    assert reported[("RATIO", "CIFAR-10")] == (91.08, 73.27) and reported[("RATIO", "CIFAR-100")] == (69.17, 45.55)
    # another table's declaration leaves the spec (and so the table) alone; the table's own declaration rewrites it
    config["tables"]["table8"]["rows"].pop(next(iter(config["tables"]["table8"]["rows"])))
    _with(config, cfg)
    unchanged = snakemake("-n", *target)
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr
    config["tables"]["table7"]["title"] = "Reproductions"
    _with(config, cfg)
    assert "rule write_table_spec:" in snakemake("-n", *target).stdout


def test_paper_config_plans_the_official_ratio_row_of_every_cifar10_comparison(tmp_path):
    """Issue 21 item 5 (paper Sec. 4.1): with RATIO's official checkpoint in place, the CIFAR-10 sampling, OOD,
    calibration and counterfactual tables evaluate it (its weights imported, nothing trained). The CIFAR part of the
    config, with an empty ImageNet folder for ImageNetOD (RestrictedImageNet's RATIO row: tests/test_imagenet.py)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    imagenet = {name for name, ds in config["datasets"].items() if "imagenet" in ds["source"]}
    config["runs"] = {k: r for k, r in config["runs"].items() if r["dataset"] not in imagenet}
    for table in config["tables"].values():
        table["rows"] = {label: run for label, run in table["rows"].items() if run in config["runs"]}
    config["tables"] = {k: t for k, t in config["tables"].items() if t["rows"] and t.get("dataset") not in imagenet}
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split).mkdir(parents=True)
    for name in ("cifar10", "cifar100"):
        config["datasets"][name]["ood_roots"]["imagenet_minus_rimagenet"] = str(tmp_path / "imagenet")
    ckpt = tmp_path / "resources/checkpoints/Augustin2020Adversarial_34_10.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"stand-in: a dry run only checks that the file is there")
    out = snakemake("-n", "-p", "--configfile", str(_with(config, tmp_path / "cifar.yaml")), "--directory",
                    str(tmp_path), "--cores", "1",
                    *(f"results/tables/{t}.tex" for t in ("table8", "table10", "calibration", "counterfactual"))).stdout
    for path in ("grid.json", "metrics/ood.json", "metrics/calibration.json", "metrics/counterfactual.json"):
        assert f"results/cifar10_ratio_official/{path}" in out, path
    assert "--init-format robustbench" in out


def _with(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


# Every cross-check is a unit test of dat.resolve (tests/test_resolve.py); these probes check that the workflow
# turns its errors, and the data checks of the input functions, into a failed dry run that names the key.
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["methods"]["dat"].update(lernrate=0.1), "lernrate"),
        (lambda c: c["runs"]["fmnist_dat"].update(init_from="nope"), "runs.fmnist_dat.init_from"),
        (lambda c: c["datasets"]["fmnist"].update(root="/nonexistent/fmnist"), "/nonexistent/fmnist/train-images-idx3-ubyte.gz"),
        (lambda c: c["datasets"]["fmnist"].update(ood_sets=["cifar10"], ood_roots={"cifar10": "/nonexistent/c10"}),
         "/nonexistent/c10/cifar-10-batches-py"),
        (lambda c: c["tables"]["ablation_starts"].pop("mixed_starts"),
         "fmnist_dat_ood_starts: mnist5k, fmnist_dat: noise); give them one source"),
        # Inception Score on, without its weights file and without a URL to download it from
        (lambda c: c["evaluate"]["fid"].update(inception_score={"enabled": True, "weights": "/nonexistent/w.pth"}),
         "evaluate.fid.inception_score.weights: /nonexistent/w.pth is not there and url is null"),
    ],
)
def test_config_errors_fail_at_parse_time_naming_the_key(tmp_path, mutate, message):
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    mutate(config)
    proc = snakemake("-n", "--configfile", str(_with(config, tmp_path / "bad.yaml")),
                     "--directory", str(tmp_path), "--cores", "1", "all", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()  # nothing ran


def test_a_config_file_with_a_key_given_twice_fails_before_planning(tmp_path):
    """Snakemake's loader keeps the last of two equal keys; the workflow reads every config file again strictly."""
    text = (REPO / "config/smoke.yaml").read_text().replace("rows: {Standard AT: fmnist_at",
                                                            "rows: {DAT: fmnist_at, Standard AT: fmnist_at", 1)
    (tmp_path / "dup.yaml").write_text(text)
    line = 1 + text[:text.index("rows: {DAT: fmnist_at")].count("\n")
    proc = snakemake("-n", "--configfile", str(tmp_path / "dup.yaml"), "--directory", str(tmp_path), "--cores", "1",
                     "all", check=False)
    assert proc.returncode != 0 and f"dup.yaml:{line}: key 'DAT' is given twice" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@needs_fmnist
def test_a_truncated_stage1_model_fails_the_plan_before_stage2_outputs_are_deleted(tmp_path):
    """A stage-1 model.pt cut short (a full disk, a copy interrupted) would send Snakemake to rerun stage 2, deleting
    its good model.pt, and then fail: the input functions check that a run's checkpoint opens, naming it and the
    target to rerun, before any job starts."""
    at, dat = tmp_path / "results/fmnist_at/model.pt", tmp_path / "results/fmnist_dat/model.pt"
    for path in (at, dat):
        path.parent.mkdir(parents=True)
        torch.save({"w": torch.zeros(64)}, path)
    at.write_bytes(at.read_bytes()[:-100])
    proc = snakemake("--configfile", str(REPO / "config/smoke.yaml"), "--directory", str(tmp_path), "--cores", "1",
                     "results/fmnist_dat/metrics/robust.json", check=False)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "results/fmnist_at/model.pt" in message and "truncated" in message, message[-3000:]
    assert "snakemake results/fmnist_at/model.pt" in message
    assert dat.exists() and torch.load(dat, weights_only=True)["w"].shape == (64,)  # stage 2's result is kept


def test_lint_and_format():
    proc = snakemake("--lint", "--configfile", str(REPO / "config.yaml"), "--directory", str(REPO), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=REPO,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
@needs_fmnist
def test_micro_pipeline_end_to_end(tmp_path):
    """The real rules on real images: every output of `all` is produced, and a rerun is a no-op."""
    config = str(REPO / "tests/config/micro.yaml")
    snakemake("--configfile", config, "--directory", str(tmp_path), "--cores", "2", "all", "ablations")
    res = tmp_path / "results"
    table = (res / "tables/table1.tex").read_text()
    assert "\\toprule" in table and "Standard AT" in table and "DAT" in table
    with open(res / "tables/table1.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["Standard AT", "DAT"]
    for run in ("fmnist_at", "fmnist_dat"):
        robust = json.loads((res / run / "metrics/robust.json").read_text())
        assert 0 <= robust["autoattack"]["acc_robust"] <= robust["autoattack"]["acc_clean"] <= 1
        assert robust["autoattack"]["max_perturbation"] <= 1.5 + 1e-4
        assert robust["autoattack"]["acc_robust"] <= robust["autoattack"]["acc_robust_pgd_same_examples"]
        fid = json.loads((res / run / "metrics/fid.json").read_text())
        assert np.isfinite(fid["fid"]) and fid["n_samples"] == 20
        grid = json.loads((res / run / "grid.json").read_text())
        assert grid["chosen_steps"] in grid["steps_grid"] and len(grid["fid"]) == 2
        with np.load(res / run / "samples.npz") as s:
            assert s["x"].dtype == np.uint8 and s["x"].shape == (20, 28, 28, 1)
            assert list(s["y"][:10]) == list(range(10))
    # stage 2 never changed the stage-1 BatchNorm statistics
    at = torch.load(res / "fmnist_at/model.pt", weights_only=True)
    dat = torch.load(res / "fmnist_dat/model.pt", weights_only=True)
    for key, value in at["ema"].items():
        if "running_" in key:
            assert torch.equal(dat["model"][key], value), key
    assert json.loads((res / "fmnist_dat/run.json").read_text())["train"]["freeze_batchnorm"] is True
    assert any((res / "figures").glob("*.png"))
    for run in ("fmnist_at", "fmnist_dat"):
        # every result records the model, the implementation and weights behind it, its sample counts and seed
        for name, counts in (("robust", ("n_clean",)), ("ood", ("n_in",)), ("calibration", ("n_examples",)),
                             ("counterfactual", ("n_images",)), ("fid", ("n_samples", "n_ref"))):
            result = json.loads((res / run / f"metrics/{name}.json").read_text())
            assert "seed" in result and "git_sha" in result and all(result[c] > 0 for c in counts), name
            if name != "fid":
                assert result["checkpoint"]["path"].endswith(f"{run}/model.pt") and result["checkpoint"]["diverged"] is None
        assert json.loads((res / run / "metrics/fid.json").read_text())["extractor"].startswith("inception-2015-12-05")
        assert json.loads((res / run / "metrics/robust.json").read_text())["autoattack"]["package"].startswith("pyautoattack")
        # counterfactuals stay in their L2 ball and the target confidence rises with the radius
        cf = json.loads((res / run / "metrics/counterfactual.json").read_text())
        assert all(m <= r + 1e-4 for m, r in zip(cf["max_perturbation"], cf["radii"]))
        assert all(a < b for a, b in zip(cf["confidence"], cf["confidence"][1:])), cf["confidence"]
        # adversarial OOD images (moved to raise the score) are harder to detect than clean ones
        rows = json.loads((res / run / "metrics/ood.json").read_text())["rows"]
        auroc = {(r["ood_set"], r["score"], r["attack"]): r["auroc"] for r in rows}
        for (ood_set, score, attack), value in auroc.items():
            if attack == "adversarial":
                assert value <= auroc[(ood_set, score, "clean")] + 1e-9, (run, ood_set, score)
        assert np.mean([v for k, v in auroc.items() if k[2] == "adversarial"]) < np.mean(
            [v for k, v in auroc.items() if k[2] == "clean"])
    # Figure 4: the stage-1 weights (step 0) and every 4 updates of stage 2, measured by the same PGD and sampler
    snaps = json.loads((res / "fmnist_dat/metrics/snapshots.json").read_text())
    assert [(p["step"], p["images"]) for p in snaps["points"]] == [(0, 0), (4, 128), (8, 256)]
    assert snaps["n_pgd"] == 16 and snaps["n_samples"] == 20
    assert all(0 <= p["acc_pgd"] <= p["acc_clean"] <= 1 and np.isfinite(p["fid"]) for p in snaps["points"])
    final = torch.load(res / "fmnist_dat/snapshots/step_0000008.pt", weights_only=True)
    assert all(torch.equal(final["ema"][k], v) for k, v in dat["ema"].items())  # the last snapshot is model.pt
    assert final["model"] is None  # an EMA run's snapshots keep the weights evaluated, the EMA ones, only
    with pytest.raises(ValueError, match="EMA weights only"):
        load_model(res / "fmnist_dat/snapshots/step_0000008.pt", weights="raw")
    # Table 9: the same model sampled both ways, from the same starts at the same T
    cond = json.loads((res / "fmnist_dat/metrics/fid.json").read_text())
    uncond = json.loads((res / "fmnist_dat/metrics/fid_uncond.json").read_text())
    assert (cond["conditional"], uncond["conditional"]) == (True, False) and cond["steps"] == uncond["steps"]
    with np.load(res / "fmnist_dat/samples.npz") as c, np.load(res / "fmnist_dat/samples_uncond.npz") as u:
        assert np.array_equal(c["x_init"], u["x_init"]) and not np.array_equal(c["x"], u["x"])
    table9 = pd.read_csv(res / "tables/table9.csv")
    assert table9["fid_unconditional"].iloc[0] == pytest.approx(uncond["fid"])
    for name in ("table8", "table10", "calibration", "counterfactual"):
        assert (res / f"tables/{name}.tex").read_text().count(r"\bottomrule") == 1, name
    # the ablation run differs from fmnist_dat in that one key only, and starts from the same stage-1 model
    bn_train = json.loads((res / "fmnist_dat_bn_train/run.json").read_text())["train"]
    assert bn_train == {**json.loads((res / "fmnist_dat/run.json").read_text())["train"], "freeze_batchnorm": False}
    assert [r["method"] for r in csv.DictReader(open(res / "tables/ablation_batchnorm.csv"))] == [
        "BN train mode", "BN eval mode (DAT)"]
    again = snakemake("-n", "--configfile", config, "--directory", str(tmp_path),
                      "--cores", "2", "all", "ablations")
    assert "Nothing to be done" in again.stdout + again.stderr
    # new evaluation settings re-run evaluations only: data preparation and training read configs without them
    micro = yaml.safe_load(Path(config).read_text())
    micro["sampling"]["n_final"] += 10
    micro["evaluate"]["ece"]["n_bins"] += 1
    micro["datasets"]["fmnist"]["counterfactual_radii"] = [0.5, 1.5]
    changed = snakemake("-n", "--configfile", str(_with(micro, tmp_path / "eval_changed.yaml")), "--directory",
                        str(tmp_path), "--cores", "2", "all", "ablations")
    rules = planned_rules(changed.stdout)
    assert {"sample_images", "eval_calibration", "eval_counterfactual", "make_table"} <= rules
    assert not rules & {"write_train_config", "train_model", "prepare_data", "write_dataset_config"}, rules
    # one self-contained HTML page with every table and figure marked report(), captions rendered from the config
    snakemake("--configfile", config, "--directory", str(tmp_path), "--cores", "1", "--report", "report.html", "all")
    html = (tmp_path / "report.html").read_text()
    for name in ("table1.csv", "table10.csv", "samples_fmnist_dat.png", "figure3_reliability.png",
                 "train_curves_fmnist_dat.pdf", "figure8_unconditional_fmnist_dat.png", "figure1_counterfactual.png",
                 "figureA3_counterfactuals_fmnist_dat.png", "figure4_stage2.png"):
        assert name in html, name
    assert "20 class-balanced samples" in html  # the micro config's n_final, in the caption

