"""Throughput of the FID Inception network on this machine: images/s by thread count, batch size and memory layout.

Usage: python benchmarks/inception_speed.py [--images 100] [--out benchmarks/inception_speed.tsv]

Feeds real Fashion-MNIST test images (Debian package) through ``dat.inception`` preprocessing once, then times the
network alone for each setting after one warm-up batch. The printed table chose the CPU defaults of
``FeatureExtractor`` (batches of 10, channels_last) and the smoke profile's one thread per evaluation job.
"""

import argparse
import itertools
import time
from pathlib import Path

import pandas as pd
import torch

from dat.data import load_split
from dat.inception import load_feature_extractor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", type=Path, default=Path("benchmarks/inception_speed.tsv"))
    args = p.parse_args(argv)
    extractor = load_feature_extractor("auto")
    x = extractor.preprocess(load_split("fashion_mnist", args.root, "test")[0][: args.images]) / 128.0 - 1.0
    rows, reference = [], None
    for threads, batch, channels_last in itertools.product((1, 2), (10, 25, 50), (False, True)):
        torch.set_num_threads(threads)
        xx = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.inference_mode():
            extractor.network(xx[:batch])
            t0 = time.perf_counter()
            feats = torch.cat([extractor.network(xx[i:i + batch]).flatten(1) for i in range(0, len(xx), batch)])
        seconds = time.perf_counter() - t0
        reference = feats if reference is None else reference
        rows.append({"threads": threads, "batch": batch, "channels_last": channels_last,
                     "images_per_s": round(len(xx) / seconds, 2),
                     "max_abs_diff": float((feats - reference).abs().max())})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
