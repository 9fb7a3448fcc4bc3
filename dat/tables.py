"""The paper's tables from run folders: DataFrames (one row per run, or long frames) and booktabs LaTeX with CSV twins.

Reads only the run files of docs/formats.md (``metrics/*.json`` and ``grid.json`` under each ``results/{run}``
folder; which ones each table kind reads is ``dat.report_spec.TABLE_INPUTS``) and never recomputes a metric. Frame
builders take run folders and labels; the ``*_latex`` functions take a frame and return LaTeX source (written by
:func:`latex_table`, no jinja2 needed; the tables need ``\\usepackage{booktabs}``); :func:`write_table` builds one
table from its spec (``dat.report_spec``). Accuracies, ECE, AUROC and confidences are fractions in [0, 1] in the
frames and CSV twins and percentages in the LaTeX.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dat.io import atomic_write_text, read_json
from dat.report_spec import INTERVAL_KINDS, TABLE_INPUTS

log = logging.getLogger("dat.tables")

MISSING = "--"
TABLE1_CSV_COLUMNS = [
    "run", "method", "acc_clean", "acc_robust_autoattack", "acc_robust_pgd", "is_mean", "is_std", "fid", "fid_floor",
    "chosen_steps", "n_samples", "n_ref", "n_autoattack", "n_clean", "extractor",
    # audit columns beyond the paper's table
    "dataset", "starts", "norm", "eps", "n_pgd", "n_floor", "is_note", "diverged_at_step", "kept_step", "checkpoint",
    "selected_step",
]
# per-seed rows and the rows over seeds (issue 22): every table's CSV twin ends with these (SEED_COLUMNS), and with
# <value>_lo, <value>_hi (a single run's 95% interval) and <value>_std (over seeds, on the mean rows) for each of
# the kind's values (KIND_VALUES)
SEED_COLUMNS = ["seed", "stat", "n_seeds", "seeds"]
# table kind -> the columns that identify one printed cell group (a row of one method, or a method x T, ...)
KIND_KEYS = {
    "main": ["method"], "reproductions": ["origin", "dataset", "method"], "sampling": ["method", "steps"],
    "conditional": ["method"], "ood": ["method", "ood_set", "score", "attack"], "calibration": ["method"],
    "counterfactual": ["method", "radius"],
}
# table kind -> the measured values averaged over seeds (each may carry a single run's _lo/_hi interval)
KIND_VALUES = {
    "main": ["acc_clean", "acc_robust_autoattack", "acc_robust_pgd", "is_mean", "fid"],
    "reproductions": ["acc_clean", "acc_robust", "fid", "is_mean"],
    "sampling": ["fid"], "conditional": ["fid_conditional", "fid_unconditional"], "ood": ["auroc"],
    "calibration": ["ece", "acc_clean"], "counterfactual": ["fid", "confidence"],
}
# table kind -> per-seed values that are not averaged: the rows over seeds list each seed's (the grid-searched T)
KIND_EACH = {"main": ["chosen_steps"], "reproductions": [], "sampling": [], "conditional": ["steps"], "ood": [],
             "calibration": [], "counterfactual": []}
# which checkpoint each row measured (dat.tables.checkpoint_fields); "selection" (the record) stays out of the CSVs
CHECKPOINT_COLUMNS = ["checkpoint", "selected_step", "selection"]
# what a single run's bracketed interval is, per kind (the run files' interval records; docs/formats.md)
ACC_FID_INTERVALS = ("accuracies: Wilson score interval of the binomial proportion over the test images measured "
                     "(scipy.stats.binomtest); FID: measured FID +- z times its delete-a-group jackknife standard error "
                     "over the generated samples ({groups} groups, astropy.stats.jackknife_stats), reference "
                     "statistics fixed")
FID_INTERVALS = ("measured FID +- z times its delete-a-group jackknife standard error over the generated samples "
                 "(astropy.stats.jackknife_stats), reference statistics fixed")
SCORE_LATEX = {"energy": r"$-E(x)$", "max_softmax": r"$\max_y p(y|x)$"}
NORM_LATEX = {"L2": r"$\ell_2$", "Linf": r"$\ell_\infty$"}


# ----------------------------------------------------------------------------------------------------- reading


def read_required(path: str | os.PathLike) -> dict:
    """Read a JSON file that a table cannot do without.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"required input missing: {path}")
    return read_json(path)


def read_optional(path: str | os.PathLike) -> dict | None:
    """Read a JSON file, or return None when it does not exist."""
    path = Path(path)
    return read_json(path) if path.is_file() else None


def run_name(run_dir: str | os.PathLike) -> str:
    """The run key of a ``results/{run}`` folder (its last path component)."""
    p = Path(run_dir)
    return p.name or p.resolve().name


def is_missing(value: Any) -> bool:
    """True for None, NaN and pandas' missing markers; False for anything else (lists included)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _need(obj: dict, key: str, path: Path) -> Any:
    if key not in obj:
        raise KeyError(f"{path}: field {key!r} missing (see docs/formats.md)")
    return obj[key]


def collect_json(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str],
                 relpath: str) -> list[tuple[str, str, dict]]:
    """``(run, label, data)`` for each run folder that has ``relpath``; the others are logged and left out."""
    found, absent = [], []
    for run_dir, label in zip(run_dirs, labels):
        data = read_optional(Path(run_dir) / relpath)
        if data is None:
            absent.append(str(Path(run_dir) / relpath))
        else:
            found.append((run_name(run_dir), label, data))
    if absent and found:
        log.warning("left out (file absent): %s", ", ".join(absent))
    return found


# ------------------------------------------------------------------------------------------------------ frames


def table1_record(label: str, run_dir: str | os.PathLike) -> dict:
    """One Table 1 row (raw numbers) from ``metrics/robust.json``, ``metrics/fid.json`` and ``grid.json``.

    Args:
        label: the method name shown in the table.
        run_dir: a ``results/{run}`` folder.

    Returns:
        A dict with the keys of ``TABLE1_CSV_COLUMNS``; accuracies are fractions in [0, 1].

    Raises:
        FileNotFoundError: naming robust.json or fid.json when one is absent (grid.json is optional: without it
            T is the ``steps`` recorded in fid.json).
    """
    run_dir = Path(run_dir)
    robust_path, fid_path = run_dir / "metrics" / "robust.json", run_dir / "metrics" / "fid.json"
    robust, fid = read_required(robust_path), read_required(fid_path)
    grid = read_optional(run_dir / "grid.json")
    aa, pgd = robust.get("autoattack") or {}, robust.get("pgd") or {}
    if grid is not None:
        chosen = _need(grid, "chosen_steps", run_dir / "grid.json")
        if fid.get("steps") is not None and int(fid["steps"]) != int(chosen):
            log.warning("%s: fid.json was measured at T=%s but grid.json chose T=%s", run_dir, fid["steps"], chosen)
    else:
        chosen = fid.get("steps")
        log.warning("%s: no grid.json; T taken from fid.json steps=%s", run_dir, chosen)
    return {
        "run": run_name(run_dir), "method": label,
        "acc_clean": _need(robust, "acc_clean", robust_path),
        "acc_robust_autoattack": aa.get("acc_robust"), "acc_robust_pgd": pgd.get("acc_robust"),
        "is_mean": fid.get("is_mean"), "is_std": fid.get("is_std"), "fid": _need(fid, "fid", fid_path),
        "fid_floor": fid.get("fid_floor"), "chosen_steps": chosen, "n_samples": fid.get("n_samples"),
        "n_ref": fid.get("n_ref"), "n_autoattack": aa.get("n_examples"), "n_clean": robust.get("n_clean"),
        "extractor": fid.get("extractor"), "dataset": fid.get("dataset", robust.get("dataset")),
        "norm": robust.get("norm"), "eps": robust.get("eps_str", robust.get("eps")), "n_pgd": pgd.get("n_examples"),
        "n_floor": fid.get("n_floor"), "is_note": fid.get("is_note"), "starts": fid.get("starts", "noise"),
        "autoattack_version": aa.get("version"), "autoattack_package": aa.get("package"),
        # 95% intervals of this run's numbers (docs/formats.md; missing in files of before them)
        "acc_clean_lo": robust.get("acc_clean_lo"), "acc_clean_hi": robust.get("acc_clean_hi"),
        "acc_robust_autoattack_lo": aa.get("acc_robust_lo"), "acc_robust_autoattack_hi": aa.get("acc_robust_hi"),
        "acc_robust_pgd_lo": pgd.get("acc_robust_lo"), "acc_robust_pgd_hi": pgd.get("acc_robust_hi"),
        "fid_lo": fid.get("fid_lo"), "fid_hi": fid.get("fid_hi"),
        "fid_groups": (fid.get("fid_interval") or {}).get("groups"),
        **_diverged_fields(robust), **checkpoint_fields(robust),
    }


def checkpoint_fields(result: dict) -> dict:
    """Which checkpoint of its run a result JSON measured, from its ``checkpoint.selection`` record:
    ``checkpoint`` (``final`` or ``best_fid``; missing for a file of before the record), ``selected_step`` (the
    update of a best-FID checkpoint, else missing) and ``selection`` (the record, for the note of
    :func:`selection_notes`; not a CSV column)."""
    sel = (result.get("checkpoint") or {}).get("selection") or {}
    best = sel.get("checkpoint") == "best_fid"
    return {"checkpoint": sel.get("checkpoint"), "selected_step": sel.get("step") if best else None,
            "selection": sel if best else None}


def selection_notes(records: Sequence[dict]) -> list[str]:
    """One note per run evaluated at its best-FID stage-2 checkpoint (``evaluate.checkpoint: best_fid``), saying
    which update it is and how it was chosen; nothing for runs evaluated at their final model."""
    notes = []
    for r in dict((rec["method"], rec) for rec in records if not is_missing(rec.get("selected_step"))).values():
        sel = r.get("selection") or {}
        how = (f" (lowest FID, {fmt_num(sel['fid'])}, of the weight snapshots: {fmt_int(sel.get('n_samples'))} "
               f"samples at $T$ = {fmt_int(sel.get('steps'))})" if not is_missing(sel.get("fid")) else "")
        of = f" of {fmt_int(sel['final_step'])}" if not is_missing(sel.get("final_step")) else ""
        notes.append(f"{latex_escape(r['method'])}: best-FID stage-2 checkpoint, update "
                     f"{fmt_int(r['selected_step'])}{of}{how}; the other rows and columns of this run measure it too.")
    return notes


def _diverged_fields(robust: dict) -> dict:
    """``diverged_at_step``/``kept_step`` of a run that ended by divergence (``on_divergence: keep_last``), else
    missing: read from the checkpoint record of ``robust.json``."""
    d = (robust.get("checkpoint") or {}).get("diverged") or {}
    return {"diverged_at_step": d.get("at_step"), "kept_step": d.get("kept_step")}


def diverged_note(records: Sequence[dict]) -> tuple[dict, list[str]]:
    """Method cells with a dagger for diverged runs, and the notes that explain each dagger."""
    cells, notes = {}, []
    for r in records:
        cells[r["method"]] = latex_escape(r["method"])
        if not is_missing(r.get("diverged_at_step")):
            cells[r["method"]] += r"$^\dagger$"
            notes.append(rf"$^\dagger${latex_escape(r['method'])}: training diverged at update "
                         rf"{fmt_int(r['diverged_at_step'])}; the row evaluates the last good checkpoint "
                         rf"(update {fmt_int(r['kept_step'])}).")
    return cells, notes


def table1_frame(rows: Sequence[tuple[str, str | os.PathLike]]) -> pd.DataFrame:
    """Table 1 as a DataFrame, one row per ``(label, run_dir)``, columns ``TABLE1_CSV_COLUMNS`` and two more."""
    return pd.DataFrame([table1_record(label, run_dir) for label, run_dir in rows])


REPRODUCTIONS_CSV_COLUMNS = [
    "method", "origin", "source", "dataset", "architecture", "acc_clean", "acc_robust", "threat_model", "fid", "is_mean",
    "run", "n_clean", "n_autoattack", "n_samples", "diverged_at_step", "kept_step", "checkpoint", "selected_step",
]


def reproductions_frame(rows: Sequence[dict], reported: Sequence[dict] = ()) -> pd.DataFrame:
    """Paper Table 7: our baseline runs beside the numbers their papers report.

    Args:
        rows: our runs, each ``{"label", "run_dir", "dataset", "architecture"}`` (dataset and architecture are
            display names; ``seed`` and ``replicates`` as in a spec row: one row per seed); their numbers come from ``metrics/robust.json`` (AutoAttack) and ``metrics/fid.json``.
        reported: cited constants from the config, each ``{"label", "source", "dataset"}`` plus any of
            ``architecture``, ``acc``, ``robust_acc`` (percent), ``threat_model`` (text), ``fid``, ``is``.

    Returns:
        One row per entry, columns ``REPRODUCTIONS_CSV_COLUMNS``; ``origin`` is ``ours`` or ``reported``;
        accuracies are fractions in [0, 1] for both origins. Rows are grouped by dataset (in order of first
        appearance), ours before the reported ones.

    Raises:
        FileNotFoundError / KeyError: naming the run file or field that is missing.
    """
    out = []
    for row, seed, run_dir in ((row, seed, run_dir) for row in rows for seed, run_dir in row_replicates(row)):
        rec = table1_record(row["label"], run_dir)
        out.append({
            "method": row["label"], "origin": "ours", "source": f"this pipeline, run {rec['run']}",
            "dataset": row.get("dataset") or rec["dataset"], "architecture": row.get("architecture"),
            "acc_clean": rec["acc_clean"], "acc_robust": rec["acc_robust_autoattack"],
            "threat_model": f"{rec['norm']} {rec['eps']}" if not is_missing(rec["norm"]) else None,
            "fid": rec["fid"], "is_mean": rec["is_mean"], "run": rec["run"], "n_clean": rec["n_clean"],
            "n_autoattack": rec["n_autoattack"], "n_samples": rec["n_samples"],
            "diverged_at_step": rec["diverged_at_step"], "kept_step": rec["kept_step"],
            "checkpoint": rec["checkpoint"], "selected_step": rec["selected_step"], "selection": rec["selection"],
            "seed": seed, "acc_clean_lo": rec["acc_clean_lo"], "acc_clean_hi": rec["acc_clean_hi"],
            "acc_robust_lo": rec["acc_robust_autoattack_lo"], "acc_robust_hi": rec["acc_robust_autoattack_hi"],
            "fid_lo": rec["fid_lo"], "fid_hi": rec["fid_hi"],
        })
    for r in reported:
        pct = lambda key: None if r.get(key) is None else float(r[key]) / 100.0  # noqa: E731
        out.append({"method": r["label"], "origin": "reported", "source": r["source"], "dataset": r["dataset"],
                    "architecture": r.get("architecture"), "acc_clean": pct("acc"), "acc_robust": pct("robust_acc"),
                    "threat_model": r.get("threat_model"), "fid": r.get("fid"), "is_mean": r.get("is")})
    df = pd.DataFrame(out, columns=REPRODUCTIONS_CSV_COLUMNS + ["selection", "seed"]
                      + [f"{v}_{end}" for v in KIND_VALUES["reproductions"] for end in ("lo", "hi")])
    order = {d: i for i, d in enumerate(dict.fromkeys(df["dataset"]))}
    df["_d"], df["_o"] = df["dataset"].map(order), (df["origin"] != "ours").astype(int)
    return df.sort_values(["_d", "_o"], kind="stable").drop(columns=["_d", "_o"]).reset_index(drop=True)


def reproductions_latex(df: pd.DataFrame, title: str = "Baseline reproductions", intervals: bool = False) -> str:
    """Paper Table 7 as LaTeX: our rows and the reported rows per dataset, the origin of every number stated; rows
    over seeds print mean +- std, and ``intervals`` a single run's 95% interval (:func:`fmt_cell`)."""
    recs = df.to_dict("records")
    method_cells, notes = diverged_note([r for r in recs if r["origin"] == "ours"])
    rows, last = [], None
    for r in recs:
        if last is not None and r["dataset"] != last:
            rows.append("midrule")
        last = r["dataset"]
        origin = "ours" if r["origin"] == "ours" else rf"reported: {latex_escape(r['source'])}"
        rows.append([latex_escape(r["dataset"]), method_cells.get(r["method"], latex_escape(r["method"]))
                     if r["origin"] == "ours" else latex_escape(r["method"]), origin, fmt_text(r["architecture"]),
                     fmt_cell(r, "acc_clean", 100, intervals=intervals),
                     fmt_cell(r, "acc_robust", 100, intervals=intervals), fmt_text(r["threat_model"]),
                     fmt_cell(r, "fid", intervals=intervals), fmt_cell(r, "is_mean")])
    ours = [r for r in recs if r["origin"] == "ours"]
    counts = (f"Our rows: clean accuracy on {same_or_each(ours, 'n_clean')} test images, AutoAttack on "
              f"{same_or_each(ours, 'n_autoattack')}, FID of {same_or_each(ours, 'n_samples')} samples, all "
              f"measured by this pipeline's rules. " if ours else "")
    caption = (
        f"{latex_escape(title)}: our runs of each baseline beside the numbers its paper reports "
        f"(``reported'': constants cited in the config, not measured here; they may use another dataset, "
        f"architecture, threat model or evaluation protocol, given in their columns). {counts}"
        f"Robust Acc: AutoAttack for our rows; the threat model column gives norm and radius in pixel units."
        + (f" {_runs_sentence(ours)}" if ours else "")
    )
    header = ["Dataset", "Model", "Origin", "Architecture", r"Acc (\%)", r"Robust Acc (\%)", "Threat model", "FID", "IS"]
    return latex_table(header, rows, caption=caption, label="tab:table7", align="lllll" + "r" * 2 + "l" + "rr",
                       notes=notes + selection_notes(ours) + uncertainty_notes(ours, intervals, "accuracies: Wilson "
                                                                                 "(scipy.stats.binomtest); FID: "
                                                                                 + FID_INTERVALS))


def sampling_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """Grid search of T (long): run, method, steps, fid, chosen, step_size, starts (what the chains start from:
    ``noise`` or the run's auxiliary OOD set), n_samples, n_ref, extractor."""
    rows = []
    for run, label, g in collect_json(run_dirs, labels, "grid.json"):
        lo, hi = (g.get(key) or [None] * len(g["fid"]) for key in ("fid_lo", "fid_hi"))
        for steps, fid, fid_lo, fid_hi in zip(g["steps_grid"], g["fid"], lo, hi):
            rows.append({"run": run, "method": label, "steps": int(steps), "fid": fid, "fid_lo": fid_lo, "fid_hi": fid_hi,
                         "chosen": int(steps) == int(g["chosen_steps"]), "step_size": g.get("step_size"),
                         "starts": g.get("starts", "noise"), "n_samples": g.get("n_samples"), "n_ref": g.get("n_ref"),
                         "extractor": g.get("extractor"), **checkpoint_fields(g)})
    return pd.DataFrame(rows, columns=["run", "method", "steps", "fid", "chosen", "step_size", "starts", "n_samples",
                                       "n_ref", "extractor", *CHECKPOINT_COLUMNS, "fid_lo", "fid_hi"])


def starts_label(name: str) -> str:
    """Paper Table 8's "OOD data source" cell: ``noise`` -> uniform noise, ``file:<path>`` -> the file's name, a set
    name as it is."""
    if name == "noise":
        return "uniform noise"
    return Path(name.split(":", 1)[1]).name if name.startswith(("file:", "npz:")) else name


def starts_text(records: Sequence[dict]) -> str:
    """The chain source of the records' samples for a caption (:func:`starts_label` of each ``starts``), one name
    when all agree, else each with its method."""
    return same_or_each(records, "starts", fmt=lambda v: latex_escape(starts_label("noise" if is_missing(v) else v)))


def conditional_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """Conditional vs unconditional FID per run (paper Table 9) from ``metrics/fid.json`` and
    ``metrics/fid_uncond.json``: run, method, dataset, fid_conditional, fid_unconditional, steps, n_samples, n_ref,
    extractor, starts (the chain source of both sample sets). Runs without both files are left out (logged).
    Raises ValueError when a file holds the other mode."""
    rows = []
    conds = {run: c for run, _, c in collect_json(run_dirs, labels, "metrics/fid.json")}
    for run_dir, label in zip(run_dirs, labels):
        cond, uncond = conds.get(run_name(run_dir)), read_optional(Path(run_dir) / "metrics" / "fid_uncond.json")
        if cond is None or uncond is None:
            log.warning("conditional table: %s has no metrics/fid.json or metrics/fid_uncond.json", run_dir)
            continue
        for data, want, name in ((cond, True, "fid.json"), (uncond, False, "fid_uncond.json")):
            if data.get("conditional", want) != want:
                raise ValueError(f"{run_dir}/metrics/{name}: conditional is {data['conditional']}, expected {want}")
        rows.append({"run": run_name(run_dir), "method": label, "dataset": cond.get("dataset"),
                     "fid_conditional": cond["fid"], "fid_unconditional": uncond["fid"], "steps": cond.get("steps"),
                     "fid_conditional_lo": cond.get("fid_lo"), "fid_conditional_hi": cond.get("fid_hi"),
                     "fid_unconditional_lo": uncond.get("fid_lo"), "fid_unconditional_hi": uncond.get("fid_hi"),
                     "starts": cond.get("starts", "noise"),
                     "n_samples": cond.get("n_samples"), "n_ref": cond.get("n_ref"), "extractor": cond.get("extractor")})
    return pd.DataFrame(rows, columns=["run", "method", "dataset", "fid_conditional", "fid_unconditional", "steps",
                                       "starts", "n_samples", "n_ref", "extractor", "fid_conditional_lo",
                                       "fid_conditional_hi", "fid_unconditional_lo", "fid_unconditional_hi"])


def ood_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """OOD AUROC (long): run, method, ood_set, score, attack, auroc, n_out, n_in, eps_o, attack_steps."""
    rows = []
    for run, label, o in collect_json(run_dirs, labels, "metrics/ood.json"):
        for r in o["rows"]:
            rows.append({"run": run, "method": label, "ood_set": r["ood_set"], "score": r["score"],
                         "attack": r["attack"], "auroc": r["auroc"], "auroc_lo": r.get("auroc_lo"),
                         "auroc_hi": r.get("auroc_hi"), "n_out": r.get("n_out"), "n_in": o.get("n_in"),
                         "eps_o": o.get("eps_o"), "attack_steps": o.get("steps"), **checkpoint_fields(o)})
    return pd.DataFrame(rows, columns=["run", "method", "ood_set", "score", "attack", "auroc", "n_out", "n_in", "eps_o",
                                       "attack_steps", *CHECKPOINT_COLUMNS, "auroc_lo", "auroc_hi"])


def calibration_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """ECE per run: run, method, ece, acc_clean, n_bins, n_examples."""
    rows = [{"run": run, "method": label, "ece": c["ece"], "acc_clean": c.get("acc_clean"), "n_bins": c.get("n_bins"),
             "n_examples": c.get("n_examples"), **checkpoint_fields(c),
             **{f"{v}_{end}": c.get(f"{v}_{end}") for v in ("ece", "acc_clean") for end in ("lo", "hi")}}
            for run, label, c in collect_json(run_dirs, labels, "metrics/calibration.json")]
    return pd.DataFrame(rows, columns=["run", "method", "ece", "acc_clean", "n_bins", "n_examples",
                                       *CHECKPOINT_COLUMNS, "ece_lo", "ece_hi", "acc_clean_lo", "acc_clean_hi"])


def counterfactual_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """Counterfactual FID and target confidence per radius (long): run, method, radius, fid, confidence, n_images."""
    rows = []
    for run, label, c in collect_json(run_dirs, labels, "metrics/counterfactual.json"):
        bounds = {key: c.get(key) or [None] * len(c["radii"])
                  for key in ("fid_lo", "fid_hi", "confidence_lo", "confidence_hi")}
        for i, (radius, fid, conf) in enumerate(zip(c["radii"], c["fid"], c["confidence"])):
            rows.append({"run": run, "method": label, "radius": float(radius), "fid": fid, "confidence": conf,
                         "n_images": c.get("n_images"), **checkpoint_fields(c),
                         **{key: values[i] for key, values in bounds.items()}})
    return pd.DataFrame(rows, columns=["run", "method", "radius", "fid", "confidence", "n_images", *CHECKPOINT_COLUMNS,
                                       "fid_lo", "fid_hi", "confidence_lo", "confidence_hi"])


def flatten_numeric(obj: Any, prefix: str) -> list[tuple[str, int | float]]:
    """Every numeric leaf of a JSON value as ``(dotted.name, value)``; booleans and strings are left out.

    Dict keys join with ``.``; list items get ``[i]``, or ``[k=v,...]`` built from their string fields when every
    item is a dict and those labels are unique (e.g. ``ood.rows[attack=clean,ood_set=svhn,score=energy].auroc``).
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, (int, float)):
        return [(prefix, obj)]
    out: list[tuple[str, int | float]] = []
    if isinstance(obj, dict):
        for key in obj:
            out += flatten_numeric(obj[key], f"{prefix}.{key}")
    elif isinstance(obj, list):
        keys = [str(i) for i in range(len(obj))]
        if obj and all(isinstance(item, dict) for item in obj):
            named = [",".join(f"{k}={item[k]}" for k in sorted(item) if isinstance(item[k], str)) for item in obj]
            if all(named) and len(set(named)) == len(named):
                keys = named
        for key, item in zip(keys, obj):
            out += flatten_numeric(item, f"{prefix}[{key}]")
    return out


def metrics_long(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The long table ``run, metric, value`` over every ``metrics/*.json`` and ``grid.json`` of each run.

    The metric name is ``{file stem}.{path}`` (see :func:`flatten_numeric`), e.g. ``robust.autoattack.acc_robust``.
    """
    rows = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        files = sorted((run_dir / "metrics").glob("*.json")) + [p for p in [run_dir / "grid.json"] if p.is_file()]
        if not files:
            log.warning("%s: no metrics JSON and no grid.json", run_dir)
        for path in files:
            for name, value in flatten_numeric(read_json(path), path.stem):
                rows.append({"run": run_name(run_dir), "metric": name, "value": value})
    return pd.DataFrame(rows, columns=["run", "metric", "value"])


# ------------------------------------------------------------------------------------------ seeds and intervals


def row_replicates(row: dict) -> list[tuple[int | None, str]]:
    """``(seed, run_dir)`` of every seed of a spec row: its ``replicates`` (a run with several seeds, first seed
    first), or the row's own ``run_dir`` with its ``seed`` (None in specs of before seeds)."""
    if row.get("replicates"):
        return [(rep["seed"], rep["run_dir"]) for rep in row["replicates"]]
    return [(row.get("seed"), row["run_dir"])]


def expand_rows(rows: Sequence[dict]) -> tuple[list[str], list[str], dict[str, int | None]]:
    """The run folders, their labels (a row's label repeated for each of its seeds) and run -> seed of spec rows."""
    run_dirs, labels, seeds = [], [], {}
    for row in rows:
        for seed, run_dir in row_replicates(row):
            run_dirs.append(run_dir)
            labels.append(row["label"])
            seeds[run_name(run_dir)] = seed
    return run_dirs, labels, seeds


def aggregate_seeds(df: pd.DataFrame, keys: Sequence[str], values: Sequence[str],
                    each: Sequence[str] = ()) -> pd.DataFrame:
    """One row per group of ``keys`` (a table row, or a row x T, ...) over the seeds in it (column ``seed``).

    A group of one run is that run's row (its ``<value>_lo``/``_hi`` interval kept). A group of several seeds gets
    each value's mean and its sample standard deviation over seeds (``<value>_std``, ddof = 1, pandas; the paper's
    "mean +- std" over seeds, e.g. Table 1's 91.86 +- 0.03), no single-run interval, and for each column of
    ``each`` (e.g. the grid-searched T, chosen by each seed for itself) its seeds' values joined by ", " when they
    differ. Other columns are the first seed's (``run`` is the run of the first seed). Adds ``n_seeds`` and
    ``seeds`` (e.g. ``"0, 1"``); groups keep their order of first appearance.

    Raises:
        KeyError: naming a key or value column the frame lacks.
    """
    for col in [*keys, *values, "seed"]:
        if col not in df.columns:
            raise KeyError(f"aggregate_seeds: column {col!r} missing (columns: {list(df.columns)})")
    out = []
    for _, group in df.groupby(list(keys), sort=False, dropna=False):
        rec = group.iloc[0].to_dict()
        rec["n_seeds"] = len(group)
        rec["seeds"] = ", ".join(MISSING if is_missing(v) else str(int(v)) for v in group["seed"])
        if len(group) > 1:
            for v in values:
                col = pd.to_numeric(group[v], errors="coerce")
                rec[v] = float(col.mean()) if col.notna().all() else None
                rec[f"{v}_std"] = float(col.std(ddof=1)) if col.notna().all() else None
                rec[f"{v}_lo"] = rec[f"{v}_hi"] = None
            for col in each:
                texts = list(dict.fromkeys(fmt_int(v) if not isinstance(v, str) else v for v in group[col]))
                rec[col] = rec[col] if len(texts) == 1 else ", ".join(fmt_int(v) for v in group[col])
        out.append(rec)
    return pd.DataFrame(out)


def seeds_csv(per_seed: pd.DataFrame, summary: pd.DataFrame, keys: Sequence[str], values: Sequence[str],
              columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The CSV twin over seeds: every seed's row (``stat`` ``seed``) and, after the seeds of a group that has
    several, their mean row (``stat`` ``mean``, with ``<value>_std``). ``columns`` (default: the per-seed frame's)
    come first, then :data:`SEED_COLUMNS` and each value's ``_lo``, ``_hi``, ``_std``."""
    per_seed = per_seed.assign(stat="seed", n_seeds=1, seeds=[None if is_missing(v) else str(int(v))
                                                                for v in per_seed["seed"]])
    means = summary[summary["n_seeds"] > 1].assign(stat="mean", seed=None)
    tail = [c for c in SEED_COLUMNS] + [f"{v}_{end}" for v in values for end in ("lo", "hi", "std")]
    head = [c for c in (columns if columns is not None else per_seed.columns) if c not in tail]
    rows = []
    for _, group in per_seed.groupby(list(keys), sort=False, dropna=False):
        rows += group.to_dict("records")
        key = tuple(group.iloc[0][k] for k in keys)
        match = means[[tuple(r[k] for k in keys) == key for _, r in means.iterrows()]] if len(means) else means
        rows += match.to_dict("records")
    return pd.DataFrame(rows).reindex(columns=[*head, *tail])


def fmt_cell(rec: dict, col: str, scale: float = 1.0, digits: int = 2, intervals: bool = False) -> str:
    """A measured value: ``mean $\\pm$ std`` for a row over several seeds (:func:`aggregate_seeds`), else the
    value, followed with ``intervals`` by its 95% interval in small type when the run file has one
    (``<col>_lo``/``_hi``); ``--`` when missing."""
    value = rec.get(col)
    if is_missing(value):
        return MISSING
    if rec.get("n_seeds", 1) > 1:
        return rf"{fmt_num(value, digits, scale)} $\pm$ {fmt_num(rec.get(f'{col}_std'), digits, scale)}"
    text = fmt_num(value, digits, scale)
    lo, hi = rec.get(f"{col}_lo"), rec.get(f"{col}_hi")
    if intervals and not is_missing(lo) and not is_missing(hi):
        text += rf" {{\scriptsize[{fmt_num(lo, digits, scale)}, {fmt_num(hi, digits, scale)}]}}"
    return text


def uncertainty_notes(recs: Sequence[dict], intervals: bool, what: str = "") -> list[str]:
    """The table's notes on its uncertainty: which rows are a mean +- std over seeds (and that each seed chose
    its own T), and, with ``intervals``, what the bracketed 95% intervals are (``what``: the kind's sentence)."""
    notes = []
    multi = [r for r in recs if r.get("n_seeds", 1) > 1]
    if multi:
        rows = "; ".join(f"{latex_escape(r['method'])}: seeds {r['seeds']}"
                         for r in {r["method"]: r for r in multi}.values())
        notes.append(rf"Rows over several seeds ({rows}): mean $\pm$ sample standard deviation over the seeds, "
                     rf"each seed its own chain (stage 1, stage 2, grid search of $T$, evaluation), so each seed "
                     rf"chooses its own $T$ (listed when they differ).")
    if intervals and any(k.endswith("_lo") and not is_missing(v) for r in recs for k, v in r.items()):
        notes.append(rf"[lo, hi]: 95\% interval of a single run{(': ' + what) if what else ''}.")
    return notes


# ------------------------------------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: Any) -> str:
    """``str(text)`` with LaTeX's special characters (``\\ & % $ # _ { } ~ ^``) escaped."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def fmt_num(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    """A number with ``digits`` decimals after multiplying by ``scale`` (100 for percent); ``--`` when missing."""
    if is_missing(value):
        return MISSING
    return f"{float(value) * scale:.{digits}f}"


def fmt_int(value: Any) -> str:
    """An integer count, or ``--`` when missing."""
    return MISSING if is_missing(value) else str(int(value))


def fmt_text(value: Any) -> str:
    """A string escaped for LaTeX, or ``--`` when missing."""
    return MISSING if is_missing(value) else latex_escape(value)


def fmt_each(value: Any) -> str:
    """A per-seed count of a row over seeds (:func:`aggregate_seeds`: ``"60, 100"`` when the seeds differ) as it
    is, any other as :func:`fmt_int`."""
    return value if isinstance(value, str) else fmt_int(value)


def fmt_g(value: Any) -> str:
    """A radius or step size in its shortest form (``%g``), strings (``"8/255"``) unchanged."""
    if is_missing(value):
        return MISSING
    return latex_escape(value) if isinstance(value, str) else f"{float(value):g}"


def same_or_each(records: Sequence[dict], key: str, fmt=fmt_int) -> str:
    """One formatted value when all records agree, else ``v1 (method1), v2 (method2)``."""
    texts = [fmt(r.get(key)) for r in records]
    if len(set(texts)) == 1:
        return texts[0]
    return ", ".join(f"{t} ({latex_escape(r['method'])})" for t, r in zip(texts, records))


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str] | str], *, caption: str, label: str,
                align: str | None = None, group_header: Sequence[tuple[str, int]] | None = None,
                notes: Sequence[str] = ()) -> str:
    """A booktabs ``table`` (toprule/midrule/bottomrule) with caption, label and footnote lines.

    Args:
        header: column titles, already LaTeX (escape text with :func:`latex_escape`).
        rows: lists of LaTeX cells, or the string ``"midrule"`` for a rule between row blocks.
        caption: LaTeX caption text.
        label: ``\\label`` key, e.g. ``tab:table1``.
        align: tabular column spec; default ``l`` then ``r`` for every other column.
        group_header: ``(title, span)`` pairs above the header, drawn with ``\\multicolumn`` and ``\\cmidrule``.
        notes: LaTeX lines printed in small type under the table.

    Returns:
        The table as LaTeX source ending with a newline.
    """
    ncol = len(header)
    align = align or "l" + "r" * (ncol - 1)
    lines = ["% generated by python -m dat.report; needs \\usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             rf"\caption{{{caption}}}", rf"\label{{{label}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    if group_header:
        cells, rules, col = [], [], 1
        for title, span in group_header:
            cells.append(title if span == 1 else rf"\multicolumn{{{span}}}{{c}}{{{title}}}")
            if title:
                rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            col += span
        lines += [" & ".join(cells) + r" \\", " ".join(rules)]
    lines += [" & ".join(header) + r" \\", r"\midrule"]
    for row in rows:
        if isinstance(row, str):
            lines.append(r"\midrule")
            continue
        if len(row) != ncol:
            raise ValueError(f"row has {len(row)} cells, header has {ncol}: {row}")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize"] + [note + r"\par" for note in notes] + ["}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _runs_sentence(records: Sequence[dict]) -> str:
    seen = dict.fromkeys((r["method"], r["run"]) for r in records)
    return "Runs: " + ", ".join(rf"{latex_escape(m)} (\texttt{{{latex_escape(r)}}})" for m, r in seen) + "."


def table1_latex(df: pd.DataFrame, dataset_label: str, intervals: bool = False) -> str:
    """Paper Table 1: Method, Acc (%), Robust Acc (%) (AutoAttack), IS, FID and the chosen T.

    Args:
        df: the output of :func:`table1_frame`, or its rows over seeds (:func:`aggregate_seeds`: mean +- std).
        dataset_label: dataset name for the caption (escaped here).
        intervals: print each single run's 95% interval after its accuracies and FID (Wilson, jackknife).

    Returns:
        LaTeX source; IS prints ``n/a`` when ``is_mean`` is null and a note quotes ``is_note``.
    """
    recs = df.to_dict("records")
    rows, is_notes = [], []
    method_cells, div_notes = diverged_note(recs)
    for r in recs:
        if is_missing(r["is_mean"]):
            is_cell = "n/a"
            note = r.get("is_note")
            is_notes.append(latex_escape(note) if not is_missing(note) else "no Inception Score was reported")
        else:
            is_cell = fmt_cell(r, "is_mean")
        rows.append([method_cells[r["method"]], fmt_cell(r, "acc_clean", 100, intervals=intervals),
                     fmt_cell(r, "acc_robust_autoattack", 100, intervals=intervals), is_cell,
                     fmt_cell(r, "fid", intervals=intervals), fmt_each(r["chosen_steps"])])
    norms = {str(r.get("norm")) for r in recs}
    norm = NORM_LATEX.get(next(iter(norms)), latex_escape(next(iter(norms)))) if len(norms) == 1 else "mixed"
    aa = same_or_each(recs, "autoattack_version", fmt=fmt_text)
    pkg = same_or_each(recs, "autoattack_package", fmt=fmt_text)
    caption = (
        f"{latex_escape(dataset_label)}: clean accuracy, robust accuracy, Inception Score (IS) and FID. "
        f"Acc: clean accuracy on {same_or_each(recs, 'n_clean')} test images. "
        f"Robust Acc: AutoAttack ({aa}, {pkg}) on {same_or_each(recs, 'n_autoattack')} test images, "
        f"{norm} threat model, $\\varepsilon$ = {same_or_each(recs, 'eps', fmt=fmt_g)}. "
        f"FID: {same_or_each(recs, 'n_samples')} class-balanced samples against {same_or_each(recs, 'n_ref')} "
        f"reference training images; FID floor (real test images vs the same reference"
        + (f", {same_or_each(recs, 'n_floor')} images" if any(not is_missing(r.get('n_floor')) for r in recs) else "")
        + f"): {same_or_each(recs, 'fid_floor', fmt=fmt_num)}. "
        f"Feature extractor: {same_or_each(recs, 'extractor', fmt=fmt_text)}. "
        f"$T$: sampling steps chosen by the FID grid search. Chains start from {starts_text(recs)}. "
        f"{_runs_sentence(recs)}"
    )
    notes = (div_notes + selection_notes(recs) + [f"IS n/a: ``{n}''" for n in dict.fromkeys(is_notes)]
             + uncertainty_notes(recs, intervals, ACC_FID_INTERVALS.format(
                 groups=same_or_each(recs, "fid_groups"))))
    header = ["Method", r"Acc (\%)", r"Robust Acc (\%)", "IS", "FID", "$T$"]
    return latex_table(header, rows, caption=caption, label="tab:table1", notes=notes)


def _runs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The ``(run, method)`` pairs of a long frame in order of first appearance: the columns of a pivot."""
    return list(dict.fromkeys(zip(df["run"], df["method"])))


def _first_rows(df: pd.DataFrame) -> list[dict]:
    """The first row of each ``(run, method)`` of a long frame, as records: the per-run fields of a caption."""
    return df.drop_duplicates(["run", "method"]).to_dict("records")


def sampling_latex(df: pd.DataFrame, intervals: bool = False, chosen_each: dict | None = None) -> str:
    """Grid search of T (paper Table 8 analogue): FID per T and run, the chosen T in bold, step size below.

    ``df`` is :func:`sampling_frame`'s, or its rows over seeds (mean +- std per T; bold where every seed chose that
    T); ``chosen_each``: method -> the T each seed chose (``"60, 100"``), for rows over seeds."""
    runs, recs = _runs(df), _first_rows(df)
    cells_of = {(r["run"], r["method"], r["steps"]): fmt_cell(r, "fid", intervals=intervals)
                for r in df.to_dict("records")}
    wide = df.pivot(index="steps", columns=["run", "method"], values=["fid", "chosen"])
    fid, chosen = wide["fid"].reindex(columns=runs), wide["chosen"].reindex(columns=runs)
    rows = []
    for steps in fid.index:
        cells = [str(int(steps))]
        for run in runs:
            if is_missing(chosen.at[steps, run]):  # no such T in this run's grid
                cells.append(MISSING)
            else:
                text = cells_of[(*run, steps)]
                cells.append(rf"\textbf{{{text}}}" if bool(chosen.at[steps, run]) else text)
        rows.append(cells)
    chosen_steps = df[df["chosen"]].groupby(["run", "method"], sort=False)["steps"].first()
    chosen_each = chosen_each or {}
    rows += ["midrule", ["chosen $T$"] + [chosen_each.get(run[1]) or fmt_int(chosen_steps.get(run)) for run in runs],
             [r"step size $\eta$"] + [fmt_g(r["step_size"]) for r in recs],
             ["chain starts"] + [latex_escape(starts_label(r["starts"])) for r in recs]]
    caption = (
        f"Grid search of the sampling steps $T$: FID of {same_or_each(recs, 'n_samples')} held-out samples (seeds "
        f"distinct from the final samples) against {same_or_each(recs, 'n_ref')} reference training images, feature "
        f"extractor {same_or_each(recs, 'extractor', fmt=fmt_text)}. "
        f"Bold: the chosen $T$ (lowest FID), used for the final samples; chain starts: the images the chains start "
        f"from (paper Table 8's OOD data source). {_runs_sentence(recs)}"
    )
    header = ["$T$"] + [latex_escape(m) for _, m in runs]
    return latex_table(header, rows, caption=caption, label="tab:sampling",
                       notes=selection_notes(recs) + uncertainty_notes(df.to_dict("records"), intervals, FID_INTERVALS))


def conditional_latex(df: pd.DataFrame, intervals: bool = False) -> str:
    """Paper Table 9: FID of conditional (ascent on f(x)[y]) and unconditional (ascent on logsumexp f(x)) samples;
    rows over seeds print mean +- std (:func:`fmt_cell`)."""
    recs = df.to_dict("records")
    rows = [[latex_escape(r["method"]), fmt_text(r["dataset"]), fmt_cell(r, "fid_conditional", intervals=intervals),
             fmt_cell(r, "fid_unconditional", intervals=intervals), fmt_each(r["steps"])] for r in recs]
    caption = (
        f"Conditional vs unconditional generation: FID of {same_or_each(recs, 'n_samples')} samples against "
        f"{same_or_each(recs, 'n_ref')} reference training images (extractor "
        f"{same_or_each(recs, 'extractor', fmt=fmt_text)}), both from the same starts ({starts_text(recs)}) at the $T$ "
        f"of the conditional grid search (paper Table 9). {_runs_sentence(recs)}"
    )
    header = ["Method", "Dataset", "FID cond.", "FID uncond.", "$T$"]
    return latex_table(header, rows, caption=caption, label="tab:conditional", align="llrrr",
                       notes=uncertainty_notes(recs, intervals, FID_INTERVALS))


def ood_latex(df: pd.DataFrame, intervals: bool = False) -> str:
    """OOD AUROC in percent (paper Tables 10-12 analogue): rows method x score, columns OOD set x clean/adversarial."""
    sets, recs = list(dict.fromkeys(df["ood_set"])), _first_rows(df)
    columns = [(s, attack) for s in sets for attack in ("clean", "adversarial")]
    cells = {(r["run"], r["method"], r["score"], r["ood_set"], r["attack"]): fmt_cell(r, "auroc", 100,
                                                                                   intervals=intervals)
             for r in df.to_dict("records")}
    rows = [[latex_escape(method), SCORE_LATEX.get(score, latex_escape(score))]
            + [cells.get((run, method, score, *column), MISSING) for column in columns]
            for run, method, score in dict.fromkeys(zip(df["run"], df["method"], df["score"]))]
    steps = (f" ({same_or_each(recs, 'attack_steps')} steps)"
             if any(not is_missing(r.get("attack_steps")) for r in recs) else "")
    n_out = df.drop_duplicates("ood_set").set_index("ood_set")["n_out"]
    n_out = ", ".join(f"{latex_escape(s)} ({fmt_int(n_out[s])})" for s in sets)
    caption = (
        f"OOD detection, AUROC (\\%): {same_or_each(recs, 'n_in')} in-distribution test images (positives) against "
        f"each OOD set (images: {n_out}). Scores: $-E(x) = \\mathrm{{logsumexp}}_y f(x)[y]$ and $\\max_y p(y|x)$. "
        f"Adv.: every OOD image moved by $\\ell_2$ PGD{steps} inside a ball of "
        f"radius $\\varepsilon_o$ = {same_or_each(recs, 'eps_o', fmt=fmt_g)} to raise its score "
        f"(paper Tables 10--12). {_runs_sentence(recs)}"
    )
    header = ["Method", "Score"] + ["Clean", "Adv."] * len(sets)
    group = [("", 2)] + [(latex_escape(s), 2) for s in sets]
    return latex_table(header, rows, caption=caption, label="tab:ood", group_header=group,
                       notes=selection_notes(recs) + uncertainty_notes(
                           df.to_dict("records"), intervals, "percentile bootstrap of the AUROC, in- and "
                           "out-distribution images resampled separately (scipy.stats.bootstrap)"))


def calibration_latex(df: pd.DataFrame, intervals: bool = False) -> str:
    """Expected calibration error per run (paper Figure 3 / App. A.5 numbers), in percent; rows over seeds print
    mean +- std, ``intervals`` a single run's 95% interval (:func:`fmt_cell`)."""
    recs = df.to_dict("records")
    rows = [[latex_escape(r["method"]), fmt_cell(r, "ece", 100, intervals=intervals),
             fmt_cell(r, "acc_clean", 100, intervals=intervals)] for r in recs]
    caption = (
        f"Expected calibration error (ECE) over {same_or_each(recs, 'n_bins')} equal-width confidence bins on "
        f"{same_or_each(recs, 'n_examples')} clean test images, no temperature scaling. {_runs_sentence(recs)}"
    )
    return latex_table(["Method", r"ECE (\%)", r"Acc (\%)"], rows, caption=caption, label="tab:calibration",
                       notes=selection_notes(recs) + uncertainty_notes(
                           recs, intervals, "ECE: percentile bootstrap over the test images (scipy.stats.bootstrap); "
                           "accuracy: Wilson (scipy.stats.binomtest)"))


def counterfactual_latex(df: pd.DataFrame, intervals: bool = False) -> str:
    """Counterfactual FID and mean target confidence (%) per $\\ell_2$ radius and run (paper Figure 1 numbers)."""
    runs, recs = _runs(df), _first_rows(df)
    by = {(r["run"], r["method"], r["radius"]): r for r in df.to_dict("records")}
    rows = [[fmt_g(radius)] + [cell for run in runs for cell in (
                fmt_cell(by[(*run, radius)], "fid", intervals=intervals) if (*run, radius) in by else MISSING,
                fmt_cell(by[(*run, radius)], "confidence", 100, intervals=intervals) if (*run, radius) in by
                else MISSING)]
            for radius in sorted(dict.fromkeys(df["radius"]))]
    caption = (
        f"Counterfactuals of {same_or_each(recs, 'n_images')} training images towards a random other class by "
        f"targeted $\\ell_2$ PGD of radius $\\varepsilon$: FID averaged over target classes (against real training "
        f"images of that class) and mean target-class confidence (\\%) (paper Figure 1). {_runs_sentence(recs)}"
    )
    header = [r"$\varepsilon$"] + ["FID", r"Conf. (\%)"] * len(runs)
    group = [("", 1)] + [(latex_escape(m), 2) for _, m in runs]
    return latex_table(header, rows, caption=caption, label="tab:counterfactual", group_header=group,
                       notes=selection_notes(recs) + uncertainty_notes(df.to_dict("records"), intervals,
                                                                      "FID: " + FID_INTERVALS + ", groups stratified by target class; confidence: "
                                                                      "percentile bootstrap of the mean "
                                                                      "(scipy.stats.bootstrap)"))


# ----------------------------------------------------------------------------------------------------- drivers


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """``df`` as CSV (full float precision, no index), written atomically."""
    atomic_write_text(df.to_csv(index=False), path)


# table kind -> (frame over run folders and their labels, LaTeX of that frame): the kinds built from rows alone
RUN_TABLES = {
    "sampling": (sampling_frame, sampling_latex),
    "conditional": (conditional_frame, conditional_latex),
    "ood": (ood_frame, ood_latex),
    "calibration": (calibration_frame, calibration_latex),
    "counterfactual": (counterfactual_frame, counterfactual_latex),
}


def build_table(spec: dict) -> tuple[pd.DataFrame, str]:
    """The CSV frame and the LaTeX of the table a spec declares (layout: ``dat.report_spec``).

    Kind ``main`` is paper Table 1 (:func:`table1_frame`, columns ``TABLE1_CSV_COLUMNS``), ``reproductions`` Table 7
    (:func:`reproductions_frame`), the kinds of ``RUN_TABLES`` the long frames of their rows' runs.

    Raises:
        ValueError: an unknown kind, a spec without rows (but for reproductions), or no run has the input of a kind
            of ``RUN_TABLES`` (naming it).
        KeyError: a row without ``label`` or ``run_dir``; FileNotFoundError / KeyError: a run file or field that
            Table 1 or 7 needs.
    """
    kind, rows = spec.get("kind", "main"), spec.get("rows", [])
    if kind not in TABLE_INPUTS:
        raise ValueError(f"table kind {kind!r} is not one of {sorted(TABLE_INPUTS)}")
    intervals = bool(spec.get("intervals", kind in INTERVAL_KINDS))
    keys, values, each = KIND_KEYS[kind], KIND_VALUES[kind], KIND_EACH[kind]
    if kind == "reproductions":
        df = reproductions_frame(rows, spec.get("reported", []))
        summary = aggregate_seeds(df, keys, values, each)
        return (seeds_csv(df, summary, keys, values, REPRODUCTIONS_CSV_COLUMNS),
                reproductions_latex(summary, spec.get("title") or "Baseline reproductions", intervals))
    if not rows:
        raise ValueError(f"{kind} table: the spec has no rows")
    run_dirs, labels, seeds = expand_rows(rows)
    if kind == "main":
        df = table1_frame(list(zip(labels, run_dirs)))
        df["seed"] = df["run"].map(seeds)
        summary = aggregate_seeds(df, keys, values, each)
        label = spec.get("dataset_label")
        return (seeds_csv(df, summary, keys, values, TABLE1_CSV_COLUMNS),
                table1_latex(summary, str(df["dataset"].iloc[0]) if label is None else label, intervals))
    frame, latex = RUN_TABLES[kind]
    df = frame(run_dirs, labels)
    if df.empty:
        raise ValueError(f"{kind} table: no run has {' and '.join(TABLE_INPUTS[kind])} "
                         f"({', '.join(map(str, run_dirs))})")
    df["seed"] = df["run"].map(seeds)
    summary = aggregate_seeds(df, keys, values, each)
    extra = {}
    if kind == "sampling":  # bold only where every seed chose that T; the chosen-T row lists each seed's
        summary["chosen"] = [bool(g["chosen"].all()) for _, g in df.groupby(keys, sort=False, dropna=False)]
        chosen = df[df["chosen"].astype(bool)]
        extra["chosen_each"] = {m: ", ".join(fmt_int(t) for t in g["steps"]) for m, g in chosen.groupby("method")
                                if len(g) > 1}
    csv = seeds_csv(df.drop(columns="selection", errors="ignore"), summary, keys, values)
    return csv, latex(summary, intervals=intervals, **extra)


def write_table(spec: dict, out_tex: str | os.PathLike, out_csv: str | os.PathLike) -> pd.DataFrame:
    """Build the table a spec declares (:func:`build_table`) and write its LaTeX and CSV twin; returns the CSV frame."""
    df, tex = build_table(spec)
    _write_twins(df, tex, out_tex, out_csv)
    return df


def _write_twins(df: pd.DataFrame, tex: str, out_tex: str | os.PathLike, out_csv: str | os.PathLike) -> None:
    """``tex`` to ``out_tex`` and ``df`` to ``out_csv``, each atomically."""
    atomic_write_text(tex, out_tex)
    write_csv(df, out_csv)
    log.info("wrote %s and %s (%d rows)", out_tex, out_csv, len(df))


def write_tables(run_dirs: Sequence, labels: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``{kind}.tex`` and ``{kind}.csv`` for each kind of ``RUN_TABLES`` whose input some run has (the others
    are logged and skipped); returns the paths written."""
    out_dir, written = Path(out_dir), []
    for kind, (frame, latex) in RUN_TABLES.items():
        df = frame(run_dirs, labels)
        if df.empty:
            log.warning("skipped %s table: no run has %s", kind, " and ".join(TABLE_INPUTS[kind]))
            continue
        _write_twins(df.drop(columns="selection", errors="ignore"), latex(df), out_dir / f"{kind}.tex",
                     out_dir / f"{kind}.csv")
        written += [out_dir / f"{kind}.tex", out_dir / f"{kind}.csv"]
    return written
