"""Seeds (issue 22): runs with several seeds become one chain of runs per seed, and tables print mean +- std over
them with every seed in the CSV twin; hand-made metric files stand in for the runs."""

import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dat.resolve import ConfigError, Resolved, expand_seeds, read_yaml, validate
from dat.tables import aggregate_seeds, build_table, fmt_cell

REPO = Path(__file__).resolve().parents[1]


def _run(method="at", **keys):
    return {"dataset": "d", "model": "m", "method": method, **keys}


# (runs, expected run key -> (seed, init_from), expected training-only keys)
EXPANSIONS = [
    pytest.param({"a": _run(seed=3)}, {"a": (3, None)}, set(), id="one seed: unchanged"),
    pytest.param({"a": _run(seeds=[0, 1]), "b": _run("dat", seeds=[0, 1], init_from="a")},
                 {"a": (0, None), "a_seed1": (1, None), "b": (0, "a"), "b_seed1": (1, "a_seed1")}, set(),
                 id="stage 2 of seed s starts from stage 1 of seed s"),
    pytest.param({"a": _run(seed=0), "b": _run("dat", seeds=[0, 1, 2], init_from="a")},
                 {"a": (0, None), "a_seed1": (1, None), "a_seed2": (2, None), "b": (0, "a"), "b_seed1": (1, "a_seed1"),
                  "b_seed2": (2, "a_seed2")}, {"a_seed1", "a_seed2"},
                 id="a one-seed stage 1 gets a training-only run per added seed"),
    pytest.param({"a": _run(seed=1), "b": _run("dat", seeds=[0, 1], init_from="a")},
                 {"a": (1, None), "b": (0, "a"), "b_seed1": (1, "a")}, set(),
                 id="the stage 1 of the seed is the run itself; the first seed keeps init_from as written"),
    pytest.param({"p": _run(seed=0), "a": _run(seed=0, init_from="p"), "b": _run("dat", seeds=[0, 1], init_from="a")},
                 {"p": (0, None), "p_seed1": (1, None), "a": (0, "p"), "a_seed1": (1, "p_seed1"), "b": (0, "a"),
                  "b_seed1": (1, "a_seed1")}, {"a_seed1", "p_seed1"}, id="a chain of three"),
]


@pytest.mark.parametrize("runs, expected, implicit", EXPANSIONS)
def test_expand_seeds(runs, expected, implicit):
    expanded, replicates, training_only = expand_seeds(copy.deepcopy(runs))
    assert {k: (r["seed"], r.get("init_from")) for k, r in expanded.items()} == expected
    assert training_only == implicit
    assert all("seeds" not in r for r in expanded.values())
    for name, reps in replicates.items():
        assert [s for s, _ in reps] == runs[name]["seeds"] and reps[0][1] == name


@pytest.mark.parametrize("runs, message", [
    ({"a": _run(seed=0, seeds=[0, 1])}, "runs.a: give seed .* not both"),
    ({"a": _run()}, "runs.a: give seed .* one of them"),
    ({"a": _run(seeds=[0, 1]), "a_seed1": _run(seed=1)}, "runs.a.seeds: seed 1's run key 'a_seed1' is already a run"),
])
def test_expand_seeds_errors_name_the_run(runs, message):
    with pytest.raises(ConfigError, match=message):
        expand_seeds(runs)


def test_schema_rejects_a_bad_seed_list():
    config = read_yaml(REPO / "config/smoke.yaml")
    for bad, message in (([], "should be non-empty|is too short"), ([0, 0], "non-unique"), ([-1], "less than")):
        broken = copy.deepcopy(config)
        broken["runs"]["fmnist_at"]["seeds"] = bad
        with pytest.raises(ConfigError, match=f"runs.fmnist_at.seeds.*({message})"):
            validate(broken)


def test_paper_config_gives_dat_three_seeds_and_the_others_one():
    r = Resolved(validate(read_yaml(REPO / "config.yaml")))
    for dataset in ("cifar10", "cifar100"):
        assert [s for s, _ in r.seeds(f"{dataset}_dat")] == [0, 1, 2]
        assert r.runs[f"{dataset}_dat_seed2"]["init_from"] == f"{dataset}_at_seed2"
        assert {f"{dataset}_at_seed1", f"{dataset}_at_seed2"} <= r.training_only
    single = [run for run in r.config["runs"] if run not in r.replicates]
    assert single and all(len(r.seeds(run)) == 1 for run in single)
    # the first seed's training view is the one-seed run's: its results stay valid
    one = copy.deepcopy(r.config)
    one["runs"]["cifar10_dat"] = {k: v for k, v in one["runs"]["cifar10_dat"].items() if k != "seeds"} | {"seed": 0}
    assert Resolved(one).train_cfg("cifar10_dat") == r.train_cfg("cifar10_dat")


# ----------------------------------------------------------------------------------------------- tables over seeds


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _main_run(root: Path, run: str, acc: float, aa: float, fid: float, steps: int) -> str:
    d = root / run
    _write(d / "metrics/robust.json", {"run": run, "dataset": "toy", "norm": "L2", "eps": 0.5, "n_clean": 1000,
                                       "acc_clean": acc, "acc_clean_lo": acc - 0.03, "acc_clean_hi": acc + 0.02,
                                       "pgd": {"n_examples": 100, "acc_robust": aa + 0.1},
                                       "autoattack": {"n_examples": 100, "acc_robust": aa, "acc_robust_lo": aa - 0.1,
                                                      "acc_robust_hi": aa + 0.09}})
    _write(d / "metrics/fid.json", {"fid": fid, "fid_lo": fid - 5, "fid_hi": fid + 6, "n_samples": 50, "n_ref": 100,
                                    "steps": steps, "fid_interval": {"groups": 50}})
    _write(d / "grid.json", {"chosen_steps": steps, "steps_grid": [steps], "fid": [fid]})
    return str(d)


def test_main_table_over_seeds(tmp_path):
    """Two seeds of DAT (mean +- std, sample std, each seed's T) beside a single run (value and its interval)."""
    spec = {"kind": "main", "dataset_label": "Toy", "intervals": True, "rows": [
        {"label": "AT", "run_dir": _main_run(tmp_path, "at", 0.80, 0.40, 100.0, 60), "seed": 0},
        {"label": "DAT", "run_dir": str(tmp_path / "dat"), "seed": 0, "replicates": [
            {"seed": 0, "run_dir": _main_run(tmp_path, "dat", 0.70, 0.30, 50.0, 60)},
            {"seed": 1, "run_dir": _main_run(tmp_path, "dat_seed1", 0.74, 0.36, 60.0, 100)}]}]}
    csv, tex = build_table(spec)
    assert list(csv["stat"]) == ["seed", "seed", "seed", "mean"] and list(csv["run"][:3]) == ["at", "dat", "dat_seed1"]
    mean = csv[csv["stat"] == "mean"].iloc[0]
    assert mean["acc_clean"] == pytest.approx(0.72) and mean["acc_clean_std"] == pytest.approx(math.sqrt(0.0008))
    assert mean["fid"] == pytest.approx(55.0) and mean["fid_std"] == pytest.approx(pd.Series([50.0, 60.0]).std())
    assert mean["chosen_steps"] == "60, 100" and mean["n_seeds"] == 2 and mean["seeds"] == "0, 1"
    assert pd.isna(mean["fid_lo"])  # no single-run interval on a mean over seeds
    assert csv.iloc[0]["fid_lo"] == 95.0 and csv.iloc[0]["acc_clean_hi"] == pytest.approx(0.82)
    assert r"72.00 $\pm$ 2.83" in tex and r"55.00 $\pm$ 7.07" in tex and "60, 100" in tex
    assert r"80.00 {\scriptsize[77.00, 82.00]}" in tex and r"100.00 {\scriptsize[95.00, 106.00]}" in tex
    assert "seeds 0, 1" in tex and "Wilson" in tex and "50 groups" in tex
    # the flag hides the intervals; the CSV keeps them
    spec["intervals"] = False
    csv_off, tex_off = build_table(spec)
    assert r"\scriptsize[" not in tex_off and csv_off["fid_lo"].equals(csv["fid_lo"])


def test_long_tables_aggregate_per_cell(tmp_path):
    """OOD AUROC (one value per OOD set x score x attack) over two seeds; the chosen T of each seed in Table 8."""
    rows = []
    for seed, auroc in ((0, 0.9), (1, 0.8)):
        run = "dat" if seed == 0 else f"dat_seed{seed}"
        _write(tmp_path / run / "metrics/ood.json", {"n_in": 10, "rows": [
            {"ood_set": "svhn", "score": "energy", "attack": "clean", "auroc": auroc, "auroc_lo": 0.5, "auroc_hi": 1.0},
            {"ood_set": "svhn", "score": "energy", "attack": "adversarial", "auroc": auroc / 2}]})
        _write(tmp_path / run / "grid.json", {"steps_grid": [10, 20], "fid": [90.0 + seed, 80.0 - seed],
                                              "chosen_steps": 20 if seed else 10})
        rows.append({"seed": seed, "run_dir": str(tmp_path / run)})
    spec_rows = [{"label": "DAT", "run_dir": rows[0]["run_dir"], "seed": 0, "replicates": rows}]
    csv, tex = build_table({"kind": "ood", "rows": spec_rows})
    clean = csv[(csv["stat"] == "mean") & (csv["attack"] == "clean")].iloc[0]
    assert clean["auroc"] == pytest.approx(0.85) and clean["auroc_std"] == pytest.approx(pd.Series([0.9, 0.8]).std())
    assert r"85.00 $\pm$ 7.07" in tex and r"\scriptsize" not in tex  # ood: intervals only in the CSV by default
    csv, tex = build_table({"kind": "sampling", "rows": spec_rows})
    assert "10, 20" in tex and r"\textbf" not in tex  # the seeds chose different T: none in bold
    assert len(csv[csv["stat"] == "mean"]) == 2


@pytest.mark.parametrize("rec, kwargs, text", [
    ({"acc": 0.5}, {"scale": 100}, "50.00"),
    ({"acc": 0.5, "acc_lo": 0.4, "acc_hi": 0.6}, {"scale": 100}, "50.00"),
    ({"acc": 0.5, "acc_lo": 0.4, "acc_hi": 0.6}, {"scale": 100, "intervals": True}, r"50.00 {\scriptsize[40.00, 60.00]}"),
    ({"acc": 0.5, "acc_std": 0.01, "n_seeds": 3, "acc_lo": 0.4, "acc_hi": 0.6}, {"scale": 100, "intervals": True},
     r"50.00 $\pm$ 1.00"),
    ({"acc": None}, {}, "--"),
])
def test_fmt_cell(rec, kwargs, text):
    assert fmt_cell(rec, "acc", **kwargs) == text


def test_aggregate_seeds_names_a_missing_column():
    with pytest.raises(KeyError, match="column 'fid' missing"):
        aggregate_seeds(pd.DataFrame({"method": ["a"], "seed": [0]}), ["method"], ["fid"])


def _jobs(output: str, rule: str) -> list[str]:
    """The run wildcard of every planned job of ``rule`` in a dry run's output."""
    runs, current = [], None
    for line in output.splitlines():
        if line.startswith("rule ") or line.startswith("localrule "):
            current = line.split()[1].rstrip(":")
        match = re.search(r"wildcards: .*\brun=([a-z0-9_]+)", line)
        if match and current == rule:
            runs.append(match.group(1))
    return runs


def test_paper_dry_run_plans_three_seeds_of_each_dat_run_and_one_of_the_others(tmp_path):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n", "--configfile",
           str(REPO / "config.yaml"), "--directory", str(tmp_path), "--cores", "1", "results/tables/table1.tex",
           "results/tables/table2.tex"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=True).stdout
    train, robust, fid = (sorted(_jobs(out, rule)) for rule in ("train_model", "eval_robust", "compute_fid"))
    for d in ("cifar10", "cifar100"):
        dat = [f"{d}_dat", f"{d}_dat_seed1", f"{d}_dat_seed2"]
        at = [f"{d}_at", f"{d}_at_seed1", f"{d}_at_seed2"]  # stage 1 of each seed's chain
        assert [r for r in train if r.startswith(f"{d}_dat")] == dat
        assert [r for r in train if r.startswith(f"{d}_at")] == at
        for evaluated in (robust, fid):  # the DAT row is measured on each seed, every other row once
            assert [r for r in evaluated if r.startswith(f"{d}_dat")] == dat
            for method in ("at", "ratio", "jem", "ebjdat"):
                assert [r for r in evaluated if r.startswith(f"{d}_{method}")] == [f"{d}_{method}"]
