"""Compare two results/ folders of the same config: are they the same run, up to what legitimately changes?

A refactor that must not move any number (issue 23: the resolved configs and the micro outputs stay bit-identical)
is checked by running one config before and after it and comparing the two working directories. Every file under
results/ (benchmark files aside) must be byte-identical, or equal after leaving out what records the code revision
and wall-clock time: ``git_sha``/``train_git_sha``, ``*time_s`` and ``images_per_s`` (JSON keys, CSV columns and
metrics.csv rows, AutoAttack's "total time" log lines), and a stage-2 run's ``init_sha256`` (the sha256 of its
stage-1 model.pt, whose bytes hold that model's git sha). Checkpoints are compared tensor by tensor
(``torch.equal``: same dtype, same values) and key by key; figures (PNG/PDF) are skipped.

Usage: python benchmarks/compare_results.py BEFORE_DIR AFTER_DIR   (each holds a results/ folder; exit 1 on a
difference, naming each file)
"""

import argparse
import csv
import json
import re
import sys
from pathlib import Path


def _volatile(key) -> bool:
    return isinstance(key, str) and ("git_sha" in key or key.endswith("time_s") or key in ("images_per_s", "init_sha256"))


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not _volatile(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    if isinstance(obj, str):
        return re.sub(r"\(total time [\d.]+ s\)", "", obj)
    return obj


def _same_checkpoint(a: Path, b: Path) -> bool:
    import torch

    def equal(x, y) -> bool:
        if isinstance(x, torch.Tensor):
            return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
        if isinstance(x, dict):
            return isinstance(y, dict) and set(x) == set(y) and all(equal(x[k], y[k]) for k in x if not _volatile(k))
        if isinstance(x, (list, tuple)):
            return isinstance(y, (list, tuple)) and len(x) == len(y) and all(map(equal, x, y))
        return x == y

    return equal(torch.load(a, weights_only=True), torch.load(b, weights_only=True))


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return [_strip(r) for r in csv.DictReader(fh) if not _volatile(r.get("metric", ""))]


def same(a: Path, b: Path) -> bool:
    """Whether results files ``a`` and ``b`` agree up to revision and timing records."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".json":
        return _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text()))
    if a.suffix == ".csv":
        return _rows(a) == _rows(b)
    if a.suffix == ".pt":
        return _same_checkpoint(a, b)
    return a.suffix in (".png", ".pdf")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    files = {}
    for side in (args.before, args.after):
        files[side] = {p.relative_to(side) for p in (side / "results").rglob("*")
                       if p.is_file() and "benchmarks" not in p.relative_to(side).parts}
    only = files[args.before] ^ files[args.after]
    common = sorted(files[args.before] & files[args.after])
    differ = [rel for rel in common if not same(args.before / rel, args.after / rel)]
    identical = sum((args.before / rel).read_bytes() == (args.after / rel).read_bytes() for rel in common)
    for rel in sorted(only):
        print(f"only in {'before' if rel in files[args.before] else 'after'}: {rel}")
    for rel in differ:
        print(f"differs: {rel}")
    print(f"{len(common)} files compared: {identical} byte-identical, {len(common) - identical - len(differ)} equal "
          f"up to git sha and timings, {len(differ)} differ; {len(only)} in one folder only")
    return 1 if differ or only else 0


if __name__ == "__main__":
    sys.exit(main())
