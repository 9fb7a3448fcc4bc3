"""CLI: train one stage of DAT. Stage 1 = standard L2 adversarial training; stage 2 = the joint objective.

Stage 1 (``train.bce`` absent): L = CE(f(x_adv), y) (paper Eq. 10-11), BatchNorm in train mode, the attack run
with the model in eval mode. Stage 2 (``train.bce`` set): L = L_AT-CE + L_BCE (Eq. 9, 12; Algorithm 1) with
every BatchNorm in eval mode (``freeze_batchnorm``), three batches per step (strongly augmented (x, y) for
AT-CE, mildly augmented real x_hat for BCE, chain starts x0: uniform noise or, with ``bce.init: ood``, mildly
augmented images of an auxiliary OOD set), class-conditional contrastive samples with
y' = labels of the BCE batch, and the curriculum on T (``dat.curriculum``).

The loop checkpoints ``ckpt/last.pt`` atomically every ``ckpt_every_steps`` steps (and every ``ckpt_every_minutes``
of wall time when set) and on SIGTERM/SIGINT/SIGUSR1 (then exits 75 so that Snakemake's retry resumes it); a rerun
resumes from it (same step, curriculum, optimizer, EMA, RNG and data position); a ``last.pt`` written for another
run config (a changed hyperparameter) is kept as ``last.stale-<time>.pt`` and training starts afresh. Each new
``last.pt`` moves the one before to ``ckpt/last.prev.pt``: a ``last.pt`` that fails to load (truncated, a byte
changed: every file is checked against the CRCs ``torch.save`` records) is kept as ``last.corrupt-<time>.pt`` and
training resumes from ``last.prev.pt`` (or afresh), saying so in the log. A finished run deletes its
``last.prev.pt`` and makes ``last.pt`` a hard link to its ``model.pt`` (one copy of the weights on disk; a copy where
the file system has no hard links): a rerun after ``model.pt`` was deleted writes it back from there without
training (:func:`finished_rerun`). A damaged ``--init`` fails before anything
is written. Besides the rule's log (which Snakemake empties at each start), every attempt appends its log to
``ckpt/train.log``, headed by its time, host, pid and resume step; ``train_log.csv``'s ``time_s`` counts the
training time of every attempt (kept in ``last.pt``). A non-finite
loss (or a JEM energy blow-up) exits 65 keeping the last good checkpoint, or with ``on_divergence: keep_last`` ends the run cleanly with
``model.pt`` = that checkpoint marked ``diverged``. ``precision: bf16`` autocasts the training passes; evaluation commands stay fp32.

Under torchrun (``dat.distributed``) each process trains on its slice of every global batch with DDP; rank 0
writes the log and the checkpoints.

Examples::

    python -m dat.train --config results/fmnist_dat/run.json --data-dir results/data/fmnist \
        --init results/fmnist_at/model.pt --model-out results/fmnist_dat/model.pt \
        --log-csv results/fmnist_dat/train_log.csv --ckpt-dir results/fmnist_dat/ckpt --threads 2
    python -m torch.distributed.run --standalone --nproc_per_node=4 -m dat.train --config ... (same arguments)
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import random
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dat import data as data_lib
from dat.attacks import ebjdat_attack, pgd_attack, pgd_maximize
from dat.checkpoint import INIT_FORMATS, published_weights
from dat.cli import add_machine_arguments, command_parser, start
from dat.config import TrainConfig, training_view
from dat.curriculum import StepCurriculum
from dat.distributed import (
    DistEnv,
    all_gather_cat,
    all_gather_object,
    all_reduce_sum,
    barrier,
    init_distributed,
    shard_size,
    shutdown,
)
from dat.io import (
    LOG_FORMAT,
    CorruptCheckpointError,
    atomic_link,
    atomic_torch_save,
    checkpoint_advice,
    load_checkpoint,
    provenance,
    read_json,
    seed_everything,
    sha256_file,
)
from dat.losses import dat_loss, ebjdat_loss, jem_loss, kl_uniform, ratio_loss
from dat.metrics import auroc
from dat.models import build_model, energy, set_train_mode
from dat.sampling import ReplayBuffer, normalized_gradient_ascent, sgld, uniform_noise

log = logging.getLogger("dat.train")

LOG_FIELDS = ["step", "epoch", "images", "time_s", "lr", "loss", "ce_adv", "bce", "acc_adv", "steps_T", "auc", "kl_out", "px",
              "energy_q", "images_per_s"]
EXIT_INTERRUPTED = 75  # a signal stopped training after saving last.pt; rerunning resumes
EXIT_NONFINITE = 65  # the loss became NaN/inf; last.pt holds the last good state
# checkpoint keys only a resume needs (model.pt leaves them out)
RESUMABLE_KEYS = ("optimizer", "ema_updates", "curriculum", "rng", "rng_ranks", "generator", "replay", "train_time_s")
LAST, PREVIOUS, ATTEMPT_LOG = "last.pt", "last.prev.pt", "train.log"  # in --ckpt-dir


class EMA:
    """Exponential moving average of parameters and buffers (BatchNorm statistics averaged too).

    With ``warmup`` the decay is min(decay, (1 + n) / (10 + n)) after n updates, so short runs are not
    dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    raise ValueError(f"train.optimizer.name: unknown optimizer {o.name!r} (sgd, adamw)")


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate at update ``step`` of ``total`` (linear warm-up, then cosine, constant or multistep)."""
    o = cfg.optimizer
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "cosine":
        return 0.5 * o.lr * (1 + math.cos(math.pi * step / max(1, total)))
    if o.schedule == "multistep":
        return o.lr * o.gamma ** sum(step >= m * total for m in o.milestones)
    raise ValueError(f"train.optimizer.schedule: unknown schedule {o.schedule!r}")


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.frombuffer(np.random.get_state()[1].tobytes(), dtype=np.uint8).copy()),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": torch.tensor(list(random.getstate()[1]), dtype=torch.int64),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys = np.frombuffer(state["numpy"].numpy().tobytes(), dtype=np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))


class Trainer:
    """Owns the model, optimiser, EMA, data streams and curriculum of one training run."""

    def __init__(self, run: dict, data_dir: Path, init_path: Path | None, init_sha256: str | None = None,
                 aux_ood: Path | None = None, device: str | torch.device = "cpu", dist_env: DistEnv = DistEnv(),
                 init_format: str = "dat"):
        self.run = training_view(run)  # what checkpoints store and a resume compares
        self.device = torch.device(device)
        self.dist = dist_env
        self.cfg = TrainConfig.from_dict(run["train"])
        shard_size(self.cfg.batch_size, dist_env, "train.batch_size")  # fails here when a batch does not split
        second = self.cfg.bce or self.cfg.ratio or self.cfg.sgld  # the second batch: BCE / out-distribution / p(x)
        if second:
            self.bce_batch_size = second.batch_size or self.cfg.batch_size  # global
            shard_size(self.bce_batch_size, dist_env, "train.<bce|ratio|sgld>.batch_size")
        ds = run["dataset"]
        self.num_classes = ds["num_classes"]
        self.image_shape = (ds["channels"], ds["image_size"], ds["image_size"])
        self.generator = seed_everything(run["seed"])
        if dist_env.rank:  # each process augments its own shard with its own stream; rank 0 matches one process
            torch.manual_seed(run["seed"] + 1000 * dist_env.rank)
        x_train, y_train = data_lib.open_images(data_dir / "train.npz")
        self.n_train = len(y_train)
        self.total_steps = self.cfg.total_steps(self.n_train)
        aug = self.cfg.augment
        fill = tuple(ds["mean"]) if aug.fill == "mean" else None  # RATIO's mean-colour fills (augment.fill)
        make = lambda names: data_lib.build_transform(list(names), ds["image_size"], aug.crop_padding,  # noqa: E731
                                                      aug.cutout_size, fill)
        # an image-file set is read whole by a stream that starts with random_resized_crop (data_lib.stream_images)
        stream = lambda x, y, names: data_lib.ArrayDataset(data_lib.stream_images(x, names), y, make(names))  # noqa: E731
        self.at_stream = stream(x_train, y_train, aug.at)
        # real images of the second branch: DAT's BCE batch, JEM's / EB-JDAT's p(x) batch (mild augmentation)
        self.bce_stream = stream(x_train, y_train, aug.bce) if self.cfg.bce or self.cfg.sgld else None
        self.ood_stream = None  # auxiliary OOD images (DAT chain starts, RATIO out-batches), mildly augmented
        if self.cfg.aux and self.cfg.aux.init == "ood":
            if aux_ood is None:
                raise ValueError("train.bce.init is 'ood' but no --aux-ood file was given (the prepare_aux_ood rule)")
            x_ood = data_lib.open_images(aux_ood, labels=False)[0]
            if x_ood.shape[1:] != x_train.shape[1:]:
                raise ValueError(f"{aux_ood}: images {x_ood.shape[1:]} differ from the training images {x_train.shape[1:]}")
            self.ood_stream = stream(x_ood, np.zeros(len(x_ood), np.int64), aug.ood_images)
        self.model_kwargs = dict(
            arch=run["model"]["arch"], num_classes=self.num_classes, in_channels=ds["channels"], mean=ds["mean"], std=ds["std"],
            **run["model"].get("kwargs", {}),
        )
        self.model = build_model(**self.model_kwargs)
        self.init_sha256 = None  # of the checkpoint this run started from, recorded in its own checkpoints
        if init_path is not None:
            self._load_init(init_path, init_sha256, init_format)
        self.model.to(self.device, memory_format=torch.channels_last if self.cfg.channels_last else torch.preserve_format)
        self.train_model = self.model  # what the loss forward runs: DDP-wrapped when data-parallel
        if dist_env.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.attack_model = self.model  # what the attack and the sampler differentiate (no gradient sync needed)
        if self.cfg.compile:  # torch.compile both callers; the weights stay those of self.model (checkpoints unchanged)
            self.attack_model = torch.compile(self.model, backend=self.cfg.compile_backend)
            self.train_model = torch.compile(self.train_model, backend=self.cfg.compile_backend)
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.ema = EMA(self.model, self.cfg.ema_decay, self.cfg.ema_warmup) if self.cfg.ema_decay else None
        b = self.cfg.bce
        self.curriculum = (
            StepCurriculum(b.initial_steps, b.max_steps, b.auc_threshold, b.window_images, b.increment) if b else None
        )
        self.step = 0
        self.time_before, self.clock = 0.0, time.time()  # training seconds of earlier attempts; this one's start
        self.replay = None  # JEM's persistent SGLD buffer (per process), saved in resumable checkpoints
        if self.cfg.sgld:
            s = self.cfg.sgld
            self.replay = ReplayBuffer(s.buffer_size, self.image_shape, s.reinit,
                                       torch.Generator().manual_seed(run["seed"] * 7919 + dist_env.rank + 1))

    def _load_init(self, path: Path, sha256: str | None, fmt: str = "dat") -> None:
        digest = sha256_file(path)
        if sha256 and digest != sha256:
            raise ValueError(f"init_from: sha256 of {path} is {digest}, expected {sha256}")
        if not sha256 and fmt != "dat":
            log.warning("init_from %s has no sha256 in the config; its sha256 is %s", path, digest)
        self.init_sha256 = digest
        published = fmt != "dat" or sha256 is not None
        # a published file may be in torch's legacy format (no checksums); ours never are
        ckpt = load_checkpoint(path, legacy=fmt != "dat", advice=checkpoint_advice(path, published))
        self.model.load_state_dict(published_weights(ckpt, fmt, self.model))
        log.info("initialised from %s (format %s%s)", path, fmt, ", EMA weights" if fmt == "dat" and ckpt.get("ema") else "")

    # -- checkpoints -----------------------------------------------------------------------------------
    def train_time_s(self) -> float:
        """Seconds of training so far, over every attempt (the earlier ones' as recorded in the checkpoint resumed)."""
        return self.time_before + time.time() - self.clock

    def state(self, resumable: bool, snapshot: bool = False) -> dict:
        """The checkpoint dict: ``resumable`` adds what a resume needs (collective under DDP); ``snapshot`` (a weight
        snapshot of Figure 4 and the best-FID candidates) leaves out the raw weights when an EMA is kept, since every
        evaluation reads the EMA ones (half the file: 0.8 instead of 1.6 GB for ConvNeXt-L)."""
        out = {
            **provenance(),
            "model": None if snapshot and self.ema else _to_cpu(self.model.state_dict()),
            "ema": _to_cpu(self.ema.state) if self.ema else None,
            "step": self.step,
            "epoch": self.step * self.cfg.batch_size / self.n_train,
            "model_name": self.model_kwargs["arch"],
            "model_kwargs": {k: v for k, v in self.model_kwargs.items() if k != "arch"},
            "config": self.run,
            "init_sha256": self.init_sha256,
        }
        out["diverged"] = None  # keep_last_good() sets it
        if resumable:
            out["optimizer"] = self.optimizer.state_dict()
            out["ema_updates"] = self.ema.updates if self.ema else 0
            out["curriculum"] = self.curriculum.state_dict() if self.curriculum else None
            out["rng"] = _rng_state()
            out["rng_ranks"] = all_gather_object(out["rng"], self.dist)  # collective: every process calls state()
            out["generator"] = self.generator.get_state()
            out["train_time_s"] = self.train_time_s()
            if self.replay is not None:
                out["replay"] = {**self.replay.state_dict(), "generator": self.replay.generator.get_state()}
        return out

    def resume(self, ckpt: dict, path: Path) -> None:
        """Continue from ``ckpt``, the loaded resumable checkpoint ``path`` (named in messages)."""
        if training_view(ckpt["config"]) != self.run:
            raise ValueError(f"{path} was written for a different run config; delete it to restart from scratch")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema:
            self.ema.state = {k: v.to(self.device) for k, v in ckpt["ema"].items()}
            self.ema.updates = ckpt["ema_updates"]
        if self.curriculum:
            self.curriculum.load_state_dict(ckpt["curriculum"])
        ranks = ckpt.get("rng_ranks") or []
        if len(ranks) == self.dist.world_size:
            _set_rng_state(ranks[self.dist.rank])
        else:  # written by a job with another process count: every process restarts from rank 0's streams
            _set_rng_state(ckpt["rng"])
            if self.dist.rank:
                torch.manual_seed(int(ckpt["step"]) + 1000 * self.dist.rank)
        self.generator.set_state(ckpt["generator"])
        if self.replay is not None:
            self.replay.load_state_dict(ckpt["replay"])
            self.replay.generator.set_state(ckpt["replay"]["generator"])
        self.step = ckpt["step"]
        self.time_before = float(ckpt.get("train_time_s", 0.0))  # absent from a last.pt written before it was kept
        log.info("resumed from %s at step %d (%.1f s of training before)", path, self.step, self.time_before)

    # -- one update ------------------------------------------------------------------------------------
    def chain_starts(self, n: int) -> torch.Tensor:
        """(n, C, H, W) uniform-noise chain starts (DAT) or out-batches (RATIO) for init noise; OOD images come
        from ``ood_stream``."""
        init = self.cfg.aux.init
        if init == "noise":  # drawn for the global batch, so every process takes its slice of the same noise
            x0 = uniform_noise(n * self.dist.world_size, self.image_shape, self.generator)
            return x0[self.dist.rank * n:(self.dist.rank + 1) * n]
        raise ValueError(f"train.bce.init is {init!r}: pass the chain starts (a batch of ood_stream) to train_step")

    def train_step(self, batch: tuple, bce_batch: tuple | None, x_init: torch.Tensor | None = None) -> dict:
        """forward -> loss dict -> backward -> optimiser step -> EMA; returns plain floats.

        Args:
            batch: (x, y) of the AT-CE branch, x (B, C, H, W) float32 in [0, 1] (strong augmentation).
            bce_batch: (x_hat, y') of the BCE branch (mild augmentation), or None in stage 1.
            x_init: (B', C, H, W) chain starts from the auxiliary OOD set, or None for uniform noise.
        """
        cfg, model, device = self.cfg, self.model, self.device
        x, y = self._input(batch[0]), batch[1].to(device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.total_steps, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            terms, logits_adv, out = self._losses(x, y, bce_batch, x_init)
        bad = all_reduce_sum([0.0 if torch.isfinite(terms["loss"]) else 1.0], self.dist, device)[0]
        if bad:
            raise FloatingPointError(f"non-finite loss at step {self.step} in {int(bad)} process(es): {terms['loss'].item()}")
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].float().backward()
        self.optimizer.step()
        if self.ema:
            self.ema.update(model)
        acc = (logits_adv.detach().argmax(1) == y).float().mean().item()  # JEM: clean accuracy (no attack)
        means = [terms["loss"].item(), terms.get("ce_adv", terms.get("ce")).float().mean().item(), acc] + ([out["bce"]] if "bce" in out else [])
        means = [v / self.dist.world_size for v in all_reduce_sum(means, self.dist, device)]  # over all processes
        out.update(loss=means[0], ce_adv=means[1], acc_adv=means[2], lr=self.optimizer.param_groups[0]["lr"])
        if "bce" in out:
            out["bce"] = means[3]
        if self.curriculum:
            out["steps_T"] = self.curriculum.steps
            self.curriculum.update(out["auc"], self.bce_batch_size)
        self.step += 1
        return out

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _losses(self, x, y, bce_batch, x_init) -> tuple[dict, torch.Tensor, dict]:
        """The attack, the contrastive samples and the loss terms of one step (under the configured autocast)."""
        cfg, model, device = self.cfg, self.model, self.device
        model.eval()  # attacks and the sampler run in eval mode (protocol: stage-1 attack too)
        if cfg.objective in ("jem", "ebjdat"):
            return self._losses_jem(x, y, bce_batch)
        a = cfg.attack
        x_adv = pgd_attack(self.attack_model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps, norm=a.norm,
                           random_start=a.random_start, generator=self.generator, momentum=a.momentum,
                           best_iterate=a.best_iterate)
        out = {}
        if cfg.ratio:  # RATIO: out-batch moved to be confident (max KL(U || p)), then in- and out-batch in one pass
            r = cfg.ratio
            x_out0 = self._input(x_init if x_init is not None else self.chain_starts(len(x)))
            # the in-distribution attack's PGD variant (RATIO's code: --id_pgd and --od_pgd both default to argmin)
            x_out = pgd_maximize(lambda z: kl_uniform(self.attack_model(z)), x_out0, eps=r.eps, step_size=r.step_size,
                                 steps=r.steps, norm="L2", momentum=a.momentum, best_iterate=a.best_iterate)
            set_train_mode(model, freeze_batchnorm=cfg.freeze_batchnorm)
            logits_adv, logits_out = self.train_model(torch.cat([x_adv, x_out])).split([len(x_adv), len(x_out)])
            terms = ratio_loss(logits_adv, y, logits_out, lam=r.lam)
            out["kl_out"] = terms["kl_out"].mean().item()
        elif bce_batch is None:
            set_train_mode(model, freeze_batchnorm=cfg.freeze_batchnorm)
            logits_adv = self.train_model(x_adv)
            terms = dat_loss(logits_adv, y, weight_ce=cfg.weight_ce)
        else:
            x_hat, y_prime = self._input(bce_batch[0]), bce_batch[1].to(device)  # y' ~ p_data(y): the BCE batch's labels
            b = cfg.bce
            x0 = self._input(x_init if x_init is not None else self.chain_starts(len(x_hat)))
            target = y_prime if b.conditional else None
            x_T, _ = normalized_gradient_ascent(self.attack_model, x0, target, step_size=b.step_size, steps=self.curriculum.steps)
            set_train_mode(model, freeze_batchnorm=cfg.freeze_batchnorm)
            logits = self.train_model(torch.cat([x_adv, x_hat, x_T]))  # one pass; (B + B' + B', K)
            logits_adv, logits_real, logits_fake = logits.split([len(x_adv), len(x_hat), len(x_T)])
            terms = dat_loss(logits_adv, y, logits_real, logits_fake, weight_ce=cfg.weight_ce, weight_bce=b.weight)
            with torch.no_grad():
                real = all_gather_cat(logits_real.gather(1, y_prime.view(-1, 1)).squeeze(1).float(), self.dist)
                fake = all_gather_cat(logits_fake.gather(1, y_prime.view(-1, 1)).squeeze(1).float(), self.dist)
                finite = bool(torch.isfinite(real).all() and torch.isfinite(fake).all())
                # over the global batch; non-finite logits make the loss non-finite too, which train_step handles
                out["auc"] = auroc(real.cpu().numpy(), fake.cpu().numpy()) if finite else float("nan")
            out["bce"] = terms["bce"].item()
        return terms, logits_adv, out

    def _losses_jem(self, x, y, data_batch) -> tuple[dict, torch.Tensor, dict]:
        """JEM (CE + E(x_p) - E(x_q)) or EB-JDAT (its four terms): SGLD from the replay buffer, noisy data."""
        cfg, model, s = self.cfg, self.model, self.cfg.sgld
        noise = lambda t: t + s.data_noise * torch.randn_like(t)  # noqa: E731  (JEM's N(0, sigma) data noise)
        x_lab, x_p = noise(x), noise(self._input(data_batch[0]))
        x0, idx = self.replay.sample(len(x_p))
        x_q = sgld(self.attack_model, self._input(x0), steps=s.steps, step_size=s.step_size, noise_std=s.noise_std,
                   generator=self.generator)
        self.replay.update(idx, x_q.cpu())
        parts = [x_lab, x_p, x_q]
        if cfg.ebjdat:
            e = cfg.ebjdat
            # the noisy labelled batch and its labels, as the authors' code attacks them (x_lab, y_lab)
            parts.append(ebjdat_attack(self.attack_model, x_lab, y, eps=e.attack_eps, step_size=e.attack_step_size,
                                       steps=e.attack_steps, norm=e.attack_norm, project_to_ball=e.attack_project,
                                       generator=self.generator))
        set_train_mode(model, freeze_batchnorm=cfg.freeze_batchnorm)
        logits = self.train_model(torch.cat(parts)).split([len(p) for p in parts])
        e_q = energy(logits[2].detach().float())
        if not torch.isfinite(e_q).all() or e_q.abs().max() > s.energy_limit:
            raise FloatingPointError(f"SGLD samples diverged at step {self.step}: max |E(x_q)| = {e_q.abs().max().item():.4g}")
        if cfg.ebjdat:
            e = cfg.ebjdat
            terms = ebjdat_loss(logits[0], y, logits[1], logits[2], logits[3], weight_px=s.weight_px,
                                weight_pyx=s.weight_pyx, weight_xadv=e.weight_xadv, weight_pyxadv=e.weight_pyxadv)
        else:
            terms = jem_loss(logits[0], y, logits[1], logits[2], weight_px=s.weight_px, weight_pyx=s.weight_pyx)
        out = {"px": terms["px"].item(), "energy_q": e_q.mean().item()}
        return terms, logits[3] if cfg.ebjdat else logits[0], out


def finished_rerun(ckpt: dict, source: Path, total_steps: int, model_out: Path, env: DistEnv = DistEnv()) -> int:
    """A rerun of a finished run whose ``model.pt`` was deleted (Snakemake deletes a job's outputs before it reruns
    it): ``source``, the ``last.pt`` the run left as a hard link to its ``model.pt``, becomes ``model_out`` again;
    nothing is trained. Returns 0.

    Raises:
        ValueError: naming ``source``, when its step is not the run's last (a file that cannot be resumed from).
    """
    if int(ckpt["step"]) != total_steps:
        raise ValueError(f"{source} holds the weights of step {ckpt['step']} without the optimizer state a resume needs "
                         f"(this run trains {total_steps} steps): move it away to train from scratch")
    if env.is_main:
        atomic_link(source, model_out)
    barrier(env)
    log.info("%s is the finished run (step %d): wrote %s from it, nothing trained", source, ckpt["step"], model_out)
    return 0


def keep_last_good(last: Path, model_out: Path, diverged_at: int, reason: str) -> dict:
    """End a diverged run: write ``model_out`` from the last good resumable checkpoint, marked as diverged.

    The evaluation rules then measure that checkpoint like any other and the tables flag the row (JEM is known to
    diverge; Grathwohl et al. 2020 restart from the last good checkpoint). ``last`` stays, so a rerun with other
    settings can still resume from it.

    Returns:
        the ``diverged`` record stored in the checkpoint: ``at_step`` (the update that failed), ``kept_step`` (the
        step of the weights kept) and ``reason``.
    """
    ckpt = load_checkpoint(last)
    record = {"at_step": int(diverged_at), "kept_step": int(ckpt["step"]), "reason": reason}
    state = {k: v for k, v in ckpt.items() if k not in RESUMABLE_KEYS}
    state["diverged"] = record
    atomic_torch_save(state, model_out)
    log.warning("%s: training diverged at step %d (%s); wrote %s from the last good checkpoint (step %d)",
                ckpt["config"]["run"], diverged_at, reason, model_out, record["kept_step"])
    return record


def _to_cpu(state: dict) -> dict:
    """A state dict with every tensor on the CPU, so checkpoints load anywhere."""
    return {k: v.detach().cpu() for k, v in state.items()}


def _append_log(path: Path, row: dict, fresh: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w" if fresh else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if fresh:
            writer.writeheader()
        if row:
            writer.writerow(row)


def _truncate_log(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so the CSV has each step once."""
    if not path.exists():
        _append_log(path, {}, fresh=True)
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    _append_log(path, {}, fresh=True)
    for r in rows:
        _append_log(path, r, fresh=False)


def _set_aside(path: Path, kind: str) -> Path:
    """Rename the checkpoint ``path`` (``<name>.pt``) to ``<name>.<kind>-<time>.pt`` beside it and return that."""
    stem, stamp = path.name.removesuffix(".pt"), time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{stem}.{kind}-{stamp}.pt"), 0
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}.{kind}-{stamp}-{n}.pt")
    path.rename(target)
    return target


def resume_point(ckpt_dir: Path, run: dict, env: DistEnv = DistEnv()) -> tuple[dict | None, Path | None]:
    """The checkpoint a rerun continues from: ``last.pt``, else ``last.prev.pt`` (the generation before), else none.

    A file that fails to load (:class:`dat.io.CorruptCheckpointError`: truncated, damaged) is set aside as
    ``<name>.corrupt-<time>.pt`` and the next one is tried; the first one that loads but was written for another run
    config (``run``, the training view) is set aside as ``<name>.stale-<time>.pt``, and the older generation with it.
    Every process reads the same files; rank 0 renames them and logs why.

    Returns:
        (the loaded checkpoint, its path), or (None, None) for a fresh start.
    """
    ckpt = source = None
    aside = []  # (path, kind, why)
    for path in (ckpt_dir / LAST, ckpt_dir / PREVIOUS):
        if ckpt is not None or not path.exists():
            continue
        if aside and aside[-1][1] == "stale":
            aside.append((path, "stale", "the generation before a stale checkpoint"))
            continue
        try:
            loaded = load_checkpoint(path)
        except CorruptCheckpointError as err:
            aside.append((path, "corrupt", err.problem))
            continue
        if training_view(loaded["config"]) != run:  # the config changed: train from scratch
            aside.append((path, "stale", "written for another run config"))
            continue
        ckpt, source = loaded, path
    barrier(env)  # every process has read the files before rank 0 moves any
    if env.is_main and aside:
        for path, kind, why in aside:
            log.warning("%s is %s: kept as %s", path, why, _set_aside(path, kind).name)
        if source is not None:
            log.warning("resuming from %s, the checkpoint before (step %d): the steps after it are trained again",
                        source, ckpt["step"])
        else:
            log.warning("no usable checkpoint in %s: training from scratch", ckpt_dir)
    barrier(env)
    return ckpt, source


class AttemptLog(logging.Handler):
    """Appends this process's log records to ``<ckpt-dir>/train.log``, which outlives the attempts of a job (the
    rule's log file does not: Snakemake empties it at each start), so that a killed attempt's last lines, such as
    ``received signal 15``, stay readable after the rerun. Records logged before :meth:`open` are held back until
    then, so an attempt that fails while it starts (a damaged ``--init``) writes nothing."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.held: list[logging.LogRecord] = []
        self.stream = None

    def open(self, path: Path, resumed: str) -> None:
        """Start appending to ``path``: a header line (time, host, pid, ``resumed``), then the held-back records."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(path, "a")
        self.stream.write(f"==== attempt {time.strftime('%Y-%m-%d %H:%M:%S')} host {socket.gethostname()} "
                          f"pid {os.getpid()}: {resumed}\n")
        held, self.held = self.held, []
        for record in held:
            self.emit(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            self.held.append(record)
            return
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must not stop training (e.g. a full disk)
            self.handleError(record)

    def failed(self, err: BaseException) -> None:
        """Append the traceback of the error that ends the attempt (stderr gets it from Python itself)."""
        if self.stream is not None:
            self.stream.write("".join(traceback.format_exception(err)))
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        super().close()


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser("dat.train", __doc__)
    p.add_argument("--config", type=Path, required=True,
                   help="run config written by the workflow: results/{run}/train.json (or the full run.json; "
                        "training reads only its training view, dat.config.training_view)")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with train.npz of the run's dataset")
    p.add_argument("--init", type=Path, default=None, help="checkpoint to start from (stage 1 model for stage 2)")
    p.add_argument("--init-sha256", default=None, help="expected sha256 of --init (for published checkpoints)")
    p.add_argument("--init-format", default="dat", choices=INIT_FORMATS,
                   help="layout of --init: dat (a model.pt), robustness (Madry-lab library), state_dict (timm/torchvision)")
    p.add_argument("--aux-ood", type=Path, default=None, help="auxiliary OOD chain starts (npz, key x) for bce.init ood")
    p.add_argument("--model-out", type=Path, required=True, help="final checkpoint (model.pt)")
    p.add_argument("--log-csv", type=Path, required=True, help="training log, one row per logging step")
    p.add_argument("--ckpt-dir", type=Path, required=True, help="folder of the resumable last.pt")
    p.add_argument("--snapshot-dir", type=Path, default=None,
                   help="folder of the Figure 4 weight snapshots step_<n>.pt (method block snapshots; default "
                        "<ckpt-dir>/../snapshots)")
    add_machine_arguments(p)
    p.add_argument("--stop-after", type=int, default=None, help="stop (as if killed) after this many steps; for tests")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start(args, device=False)  # logging and threads; the device depends on the process's rank under torchrun
    env, device = init_distributed(args.device)
    attempt = AttemptLog() if env.is_main else None  # rank 0 keeps the log of every attempt
    root = logging.getLogger()
    if attempt is not None:
        root.addHandler(attempt)
    try:
        return _train(args, env, device, attempt)
    except Exception as err:
        if attempt is not None:
            attempt.failed(err)
        raise
    finally:
        if attempt is not None:
            root.removeHandler(attempt)
            attempt.close()
        shutdown(env)


def _train(args: argparse.Namespace, env: DistEnv, device: torch.device, attempt: AttemptLog | None = None) -> int:
    """The training loop of one process (of ``env.world_size``); only rank 0 writes files (and ``attempt``, the
    ``ckpt/train.log`` of rank 0)."""
    run = read_json(args.config)
    trainer = Trainer(run, args.data_dir, args.init, args.init_sha256, args.aux_ood, device, env, args.init_format)
    cfg = trainer.cfg
    last, previous = args.ckpt_dir / LAST, args.ckpt_dir / PREVIOUS
    ckpt, source = resume_point(args.ckpt_dir, trainer.run, env)
    if attempt is not None:
        attempt.open(args.ckpt_dir / ATTEMPT_LOG, f"resumed from {source.name} at step {ckpt['step']}"
                     if ckpt is not None else "fresh start")
    if ckpt is not None and "optimizer" not in ckpt:  # the model.pt a finished run linked as its last.pt
        return finished_rerun(ckpt, source, trainer.total_steps, args.model_out, env)
    if ckpt is not None:
        trainer.resume(ckpt, source)
        del ckpt
        if env.is_main:
            _truncate_log(args.log_csv, trainer.step)
    elif env.is_main:
        _append_log(args.log_csv, {}, fresh=True)
    log.info("run %s: %s on %s (process %d of %d), %d steps of global batch %d (%d training images), resolved config: %s",
             run["run"], cfg.objective, trainer.device, env.rank, env.world_size,
             trainer.total_steps, cfg.batch_size, trainer.n_train, cfg)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum
        log.warning("received signal %d: saving last.pt after this step", signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, on_signal)

    def save(path: Path, resumable: bool) -> None:
        state = trainer.state(resumable)  # collective under DDP: every process gathers, rank 0 writes
        if env.is_main:  # a new last.pt moves the one before to last.prev.pt, the fallback when last.pt is damaged
            atomic_torch_save(state, path, previous=previous if path == last else None)
        barrier(env)

    snap_dir = args.snapshot_dir or args.ckpt_dir.parent / "snapshots"

    def snapshot() -> None:  # Figure 4 and best-FID candidates: the weights (EMA when kept) after trainer.step updates
        if cfg.snapshots and trainer.step % cfg.snapshots.every_steps == 0 and env.is_main:
            atomic_torch_save(trainer.state(resumable=False, snapshot=True), snap_dir / f"step_{trainer.step:07d}.pt")

    if trainer.step == 0:
        if env.is_main:  # a fresh run: the snapshots of an earlier config would mix into Figure 4
            for old in snap_dir.glob("step_*.pt"):
                old.unlink()
        snapshot()
    seed, shard = run["seed"], (env.rank, env.world_size)
    workers = cfg.num_workers  # decoding processes per stream (ImageNet-sized data needs them; arrays do not)
    at_batches = data_lib.infinite_batches(trainer.at_stream, cfg.batch_size, seed, start_batch=trainer.step, shard=shard,
                                           num_workers=workers)
    bce_batches = ood_batches = None
    if trainer.bce_stream is not None:
        bce_batches = data_lib.infinite_batches(trainer.bce_stream, trainer.bce_batch_size, seed + 1,
                                                start_batch=trainer.step, shard=shard, num_workers=workers)
    if trainer.ood_stream is not None:
        ood_batches = data_lib.infinite_batches(trainer.ood_stream, trainer.bce_batch_size, seed + 2,
                                                start_batch=trainer.step, shard=shard)
    t0, window_t, window_images = time.time(), time.time(), 0
    trainer.clock = t0  # time_s counts training time only, over every attempt (trainer.time_before)
    last_saved = time.time()
    while trainer.step < trainer.total_steps:
        try:
            row = trainer.train_step(next(at_batches), next(bce_batches) if bce_batches else None,
                                     next(ood_batches)[0] if ood_batches else None)
        except FloatingPointError as err:
            if cfg.on_divergence == "keep_last" and last.exists():
                if env.is_main:
                    keep_last_good(last, args.model_out, diverged_at=trainer.step + 1, reason=str(err))
                barrier(env)
                return 0
            log.error("%s; the last good state is %s", err, last)
            return EXIT_NONFINITE
        window_images += cfg.batch_size
        step = trainer.step
        if env.is_main and (step % cfg.log_every == 0 or step == trainer.total_steps):
            now = time.time()
            row.update(step=step, epoch=round(step * cfg.batch_size / trainer.n_train, 4), images=step * cfg.batch_size,
                       time_s=round(trainer.time_before + now - t0, 2),
                       images_per_s=round(window_images / max(now - window_t, 1e-9), 2))
            window_t, window_images = now, 0
            _append_log(args.log_csv, {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}, fresh=False)
            log.info("step %d/%d %s", step, trainer.total_steps,
                     " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "step"))
        snapshot()
        interrupted = stop["signal"] is not None or (args.stop_after is not None and step >= args.stop_after)
        due = cfg.ckpt_every_minutes is not None and time.time() - last_saved >= 60 * cfg.ckpt_every_minutes
        # every process must take the same decision at the same step (a signal may reach them at different times)
        interrupted, due = (v > 0 for v in all_reduce_sum([interrupted, due], env, device))
        if step % cfg.ckpt_every_steps == 0 or due or interrupted:
            save(last, resumable=True)
            last_saved = time.time()
        if interrupted:
            log.warning("stopped at step %d; rerun to resume from %s", step, last)
            return EXIT_INTERRUPTED
    save(last, resumable=True)
    save(args.model_out, resumable=False)
    if env.is_main:  # the run is done: one copy of its weights on disk, not three
        # last.pt becomes model.pt's hard link (saves a last.pt per run: 2.7 GB for ConvNeXt-L with its AdamW state);
        # a rerun after model.pt is lost reads it as the finished run (finished_rerun); the fallback generation goes
        atomic_link(args.model_out, last)
        previous.unlink(missing_ok=True)
    log.info("wrote %s after %d steps in %.1f s (%.1f s of training over every attempt)", args.model_out,
             trainer.step, time.time() - t0, trainer.train_time_s())
    return 0


if __name__ == "__main__":
    sys.exit(main())
