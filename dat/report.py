"""CLI: the paper's tables (booktabs LaTeX with CSV twins), the long metrics table and the figures.

Reads only the run files of docs/formats.md under each ``results/{run}`` folder and never recomputes a metric; the
files each table kind and figure group reads, the figures' file names and the layout of the spec files are
``dat.report_spec``. Tables are built by ``dat.tables``, figures by ``dat.figures``. The workflow hands each table
and the figures a spec file it writes from the config; by hand, ``--kind``/``--runs`` (tables) and ``--runs``
(figures) stand for a spec.

Examples::

    python -m dat.report table --spec results/tables/table1.spec.json \
        --out-tex results/tables/table1.tex --out-csv results/tables/table1.csv
    python -m dat.report table --kind main --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" DAT \
        --dataset-label Fashion-MNIST --out-tex table1.tex --out-csv table1.csv
    python -m dat.report table --kind ood --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" DAT \
        --out-tex results/tables/table10.tex --out-csv results/tables/table10.csv
    python -m dat.report tables --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" "DAT" \
        --out-dir results/tables
    python -m dat.report metrics --runs results/fmnist_at results/fmnist_dat --out results/report/metrics.csv
    python -m dat.report figures --spec results/figures/figures.spec.json --out-dir results/figures
    python -m dat.report figures --runs results/fmnist_at results/fmnist_dat --labels "Standard AT" "DAT" \
        --out-dir results/figures [--only reliability counterfactual]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dat.figures import DPI, FIGURES, write_figure_groups
from dat.io import read_json, setup_logging
from dat.report_spec import TABLE_INPUTS
from dat.tables import metrics_long, run_name, write_csv, write_table, write_tables

log = logging.getLogger("dat.report")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.report", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, text):
        return sub.add_parser(name, help=text, description=text)

    tb = command("table", "one table from its spec (--spec) or from run folders (--kind, --runs): main (paper Tables "
                          "1-2), reproductions (Table 7), sampling (Table 8), conditional (Table 9), ood (Tables "
                          "10-12), calibration, counterfactual; LaTeX + CSV twin")
    tb.add_argument("--spec", type=Path, metavar="JSON", help="table spec file (layout: dat.report_spec)")
    tb.add_argument("--kind", choices=sorted(TABLE_INPUTS), help="the table kind, without --spec")
    tb.add_argument("--dataset-label", default=None, help="kind main without --spec: dataset name in the caption "
                                                          "(default: the dataset of fid.json)")
    tables = command("tables", "the sampling, conditional, OOD, calibration and counterfactual tables (LaTeX + CSV); "
                               "absent inputs skipped")
    mt = command("metrics", "long CSV (run, metric, value) of every numeric field of every metrics JSON and grid.json")
    fg = command("figures", "the figures of a spec (--spec) or of run folders (--runs, --only), as PNG and PDF")
    fg.add_argument("--spec", type=Path, metavar="JSON", help="figures spec file: figure group -> rows")
    for q in (tb, tables, mt, fg):
        q.add_argument("--runs", nargs="+", type=Path, required=q in (tables, mt), metavar="RUN_DIR",
                       help="results/{run} folders" + ("" if q in (tables, mt) else ", without --spec"))
    for q in (tb, tables, fg):
        q.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                       help="display name per run (default: the run names)")
    tb.add_argument("--out-tex", type=Path, required=True, help="LaTeX table to write")
    tb.add_argument("--out-csv", type=Path, required=True, help="CSV twin to write")
    for q in (tables, fg):
        q.add_argument("--out-dir", type=Path, required=True, help="folder for the outputs")
    mt.add_argument("--out", type=Path, required=True, help="CSV to write")
    fg.add_argument("--dpi", type=int, default=DPI, help=f"PNG resolution (default {DPI})")
    fg.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES),
                    help="without --spec: figure groups to draw (default: all whose inputs exist)")
    args = p.parse_args(argv)
    if args.command in ("table", "figures"):
        if (args.spec is None) == (args.runs is None):
            p.error(f"{args.command} wants either --spec or --runs")
        if args.command == "table" and (args.spec is None) == (args.kind is None):
            p.error("table wants --kind with --runs, and no --kind with --spec")
    if getattr(args, "labels", None) is not None and len(args.labels) != len(args.runs or []):
        p.error(f"--labels has {len(args.labels)} names for {len(args.runs or [])} --runs")
    if args.command != "metrics" and args.runs is not None and args.labels is None:
        args.labels = [run_name(r) for r in args.runs]
    return args


def _rows(args: argparse.Namespace) -> list[dict]:
    return [{"label": label, "run_dir": str(run_dir)} for run_dir, label in zip(args.runs, args.labels)]


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.command == "table":
        spec = read_json(args.spec) if args.spec else {"kind": args.kind, "rows": _rows(args),
                                                       "dataset_label": args.dataset_label}
        write_table(spec, args.out_tex, args.out_csv)
    elif args.command == "tables":
        write_tables(args.runs, args.labels, args.out_dir)
    elif args.command == "metrics":
        df = metrics_long(args.runs)
        write_csv(df, args.out)
        log.info("wrote %s (%d rows)", args.out, len(df))
    else:
        if args.spec:
            groups = {group: [(row["run_dir"], row["label"]) for row in rows]
                      for group, rows in read_json(args.spec)["groups"].items()}
        else:
            groups = {group: list(zip(args.runs, args.labels)) for group in args.only}
        write_figure_groups(groups, args.out_dir, args.dpi)
    return 0


if __name__ == "__main__":
    sys.exit(main())
