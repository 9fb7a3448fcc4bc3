"""CLI: OOD detection AUROC, clean and adversarial, with two scores (paper Sec. 4.5, Tables 10-12).

Scores (higher = more in-distribution): ``energy`` s(x) = -E(x) = logsumexp_k f(x)[k], and ``max_softmax``
s(x) = max_k p(k | x) (as in RATIO). AUROC (scikit-learn) takes the in-distribution test images as positives.
Adversarial OOD: each OOD image is moved by L2 PGD inside a ball of radius ``ood_eps`` (pixel units;
``evaluate.ood.steps`` steps of ``step_size_factor * ood_eps / steps``, so the attack reaches the ball's boundary at
every radius) to *raise* its score -- for ``energy`` ascent on logsumexp f(x), for ``max_softmax`` ascent on the cross-entropy
to the uniform distribution (i.e. confidence) -- and the AUROC is recomputed against the clean in-distribution
scores. A robust detector keeps its AUROC under this attack. Each AUROC has a percentile bootstrap interval
(``evaluate.intervals``), the in-distribution and the OOD scores resampled independently.

Example::

    python -m dat.eval_ood --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --data results/data/fmnist/test.npz --ood results/data/fmnist/ood_mnist5k.npz ... --out results/fmnist_dat/metrics/ood.json
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dat.attacks import pgd_maximize, pgd_step_size
from dat.checkpoint import checkpoint_record
from dat.cli import add_machine_arguments, add_run_arguments, command_parser, load_run_model, start
from dat.data import open_images, to_tensor
from dat.io import progress, provenance, write_json
from dat.metrics import auroc, auroc_interval
from dat.models import device_of, energy, predict_logits

log = logging.getLogger("dat.eval_ood")


def score_energy(logits: torch.Tensor) -> torch.Tensor:
    """-E(x) = logsumexp f(x), (N,)."""
    return -energy(logits)


def score_max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """max_k p(k | x), (N,) in [1/K, 1]."""
    return F.softmax(logits, dim=1).max(dim=1).values


def _attack_objective(name: str):
    if name == "energy":
        return score_energy
    return lambda logits: -F.log_softmax(logits, dim=1).mean(dim=1)  # CE(p, uniform): maximal when confident


SCORES = {"energy": score_energy, "max_softmax": score_max_softmax}


def scores(model, x: torch.Tensor, name: str, batch_size: int) -> np.ndarray:
    """Score ``name`` of images x (N, C, H, W) in [0, 1], in batches on the model's device: (N,) float32."""
    return SCORES[name](predict_logits(model, x, batch_size)).numpy()


def adversarial_images(model, x: torch.Tensor, name: str, *, eps: float, step_size: float, steps: int,
                       batch_size: int) -> torch.Tensor:
    """L2 PGD (:func:`dat.attacks.pgd_maximize`, zero start) that raises the attack form of score ``name`` in the
    eps-ball around each image of x (N, C, H, W) in [0, 1]: x_adv (N, C, H, W) float32 in [0, 1] on the CPU."""
    objective = _attack_objective(name)
    device = device_of(model)
    return torch.cat([
        pgd_maximize(lambda z: objective(model(z)), x[i:i + batch_size].to(device), eps=eps, step_size=step_size,
                     steps=steps, norm="L2").cpu()
        for i in progress(range(0, len(x), batch_size), f"adversarial OOD ({name})")
    ])


def adversarial_scores(model, x, name, *, eps, step_size, steps, batch_size) -> np.ndarray:
    """Scores (N,) float32 of :func:`adversarial_images`, the OOD images moved to raise the score."""
    x_adv = adversarial_images(model, x, name, eps=eps, step_size=step_size, steps=steps, batch_size=batch_size)
    return scores(model, x_adv, name, batch_size)


def parse_args(argv=None):
    p = command_parser("dat.eval_ood", __doc__)
    add_run_arguments(p, data="in-distribution test.npz", out="ood.json")
    p.add_argument("--ood", type=Path, nargs="+", required=True, help="ood_{name}.npz files")
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    run, model, ckpt = load_run_model(args, start(args))
    ds, ev = run.dataset, run.evaluate
    o = ev.ood
    eps_o = float(ds.ood_eps)
    step_size = pgd_step_size(eps_o, o.steps, o.step_size_factor)
    bs = ev.batch_size
    iv = ev.intervals
    t0 = time.time()
    x_in = to_tensor(open_images(args.data, labels=False)[0][: o.n_in])
    s_in = {name: scores(model, x_in, name, bs) for name in SCORES}
    rows = []
    for path in args.ood:
        name = path.stem.removeprefix("ood_")
        x_out = to_tensor(open_images(path, labels=False)[0][: o.n_out])
        for score in SCORES:
            clean = scores(model, x_out, score, bs)
            adv = adversarial_scores(model, x_out, score, eps=eps_o, step_size=step_size, steps=o.steps, batch_size=bs)
            for attack, s_out in (("clean", clean), ("adversarial", adv)):
                lo, hi = auroc_interval(s_in[score], s_out, rng=np.random.default_rng(iv.seed), level=iv.level,
                                        n_resamples=iv.n_resamples)
                rows.append({"ood_set": name, "n_out": int(len(x_out)), "score": score, "attack": attack,
                             "auroc": auroc(s_in[score], s_out), "auroc_lo": lo, "auroc_hi": hi})
                log.info("%s %s %s AUROC %.4f", name, score, attack, rows[-1]["auroc"])
    write_json({"run": run.run, "dataset": ds.name, "n_in": int(len(x_in)), "eps_o": eps_o, "steps": o.steps,
                "step_size_factor": o.step_size_factor, "step_size": step_size, "rows": rows,
                "interval": {"method": "percentile bootstrap, in-distribution and OOD scores resampled independently",
                             "level": iv.level, "n_resamples": iv.n_resamples, "seed": iv.seed}, "seed": run.seed,
                "checkpoint": checkpoint_record(args.model, ckpt, ev.weights), "time_s": round(time.time() - t0, 2),
                **provenance()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
