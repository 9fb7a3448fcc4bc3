"""CLI: OOD detection AUROC, clean and adversarial, with two scores (paper Sec. 4.5, Tables 10-12).

Scores (higher = more in-distribution): ``energy`` s(x) = -E(x) = logsumexp_k f(x)[k], and ``max_softmax``
s(x) = max_k p(k | x) (as in RATIO). AUROC (scikit-learn) takes the in-distribution test images as positives.
Adversarial OOD: each OOD image is moved by L2 PGD inside a ball of radius ``ood_eps`` (pixel units) to
*raise* its score -- for ``energy`` ascent on logsumexp f(x), for ``max_softmax`` ascent on the cross-entropy
to the uniform distribution (i.e. confidence) -- and the AUROC is recomputed against the clean in-distribution
scores. A robust detector keeps its AUROC under this attack.

Example::

    python -m dat.eval_ood --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --data results/data/fmnist/test.npz --ood results/data/fmnist/ood_mnist5k.npz ... --out results/fmnist_dat/metrics/ood.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dat.attacks import pgd_maximize
from dat.checkpoint import checkpoint_record, load_model
from dat.data import open_images, to_tensor
from dat.io import add_device_argument, provenance, read_json, resolve_device, set_threads, setup_logging, write_json
from dat.metrics import auroc
from dat.models import device_of, energy

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
    device = device_of(model)
    with torch.no_grad():
        return torch.cat([SCORES[name](model(x[i:i + batch_size].to(device))).cpu()
                          for i in range(0, len(x), batch_size)]).numpy()


def adversarial_scores(model, x, name, *, eps, step_size, steps, batch_size) -> np.ndarray:
    """Scores after L2 PGD that raises the (attack form of the) score in the eps-ball around each image."""
    objective = _attack_objective(name)
    device = device_of(model)
    out = []
    for i in range(0, len(x), batch_size):
        x_adv = pgd_maximize(lambda z: objective(model(z)), x[i:i + batch_size].to(device), eps=eps, step_size=step_size, steps=steps,
                             norm="L2")
        out.append(scores(model, x_adv, name, batch_size))
    return np.concatenate(out)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.eval_ood", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="run JSON")
    p.add_argument("--model", type=Path, required=True, help="trained model.pt")
    p.add_argument("--data", type=Path, required=True, help="in-distribution test.npz")
    p.add_argument("--ood", type=Path, nargs="+", required=True, help="ood_{name}.npz files")
    p.add_argument("--out", type=Path, required=True, help="ood.json to write")
    p.add_argument("--threads", type=int, default=None)
    add_device_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    run = read_json(args.config)
    ds, ev = run["dataset"], run["evaluate"]
    o = ev["ood"]
    eps_o = float(ds["ood_eps"])
    model, ckpt = load_model(args.model, ev["weights"], resolve_device(args.device))
    bs = ev["batch_size"]
    t0 = time.time()
    x_in = to_tensor(open_images(args.data, labels=False)[0][: o["n_in"]])
    s_in = {name: scores(model, x_in, name, bs) for name in SCORES}
    rows = []
    for path in args.ood:
        name = path.stem.removeprefix("ood_")
        x_out = to_tensor(open_images(path, labels=False)[0][: o["n_out"]])
        for score in SCORES:
            clean = scores(model, x_out, score, bs)
            adv = adversarial_scores(model, x_out, score, eps=eps_o, step_size=o["step_size"], steps=o["steps"], batch_size=bs)
            for attack, s_out in (("clean", clean), ("adversarial", adv)):
                rows.append({"ood_set": name, "n_out": int(len(x_out)), "score": score, "attack": attack,
                             "auroc": auroc(s_in[score], s_out)})
                log.info("%s %s %s AUROC %.4f", name, score, attack, rows[-1]["auroc"])
    write_json({"run": run["run"], "dataset": ds["name"], "n_in": int(len(x_in)), "eps_o": eps_o, "steps": o["steps"],
                "step_size": o["step_size"], "rows": rows, "seed": run["seed"],
                "checkpoint": checkpoint_record(args.model, ckpt, ev["weights"]), "time_s": round(time.time() - t0, 2),
                **provenance()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
