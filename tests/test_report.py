"""dat.report (with dat.tables, dat.figures, dat.report_spec): Table 1 and the other tables (numbers, LaTeX, CSV
twins), the long metrics table and the figures.

Two synthetic run folders follow docs/formats.md field by field; the numbers are made up, and every assertion
checks that a number written into a run file comes out where it should, formatted as the paper prints it.
"""

import csv
import json
import logging

import numpy as np
import pandas as pd
import pytest

from dat import figures, report, report_spec, tables

PROV = {"git_sha": "0" * 40, "torch_version": "2.14.1", "format_version": 1}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
K = 10
OOD_KEYS = [(s, score, attack) for s in ("mnist", "noise") for score in ("energy", "max_softmax")
            for attack in ("clean", "adversarial")]


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def _meta(run):
    return {"run": run, "dataset": "fmnist", "seed": 0, "time_s": 1.5, **PROV}


def make_run(root, run, *, acc_clean, aa, pgd, fid, is_mean, is_std, steps_grid, grid_fid, chosen, ood, ece,
             cf_fid, cf_conf, channels, stage2):
    """A results/{run} folder with every file the report reads, exactly as docs/formats.md describes them."""
    d = root / run
    _json(d / "metrics" / "robust.json", {
        **_meta(run), "norm": "L2", "eps": 0.5, "eps_str": "0.5", "n_clean": 1000, "acc_clean": acc_clean,
        "pgd": {"steps": 10, "step_size": 0.125, "n_examples": 500, "acc_robust": pgd},
        "autoattack": {"version": "standard", "package": "pyautoattack 0.2.0", "n_examples": 200,
                       "acc_clean": acc_clean, "acc_robust": aa, "log": ["robust accuracy: ..."]},
    })
    _json(d / "metrics" / "fid.json", {
        **_meta(run), "fid": fid, "fid_floor": 12.3456, "n_samples": 500, "n_ref": 2000,
        "extractor": "incv3_offline#ab", "is_mean": is_mean, "is_std": is_std,
        "is_note": ("IS unavailable: the feature extractor (incv3_offline#ab) has no Inception logit head"
                    if is_mean is None else "IS over 500 samples, 10 splits"),
        "steps": chosen, "step_size": 0.2,
    })
    _json(d / "grid.json", {
        **_meta(run), "steps_grid": steps_grid, "fid": grid_fid, "chosen_steps": chosen, "step_size": 0.2,
        "n_samples": 300, "n_ref": 2000, "extractor": "incv3_offline#ab",
        **({"starts": "file:/data/tiny_images.bin"} if stage2 else {}),  # a grid.json of before the key: noise
    })
    _json(d / "metrics" / "ood.json", {
        **_meta(run), "n_in": 1000, "eps_o": 1.0,
        "rows": [{"ood_set": s, "n_out": 256, "score": score, "attack": attack, "auroc": ood[(s, score, attack)]}
                 for s, score, attack in OOD_KEYS],
    })
    n_bins = 5
    edges = np.linspace(0, 1, n_bins + 1)
    _json(d / "metrics" / "calibration.json", {
        **_meta(run), "ece": ece, "n_bins": n_bins, "n_examples": 1000, "acc_clean": acc_clean,
        "bins": {"confidence": [0.1, 0.3, 0.5, 0.7, 0.9], "accuracy": [0.0, 0.2, 0.45, 0.75, 0.93],
                 "count": [0, 10, 50, 200, 740], "lower": edges[:-1].tolist(), "upper": edges[1:].tolist()},
    })
    _json(d / "metrics" / "counterfactual.json", {
        **_meta(run), "radii": [0.5, 1.0, 2.0], "fid": cf_fid, "fid_per_class": [[f] * K for f in cf_fid],
        "confidence": cf_conf, "n_images": 100, "n_ref_per_class": [200] * K,
    })
    rng = np.random.default_rng(0)
    n = 120
    np.savez(d / "samples.npz", x=rng.integers(0, 256, (n, 8, 8, channels), dtype=np.uint8),
             y=(np.arange(n) % K).astype(np.int64), x_init=rng.integers(0, 256, (n, 8, 8, channels), dtype=np.uint8))
    with open(d / "train_log.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "epoch", "images", "time_s", "lr", "loss", "ce_adv", "bce", "acc_adv", "steps_T", "auc"])
        for step in range(1, 9):
            if stage2:
                w.writerow([step, 0, step * 64, step * 0.5, 1e-3, 1.5 - 0.1 * step, 1.0, 0.5 - 0.02 * step, 0.4,
                            step // 3, 0.6 + 0.03 * step])
            else:
                w.writerow([step, 0, step * 64, step * 0.5, 0.1, 2.0 - 0.1 * step, 2.0 - 0.1 * step, "", 0.3, "", ""])
    return d


def _ood(base):
    """AUROC base + 0.01 * i for the i-th (ood_set, score, attack) of OOD_KEYS."""
    return {key: base + 0.01 * i for i, key in enumerate(OOD_KEYS)}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "results"
    at = make_run(root, "fmnist_at", acc_clean=0.8123, aa=0.6543, pgd=0.6789, fid=123.456, is_mean=None, is_std=None,
                  steps_grid=[10, 20, 30], grid_fid=[150.0, 120.5, 130.25], chosen=20, ood=_ood(0.8512), ece=0.0321,
                  cf_fid=[90.111, 80.222, 70.333], cf_conf=[0.3, 0.5, 0.734], channels=1, stage2=False)
    dat = make_run(root, "fmnist_dat", acc_clean=0.7951, aa=0.6049, pgd=0.6111, fid=45.678, is_mean=8.0512, is_std=0.1,
                   steps_grid=[10, 20, 30], grid_fid=[60.0, 50.5, 45.6789], chosen=30, ood=_ood(0.9012), ece=0.0456,
                   cf_fid=[50.0, 40.0, 30.0], cf_conf=[0.4, 0.6, 0.888], channels=3, stage2=True)
    return at, dat


def _spec(path, spec):
    path.write_text(json.dumps(spec))
    return str(path)


def _table1(runs, tmp_path):
    """Table 1 from a spec file, as the workflow's rule make_table builds it."""
    at, dat = runs
    tex, out_csv = tmp_path / "tables" / "table1.tex", tmp_path / "tables" / "table1.csv"
    spec = _spec(tmp_path / "table1.spec.json", {"kind": "main", "dataset_label": "Fashion-MNIST", "rows": [
        {"label": "Standard AT", "run_dir": str(at)}, {"label": "DAT", "run_dir": str(dat)}]})
    assert report.main(["table", "--spec", spec, "--out-tex", str(tex), "--out-csv", str(out_csv)]) == 0
    return tex.read_text(), out_csv


def test_table1_latex_numbers_and_caption(runs, tmp_path):
    tex, _ = _table1(runs, tmp_path)
    # percent = fraction * 100 with 2 decimals, FID 2 decimals, IS n/a when null, T from grid.json
    assert r"Standard AT & 81.23 & 65.43 & n/a & 123.46 & 20 \\" in tex
    assert r"DAT & 79.51 & 60.49 & 8.05 & 45.68 & 30 \\" in tex
    assert r"Method & Acc (\%) & Robust Acc (\%) & IS & FID & $T$ \\" in tex
    for cmd in (r"\begin{table}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{table}", r"\caption{Fashion-MNIST"):
        assert cmd in tex
    # the note quotes is_note, escaped; the run names' underscores are escaped; no raw underscore is left
    assert r"IS n/a: ``IS unavailable: the feature extractor (incv3\_offline\#ab) has no Inception logit head''" in tex
    assert r"\texttt{fmnist\_at}" in tex and r"\texttt{fmnist\_dat}" in tex
    assert "fmnist_at" not in tex and "#" not in tex.replace(r"\#", "")
    # the caption states the counts, threat model, floor and feature extractor
    assert "on 1000 test images" in tex  # n_clean
    assert "on 200 test images" in tex  # AutoAttack n_examples
    assert "500 class-balanced samples against 2000 reference" in tex  # n_samples, n_ref
    assert r"$\ell_2$ threat model, $\varepsilon$ = 0.5." in tex
    assert "FID floor" in tex and "12.35" in tex
    assert r"Feature extractor: incv3\_offline\#ab" in tex
    assert "standard, pyautoattack 0.2.0" in tex


def test_table1_by_hand_equals_the_spec_table(runs, tmp_path):
    """`table --kind main --runs` (by hand) writes what the workflow's spec file writes; without a dataset label
    the caption names the dataset of fid.json, without labels the rows are named by their runs."""
    tex, out_csv = _table1(runs, tmp_path)
    at, dat = runs
    hand = tmp_path / "hand"
    assert report.main(["table", "--kind", "main", "--runs", str(at), str(dat), "--labels", "Standard AT", "DAT",
                        "--dataset-label", "Fashion-MNIST", "--out-tex", str(hand / "t.tex"),
                        "--out-csv", str(hand / "t.csv")]) == 0
    assert (hand / "t.tex").read_text() == tex and (hand / "t.csv").read_bytes() == out_csv.read_bytes()
    assert report.main(["table", "--kind", "main", "--runs", str(at), "--out-tex", str(hand / "u.tex"),
                        "--out-csv", str(hand / "u.csv")]) == 0
    assert r"\caption{fmnist: " in (hand / "u.tex").read_text()
    assert r"fmnist\_at & 81.23" in (hand / "u.tex").read_text()


def test_table1_csv_round_trips_the_numbers(runs, tmp_path):
    _, out_csv = _table1(runs, tmp_path)
    df = pd.read_csv(out_csv)
    assert list(df.columns[:15]) == ["run", "method", "acc_clean", "acc_robust_autoattack", "acc_robust_pgd", "is_mean",
                                     "is_std", "fid", "fid_floor", "chosen_steps", "n_samples", "n_ref", "n_autoattack",
                                     "n_clean", "extractor"]
    at, dat = df.iloc[0], df.iloc[1]
    assert (at["run"], at["method"], dat["run"], dat["method"]) == ("fmnist_at", "Standard AT", "fmnist_dat", "DAT")
    assert at["acc_clean"] == 0.8123 and at["acc_robust_autoattack"] == 0.6543 and at["acc_robust_pgd"] == 0.6789
    assert at["fid"] == 123.456 and np.isnan(at["is_mean"]) and np.isnan(at["is_std"])
    assert dat["is_mean"] == 8.0512 and dat["is_std"] == 0.1 and dat["fid"] == 45.678
    assert at["fid_floor"] == 12.3456 and (at["chosen_steps"], dat["chosen_steps"]) == (20, 30)
    assert (at["n_samples"], at["n_ref"], at["n_autoattack"], at["n_clean"]) == (500, 2000, 200, 1000)
    assert at["extractor"] == "incv3_offline#ab"


def test_missing_robust_json_raises_naming_the_file(runs, tmp_path):
    at, _ = runs
    (at / "metrics" / "robust.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"fmnist_at/metrics/robust\.json"):
        tables.table1_frame([("Standard AT", at)])
    with pytest.raises(FileNotFoundError, match="robust.json"):
        _table1(runs, tmp_path)


def test_other_tables(runs, tmp_path):
    at, dat = runs
    out = tmp_path / "tables"
    assert report.main(["tables", "--runs", str(at), str(dat), "--labels", "Standard AT", "DAT_v2",
                        "--out-dir", str(out)]) == 0
    for name in ("sampling", "ood", "calibration", "counterfactual"):
        tex = (out / f"{name}.tex").read_text()
        assert r"\toprule" in tex and r"\bottomrule" in tex and r"DAT\_v2" in tex and "DAT_v2" not in tex
        assert (out / f"{name}.csv").is_file()

    sampling = (out / "sampling.tex").read_text()
    assert r"20 & \textbf{120.50} & 50.50 \\" in sampling and r"30 & 130.25 & \textbf{45.68} \\" in sampling
    assert r"chosen $T$ & 20 & 30 \\" in sampling and r"step size $\eta$ & 0.2 & 0.2 \\" in sampling
    assert r"chain starts & uniform noise & tiny\_images.bin \\" in sampling
    s = pd.read_csv(out / "sampling.csv")
    assert s[(s["run"] == "fmnist_dat") & s["chosen"]]["steps"].tolist() == [30]
    assert set(s[s["run"] == "fmnist_dat"]["starts"]) == {"file:/data/tiny_images.bin"}
    assert s[(s["run"] == "fmnist_dat") & (s["steps"] == 30)]["fid"].item() == 45.6789

    ood = (out / "ood.tex").read_text()
    # AUROC in percent: mnist/noise x clean/adversarial for the energy score
    assert r"Standard AT & $-E(x)$ & 85.12 & 86.12 & 89.12 & 90.12 \\" in ood
    assert r"DAT\_v2 & $\max_y p(y|x)$ & 92.12 & 93.12 & 96.12 & 97.12 \\" in ood
    assert r"\multicolumn{2}{c}{mnist}" in ood and r"$\varepsilon_o$ = 1 " in ood and "1000 in-distribution" in ood
    o = pd.read_csv(out / "ood.csv")
    assert len(o) == 16
    hit = o[(o["run"] == "fmnist_at") & (o["ood_set"] == "noise") & (o["score"] == "energy") & (o["attack"] == "clean")]
    assert hit["auroc"].item() == 0.8512 + 0.04

    cal = (out / "calibration.tex").read_text()
    assert r"Standard AT & 3.21 & 81.23 \\" in cal and r"DAT\_v2 & 4.56 & 79.51 \\" in cal
    assert "5 equal-width confidence bins" in cal
    assert pd.read_csv(out / "calibration.csv")["ece"].tolist() == [0.0321, 0.0456]

    cf = (out / "counterfactual.tex").read_text()
    assert r"2 & 70.33 & 73.40 & 30.00 & 88.80 \\" in cf and r"0.5 & 90.11 & 30.00 & 50.00 & 40.00 \\" in cf
    c = pd.read_csv(out / "counterfactual.csv")
    assert c[(c["run"] == "fmnist_at") & (c["radius"] == 2.0)]["confidence"].item() == 0.734


def test_tables_skip_absent_inputs(runs, tmp_path, caplog):
    at, dat = runs
    for d in runs:
        (d / "metrics" / "ood.json").unlink()
    (at / "metrics" / "calibration.json").unlink()
    out = tmp_path / "tables"
    with caplog.at_level(logging.INFO, logger="dat"):
        written = tables.write_tables([at, dat], ["Standard AT", "DAT"], out)
    assert not (out / "ood.tex").exists() and not (out / "ood.csv").exists()
    assert "skipped ood table" in caplog.text
    assert (out / "calibration.tex").is_file() and out / "sampling.tex" in written
    cal = pd.read_csv(out / "calibration.csv")
    assert cal["run"].tolist() == ["fmnist_dat"]  # the run with the file, the other one logged
    assert "calibration.json" in caplog.text


def test_metrics_long_table(runs, tmp_path):
    at, dat = runs
    out = tmp_path / "report" / "metrics.csv"
    assert report.main(["metrics", "--runs", str(at), str(dat), "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["run", "metric", "value"]
    value = df.set_index(["run", "metric"])["value"]
    assert value["fmnist_at", "robust.autoattack.acc_robust"] == 0.6543
    assert value["fmnist_at", "robust.acc_clean"] == 0.8123
    assert value["fmnist_dat", "fid.is_mean"] == 8.0512 and value["fmnist_dat", "fid.fid"] == 45.678
    assert value["fmnist_dat", "grid.fid[2]"] == 45.6789 and value["fmnist_dat", "grid.chosen_steps"] == 30
    assert value["fmnist_at", "ood.rows[attack=clean,ood_set=mnist,score=energy].auroc"] == 0.8512
    assert value["fmnist_at", "calibration.ece"] == 0.0321
    assert value["fmnist_at", "counterfactual.confidence[2]"] == 0.734
    assert ("fmnist_at", "fid.is_mean") not in value.index  # null is not a number
    assert not df["metric"].str.contains("git_sha|extractor|norm$").any()  # strings are left out


def test_figures_are_valid_pngs_and_pdfs(runs, tmp_path):
    at, dat = runs
    np.savez(dat / "samples_uncond.npz", x=np.full((120, 8, 8, 3), 200, np.uint8), y=(np.arange(120) % K))
    _json(dat / "metrics" / "snapshots.json", {**_meta("fmnist_dat"), "norm": "L2", "eps": 1.5, "pgd_steps": 20,
                                               "n_pgd": 500, "n_samples": 200, "steps": 60, "points": [
        {"step": s, "images": 128 * s, "acc_clean": 0.8, "acc_pgd": 0.5 + 0.01 * s, "fid": 200.0 - s} for s in (0, 20, 40)]})
    np.savez(at / "counterfactual_examples.npz", x=np.zeros((4, 8, 8, 1), np.uint8),
             x_cf=np.full((3, 4, 8, 8, 1), 128, np.uint8), y=np.arange(4), target=np.arange(4) + 1, radii=[0.5, 1, 2])
    out = tmp_path / "figures"
    assert report.main(["figures", "--runs", str(at), str(dat), "--labels", "Standard AT", "DAT",
                        "--out-dir", str(out)]) == 0
    stems = ["samples_fmnist_at", "seeds_fmnist_at", "samples_fmnist_dat", "seeds_fmnist_dat", "figure1_counterfactual",
             "figure3_reliability", "train_curves_fmnist_dat", "figure8_unconditional_fmnist_dat", "figure2_bce_augment",
             "figureA3_counterfactuals_fmnist_at", "figure4_stage2"]
    for stem in stems:
        png, pdf = (out / f"{stem}.png").read_bytes(), (out / f"{stem}.pdf").read_bytes()
        assert png[:8] == PNG_SIGNATURE and len(png) > 3000, (stem, len(png))
        assert pdf[:5] == b"%PDF-", stem
    # stage 1 leaves bce empty: no training curves for it; no temporary files are left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{e}" for s in stems for e in ("png", "pdf"))
    # --only draws one group
    only = tmp_path / "only"
    assert report.main(["figures", "--only", "reliability", "--runs", str(at), "--out-dir", str(only)]) == 0
    assert sorted(p.name for p in only.iterdir()) == ["figure3_reliability.pdf", "figure3_reliability.png"]


def test_figures_spec_writes_the_files_report_spec_names(runs, tmp_path):
    """The workflow declares each figure group's outputs with report_spec.figure_stems: drawing a figures spec
    writes exactly those files."""
    at, dat = runs
    for d, run in ((at, "fmnist_at"), (dat, "fmnist_dat")):
        np.savez(d / "samples_uncond.npz", x=np.full((120, 8, 8, 1), 200, np.uint8), y=(np.arange(120) % K))
        _json(d / "metrics" / "snapshots.json", {**_meta(run), "norm": "L2", "eps": 1.5, "pgd_steps": 20, "n_pgd": 500,
                                                 "n_samples": 200, "steps": 60, "points": [
            {"step": s, "images": 128 * s, "acc_clean": 0.8, "acc_pgd": 0.5, "fid": 200.0 - s} for s in (0, 20)]})
        np.savez(d / "counterfactual_examples.npz", x=np.zeros((2, 8, 8, 1), np.uint8),
                 x_cf=np.full((3, 2, 8, 8, 1), 128, np.uint8), y=np.arange(2), target=np.arange(2) + 1,
                 radii=[0.5, 1, 2])
    both = [(at, "Standard AT"), (dat, "DAT")]
    groups = {group: both for group in report_spec.FIGURE_GROUPS}
    groups["curves"] = groups["bce_curves"] = [(dat, "DAT")]  # the workflow passes the stage-2 runs only
    assert set(figures.DRAW) == set(report_spec.FIGURE_GROUPS)
    spec = _spec(tmp_path / "figures.spec.json", {"groups": {
        group: [{"label": label, "run_dir": str(d)} for d, label in rows] for group, rows in groups.items()}})
    out = tmp_path / "figures"
    assert report.main(["figures", "--spec", spec, "--out-dir", str(out)]) == 0
    declared = {f"{stem}.{ext}" for group, rows in groups.items()
                for stem in report_spec.figure_stems(group, [d.name for d, _ in rows])
                for ext in report_spec.FIGURE_EXTENSIONS}
    assert sorted(p.name for p in out.iterdir()) == sorted(declared)
    assert "samples_fmnist_at.png" in declared and "figure4_stage2.pdf" in declared


def test_figure2_draws_snapshots_of_every_stage2_run(runs, tmp_path, caplog):
    at, dat = runs
    _json(dat / "metrics" / "snapshots.json", {**_meta("fmnist_dat"), "norm": "L2", "eps": 1.5, "pgd_steps": 20,
                                               "n_pgd": 500, "n_samples": 200, "steps": 60, "points": [
        {"step": s, "images": 128 * s, "acc_clean": 0.8, "acc_pgd": 0.5, "fid": 200.0 - s} for s in (0, 20)]})
    rows = {"bce_curves": [(at, "Standard AT"), (dat, "DAT")]}
    with caplog.at_level(logging.WARNING, logger="dat"):
        written = figures.write_figure_groups(rows, tmp_path / "a")
    assert [p.name for p in written] == ["figure2_bce_augment.png", "figure2_bce_augment.pdf"]
    assert "Figure 2 without" not in caplog.text  # stage 1 (at) has no stage-2 rows and needs no snapshots
    (dat / "metrics" / "snapshots.json").unlink()
    with caplog.at_level(logging.WARNING, logger="dat"):
        written = figures.write_figure_groups(rows, tmp_path / "b")
    assert "Figure 2 without robust accuracy and FID: 0 of 1 stage-2 runs" in caplog.text and len(written) == 2


def test_figures_skip_missing_inputs(runs, tmp_path, caplog):
    at, dat = runs
    (at / "samples.npz").unlink()
    for d in runs:
        (d / "metrics" / "counterfactual.json").unlink()
    out = tmp_path / "figures"
    with caplog.at_level(logging.INFO, logger="dat"):
        figures.write_figure_groups({group: [(at, "Standard AT"), (dat, "DAT")] for group in figures.FIGURES}, out)
    assert not (out / "samples_fmnist_at.png").exists() and not (out / "figure1_counterfactual.png").exists()
    assert (out / "samples_fmnist_dat.png").is_file() and (out / "figure3_reliability.png").is_file()
    assert "fmnist_at/samples.npz absent" in caplog.text and "skipped Figure 1" in caplog.text


def test_sample_grid_is_one_row_per_class():
    y = np.arange(120) % K
    classes, rows = figures.select_grid(y)
    assert classes == list(range(K)) and sorted(sum(rows, [])) == list(range(100))  # exactly the first 100 samples
    assert all(len(r) == 10 and all(y[i] == c for i in r) for c, r in zip(classes, rows))
    x = np.random.default_rng(0).integers(0, 256, (120, 4, 5, 1), dtype=np.uint8)
    mosaic = figures.image_mosaic(x, rows, pad=2)
    assert mosaic.shape == (10 * 6 + 2, 10 * 7 + 2, 1)
    assert np.array_equal(mosaic[2 + 6:2 + 6 + 4, 2 + 7:2 + 7 + 5], x[rows[1][1]])  # row of class 1, second sample


def test_latex_escape_and_number_format():
    assert tables.latex_escape("a_b & 50% #1 $x$") == r"a\_b \& 50\% \#1 \$x\$"
    assert tables.fmt_num(0.8123, scale=100) == "81.23" and tables.fmt_num(123.456) == "123.46"
    assert tables.fmt_num(None) == "--" and tables.fmt_num(float("nan")) == "--"


def test_cli_help(capsys):
    for argv in (["--help"], ["table", "--help"], ["tables", "--help"], ["metrics", "--help"], ["figures", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            report.main(argv)
        assert exit_info.value.code == 0
    assert "--out-dir" in capsys.readouterr().out
    for argv in (["tables", "--runs", "a", "b", "--labels", "only one", "--out-dir", "x"],
                 ["table", "--runs", "a", "--out-tex", "t.tex", "--out-csv", "t.csv"],  # --runs without --kind
                 ["table", "--spec", "s.json", "--kind", "ood", "--out-tex", "t.tex", "--out-csv", "t.csv"],
                 ["figures", "--out-dir", "x"]):  # neither --spec nor --runs
        with pytest.raises(SystemExit) as exit_info:
            report.main(argv)
        assert exit_info.value.code == 2, argv


def _mark_diverged(run_dir, at_step, kept_step):
    path = run_dir / "metrics" / "robust.json"
    robust = json.loads(path.read_text())
    robust["checkpoint"] = {"step": kept_step, "weights": "raw", "diverged": {
        "at_step": at_step, "kept_step": kept_step, "reason": "SGLD samples diverged: max |E(x_q)| = 2e4"}}
    path.write_text(json.dumps(robust))


def test_diverged_run_is_flagged_in_table1(runs, tmp_path):
    at, _ = runs
    _mark_diverged(at, at_step=137, kept_step=120)
    tex, out_csv = _table1(runs, tmp_path)
    assert r"Standard AT$^\dagger$ & 81.23 & 65.43" in tex
    assert r"$^\dagger$Standard AT: training diverged at update 137; the row evaluates the last good checkpoint " \
           r"(update 120)." in tex
    assert r"DAT & 79.51" in tex  # the other row is unmarked
    df = pd.read_csv(out_csv)
    assert (df["diverged_at_step"].iloc[0], df["kept_step"].iloc[0]) == (137, 120)
    assert df["diverged_at_step"].isna().iloc[1]


def _mark_selected(run_dir, step, names=("robust", "calibration")):
    """The checkpoint block of a run evaluated at its best-FID snapshot (dat.select_checkpoint's record)."""
    for name in names:
        path = run_dir / "metrics" / f"{name}.json"
        result = json.loads(path.read_text())
        result["checkpoint"] = {"step": step, "weights": "ema", "diverged": None, "selection": {
            "checkpoint": "best_fid", "requested": "best_fid", "step": step, "final_step": 120, "fid": 150.456,
            "steps": 60, "n_samples": 200, "seed": 4000}}
        path.write_text(json.dumps(result))


def test_best_fid_checkpoint_is_noted_in_the_tables(runs, tmp_path):
    """A run evaluated at its best-FID stage-2 checkpoint says which update in Table 1 (note and CSV) and in the
    other tables; a run evaluated at its final model gets no note."""
    at, dat = runs
    _mark_selected(dat, step=80)
    tex, out_csv = _table1(runs, tmp_path)
    assert (r"DAT: best-FID stage-2 checkpoint, update 80 of 120 (lowest FID, 150.46, of the weight snapshots: 200 "
            r"samples at $T$ = 60)") in tex
    assert tex.count("best-FID") == 1 and r"DAT & 79.51" in tex
    df = pd.read_csv(out_csv)
    assert df["selected_step"].iloc[1] == 80 and df["checkpoint"].iloc[1] == "best_fid"
    assert df["selected_step"].isna().iloc[0] and "selection" not in df.columns
    out = tmp_path / "other"
    assert report.main(["tables", "--runs", str(at), str(dat), "--labels", "Standard AT", "DAT",
                        "--out-dir", str(out)]) == 0
    assert "DAT: best-FID stage-2 checkpoint, update 80 of 120" in (out / "calibration.tex").read_text()
    assert "best-FID" not in (out / "ood.tex").read_text()  # its JSON records no selection
    cal = pd.read_csv(out / "calibration.csv")
    assert cal["selected_step"].tolist()[1] == 80 and "selection" not in cal.columns


def test_table7_lists_ours_beside_reported(runs, tmp_path):
    """Our numbers come from the run files, the reported ones from the spec, each row says which it is."""
    at, dat = runs
    _mark_diverged(dat, at_step=50, kept_step=40)
    spec = {"title": "Baseline reproductions", "rows": [
        {"label": "RATIO", "run_dir": str(at), "dataset": "Fashion-MNIST", "architecture": "ResNet (0.3M)"},
        {"label": "JEM", "run_dir": str(dat), "dataset": "Fashion-MNIST", "architecture": "ResNet (0.3M)"}],
        "reported": [
            {"label": "RATIO", "source": "Augustin et al. (2020)", "dataset": "CIFAR-10", "architecture": "ResNet-50",
             "acc": 91.08, "robust_acc": 73.27, "threat_model": "L2 0.5"},
            {"label": "JEM", "source": "Grathwohl et al. (2020)", "dataset": "Fashion-MNIST", "acc": 92.9, "fid": 38.4,
             "is": 8.76}]}
    tex, out_csv = tmp_path / "t7.tex", tmp_path / "t7.csv"
    spec = _spec(tmp_path / "t7.spec.json", {"kind": "reproductions", **spec})
    assert report.main(["table", "--spec", spec, "--out-tex", str(tex), "--out-csv", str(out_csv)]) == 0
    text = tex.read_text()
    assert r"Fashion-MNIST & RATIO & ours & ResNet (0.3M) & 81.23 & 65.43 & L2 0.5 & 123.46 & -- \\" in text
    assert r"Fashion-MNIST & JEM$^\dagger$ & ours & ResNet (0.3M) & 79.51 & 60.49 & L2 0.5 & 45.68 & 8.05 \\" in text
    assert (r"Fashion-MNIST & JEM & reported: Grathwohl et al. (2020) & -- & 92.90 & -- & -- & 38.40 & 8.76 \\"
            in text)
    assert r"CIFAR-10 & RATIO & reported: Augustin et al. (2020) & ResNet-50 & 91.08 & 73.27 & L2 0.5 & -- & -- \\" \
        in text
    assert "training diverged at update 50" in text and "200" in text  # AutoAttack count of our rows in the caption
    df = pd.read_csv(out_csv)
    # grouped by dataset in order of appearance, ours first within a dataset
    assert list(zip(df["dataset"], df["method"], df["origin"])) == [
        ("Fashion-MNIST", "RATIO", "ours"), ("Fashion-MNIST", "JEM", "ours"), ("Fashion-MNIST", "JEM", "reported"),
        ("CIFAR-10", "RATIO", "reported")]
    assert df["acc_clean"].tolist() == pytest.approx([0.8123, 0.7951, 0.929, 0.9108])
    assert df["run"].iloc[0] == "fmnist_at" and df["run"].isna().iloc[3]


def test_table9_conditional_vs_unconditional(runs, tmp_path):
    at, dat = runs
    _json(dat / "metrics" / "fid_uncond.json", {**_meta("fmnist_dat"), "fid": 61.234, "n_samples": 500, "n_ref": 2000,
                                                "steps": 30, "conditional": False, "extractor": "incv3_offline#ab"})
    tex, out_csv = tmp_path / "t9.tex", tmp_path / "t9.csv"
    assert report.main(["table", "--kind", "conditional", "--runs", str(at), str(dat), "--labels", "Standard AT",
                        "DAT", "--out-tex", str(tex), "--out-csv", str(out_csv)]) == 0
    text = tex.read_text()
    assert r"DAT & fmnist & 45.68 & 61.23 & 30 \\" in text and "Standard AT &" not in text  # AT has no uncond FID
    df = pd.read_csv(out_csv)
    assert df[["fid_conditional", "fid_unconditional"]].values.tolist() == [[45.678, 61.234]]
    # a file holding the other mode is an error, not a silently wrong row
    _json(dat / "metrics" / "fid_uncond.json", {**_meta("fmnist_dat"), "fid": 61.0, "conditional": True})
    with pytest.raises(ValueError, match="fid_uncond.json: conditional is True"):
        tables.conditional_frame([dat], ["DAT"])
    with pytest.raises(ValueError, match="no run has metrics/ood.json"):
        tables.write_table({"kind": "ood", "rows": [{"label": "X", "run_dir": str(tmp_path / "nowhere")}]},
                           tmp_path / "a.tex", tmp_path / "a.csv")
    with pytest.raises(ValueError, match="'mystery' is not one of"):
        tables.write_table({"kind": "mystery", "rows": []}, tmp_path / "a.tex", tmp_path / "a.csv")


def test_tables_print_the_chain_source_of_their_samples(runs, tmp_path):
    """Table 1 and Table 9 say where the sampling chains started (fid.json's starts; a file before the key: noise),
    naming each run's source when they differ."""
    at, dat = runs
    tex, out_csv = _table1(runs, tmp_path)
    assert "Chains start from uniform noise." in tex
    assert pd.read_csv(out_csv)["starts"].tolist() == ["noise", "noise"]
    fid = json.loads((dat / "metrics" / "fid.json").read_text())
    _json(dat / "metrics" / "fid.json", {**fid, "starts": "imagenet_minus_rimagenet"})
    _json(dat / "metrics" / "fid_uncond.json", {**fid, "fid": 61.234, "conditional": False,
                                                "starts": "imagenet_minus_rimagenet"})
    tex, _ = _table1(runs, tmp_path)
    assert r"Chains start from uniform noise (Standard AT), imagenet\_minus\_rimagenet (DAT)." in tex
    df, text = tables.build_table({"kind": "conditional", "rows": [{"label": "DAT", "run_dir": str(dat)}]})
    assert df["starts"].tolist() == ["imagenet_minus_rimagenet"]
    assert r"both from the same starts (imagenet\_minus\_rimagenet)" in text and "uniform-noise" not in text


def test_ratio_rows_say_what_they_were_trained_against():
    """A RATIO run's printed label comes from its method block: uniform-noise out-distribution batches (80M Tiny
    Images is withdrawn) or a named set are marked; a file (a copy of 80M Tiny Images) and other methods are not."""
    from dat.report_spec import row_label

    assert row_label("RATIO", {"ratio": {"init": "noise"}}) == "RATIO (noise OOD)"
    assert row_label("RATIO (CIFAR-10)", {"ratio": {"init": "noise"}}) == "RATIO (CIFAR-10, noise OOD)"
    assert row_label("RATIO", {"ratio": {"init": "ood", "ood_set": "cifar100"}}) == "RATIO (cifar100 OOD)"
    assert row_label("RATIO", {"ratio": {"init": "ood", "ood_set": "file:/data/tiny_images.bin"}}) == "RATIO"
    assert row_label("RATIO", {"ratio": {"init": "ood", "ood_set": "imagenet_minus_rimagenet"}}) == "RATIO"  # the paper's set
    assert row_label("DAT", {"bce": {"init": "noise"}}) == "DAT" and row_label("AT", {"ratio": None}) == "AT"


def test_chain_source_and_mixed_sources():
    from dat.report_spec import chain_source, mixed_sources

    aux = {"bce": {"init": "ood", "ood_set": "cifar100"}}
    assert chain_source({"init": "train"}, aux) == "cifar100"
    assert chain_source({"init": "train"}, {"bce": {"init": "noise"}}) == "noise"
    assert chain_source({"init": "noise"}, aux) == "noise"
    assert chain_source({"init": "ood", "ood_set": "openimages"}, {}) == "openimages"
    rows = {"a": ("cifar10", "noise"), "b": ("cifar10", "noise"), "c": ("rin", "noise"), "d": ("rin", "in_minus")}
    assert mixed_sources(rows) == {"rin": {"c": "noise", "d": "in_minus"}}
    assert mixed_sources({k: v for k, v in rows.items() if k != "d"}) == {}
