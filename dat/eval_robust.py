"""CLI: clean accuracy, PGD robust accuracy and AutoAttack robust accuracy of a trained model.

Robust accuracy uses the dataset's threat model (``threat_model``: L2, eps in pixel units of [0, 1] images),
the model in eval mode and fp32. AutoAttack is the reference implementation of Croce & Hein 2020 (the
fra31 code, packaged on PyPI as ``pyautoattack``), ``version="standard"`` unless the config says otherwise;
its log lines and sanity-check warnings are stored in the JSON. Our own L2 PGD (``dat.attacks``) is reported
beside it as a cheaper upper bound on robust accuracy.

Example::

    python -m dat.eval_robust --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --data results/data/fmnist/test.npz --out results/fmnist_dat/metrics/robust.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import torch

from dat.attacks import pgd_attack
from dat.checkpoint import checkpoint_record, load_model
from dat.config import threat_model
from dat.data import open_images, to_tensor
from dat.io import add_device_argument, provenance, read_json, resolve_device, set_threads, setup_logging, write_json
from dat.models import device_of

log = logging.getLogger("dat.eval_robust")


def predict(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Argmax predictions (N,) int64 for images (N, C, H, W) in [0, 1], in batches, without gradients."""
    device = device_of(model)
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def pgd_robust(model, x, y, *, eps, step_size, steps, norm, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    """Untargeted CE PGD (zero start), example by example.

    Returns:
        (correct (N,) bool: still classified right after the attack, perturbation (N,) float: its L2 or Linf norm).
        Each example's outcome depends on that example alone (model in eval mode), so a prefix of the result is
        the result on that prefix of the examples.
    """
    correct, pert = [], []
    device = device_of(model)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        x_adv = pgd_attack(model, xb, yb, eps=eps, step_size=step_size, steps=steps, norm=norm)
        correct.append(predict(model, x_adv, batch_size) == yb.cpu())
        delta = (x_adv - xb).flatten(1)
        pert.append((delta.norm(dim=1) if norm == "L2" else delta.abs().amax(dim=1)).cpu())
    return torch.cat(correct), torch.cat(pert)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def autoattack_accuracy(model, x, y, *, eps, norm, version, batch_size, seed) -> dict:
    """Robust accuracy under AutoAttack (pyautoattack, Croce & Hein 2020) with its log and warnings."""
    from pyautoattack import AutoAttack

    handler = _Collect()
    aa_logger = logging.getLogger("auto-attack")
    aa_logger.addHandler(handler)
    aa_logger.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            device = device_of(model)
            adversary = AutoAttack(model, norm=norm, eps=eps, version=version, device=device, seed=seed)
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
            x_adv = x_adv.cpu()
    finally:
        aa_logger.removeHandler(handler)
    acc_clean = float((predict(model, x, batch_size) == y).float().mean())
    acc_robust = float((predict(model, x_adv, batch_size) == y).float().mean())
    delta = (x_adv - x).flatten(1)
    return {
        "version": version, "package": f"pyautoattack {metadata.version('pyautoattack')}", "n_examples": int(len(x)),
        "acc_clean": acc_clean, "acc_robust": acc_robust,
        "max_perturbation": float(delta.norm(dim=1).max() if norm == "L2" else delta.abs().max()),
        "warnings": [str(w.message) for w in caught], "log": handler.lines,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.eval_robust", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="run JSON")
    p.add_argument("--model", type=Path, required=True, help="trained model.pt")
    p.add_argument("--data", type=Path, required=True, help="test.npz")
    p.add_argument("--out", type=Path, required=True, help="robust.json to write")
    p.add_argument("--threads", type=int, default=None)
    add_device_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    run = read_json(args.config)
    ev = run["evaluate"]
    norm, eps = threat_model(run["dataset"])
    model, ckpt = load_model(args.model, ev["weights"], resolve_device(args.device))
    images, labels = open_images(args.data)
    y_all = torch.from_numpy(labels).long()
    bs = ev["batch_size"]
    t0 = time.time()
    n_clean = min(ev["n_clean"] or len(y_all), len(y_all))
    # clean accuracy converts images chunk by chunk (a full ImageNet test set does not fit in memory as floats)
    chunk = max(bs, 5000)
    acc_clean = float(torch.cat([predict(model, to_tensor(images[i:min(i + chunk, n_clean)]), bs)
                                 for i in range(0, n_clean, chunk)]).eq(y_all[:n_clean]).float().mean())
    log.info("clean accuracy %.4f on %d test images", acc_clean, n_clean)
    p = ev["pgd"]
    n_pgd = min(p["n_examples"] or len(y_all), len(y_all))
    a = ev["autoattack"]
    n_aa = min(a["n_examples"] or len(y_all), len(y_all))
    step_size = eps * p["step_size_factor"] / p["steps"]
    # one PGD pass over the first max(n_pgd, n_aa) examples serves the PGD row and the AutoAttack examples
    x_all = to_tensor(images[:max(n_pgd, n_aa)])  # the attacked prefix (the protocol caps ImageNet at 5,000)
    correct, pert = pgd_robust(model, x_all, y_all[:max(n_pgd, n_aa)], eps=eps, step_size=step_size,
                               steps=p["steps"], norm=norm, batch_size=bs)
    acc_pgd, max_pert = int(correct[:n_pgd].sum()) / n_pgd, float(pert[:n_pgd].max())
    log.info("PGD-%d %s eps=%g robust accuracy %.4f on %d", p["steps"], norm, eps, acc_pgd, n_pgd)
    aa = autoattack_accuracy(model, x_all[:n_aa], y_all[:n_aa], eps=eps, norm=norm, version=a["version"],
                             batch_size=a["batch_size"], seed=run["seed"])
    log.info("AutoAttack (%s) robust accuracy %.4f on %d", a["version"], aa["acc_robust"], n_aa)
    # our PGD on exactly the AutoAttack examples: AutoAttack, the stronger attack, should not be above it
    aa["acc_robust_pgd_same_examples"] = int(correct[:n_aa].sum()) / n_aa
    write_json({
        "run": run["run"], "dataset": run["dataset"]["name"], "norm": norm, "eps": eps,
        "eps_str": str(run["dataset"]["threat_model"]["eps"]), "n_clean": n_clean, "acc_clean": acc_clean,
        "pgd": {"steps": p["steps"], "step_size": step_size, "restarts": 0, "n_examples": n_pgd, "acc_robust": acc_pgd,
                "max_perturbation": max_pert},
        "autoattack": aa, "weights": ev["weights"], "checkpoint": checkpoint_record(args.model, ckpt, ev["weights"]),
        "seed": run["seed"], "time_s": round(time.time() - t0, 2), **provenance(),
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
