"""Rebuild a trained classifier from a ``model.pt`` written by ``dat.train`` (loaded with ``weights_only=True``)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from dat.config import RunConfig
from dat.io import load_checkpoint
from dat.models import build_model
from dat.registry import INIT_FORMATS


def load_model(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Build the architecture recorded in the checkpoint and load its weights, in eval mode.

    Args:
        path: a ``model.pt`` (or ``last.pt``) from ``dat.train``.
        weights: ``"ema"`` (the EMA weights, falling back to the raw weights when the run kept no EMA) or ``"raw"``.
        device: where the model's parameters go.

    Returns:
        (model in eval mode with requires_grad False on every parameter, the checkpoint dict).

    Raises:
        FileNotFoundError: naming ``path``; ValueError for an unknown ``weights``, or ``"raw"`` asked of a training
        snapshot that kept the EMA weights only (``dat.train`` snapshots of an EMA run).
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["model_name"], **ckpt["model_kwargs"])
    state = ckpt["ema"] if weights == "ema" and ckpt.get("ema") is not None else ckpt["model"]
    if state is None:
        raise ValueError(f"{path} holds the EMA weights only (a training snapshot of a run with ema_decay); "
                         f"evaluate it with weights 'ema' (evaluate.weights)")
    model.load_state_dict(state)
    # the run's memory layout (train.channels_last) holds for its evaluations too: attacks and samplers backpropagate
    # through the same convolutions (a checkpoint written before the key existed is contiguous)
    layout = torch.channels_last if ckpt["config"]["train"].get("channels_last", False) else torch.preserve_format
    model.to(device, memory_format=layout).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, ckpt


def checkpoint_record(path: str | Path, ckpt: dict, weights: str) -> dict:
    """What a result JSON records about the model it measured: file, training step, weights actually used (EMA or
    raw), the code revision that trained it, the sha256 of the checkpoint it started from, ``diverged`` (None,
    or the record of ``dat.train.keep_last_good``: the row is flagged in the tables) and ``selection`` (None, or
    which checkpoint of the run this is: the record of ``dat.select_checkpoint`` or :func:`final_selection`)."""
    used = "ema" if weights == "ema" and ckpt.get("ema") is not None else "raw"
    return {"path": str(path), "step": ckpt.get("step"), "epoch": ckpt.get("epoch"), "weights": used,
            "train_git_sha": ckpt.get("git_sha"), "init_sha256": ckpt.get("init_sha256"),
            "diverged": ckpt.get("diverged"), "selection": ckpt.get("selection")}


def final_selection(run: RunConfig, ckpt: dict) -> dict:
    """The ``selection`` record of a checkpoint no selection wrote (a model.pt): ``checkpoint`` final, the run's
    ``evaluate.checkpoint`` as ``requested``, ``step`` (= ``final_step``, training updates) and, when best_fid was
    asked for, the ``reason`` the final model is measured instead (its method saves no weight snapshots: stage 1,
    baselines, published models)."""
    requested = run.evaluate.checkpoint
    record = {"checkpoint": "final", "requested": requested, "step": ckpt.get("step"), "final_step": ckpt.get("step")}
    if requested == "best_fid":
        record["reason"] = ("the method saves no weight snapshots (train.snapshots null): the final model is evaluated"
                            if run.train.snapshots is None else
                            "a final model.pt was given, not the selected checkpoint of dat.select_checkpoint")
    return record


def published_weights(ckpt: dict, fmt: str, model: nn.Module, where: str = "init_from") -> dict:
    """The state dict of ``model`` inside a checkpoint file written by this pipeline or published elsewhere.

    Formats:
        ``dat``: a ``model.pt``/``last.pt`` of ``dat.train`` (its EMA weights when it kept them).
        ``robustness``: the Madry-lab Robustness library (Engstrom et al. 2019; the robust ImageNet ResNet-50 /
            WRN-50-4 of Salman et al. 2020): weights under ``model`` (or ``state_dict``) with keys
            ``module.model.<torchvision key>``; the library's ``normalizer`` and ``attacker`` copies are dropped
            (our model normalizes with the dataset's mean/std).
        ``state_dict``: a plain state dict of the library network (torchvision/timm keys, optionally under
            ``state_dict`` or ``model``, optionally prefixed ``module.``), e.g. a timm or RobustBench file.
    For these two, ``model`` must wrap the library network as :class:`dat.models.Normalized` (``backbone.``).
        ``robustbench``: a CIFAR WideResNet of the RobustBench model zoo (Croce et al. 2021; the TRADES layout
            ``conv1``, ``block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2,convShortcut}``, ``bn1``, ``fc``, e.g. RATIO's
            official WRN-34-10) mapped onto :class:`dat.models.WideResNet`, whose blocks compute the same function.
            RobustBench models take [0, 1] inputs: the normalization becomes the checkpoint's ``mu``/``sigma`` when
            it has them, else the identity (the dataset's mean/std are not applied). ``sub_block1`` is dropped.
        ``revisiting_at``: a ConvNeXt + ConvStem of Singh, Croce & Hein (2023; github nmndeep/revisiting-at) for
            model arch ``timm_convnext`` with ``convstem``, as their training script saves it (see
            :func:`_revisiting_at_convnext`): the network's timm keys behind ``module.``/``base_model.`` and, when it
            was trained with its normalisation layer, ``normalize.mean``/``normalize.std`` + ``model.``.

    Raises:
        ValueError: an unknown format, or keys that do not match ``model`` (naming a few of them).
    """
    if fmt == "dat":
        return ckpt.get("ema") or ckpt["model"]
    if fmt not in INIT_FORMATS:
        raise ValueError(f"{where}.format: {fmt!r} is not one of {INIT_FORMATS}")
    state = ckpt
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if fmt == "robustbench":
        return _robustbench_wideresnet(state, model, where)
    if fmt == "revisiting_at":
        return _revisiting_at_convnext(state, model, where)
    prefix = "module.model." if fmt == "robustness" else "module."
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        if fmt == "robustness" and not key.startswith(prefix):
            continue  # normalizer / attacker copies
        name = "backbone." + (key[len(prefix):] if key.startswith(prefix) else key)
        out[name] = value
    for key in ("normalize.mean", "normalize.std"):
        if key in own:
            out[key] = own[key]
    return _fitting(out, own, fmt, where)


def _fitting(out: dict, own: dict, fmt: str, where: str, shapes: bool = False) -> dict:
    """``out`` (a renamed published state dict) when its keys, and with ``shapes`` its tensor shapes, are those of
    ``own`` (the configured model's state dict); else ValueError naming up to five of each mismatch."""
    def few(keys: list) -> str:
        return f"{keys[:5]}{' ...' if len(keys) > 5 else ''}"

    missing, unexpected = sorted(set(own) - set(out)), sorted(set(out) - set(own))
    other = sorted(k for k in set(own) & set(out) if own[k].shape != out[k].shape) if shapes else []
    if missing or unexpected or other:
        raise ValueError(f"{where}: the {fmt} checkpoint does not fit the configured model: missing {few(missing)}, "
                         f"unexpected {few(unexpected)}" + (f", other shapes {few(other)}" if shapes else ""))
    return out


def _robustbench_wideresnet(state: dict, model: nn.Module, where: str) -> dict:
    """Rename a RobustBench/TRADES WideResNet state dict to :class:`dat.models.WideResNet` keys (see above)."""
    own = model.state_dict()
    n_blocks = len({k.split(".")[1] for k in own if k.startswith("blocks.")})
    if "stem.weight" not in own or n_blocks % 3:
        raise ValueError(f"{where}.format robustbench needs model arch wide_resnet (a WideResNet), "
                         f"got a model with keys {sorted(own)[:3]} ...")
    per_group = n_blocks // 3
    top = {"conv1": "stem", "bn1": "bn", "fc": "fc"}
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        head, _, rest = key.partition(".")
        m = re.fullmatch(r"block([123])", head)
        if m and rest.startswith("layer."):
            index, _, leaf = rest[len("layer."):].partition(".")
            block = (int(m.group(1)) - 1) * per_group + int(index)
            out[f"blocks.{block}.{leaf.replace('convShortcut', 'shortcut')}"] = value
        elif head in top and rest:
            out[f"{top[head]}.{rest}"] = value
        elif head in ("mu", "sigma") and not rest:
            out["normalize.mean" if head == "mu" else "normalize.std"] = value.reshape(own["normalize.mean"].shape)
        elif head != "sub_block1":
            out[key] = value  # reported as unexpected below
    out.setdefault("normalize.mean", torch.zeros_like(own["normalize.mean"]))
    out.setdefault("normalize.std", torch.ones_like(own["normalize.std"]))
    return _fitting(out, own, "robustbench", where)


def _revisiting_at_convnext(state: dict, model: nn.Module, where: str) -> dict:
    """Rename a ConvNeXt + ConvStem checkpoint of Singh et al. (2023) to :class:`dat.models.Normalized` keys.

    Their main.py saves the state dict of ``DistributedDataParallel(WrappedModel(normalize_model(net)))``: prefixes
    ``module.`` (DDP) and ``base_model.`` (the adversarial-training wrapper; its EMA copy lacks ``module.``), then,
    with ``model.add_normalization 1`` (their default), ``normalize.mean``/``normalize.std`` (ImageNet's, shape
    (1, 3, 1, 1)) and the network under ``model.``. Their inputs are [0, 1] pixels either way (the loader divides by
    255), so: with the normaliser keys, our normalisation becomes the checkpoint's mean/std (applied once, to [0, 1]
    inputs); without them (``add_normalization 0``, e.g. the DAT authors' ``convnext_large_cvst_robust.pt``, loaded
    with ``normalize_input: false`` in their configs) the network saw raw [0, 1] pixels and our normalisation is the
    identity: the dataset's mean/std are not applied.

    Raises:
        ValueError: keys or shapes that do not match ``model`` (naming a few of them).
    """
    own = model.state_dict()
    if "normalize.mean" not in own or not any(k.startswith("backbone.stem.stem.") for k in own):
        raise ValueError(f"{where}.format revisiting_at needs model arch timm_convnext with convstem true, got a model "
                         f"with keys {sorted(own)[:3]} ...")
    out = {}
    for key, value in state.items():
        while key.startswith(("module.", "base_model.")):
            key = key.partition(".")[2]
        if key in ("normalize.mean", "normalize.std"):
            out[key] = value.reshape(own[key].shape)
        else:
            out["backbone." + key.removeprefix("model.")] = value
    out.setdefault("normalize.mean", torch.zeros_like(own["normalize.mean"]))
    out.setdefault("normalize.std", torch.ones_like(own["normalize.std"]))
    return _fitting(out, own, "revisiting_at", where, shapes=True)
