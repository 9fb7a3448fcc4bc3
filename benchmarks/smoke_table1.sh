#!/usr/bin/env bash
# Wall time of the README's main command on a clean clone: `./setup.sh && snakemake --profile profiles/smoke
# results/tables/table1.tex`, from an empty results/. Run it alone on the machine (other processes on the two cores
# slow it down, not its numbers). Prints the setup and table1 wall times, peak memory, the per-rule job times
# (benchmarks/summarize.py) and table1.csv; keeps the clone (default /tmp/dat_smoke_table1) for inspection.
#
# Usage: benchmarks/smoke_table1.sh [commit (default HEAD)] [clone folder]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=${1:-HEAD}
dest=${2:-/tmp/dat_smoke_table1}
rm -rf "$dest"
git clone -q "$repo" "$dest"
cd "$dest"
git checkout -q "$(git -C "$repo" rev-parse "$commit")"
echo "commit $(git rev-parse --short HEAD) in $dest"
t0=$(date +%s)
./setup.sh > setup.log 2>&1
t1=$(date +%s)
/usr/bin/time -f "peak RSS of any one process (snakemake or a job): %M KB" -o time.txt \
  snakemake --profile profiles/smoke results/tables/table1.tex > run.log 2>&1
t2=$(date +%s)
echo "setup.sh: $((t1 - t0)) s; table1: $((t2 - t1)) s ($(( (t2 - t1) / 60 )) min $(( (t2 - t1) % 60 )) s)"
cat time.txt
python3 benchmarks/summarize.py | tail -n 1
python3 -c "import pandas as pd; print(pd.read_csv('results/tables/table1.csv')[['method','acc_clean','acc_robust_autoattack','acc_robust_pgd','fid','chosen_steps']].to_string(index=False))"
