"""CLI: counterfactual FID and target confidence against the L2 radius (paper Sec. 4.4, Figure 1).

For ``evaluate.counterfactual.n_images`` training images (a seeded random subset; null: all of them), the target is
t = (y + randint(1, K)) mod K, never the true class. For each radius eps, targeted L2 PGD ascends f(x')[t]
inside the eps-ball (``dat.attacks.target_logit_attack``; ``steps`` steps of ``step_size_factor * eps /
steps``). For each target class c, FID between the counterfactuals with target c and the reference features
of real training images of class c (from fid_ref.npz); the result is the average over classes, plus the mean
softmax probability of the target class. 95% intervals (``evaluate.intervals``): the class-averaged FID's from a
delete-a-group jackknife whose groups are stratified by target class (``dat.metrics.class_mean_fid_jackknife``),
the confidence's a percentile bootstrap of the mean over the images. With few images per class the per-class FID
is strongly biased upwards: compare curves, not absolute values, at smoke scale.

Example::

    python -m dat.eval_counterfactual --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --data results/data/fmnist/train.npz --ref results/data/fmnist/fid_ref.npz \
        --out results/fmnist_dat/metrics/counterfactual.json --examples results/fmnist_dat/counterfactual_examples.npz
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dat.attacks import pgd_step_size, target_logit_attack
from dat.checkpoint import checkpoint_record
from dat.cli import add_machine_arguments, add_run_arguments, command_parser, load_run_model, start
from dat.data import open_images, to_tensor, to_uint8
from dat.inception import load_feature_extractor
from dat.io import progress, provenance, save_npz, write_json
from dat.metrics import bootstrap_interval, class_mean_fid_jackknife, feature_statistics, fid_from_features
from dat.models import predict_logits

log = logging.getLogger("dat.eval_counterfactual")


def parse_args(argv=None):
    p = command_parser("dat.eval_counterfactual", __doc__)
    add_run_arguments(p, data="train.npz (source images)", out="counterfactual.json")
    p.add_argument("--ref", type=Path, required=True, help="fid_ref.npz with per-image features (float32) and labels")
    p.add_argument("--examples", type=Path, default=None,
                   help="npz to write the first --n-examples images with their counterfactuals at every radius")
    p.add_argument("--n-examples", type=int, default=10, help="images kept in --examples (default 10)")
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    run, model, ckpt = load_run_model(args, device)
    ds, ev = run.dataset, run.evaluate
    c = ev.counterfactual
    K = ds.num_classes
    extractor = load_feature_extractor(ev.fid.extractor, str(device))
    t0 = time.time()
    rng = np.random.default_rng(c.seed)
    x_all, y_all = open_images(args.data)
    idx = rng.permutation(len(y_all))[: c.n_images]
    x, y = to_tensor(x_all[idx]), torch.from_numpy(y_all[idx]).long()
    target = (y + torch.from_numpy(rng.integers(1, K, size=len(y)))) % K
    with np.load(args.ref) as ref:
        if "features" not in ref:
            raise ValueError(f"{args.ref} holds no per-image features (dat.fid_ref keeps them up to "
                             "--keep-features-max images): the per-class reference of the counterfactual FID needs them")
        ref_feats, ref_labels = ref["features"], ref["labels"]
    ref_stats = {k: feature_statistics(ref_feats[ref_labels == k]) for k in range(K)}
    bs = ev.batch_size
    radii = [float(r) for r in ds.counterfactual_radii]
    iv = ev.intervals
    fids, per_class, confidences, max_pert, shown = [], [], [], [], []
    fid_lo, fid_hi, conf_lo, conf_hi, fid_interval = [], [], [], [], None
    for eps in radii:
        step_size = pgd_step_size(eps, c.steps, c.step_size_factor)
        x_cf = torch.cat([
            target_logit_attack(model, x[i:i + bs].to(device), target[i:i + bs].to(device),
                                eps=eps, step_size=step_size, steps=c.steps).cpu()
            for i in progress(range(0, len(x), bs), f"counterfactuals at eps={eps:g}")
        ])
        probs = torch.softmax(predict_logits(model, x_cf, bs), 1)
        p_target = probs.gather(1, target.view(-1, 1))  # (N, 1)
        confidences.append(float(p_target.mean()))
        lo, hi = bootstrap_interval((p_target[:, 0].double().numpy(),), np.mean, paired=False,
                                    rng=np.random.default_rng(iv.seed), level=iv.level, n_resamples=iv.n_resamples)
        conf_lo.append(lo)
        conf_hi.append(hi)
        max_pert.append(float((x_cf - x).flatten(1).norm(dim=1).max()))  # L2, pixel units: <= eps
        shown.append(to_uint8(x_cf[: args.n_examples]))
        feats = extractor(to_uint8(x_cf))["features"]
        class_fids = []
        for k in range(K):  # a class with fewer than 2 counterfactuals has no covariance: NaN, left out of the mean
            mine = feats[(target == k).numpy()]
            class_fids.append(fid_from_features(mine, *ref_stats[k]) if len(mine) >= 2 else float("nan"))
        per_class.append(class_fids)
        fids.append(float(np.nanmean(class_fids)))
        jk = (class_mean_fid_jackknife(feats, target.numpy(), ref_stats, groups=iv.fid_groups, level=iv.level,
                                       seed=iv.seed) if np.isfinite(fids[-1]) else {"fid_lo": None, "fid_hi": None,
                                                                                     "fid_interval": fid_interval})
        fid_lo.append(jk["fid_lo"])
        fid_hi.append(jk["fid_hi"])
        fid_interval = jk["fid_interval"]
        log.info("eps=%g: counterfactual FID %.2f, target confidence %.3f", eps, fids[-1], confidences[-1])
    if args.examples is not None:  # appendix A.3 grids: x (n, H, W, C), x_cf (radii, n, H, W, C), y, target
        n = min(args.n_examples, len(x))
        save_npz(args.examples, x=to_uint8(x[:n]), x_cf=np.stack(shown), y=y[:n].numpy(), target=target[:n].numpy(),
                 radii=np.array(radii))
    write_json({"run": run.run, "dataset": ds.name, "radii": radii, "fid": fids, "fid_lo": fid_lo, "fid_hi": fid_hi,
                "fid_per_class": per_class, "confidence": confidences, "confidence_lo": conf_lo,
                "confidence_hi": conf_hi,
                "interval": {"fid": fid_interval, "confidence": {
                    "method": "percentile bootstrap of the mean target-class confidence over the images "
                              "(scipy.stats.bootstrap)", "level": iv.level, "n_resamples": iv.n_resamples,
                    "seed": iv.seed}}, "max_perturbation": max_pert, "n_images": int(len(x)),
                "n_per_class": [int((target == k).sum()) for k in range(K)],
                "n_ref_per_class": [int((ref_labels == k).sum()) for k in range(K)], "steps": c.steps,
                "step_size_factor": c.step_size_factor, "extractor": extractor.name, "seed": c.seed,
                "checkpoint": checkpoint_record(args.model, ckpt, ev.weights),
                "time_s": round(time.time() - t0, 2), **provenance()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
