"""CLI: the paper's tables (booktabs LaTeX with CSV twins), the long metrics table and the figures.

Reads only the run files of docs/formats.md under each ``results/{run}`` folder (``metrics/*.json``,
``grid.json``, ``samples.npz``, ``samples_uncond.npz``, ``counterfactual_examples.npz``, ``train_log.csv``) and never
recomputes a metric. Library functions (building
DataFrames from run folders, LaTeX formatting, drawing into a given Axes) are separate from the CLI drivers.
LaTeX is written by :func:`latex_table` (no jinja2 needed); the tables need ``\\usepackage{booktabs}``.

Examples::

    python -m dat.report table1 --rows "Standard AT=results/fmnist_at" "DAT=results/fmnist_dat" \
        --dataset-label "Fashion-MNIST" --out-tex results/tables/table1.tex --out-csv results/tables/table1.csv
    python -m dat.report reproductions --spec '{"rows": [{"label": "RATIO", "run_dir": "results/fmnist_ratio"}],
        "reported": [{"label": "RATIO", "source": "Augustin et al. (2020)", "dataset": "CIFAR-10", "acc": 91.08}]}' \
        --out-tex results/tables/table7.tex --out-csv results/tables/table7.csv
    python -m dat.report table --kind ood --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" DAT \
        --out-tex results/tables/table10.tex --out-csv results/tables/table10.csv
    python -m dat.report tables --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" "DAT" \
        --out-dir results/tables
    python -m dat.report metrics --runs results/fmnist_at results/fmnist_dat --out results/report/metrics.csv
    python -m dat.report figures --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" "DAT" \
        --out-dir results/figures [--only reliability counterfactual]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dat.io import atomic_write_text, read_json, setup_logging

log = logging.getLogger("dat.report")

DPI = 120
MISSING = "--"
TABLE1_CSV_COLUMNS = [
    "run", "method", "acc_clean", "acc_robust_autoattack", "acc_robust_pgd", "is_mean", "is_std", "fid", "fid_floor",
    "chosen_steps", "n_samples", "n_ref", "n_autoattack", "n_clean", "extractor",
    # audit columns beyond the paper's table
    "dataset", "norm", "eps", "n_pgd", "n_floor", "is_note", "diverged_at_step", "kept_step",
]
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
        "n_floor": fid.get("n_floor"), "is_note": fid.get("is_note"),
        "autoattack_version": aa.get("version"), "autoattack_package": aa.get("package"),
        **_diverged_fields(robust),
    }


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
    "run", "n_clean", "n_autoattack", "n_samples", "diverged_at_step", "kept_step",
]


def reproductions_frame(rows: Sequence[dict], reported: Sequence[dict] = ()) -> pd.DataFrame:
    """Paper Table 7: our baseline runs beside the numbers their papers report.

    Args:
        rows: our runs, each ``{"label", "run_dir", "dataset", "architecture"}`` (dataset and architecture are
            display names); their numbers come from ``metrics/robust.json`` (AutoAttack) and ``metrics/fid.json``.
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
    for row in rows:
        rec = table1_record(row["label"], row["run_dir"])
        out.append({
            "method": row["label"], "origin": "ours", "source": f"this pipeline, run {rec['run']}",
            "dataset": row.get("dataset") or rec["dataset"], "architecture": row.get("architecture"),
            "acc_clean": rec["acc_clean"], "acc_robust": rec["acc_robust_autoattack"],
            "threat_model": f"{rec['norm']} {rec['eps']}" if not is_missing(rec["norm"]) else None,
            "fid": rec["fid"], "is_mean": rec["is_mean"], "run": rec["run"], "n_clean": rec["n_clean"],
            "n_autoattack": rec["n_autoattack"], "n_samples": rec["n_samples"],
            "diverged_at_step": rec["diverged_at_step"], "kept_step": rec["kept_step"],
        })
    for r in reported:
        pct = lambda key: None if r.get(key) is None else float(r[key]) / 100.0  # noqa: E731
        out.append({"method": r["label"], "origin": "reported", "source": r["source"], "dataset": r["dataset"],
                    "architecture": r.get("architecture"), "acc_clean": pct("acc"), "acc_robust": pct("robust_acc"),
                    "threat_model": r.get("threat_model"), "fid": r.get("fid"), "is_mean": r.get("is")})
    df = pd.DataFrame(out, columns=REPRODUCTIONS_CSV_COLUMNS)
    order = {d: i for i, d in enumerate(dict.fromkeys(df["dataset"]))}
    df["_d"], df["_o"] = df["dataset"].map(order), (df["origin"] != "ours").astype(int)
    return df.sort_values(["_d", "_o"], kind="stable").drop(columns=["_d", "_o"]).reset_index(drop=True)


def reproductions_latex(df: pd.DataFrame, title: str = "Baseline reproductions") -> str:
    """Paper Table 7 as LaTeX: our rows and the reported rows per dataset, the origin of every number stated."""
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
                     fmt_num(r["acc_clean"], scale=100), fmt_num(r["acc_robust"], scale=100),
                     fmt_text(r["threat_model"]), fmt_num(r["fid"]), fmt_num(r["is_mean"])])
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
                       notes=notes)


def sampling_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """Grid search of T (long): run, method, steps, fid, chosen, step_size, starts (what the chains start from:
    ``noise`` or the run's auxiliary OOD set), n_samples, n_ref, extractor."""
    rows = []
    for run, label, g in collect_json(run_dirs, labels, "grid.json"):
        for steps, fid in zip(g["steps_grid"], g["fid"]):
            rows.append({"run": run, "method": label, "steps": int(steps), "fid": fid,
                         "chosen": int(steps) == int(g["chosen_steps"]), "step_size": g.get("step_size"),
                         "starts": g.get("starts", "noise"), "n_samples": g.get("n_samples"), "n_ref": g.get("n_ref"),
                         "extractor": g.get("extractor")})
    return pd.DataFrame(rows, columns=["run", "method", "steps", "fid", "chosen", "step_size", "starts", "n_samples",
                                       "n_ref", "extractor"])


def starts_label(name: str) -> str:
    """Paper Table 8's "OOD data source" cell: ``noise`` -> uniform noise, ``file:<path>`` -> the file's name, a set
    name as it is."""
    if name == "noise":
        return "uniform noise"
    return Path(name.split(":", 1)[1]).name if name.startswith(("file:", "npz:")) else name


def conditional_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """Conditional vs unconditional FID per run (paper Table 9) from ``metrics/fid.json`` and
    ``metrics/fid_uncond.json``: run, method, dataset, fid_conditional, fid_unconditional, steps, n_samples, n_ref,
    extractor. Runs without both files are left out (logged). Raises ValueError when a file holds the other mode."""
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
                     "n_samples": cond.get("n_samples"), "n_ref": cond.get("n_ref"), "extractor": cond.get("extractor")})
    return pd.DataFrame(rows, columns=["run", "method", "dataset", "fid_conditional", "fid_unconditional", "steps",
                                       "n_samples", "n_ref", "extractor"])


def ood_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """OOD AUROC (long): run, method, ood_set, score, attack, auroc, n_out, n_in, eps_o, attack_steps."""
    rows = []
    for run, label, o in collect_json(run_dirs, labels, "metrics/ood.json"):
        for r in o["rows"]:
            rows.append({"run": run, "method": label, "ood_set": r["ood_set"], "score": r["score"],
                         "attack": r["attack"], "auroc": r["auroc"], "n_out": r.get("n_out"), "n_in": o.get("n_in"),
                         "eps_o": o.get("eps_o"), "attack_steps": o.get("steps")})
    return pd.DataFrame(rows, columns=["run", "method", "ood_set", "score", "attack", "auroc", "n_out", "n_in", "eps_o",
                                       "attack_steps"])


def calibration_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """ECE per run: run, method, ece, acc_clean, n_bins, n_examples."""
    rows = [{"run": run, "method": label, "ece": c["ece"], "acc_clean": c.get("acc_clean"), "n_bins": c.get("n_bins"),
             "n_examples": c.get("n_examples")}
            for run, label, c in collect_json(run_dirs, labels, "metrics/calibration.json")]
    return pd.DataFrame(rows, columns=["run", "method", "ece", "acc_clean", "n_bins", "n_examples"])


def counterfactual_frame(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str]) -> pd.DataFrame:
    """Counterfactual FID and target confidence per radius (long): run, method, radius, fid, confidence, n_images."""
    rows = []
    for run, label, c in collect_json(run_dirs, labels, "metrics/counterfactual.json"):
        for radius, fid, conf in zip(c["radii"], c["fid"], c["confidence"]):
            rows.append({"run": run, "method": label, "radius": float(radius), "fid": fid, "confidence": conf,
                         "n_images": c.get("n_images")})
    return pd.DataFrame(rows, columns=["run", "method", "radius", "fid", "confidence", "n_images"])


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


def table1_latex(df: pd.DataFrame, dataset_label: str) -> str:
    """Paper Table 1: Method, Acc (%), Robust Acc (%) (AutoAttack), IS, FID and the chosen T.

    Args:
        df: the output of :func:`table1_frame`.
        dataset_label: dataset name for the caption (escaped here).

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
            is_cell = fmt_num(r["is_mean"])
        rows.append([method_cells[r["method"]], fmt_num(r["acc_clean"], scale=100),
                     fmt_num(r["acc_robust_autoattack"], scale=100), is_cell, fmt_num(r["fid"]),
                     fmt_int(r["chosen_steps"])])
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
        f"$T$: sampling steps chosen by the FID grid search. {_runs_sentence(recs)}"
    )
    notes = div_notes + [f"IS n/a: ``{n}''" for n in dict.fromkeys(is_notes)]
    header = ["Method", r"Acc (\%)", r"Robust Acc (\%)", "IS", "FID", "$T$"]
    return latex_table(header, rows, caption=caption, label="tab:table1", notes=notes)


def sampling_latex(df: pd.DataFrame) -> str:
    """Grid search of T (paper Table 8 analogue): FID per T and run, the chosen T in bold, step size below."""
    runs = list(dict.fromkeys(zip(df["run"], df["method"])))
    recs = [{"run": r, "method": m, **df[df["run"] == r].iloc[0].to_dict()} for r, m in runs]
    rows = []
    for steps in sorted(df["steps"].unique()):
        cells = [str(int(steps))]
        for run, _ in runs:
            hit = df[(df["run"] == run) & (df["steps"] == steps)]
            if hit.empty:
                cells.append(MISSING)
            else:
                text = fmt_num(hit["fid"].iloc[0])
                cells.append(rf"\textbf{{{text}}}" if bool(hit["chosen"].iloc[0]) else text)
        rows.append(cells)
    chosen = [df[(df["run"] == run) & df["chosen"]]["steps"] for run, _ in runs]
    rows += ["midrule", ["chosen $T$"] + [fmt_int(c.iloc[0]) if len(c) else MISSING for c in chosen],
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
    return latex_table(header, rows, caption=caption, label="tab:sampling")


def conditional_latex(df: pd.DataFrame) -> str:
    """Paper Table 9: FID of conditional (ascent on f(x)[y]) and unconditional (ascent on logsumexp f(x)) samples."""
    recs = df.to_dict("records")
    rows = [[latex_escape(r["method"]), fmt_text(r["dataset"]), fmt_num(r["fid_conditional"]),
             fmt_num(r["fid_unconditional"]), fmt_int(r["steps"])] for r in recs]
    caption = (
        f"Conditional vs unconditional generation: FID of {same_or_each(recs, 'n_samples')} samples against "
        f"{same_or_each(recs, 'n_ref')} reference training images (extractor "
        f"{same_or_each(recs, 'extractor', fmt=fmt_text)}), both from the same uniform-noise starts at the $T$ of "
        f"the conditional grid search (paper Table 9). {_runs_sentence(recs)}"
    )
    header = ["Method", "Dataset", "FID cond.", "FID uncond.", "$T$"]
    return latex_table(header, rows, caption=caption, label="tab:conditional", align="llrrr")


def ood_latex(df: pd.DataFrame) -> str:
    """OOD AUROC in percent (paper Tables 10-12 analogue): rows method x score, columns OOD set x clean/adversarial."""
    sets = list(dict.fromkeys(df["ood_set"]))
    runs = list(dict.fromkeys(zip(df["run"], df["method"])))
    rows = []
    for run, method in runs:
        sub = df[df["run"] == run]
        for score in dict.fromkeys(sub["score"]):
            cells = [latex_escape(method), SCORE_LATEX.get(score, latex_escape(score))]
            for s in sets:
                for attack in ("clean", "adversarial"):
                    hit = sub[(sub["score"] == score) & (sub["ood_set"] == s) & (sub["attack"] == attack)]
                    cells.append(fmt_num(hit["auroc"].iloc[0], scale=100) if len(hit) else MISSING)
            rows.append(cells)
    recs = [{"run": r, "method": m, **df[df["run"] == r].iloc[0].to_dict()} for r, m in runs]
    steps = (f" ({same_or_each(recs, 'attack_steps')} steps)"
             if any(not is_missing(r.get("attack_steps")) for r in recs) else "")
    n_out = ", ".join(f"{latex_escape(s)} ({fmt_int(df[df['ood_set'] == s]['n_out'].iloc[0])})" for s in sets)
    caption = (
        f"OOD detection, AUROC (\\%): {same_or_each(recs, 'n_in')} in-distribution test images (positives) against "
        f"each OOD set (images: {n_out}). Scores: $-E(x) = \\mathrm{{logsumexp}}_y f(x)[y]$ and $\\max_y p(y|x)$. "
        f"Adv.: every OOD image moved by $\\ell_2$ PGD{steps} inside a ball of "
        f"radius $\\varepsilon_o$ = {same_or_each(recs, 'eps_o', fmt=fmt_g)} to raise its score "
        f"(paper Tables 10--12). {_runs_sentence(recs)}"
    )
    header = ["Method", "Score"] + ["Clean", "Adv."] * len(sets)
    group = [("", 2)] + [(latex_escape(s), 2) for s in sets]
    return latex_table(header, rows, caption=caption, label="tab:ood", group_header=group)


def calibration_latex(df: pd.DataFrame) -> str:
    """Expected calibration error per run (paper Figure 3 / App. A.5 numbers), in percent."""
    recs = df.to_dict("records")
    rows = [[latex_escape(r["method"]), fmt_num(r["ece"], scale=100), fmt_num(r["acc_clean"], scale=100)] for r in recs]
    caption = (
        f"Expected calibration error (ECE) over {same_or_each(recs, 'n_bins')} equal-width confidence bins on "
        f"{same_or_each(recs, 'n_examples')} clean test images, no temperature scaling. {_runs_sentence(recs)}"
    )
    return latex_table(["Method", r"ECE (\%)", r"Acc (\%)"], rows, caption=caption, label="tab:calibration")


def counterfactual_latex(df: pd.DataFrame) -> str:
    """Counterfactual FID and mean target confidence (%) per $\\ell_2$ radius and run (paper Figure 1 numbers)."""
    runs = list(dict.fromkeys(zip(df["run"], df["method"])))
    rows = []
    for radius in sorted(df["radius"].unique()):
        cells = [fmt_g(radius)]
        for run, _ in runs:
            hit = df[(df["run"] == run) & (df["radius"] == radius)]
            if hit.empty:
                cells += [MISSING, MISSING]
            else:
                cells += [fmt_num(hit["fid"].iloc[0]), fmt_num(hit["confidence"].iloc[0], scale=100)]
        rows.append(cells)
    recs = [{"run": r, "method": m, **df[df["run"] == r].iloc[0].to_dict()} for r, m in runs]
    caption = (
        f"Counterfactuals of {same_or_each(recs, 'n_images')} training images towards a random other class by "
        f"targeted $\\ell_2$ PGD of radius $\\varepsilon$: FID averaged over target classes (against real training "
        f"images of that class) and mean target-class confidence (\\%) (paper Figure 1). {_runs_sentence(recs)}"
    )
    header = [r"$\varepsilon$"] + ["FID", r"Conf. (\%)"] * len(runs)
    group = [("", 1)] + [(latex_escape(m), 2) for _, m in runs]
    return latex_table(header, rows, caption=caption, label="tab:counterfactual", group_header=group)


# ----------------------------------------------------------------------------------------------------- figures


def select_grid(y: np.ndarray, max_classes: int = 10, per_class: int = 10) -> tuple[list[int], list[list[int]]]:
    """Indices for a class-by-row sample grid: the first ``per_class`` samples of each of the first classes.

    With ``y = arange(N) % K`` and K = 10 this is exactly the first 100 samples, one row per class.

    Args:
        y: (N,) int64 target classes.
        max_classes: at most this many rows (the smallest class indices).
        per_class: at most this many samples per row.

    Returns:
        ``(classes, rows)``: the class of each row and the sample indices in each row.
    """
    y = np.asarray(y)
    classes = [int(c) for c in np.unique(y)[:max_classes]]
    return classes, [np.flatnonzero(y == c)[:per_class].tolist() for c in classes]


def image_mosaic(x: np.ndarray, rows: Sequence[Sequence[int]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile images into one array.

    Args:
        x: (N, H, W, C) uint8 images.
        rows: sample indices per mosaic row.
        pad: pixels of ``fill`` between and around tiles.
        fill: padding value.

    Returns:
        (R*(H+pad)+pad, cols*(W+pad)+pad, C) uint8.
    """
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C in (1, 3), got {x.shape}")
    _, h, w, c = x.shape
    n_cols = max((len(r) for r in rows), default=0)
    out = np.full((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, k in enumerate(row):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            out[top:top + h, left:left + w] = x[k]
    return out


def plot_image_grid(ax, x: np.ndarray, y: np.ndarray, *, title: str | None = None, max_classes: int = 10,
                    per_class: int = 10, pad: int = 2) -> None:
    """Draw one row per class (up to ``per_class`` images each) into ``ax``; grayscale when C = 1.

    Args:
        ax: a matplotlib Axes.
        x: (N, H, W, C) uint8 images (samples or their seeds).
        y: (N,) int64 classes that order the rows.
        title: optional Axes title.
        max_classes: at most this many rows.
        per_class: at most this many columns.
        pad: pixels between tiles.
    """
    classes, rows = select_grid(y, max_classes, per_class)
    mosaic = image_mosaic(x, rows, pad=pad)
    h = x.shape[1]
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(len(classes))], [str(c) for c in classes])
    ax.tick_params(length=0, labelsize=7)
    ax.set_ylabel("class")
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)


def plot_counterfactual_grid(ax, x: np.ndarray, x_cf: np.ndarray, y: np.ndarray, target: np.ndarray,
                             radii: Sequence[float], *, title: str | None = None, pad: int = 2) -> None:
    """Appendix A.3: one row per image, the original then its counterfactual at each radius.

    Args:
        ax: a matplotlib Axes.
        x: (n, H, W, C) uint8 originals; x_cf: (R, n, H, W, C) uint8 counterfactuals at the R radii.
        y, target: (n,) int64 true and target classes (row labels "y -> target").
        radii: the R L2 radii (column labels).
    """
    n = len(x)
    tiles = np.concatenate([x, *x_cf])  # tile k * n + i: image i at column k (0 = original)
    rows = [[k * n + i for k in range(len(radii) + 1)] for i in range(n)]
    mosaic = image_mosaic(tiles, rows, pad=pad)
    h, w = x.shape[1:3]
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([pad + k * (w + pad) + w / 2 for k in range(len(radii) + 1)],
                  ["original"] + [f"$\\varepsilon$={r:g}" for r in radii], fontsize=7)
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(n)], [f"{a} $\\to$ {b}" for a, b in zip(y, target)],
                  fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)


def plot_snapshots(ax_acc, ax_fid, curves: Sequence[dict]) -> None:
    """Paper Figure 4: PGD robust accuracy and FID of the weight snapshots against the training images seen.

    Args:
        ax_acc, ax_fid: two Axes.
        curves: ``metrics/snapshots.json`` dicts with a ``label`` added, one line per run.
    """
    one_t = len({c["steps"] for c in curves}) == 1  # runs whose grid searches chose another T say theirs
    for c in curves:
        images = [pt["images"] for pt in c["points"]]
        ax_acc.plot(images, [pt["acc_pgd"] * 100 for pt in c["points"]], marker="o", ms=3, label=c["label"])
        ax_fid.plot(images, [pt["fid"] for pt in c["points"]], marker="o", ms=3,
                    label=c["label"] if one_t else f"{c['label']} (T = {c['steps']})")
    c = curves[0]
    ax_acc.set(xlabel="training images seen (this stage)", ylabel="PGD robust accuracy (%)",
               title=f"{c['norm']} PGD-{c['pgd_steps']}, eps {c['eps']:g}, {c['n_pgd']} test images")
    ax_fid.set(xlabel="training images seen (this stage)", ylabel="FID",
               title=f"FID of {c['n_samples']} samples at " + (f"T = {c['steps']}" if one_t else "each run's grid T"))
    for ax in (ax_acc, ax_fid):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def plot_counterfactual(ax_fid, ax_conf, curves: Sequence[dict]) -> None:
    """Paper Figure 1: class-averaged counterfactual FID and mean target confidence against the radius.

    Args:
        ax_fid: Axes for FID vs radius.
        ax_conf: Axes for confidence vs radius.
        curves: dicts with ``label``, ``radii``, ``fid`` and ``confidence`` (lists of equal length), one per run.
    """
    for c in curves:
        ax_fid.plot(c["radii"], c["fid"], marker="o", ms=3, label=c["label"])
        ax_conf.plot(c["radii"], c["confidence"], marker="o", ms=3, label=c["label"])
    ax_fid.set(xlabel=r"$\ell_2$ radius $\varepsilon$", ylabel="class-averaged FID", title="Counterfactual FID")
    ax_conf.set(xlabel=r"$\ell_2$ radius $\varepsilon$", ylabel="mean target confidence", ylim=(0, 1.02),
                title="Target-class confidence")
    for ax in (ax_fid, ax_conf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def plot_reliability(ax, bins: dict, ece: float, title: str) -> None:
    """A reliability diagram (paper Figure 3): accuracy per confidence bin as bars, the gap to confidence hatched.

    Args:
        ax: a matplotlib Axes.
        bins: ``confidence``, ``accuracy``, ``count``, ``lower``, ``upper`` lists (calibration.json ``bins``).
        ece: expected calibration error in [0, 1], shown in the title as a percentage.
        title: the run's label.
    """
    count = np.asarray(bins["count"], dtype=float)
    n = len(count)
    lower = np.asarray(bins.get("lower") or np.linspace(0, 1, n + 1)[:-1], dtype=float)
    upper = np.asarray(bins.get("upper") or np.linspace(0, 1, n + 1)[1:], dtype=float)
    acc = np.array([np.nan if is_missing(v) else v for v in bins["accuracy"]], dtype=float)
    conf = np.array([np.nan if is_missing(v) else v for v in bins["confidence"]], dtype=float)
    keep = (count > 0) & np.isfinite(acc)
    width = (upper - lower)[keep]
    ax.bar(lower[keep], acc[keep], width=width, align="edge", color="tab:blue", edgecolor="black", lw=0.5,
           label="accuracy")
    gap = keep & np.isfinite(conf)
    ax.bar(lower[gap], (conf - acc)[gap], bottom=acc[gap], width=(upper - lower)[gap], align="edge", color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", lw=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{title}: ECE {ece * 100:.2f}%")
    ax.legend(fontsize=7, loc="upper left")


def plot_train_curves(axes: Sequence, train_log: pd.DataFrame, label: str | None = None) -> None:
    """Stage-2 curves against images seen: loss terms, AUC, T (``steps_T``) and adversarial accuracy.

    Args:
        axes: four Axes (loss, AUC, T, adversarial accuracy); None skips that panel.
        train_log: train_log.csv rows; only rows with a ``bce`` value (stage 2) are drawn.
        label: None draws one run (every loss term); a label overlays runs: the BCE loss of each, in one colour
            per run across the four panels, with a legend.
    """
    df = train_log[pd.to_numeric(train_log["bce"], errors="coerce").notna()]
    x = pd.to_numeric(df["images"], errors="coerce")
    col = lambda name: pd.to_numeric(df[name], errors="coerce")  # noqa: E731
    ax_loss, ax_auc, ax_t, ax_acc = axes
    drawn = [ax for ax in axes if ax is not None]
    color = None if label is None else f"C{len(drawn[0].get_lines()) % 10}"
    if ax_loss is not None:
        for name in (("loss", "ce_adv", "bce") if label is None else ("bce",)):
            if name in df:
                ax_loss.plot(x, col(name), label=name if label is None else label, color=color)
        ax_loss.set(ylabel="loss", title="loss terms" if label is None else "BCE loss")
        ax_loss.legend(fontsize=8)
    for ax, name, default, ylabel, title in ((ax_auc, "auc", "tab:green", "AUC real vs $x_T$", "AUC"),
                                             (ax_t, "steps_T", "tab:purple", "T", "sampling steps T (curriculum)"),
                                             (ax_acc, "acc_adv", "tab:orange", "accuracy",
                                              "adversarial training accuracy")):
        if ax is None:
            continue
        if name == "steps_T" and name in df:
            ax.step(x, col(name), where="post", color=color or default, label=label)
        elif name in df:
            ax.plot(x, col(name), color=color or default, label=label)
        ax.set(ylabel=ylabel, title=title)
    for ax in drawn:
        ax.set_xlabel("images seen")
        ax.grid(alpha=0.3)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> list[Path]:
    """Save ``fig`` as ``path`` (PNG) and beside it as PDF, each atomically (temporary file, then ``os.replace``).

    Returns:
        [the PNG path, the PDF path].
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for target, fmt in ((path, "png"), (path.with_suffix(".pdf"), "pdf")):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{fmt}", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the figure ordinary permissions
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        log.info("wrote %s", target)
        written.append(target)
    return written


# ----------------------------------------------------------------------------------------------------- drivers


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """``df`` as CSV (full float precision, no index), written atomically."""
    atomic_write_text(df.to_csv(index=False), path)


def write_table1(rows: Sequence[tuple[str, str | os.PathLike]], dataset_label: str | None, out_tex,
                 out_csv) -> pd.DataFrame:
    """Build Table 1 from ``(label, run_dir)`` pairs and write its LaTeX and CSV twin; returns the DataFrame."""
    df = table1_frame(rows)
    if dataset_label is None:
        dataset_label = str(df["dataset"].iloc[0])
    atomic_write_text(table1_latex(df, dataset_label), out_tex)
    write_csv(df[TABLE1_CSV_COLUMNS], out_csv)
    log.info("wrote %s and %s (%d rows)", out_tex, out_csv, len(df))
    return df


def write_reproductions(spec: dict, out_tex, out_csv) -> pd.DataFrame:
    """Build Table 7 from a spec ``{"rows": [...], "reported": [...], "title": ...}`` (see
    :func:`reproductions_frame`) and write its LaTeX and CSV twin; returns the DataFrame."""
    df = reproductions_frame(spec.get("rows", []), spec.get("reported", []))
    atomic_write_text(reproductions_latex(df, spec.get("title") or "Baseline reproductions"), out_tex)
    write_csv(df, out_csv)
    log.info("wrote %s and %s (%d rows, %d reported)", out_tex, out_csv, len(df), int((df["origin"] == "reported").sum()))
    return df


TABLES = {
    "sampling": (sampling_frame, sampling_latex, "grid.json"),
    "conditional": (conditional_frame, conditional_latex, "metrics/fid_uncond.json"),
    "ood": (ood_frame, ood_latex, "metrics/ood.json"),
    "calibration": (calibration_frame, calibration_latex, "metrics/calibration.json"),
    "counterfactual": (counterfactual_frame, counterfactual_latex, "metrics/counterfactual.json"),
}


def write_kind_table(kind: str, run_dirs: Sequence, labels: Sequence[str], out_tex, out_csv) -> pd.DataFrame:
    """One table of ``TABLES`` (sampling = Table 8, conditional = Table 9, ood = Tables 10-12, calibration,
    counterfactual) over the given runs, as LaTeX and its CSV twin.

    Raises:
        ValueError: an unknown kind, or no run has the table's input (naming it).
    """
    if kind not in TABLES:
        raise ValueError(f"table kind {kind!r} is not one of {sorted(TABLES)}")
    frame, latex, source = TABLES[kind]
    df = frame(run_dirs, labels)
    if df.empty:
        raise ValueError(f"{kind} table: no run has {source} ({', '.join(map(str, run_dirs))})")
    _write_table(df, latex, out_tex, out_csv)
    return df


def _write_table(df: pd.DataFrame, latex, out_tex, out_csv) -> None:
    """``latex(df)`` to ``out_tex`` and ``df`` to ``out_csv``, both atomically."""
    atomic_write_text(latex(df), out_tex)
    write_csv(df, out_csv)
    log.info("wrote %s and %s (%d rows)", out_tex, out_csv, len(df))


def write_tables(run_dirs: Sequence, labels: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``{name}.tex`` and ``{name}.csv`` for each table of ``TABLES`` whose input exists for some run."""
    out_dir, written = Path(out_dir), []
    for name, (frame, latex, source) in TABLES.items():
        df = frame(run_dirs, labels)
        if df.empty:
            log.warning("skipped %s table: no run has %s", name, source)
            continue
        _write_table(df, latex, out_dir / f"{name}.tex", out_dir / f"{name}.csv")
        written += [out_dir / f"{name}.tex", out_dir / f"{name}.csv"]
    return written


FIGURES = ("samples", "curves", "snapshots", "counterfactual", "reliability", "unconditional", "bce_curves",
           "counterfactual_grid")
FIGURE_FILES = {  # figure group -> file stem (per-run groups add _{run}); each is written as .png and .pdf
    "samples": "samples", "curves": "train_curves", "counterfactual": "figure1_counterfactual",
    "reliability": "figure3_reliability", "unconditional": "figure8_unconditional", "bce_curves": "figure2_bce_augment",
    "counterfactual_grid": "figureA3_counterfactuals", "snapshots": "figure4_stage2",
}


def _grid_figure(x: np.ndarray, y: np.ndarray, title: str, path: Path, dpi: int) -> list[Path]:
    _, rows = select_grid(y)
    fig = Figure(figsize=(max(len(r) for r in rows) * 0.5 + 0.8, len(rows) * 0.5 + 0.6))
    plot_image_grid(fig.add_subplot(), x, y, title=title)
    return save_figure(fig, path, dpi)


def _stage2_log(run_dir: Path) -> pd.DataFrame | None:
    """train_log.csv of a run when it has stage-2 rows (a ``bce`` value), else None (logged)."""
    path = run_dir / "train_log.csv"
    if not path.is_file():
        log.warning("no stage-2 curves for %s: %s absent", run_name(run_dir), path)
        return None
    train_log = pd.read_csv(path)
    if "bce" not in train_log or pd.to_numeric(train_log["bce"], errors="coerce").notna().sum() == 0:
        log.info("no stage-2 curves for %s: no stage-2 rows (empty bce column) in %s", run_name(run_dir), path)
        return None
    return train_log


def write_figures(run_dirs: Sequence, labels: Sequence[str], out_dir: str | os.PathLike, dpi: int = DPI,
                  only: Sequence[str] = FIGURES) -> list[Path]:
    """Write the figure groups ``only`` for the given runs, as PNG and PDF; inputs that are absent are skipped
    (logged). Returns the paths written.

    Groups (file names in ``FIGURE_FILES``): ``samples`` (class-by-row grids of each run's final samples and of
    their seed images: paper Figures 5-7), ``curves`` (each stage-2 run's training curves), ``snapshots`` (paper
    Figure 4: robust accuracy and FID of the weight snapshots, one line per run), ``counterfactual``
    (paper Figure 1, one line per run), ``reliability`` (paper Figure 3 / A.5, one panel per run),
    ``unconditional`` (grids of each run's unconditional samples: paper Figure 8), ``bce_curves`` (the stage-2
    curves of several runs overlaid: paper Figure 2 when the runs differ in the BCE-branch augmentation),
    ``counterfactual_grid`` (each run's example counterfactuals per radius: appendix A.3).
    """
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure group(s) {unknown}: {FIGURES}")
    out_dir, written = Path(out_dir), []
    runs = [(Path(d), label) for d, label in zip(run_dirs, labels)]
    for group, npz, keys in (("samples", "samples.npz", (("x", "samples", "samples"), ("x_init", "seeds", "seeds"))),
                             ("unconditional", "samples_uncond.npz", (("x", FIGURE_FILES["unconditional"],
                                                                      "unconditional samples"),))):
        if group not in only:
            continue
        for run_dir, label in runs:
            run, path = run_name(run_dir), run_dir / npz
            if not path.is_file():
                log.warning("skipped the %s figures of %s: %s absent", group, run, path)
                continue
            with np.load(path) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_init") if k in f.files}
            for key, stem, what in keys:
                if key in arrays:
                    written += _grid_figure(arrays[key], arrays["y"], f"{label}: {what}", out_dir / f"{stem}_{run}.png", dpi)
                else:
                    log.warning("skipped %s_%s.png: %s has no %r", stem, run, path, key)

    if "counterfactual" in only:
        found = collect_json(run_dirs, labels, "metrics/counterfactual.json")
        if found:
            fig = Figure(figsize=(9, 3.5), layout="constrained")
            ax_fid, ax_conf = fig.subplots(1, 2)
            plot_counterfactual(ax_fid, ax_conf, [{"label": label, **c} for _, label, c in found])
            written += save_figure(fig, out_dir / f"{FIGURE_FILES['counterfactual']}.png", dpi)
        else:
            log.warning("skipped Figure 1: no run has metrics/counterfactual.json")

    if "snapshots" in only:
        found = collect_json(run_dirs, labels, "metrics/snapshots.json")
        if found:
            fig = Figure(figsize=(9, 3.5), layout="constrained")
            plot_snapshots(*fig.subplots(1, 2), [{"label": label, **c} for _, label, c in found])
            written += save_figure(fig, out_dir / f"{FIGURE_FILES['snapshots']}.png", dpi)
        else:
            log.warning("skipped Figure 4: no run has metrics/snapshots.json")

    if "counterfactual_grid" in only:
        for run_dir, label in runs:
            path = run_dir / "counterfactual_examples.npz"
            if not path.is_file():
                log.warning("skipped the counterfactual grid of %s: %s absent", run_name(run_dir), path)
                continue
            with np.load(path) as f:
                ex = {k: f[k] for k in f.files}
            fig = Figure(figsize=(0.6 * (len(ex["radii"]) + 1) + 1.2, 0.6 * len(ex["x"]) + 0.6))
            plot_counterfactual_grid(fig.add_subplot(), ex["x"], ex["x_cf"], ex["y"], ex["target"], ex["radii"],
                                     title=f"{label}: counterfactuals (true -> target class)")
            written += save_figure(fig, out_dir / f"{FIGURE_FILES['counterfactual_grid']}_{run_name(run_dir)}.png", dpi)

    if "reliability" in only:
        found = collect_json(run_dirs, labels, "metrics/calibration.json")
        if found:
            fig = Figure(figsize=(3.6 * len(found), 3.6), layout="constrained")
            axes = np.atleast_1d(fig.subplots(1, len(found)))
            for ax, (_, label, c) in zip(axes, found):
                plot_reliability(ax, c["bins"], c["ece"], label)
            written += save_figure(fig, out_dir / f"{FIGURE_FILES['reliability']}.png", dpi)
        else:
            log.warning("skipped Figure 3: no run has metrics/calibration.json")

    if "curves" in only:
        for run_dir, label in runs:
            train_log = _stage2_log(run_dir)
            if train_log is not None:
                fig = Figure(figsize=(9, 6), layout="constrained")
                plot_train_curves(fig.subplots(2, 2).ravel(), train_log)
                fig.suptitle(f"{label}: stage-2 training")
                written += save_figure(fig, out_dir / f"{FIGURE_FILES['curves']}_{run_name(run_dir)}.png", dpi)

    if "bce_curves" in only:
        staged = [(run_dir, label, t) for (run_dir, label) in runs if (t := _stage2_log(run_dir)) is not None]
        logs = [(label, t) for _, label, t in staged]
        found = collect_json([d for d, _, _ in staged], [label for _, label, _ in staged], "metrics/snapshots.json")
        if logs and len(found) == len(logs):
            fig = Figure(figsize=(9, 6.5), layout="constrained")
            (ax_acc, ax_fid), (ax_bce, ax_t) = fig.subplots(2, 2)
            plot_snapshots(ax_acc, ax_fid, [{"label": label, **c} for _, label, c in found])
            for label, train_log in logs:
                plot_train_curves((ax_bce, None, ax_t, None), train_log, label=label)
            fig.suptitle("Stage 2 per BCE-branch augmentation (paper Figure 2)")
            written += save_figure(fig, out_dir / f"{FIGURE_FILES['bce_curves']}.png", dpi)
        elif logs:
            log.warning("Figure 2 without robust accuracy and FID: %d of %d stage-2 runs have metrics/snapshots.json "
                        "(a method without a snapshots block); drawing the training logs only", len(found), len(logs))
            fig = Figure(figsize=(9, 6), layout="constrained")
            axes = fig.subplots(2, 2).ravel()
            for label, train_log in logs:
                plot_train_curves(axes, train_log, label=label)
            fig.suptitle("Stage-2 training per run (paper Figure 2: BCE-branch augmentation)")
            written += save_figure(fig, out_dir / f"{FIGURE_FILES['bce_curves']}.png", dpi)
        else:
            log.warning("skipped Figure 2: no run has stage-2 rows in train_log.csv")
    return written


# --------------------------------------------------------------------------------------------------------- CLI


def _parse_rows(items: Sequence[str]) -> list[tuple[str, Path]]:
    rows = []
    for item in items:
        label, sep, path = item.rpartition("=")
        if not sep or not label or not path:
            raise argparse.ArgumentTypeError(f"--rows wants LABEL=RUN_DIR, got {item!r}")
        rows.append((label, Path(path)))
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.report", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    def command(name, text):
        return sub.add_parser(name, help=text, description=text)

    t1 = command("table1", "paper Table 1 (acc, AutoAttack robust acc, IS, FID, T) as LaTeX + CSV")
    t1.add_argument("--rows", nargs="+", required=True, metavar="LABEL=RUN_DIR",
                    help="one table row per run folder, in order, e.g. 'DAT=results/fmnist_dat'")
    t1.add_argument("--dataset-label", default=None, help="dataset name in the caption (default: fid.json dataset)")
    t1.add_argument("--out-tex", type=Path, required=True, help="LaTeX table to write")
    t1.add_argument("--out-csv", type=Path, required=True, help="CSV twin to write")
    rp = command("reproductions", "paper Table 7: baseline runs beside the numbers their papers report (LaTeX + CSV)")
    rp.add_argument("--spec", required=True, type=json.loads, metavar="JSON",
                    help='{"rows": [{"label", "run_dir", "dataset", "architecture"}], "reported": [{"label", "source", '
                         '"dataset", "architecture", "acc", "robust_acc", "threat_model", "fid", "is"}], "title": ...}')
    rp.add_argument("--out-tex", type=Path, required=True, help="LaTeX table to write")
    rp.add_argument("--out-csv", type=Path, required=True, help="CSV twin to write")
    kt = command("table", "one table of a kind: sampling (Table 8), conditional (Table 9), ood (Tables 10-12), "
                          "calibration, counterfactual (LaTeX + CSV)")
    kt.add_argument("--kind", required=True, choices=sorted(TABLES))
    kt.add_argument("--out-tex", type=Path, required=True, help="LaTeX table to write")
    kt.add_argument("--out-csv", type=Path, required=True, help="CSV twin to write")
    tb = command("tables", "sampling, OOD, calibration and counterfactual tables (LaTeX + CSV); absent inputs skipped")
    mt = command("metrics", "long CSV (run, metric, value) of every numeric field of every metrics JSON and grid.json")
    fg = command("figures", "sample/seed grids, counterfactual curves, reliability diagrams, stage-2 curves (PNG)")
    for q in (kt, tb, mt, fg):
        q.add_argument("--runs", nargs="+", type=Path, required=True, metavar="RUN_DIR", help="results/{run} folders")
    for q in (kt, tb, fg):
        q.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                       help="display name per run (default: the run names)")
    for q in (tb, fg):
        q.add_argument("--out-dir", type=Path, required=True, help="folder for the outputs")
    mt.add_argument("--out", type=Path, required=True, help="CSV to write")
    fg.add_argument("--dpi", type=int, default=DPI, help=f"PNG resolution (default {DPI})")
    fg.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES),
                    help="figure groups to draw (default: all whose inputs exist)")
    args = p.parse_args(argv)
    if args.command == "table1":
        try:
            args.rows = _parse_rows(args.rows)
        except argparse.ArgumentTypeError as err:
            p.error(str(err))
    if getattr(args, "labels", None) is not None and len(args.labels) != len(args.runs):
        p.error(f"--labels has {len(args.labels)} names for {len(args.runs)} --runs")
    if args.command in ("table", "tables", "figures") and args.labels is None:
        args.labels = [run_name(r) for r in args.runs]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.command == "table1":
        write_table1(args.rows, args.dataset_label, args.out_tex, args.out_csv)
    elif args.command == "reproductions":
        write_reproductions(args.spec, args.out_tex, args.out_csv)
    elif args.command == "table":
        write_kind_table(args.kind, args.runs, args.labels, args.out_tex, args.out_csv)
    elif args.command == "tables":
        write_tables(args.runs, args.labels, args.out_dir)
    elif args.command == "metrics":
        df = metrics_long(args.runs)
        write_csv(df, args.out)
        log.info("wrote %s (%d rows)", args.out, len(df))
    else:
        write_figures(args.runs, args.labels, args.out_dir, args.dpi, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
