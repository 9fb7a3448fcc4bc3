"""CLI: FID (and IS where the feature network has a logit head) of a sample set against the training reference.

FID follows Heusel et al. 2017 with clean-fid's Frechet distance and preprocessing (``dat.inception``); IS
follows Salimans et al. 2016 / torch-fidelity (10 splits of the same samples, shuffled with seed 2020, the TF
Inception-v3's unbiased logits) and is computed when ``evaluate.fid.inception_score.enabled`` is true, from the
TF-ported weights at its ``weights`` path (sha256-checked before use; the workflow downloads them). Otherwise (the
offline smoke configuration: the shipped FID weights have no logit head) ``is_mean`` is null with a note saying
why, never a number from another network. ``--real`` measures the floor instead: FID of real held-out test images
against the same reference, which shows how much of a small-sample FID is estimator bias. The FID of samples gets a
95% interval (``fid_lo``, ``fid_hi``) from a delete-a-group jackknife over the samples (``evaluate.intervals``;
``dat.metrics.fid_jackknife``), the reference statistics fixed.

Examples::

    python -m dat.eval_fid samples --config results/fmnist_dat/run.json --samples results/fmnist_dat/samples.npz \
        --ref results/data/fmnist/fid_ref.npz --floor results/data/fmnist/fid_floor.json --out results/fmnist_dat/metrics/fid.json
    python -m dat.eval_fid floor --data results/data/fmnist/test.npz --n 500 --seed 0 --extractor auto \
        --ref results/data/fmnist/fid_ref.npz --out results/data/fmnist/fid_floor.json
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.cli import add_machine_arguments, command_parser, start
from dat.config import RunConfig
from dat.data import open_images, take
from dat.inception import inception_logits, load_feature_extractor, load_is_network, read_fid_reference
from dat.io import provenance, read_json, write_json
from dat.metrics import fid_from_features, fid_jackknife, inception_score

log = logging.getLogger("dat.eval_fid")
IS_SPLITS = 10
IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng_seed for the IS split shuffle


def parse_args(argv=None):
    p = command_parser("dat.eval_fid", __doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("samples", help="FID/IS of generated samples")
    a.add_argument("--config", type=Path, required=True, help="run JSON")
    a.add_argument("--samples", type=Path, required=True, help="samples.npz (x uint8 NHWC)")
    a.add_argument("--floor", type=Path, default=None, help="fid_floor.json to copy into the result")
    b = sub.add_parser("floor", help="FID of real test images against the reference")
    b.add_argument("--data", type=Path, required=True, help="test.npz")
    b.add_argument("--n", type=int, required=True, help="number of test images (use the sample count)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--extractor", default="auto")
    for q in (a, b):
        q.add_argument("--ref", type=Path, required=True, help="fid_ref.npz")
        q.add_argument("--out", type=Path, required=True, help="JSON to write")
        add_machine_arguments(q)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    t0 = time.time()
    mu_ref, sigma_ref, n_ref = read_fid_reference(args.ref)
    if args.mode == "floor":
        x = open_images(args.data, labels=False)[0]
        idx = np.random.default_rng(args.seed).permutation(len(x))[: args.n]
        extractor = load_feature_extractor(args.extractor, str(device))
        fid = fid_from_features(extractor(take(x, idx))["features"], mu_ref, sigma_ref)
        write_json({"fid_floor": float(fid), "n_real": int(len(idx)), "n_ref": n_ref, "extractor": extractor.name,
                    "data": str(args.data), "seed": args.seed, "time_s": round(time.time() - t0, 2), **provenance()}, args.out)
        log.info("FID floor %.2f (%d real test images vs %d reference)", fid, len(idx), n_ref)
        return 0
    run = RunConfig.read(args.config)
    extractor = load_feature_extractor(run.evaluate.fid.extractor, str(device))
    with np.load(args.samples) as f:
        x, steps = f["x"], int(f["steps"])
        conditional = bool(f["conditional"]) if "conditional" in f.files else bool(run.sampling.conditional)
        starts = str(f["starts"]) if "starts" in f.files else "noise"
    out = extractor(x)
    iv = run.evaluate.intervals
    jk = fid_jackknife(out["features"], mu_ref, sigma_ref, groups=iv.fid_groups, level=iv.level, seed=iv.seed)
    fid = jk["fid"]  # fid_from_features of the features
    is_mean = is_std = is_network = None
    is_cfg = run.evaluate.fid.inception_score
    logits = out.get("logits") if extractor.has_logits else None
    note = (f"IS not computed: evaluate.fid.inception_score is off and the FID feature extractor ({extractor.name}) "
            "has no Inception logit head")
    if is_cfg is not None and is_cfg.enabled:
        network = load_is_network(is_cfg.weights, is_cfg.sha256, str(device))
        logits = inception_logits(network, x, str(device))
        is_network = f"TF inception-2015-12-05 logits ({Path(is_cfg.weights).name})"
    if logits is not None:
        is_mean, is_std = inception_score(logits, splits=IS_SPLITS, shuffle_seed=IS_SHUFFLE_SEED)
        note = f"IS over {len(x)} samples, {IS_SPLITS} splits"
    floor = read_json(args.floor) if args.floor else {}
    write_json({
        "run": run.run, "dataset": run.dataset.name, "fid": float(fid),
        **{key: jk[key] for key in ("fid_lo", "fid_hi", "fid_jackknife_bias", "fid_interval")}, "n_samples": int(len(x)), "n_ref": n_ref,
        "extractor": extractor.name, "is_mean": is_mean, "is_std": is_std, "is_note": note,
        "is_network": is_network or (extractor.name if is_mean is not None else None), "steps": steps,
        "conditional": conditional, "starts": starts,
        "step_size": float(run.dataset.sampling_step_size), "fid_floor": floor.get("fid_floor"),
        "n_floor": floor.get("n_real"), "seed": run.sampling.seed_final, "time_s": round(time.time() - t0, 2),
        **provenance(),
    }, args.out)
    log.info("FID %.2f on %d samples (T=%d); %s", fid, len(x), steps, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
