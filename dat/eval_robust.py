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

import logging
import sys
import time
import warnings
from importlib import metadata

import torch

from dat.attacks import pgd_robust, pgd_step_size
from dat.checkpoint import checkpoint_record
from dat.cli import add_machine_arguments, add_run_arguments, command_parser, load_run_model, start
from dat.data import eval_subset, open_images, take, to_tensor
from dat.io import provenance, write_json
from dat.metrics import wilson_fields
from dat.models import device_of, predict_logits

log = logging.getLogger("dat.eval_robust")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def autoattack_accuracy(model, x, y, *, eps, norm, version, batch_size, seed) -> dict:
    """Robust accuracy under AutoAttack (pyautoattack, Croce & Hein 2020) with its log and warnings.

    The standard and plus versions of pyautoattack target the 9 highest non-true classes in APGD-T and FAB-T (they
    read the 10th-largest logit), which fails with fewer than 10 classes (RestrictedImageNet has 9): then both
    attacks target the K - 1 other classes, K the number of logits, and the result records the counts used.

    Args:
        model: ``nn.Module`` in eval mode, (N, C, H, W) in [0, 1] -> logits (N, K); x (N, C, H, W) float32 and y
            (N,) int64 on the CPU; eps in pixel units; norm ``"L2"`` or ``"Linf"``; version ``standard``, ``plus``
            or ``rand``; batch_size: AutoAttack's; seed: its seed.

    Returns:
        ``version``, ``package``, ``n_examples``, ``acc_clean``, ``acc_robust`` (fractions in [0, 1]),
        ``n_correct_clean``, ``n_correct_robust`` (their integer counts), ``max_perturbation`` (pixel units),
        ``n_target_classes`` {apgd-t, fab-t} (those of the attacks run),
        ``warnings`` and ``log`` (AutoAttack's lines).
    """
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
            # pyautoattack .view()s input gradients, which keep x's strides: NHWC-converted images (to_tensor) are
            # channels-last views, so hand it a contiguous copy
            x = x.contiguous()
            targets = autoattack_target_classes(adversary, num_classes=predict_logits(model, x[:1], 1).shape[1])
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
            x_adv = x_adv.cpu()
    finally:
        aa_logger.removeHandler(handler)
    correct_clean = predict_logits(model, x, batch_size).argmax(1) == y
    correct_robust = predict_logits(model, x_adv, batch_size).argmax(1) == y
    acc_clean, acc_robust = float(correct_clean.float().mean()), float(correct_robust.float().mean())
    delta = (x_adv - x).flatten(1)
    return {
        "version": version, "package": f"pyautoattack {metadata.version('pyautoattack')}", "n_examples": int(len(x)),
        "acc_clean": acc_clean, "acc_robust": acc_robust, "n_correct_clean": int(correct_clean.sum()),
        "n_correct_robust": int(correct_robust.sum()),
        "max_perturbation": float(delta.norm(dim=1).max() if norm == "L2" else delta.abs().max()),
        "n_target_classes": targets, "warnings": [str(w.message) for w in caught], "log": handler.lines,
    }


def autoattack_target_classes(adversary, num_classes: int) -> dict[str, int]:
    """Cap the target classes of ``adversary``'s APGD-T and FAB-T (a ``pyautoattack.AutoAttack``, attributes
    ``apgd_targeted.n_target_classes`` and ``fab.n_target_classes``) at ``num_classes - 1``, the classes other than
    the true one; with 10 or more classes pyautoattack's own counts (9) stay. Returns the counts of the attacks the
    version runs, by attack name (``apgd-t``, ``fab-t``)."""
    attacks = {"apgd-t": adversary.apgd_targeted, "fab-t": adversary.fab}
    for attack in attacks.values():
        attack.n_target_classes = min(attack.n_target_classes, num_classes - 1)
    return {name: int(attack.n_target_classes) for name, attack in attacks.items() if name in adversary.attacks_to_run}


def parse_args(argv=None):
    p = command_parser("dat.eval_robust", __doc__)
    add_run_arguments(p, data="test.npz", out="robust.json")
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    run, model, ckpt = load_run_model(args, start(args))
    ev, tm = run.evaluate, run.dataset.threat_model
    norm, eps = tm.norm, tm.eps
    images, labels = open_images(args.data)
    y_all = torch.from_numpy(labels).long()
    bs = ev.batch_size
    t0 = time.time()
    n_clean = min(ev.n_clean or len(y_all), len(y_all))
    # clean accuracy converts images batch by batch (a full ImageNet test set does not fit in memory as floats)
    logits = predict_logits(model, take(images, slice(0, n_clean)), bs, convert=to_tensor)
    correct_clean = logits.argmax(1).eq(y_all[:n_clean])
    acc_clean = float(correct_clean.float().mean())
    log.info("clean accuracy %.4f on %d test images", acc_clean, n_clean)
    p = ev.pgd
    n_pgd = min(p.n_examples or len(y_all), len(y_all))
    a = ev.autoattack
    n_aa = min(a.n_examples or len(y_all), len(y_all))
    step_size = pgd_step_size(eps, p.steps, p.step_size_factor)
    # one PGD pass over max(n_pgd, n_aa) examples serves the PGD row and the AutoAttack examples (each a prefix):
    # the first ones, or a class-balanced subset of a class-sorted split (the protocol caps ImageNet at 5,000)
    index, subset = eval_subset(labels, [n_pgd, n_aa])
    x_all, y_att = to_tensor(images[index]), y_all[index]
    correct, pert = pgd_robust(model, x_all, y_att, eps=eps, step_size=step_size,
                               steps=p.steps, norm=norm, batch_size=bs)
    acc_pgd, max_pert = int(correct[:n_pgd].sum()) / n_pgd, float(pert[:n_pgd].max())
    log.info("PGD-%d %s eps=%g robust accuracy %.4f on %d", p.steps, norm, eps, acc_pgd, n_pgd)
    aa = autoattack_accuracy(model, x_all[:n_aa], y_att[:n_aa], eps=eps, norm=norm, version=a.version,
                             batch_size=a.batch_size, seed=run.seed)
    log.info("AutoAttack (%s) robust accuracy %.4f on %d", a.version, aa["acc_robust"], n_aa)
    # our PGD on exactly the AutoAttack examples: AutoAttack, the stronger attack, should not be above it
    aa["acc_robust_pgd_same_examples"] = int(correct[:n_aa].sum()) / n_aa
    # Wilson intervals from the integer counts of correctly classified examples
    level = ev.intervals.level
    aa.update(wilson_fields("acc_robust", aa.pop("n_correct_robust"), n_aa, level),
              **wilson_fields("acc_clean", aa.pop("n_correct_clean"), n_aa, level))
    write_json({
        "run": run.run, "dataset": run.dataset.name, "norm": norm, "eps": eps,
        "eps_str": tm.eps_str, "n_clean": n_clean, "acc_clean": acc_clean,
        **wilson_fields("acc_clean", int(correct_clean.sum()), n_clean, level),
        "pgd": {"steps": p.steps, "step_size": step_size, "restarts": 0, "n_examples": n_pgd, "acc_robust": acc_pgd,
                "max_perturbation": max_pert, **wilson_fields("acc_robust", int(correct[:n_pgd].sum()), n_pgd, level)},
        "autoattack": aa, "weights": ev.weights, "checkpoint": checkpoint_record(args.model, ckpt, ev.weights),
        "interval": {"method": "wilson", "level": level},
        "subset": {"rule": subset["rule"], "n_classes": subset["n_classes"],
                   "classes_covered": dict(zip(("pgd", "autoattack"), subset["classes_covered"]))},
        "seed": run.seed, "time_s": round(time.time() - t0, 2), **provenance(),
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
