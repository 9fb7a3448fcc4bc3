"""Rebuild a trained classifier from a ``model.pt`` written by ``dat.train`` (loaded with ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dat.io import load_checkpoint
from dat.models import build_model


def load_model(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Build the architecture recorded in the checkpoint and load its weights, in eval mode.

    Args:
        path: a ``model.pt`` (or ``last.pt``) from ``dat.train``.
        weights: ``"ema"`` (the EMA weights, falling back to the raw weights when the run kept no EMA) or ``"raw"``.
        device: where the model's parameters go.

    Returns:
        (model in eval mode with requires_grad False on every parameter, the checkpoint dict).

    Raises:
        FileNotFoundError: naming ``path``; ValueError for an unknown ``weights``.
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["model_name"], **ckpt["model_kwargs"])
    state = ckpt["ema"] if weights == "ema" and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(state)
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, ckpt


INIT_FORMATS = ("dat", "robustness", "state_dict")


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
    For the last two, ``model`` must wrap the library network as :class:`dat.models.Normalized` (``backbone.``).

    Raises:
        ValueError: an unknown format, or keys that do not match ``model`` (naming a few of them).
    """
    if fmt == "dat":
        return ckpt.get("ema") or ckpt["model"]
    if fmt not in INIT_FORMATS:
        raise ValueError(f"{where}.format: {fmt!r} is not one of {INIT_FORMATS}")
    state = ckpt
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
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
    missing, unexpected = sorted(set(own) - set(out)), sorted(set(out) - set(own))
    if missing or unexpected:
        raise ValueError(f"{where}: the {fmt} checkpoint does not fit the configured model: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    return out
