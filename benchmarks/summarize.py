"""Summarise Snakemake `benchmark:` files (results/benchmarks/<rule>/<wildcards>.tsv) into one table.

Usage: python benchmarks/summarize.py [--root .] [--out results/benchmarks/summary.csv]

Each row: rule, job (wildcards), wall seconds, peak RSS (MB), CPU seconds. The total wall time of a serial run is
the sum; with parallel jobs the real elapsed time is lower (see the snakemake log's timestamps).
"""

import argparse
from pathlib import Path

import pandas as pd


def collect(root: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(root.glob("results/benchmarks/*/*.tsv")):
        bench = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": tsv.parent.name, "job": tsv.stem, "wall_s": float(bench["s"].iloc[-1]),
                     "max_rss_mb": float(bench["max_rss"].iloc[-1]), "cpu_s": float(bench["cpu_time"].iloc[-1])})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    table = collect(args.root)
    if table.empty:
        print("no benchmark files under", args.root / "results/benchmarks")
        return 1
    print(table.to_string(index=False))
    print(f"\nsum of wall times: {table.wall_s.sum():.0f} s; peak RSS of any job: {table.max_rss_mb.max():.0f} MB")
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
