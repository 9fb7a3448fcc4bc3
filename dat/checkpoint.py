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
