"""Cost of the sampling-step grid search: one chain to max(T) recording every grid point, against one chain per T.

Usage: python benchmarks/grid_search_chain.py --model results/fmnist_dat/model.pt [--n 100] [--grid 20 40 60 100 150]
           [--threads 1] [--out benchmarks/grid_search_chain.tsv]

Both ways start from the same noise (the grid seed) and use the dataset's step size from the checkpoint's config;
the script checks that the recorded iterates of the single chain equal the separate chains' end points (a chain to
T steps is a prefix of the chain to T' > T), then prints and writes the sampler time of each way. Inception
features are the same in both ways (one set per grid point) and are not timed here.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dat.checkpoint import load_model
from dat.sample import generate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a trained model.pt")
    p.add_argument("--n", type=int, default=100, help="chains (held-out samples)")
    p.add_argument("--grid", type=int, nargs="+", default=[20, 40, 60, 100, 150])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/grid_search_chain.tsv"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.model)
    ds, sampling = ckpt["config"]["dataset"], ckpt["config"]["sampling"]
    common = dict(n=args.n, num_classes=ds["num_classes"], image_shape=(ds["channels"], ds["image_size"], ds["image_size"]),
                  step_size=float(ds["sampling_step_size"]), seed=sampling["seed_grid"], batch_size=args.n)
    grid = sorted(args.grid)
    t0 = time.perf_counter()
    one = generate(model, steps=grid[-1], record=grid, **common)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    separate = {t: generate(model, steps=t, **common)["x"] for t in grid}
    t_separate = time.perf_counter() - t0
    same = all(np.array_equal(one["snapshots"][t], separate[t]) for t in grid)
    rows = [{"way": "one chain to max T", "chain_steps": grid[-1], "seconds": round(t_one, 2)},
            {"way": "one chain per T", "chain_steps": sum(grid), "seconds": round(t_separate, 2)}]
    table = pd.DataFrame(rows).assign(n=args.n, grid=" ".join(map(str, grid)), threads=args.threads,
                                      identical_samples=same)
    print(table.to_string(index=False))
    print(f"speed-up {t_separate / t_one:.2f}x; recorded iterates identical to the separate chains: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
