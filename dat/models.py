"""Classifiers whose logits define the JEM energy, a name -> constructor registry, and BatchNorm control.

Every model takes images in [0, 1] and normalises them in its first layer, so attacks, samplers and
data code never see normalised pixels. ``forward`` returns logits (N, K).

Energy convention (paper Eq. 1 and 4): E(x, y) = -f(x)[y] and E(x) = -logsumexp_y f(x)[y]; lower energy
means more likely.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dat.io import progress
from dat.registry import WIDE_RESNET_NORMS


class Normalize(nn.Module):
    """(x - mean) / std per channel; the first layer of every model so that inputs stay in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _BasicBlock(nn.Module):
    """Post-activation residual block (He et al. 2016) with a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A narrow ResNet for the CPU smoke scale: stem conv, one stage per width (stride 2 after the first), GAP, linear.

    With ``widths=(32, 64, 128)`` and one block per stage it has about 0.3M parameters (the model of the
    smoke-scale calibration, 0.31M at K=10); ``first_stride=2`` makes every stage downsample (28 -> 14 -> 7 -> 4),
    which is about 2x cheaper on a CPU.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        widths: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 1,
        first_stride: int = 1,
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, c_in = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                stride = (first_stride if i == 0 else 2) if j == 0 else 1
                layers.append(_BasicBlock(c_in, width, stride=stride))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.stem(self.normalize(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))  # (N, C, H, W) -> (N, C) -> (N, K)


def _act(x: torch.Tensor, leak: float) -> torch.Tensor:
    """ReLU (``leak == 0``, the default network) or LeakyReLU with negative slope ``leak`` (JEM's WRN: 0.2)."""
    return F.relu(x) if leak == 0 else F.leaky_relu(x, leak)


def _wide_norm(channels: int, norm: str) -> nn.Module:
    """BatchNorm2d for ``norm="batch"``, the identity for ``"none"`` (JEM's WRN: no normalisation layers)."""
    if norm not in WIDE_RESNET_NORMS:
        raise ValueError(f"wide_resnet norm must be one of {', '.join(WIDE_RESNET_NORMS)}, got {norm!r}")
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


class _WideBlock(nn.Module):
    """Pre-activation wide residual block (Zagoruyko & Komodakis 2016); without BatchNorm its convolutions carry
    biases and the activation may be leaky (JEM's variant)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str = "batch", leak: float = 0.0):
        super().__init__()
        bias = norm == "none"  # a BatchNorm's shift replaces the bias; without one the convolutions need theirs
        self.bn1 = _wide_norm(c_in, norm)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.bn2 = _wide_norm(c_out, norm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.shortcut = None if (stride == 1 and c_in == c_out) else nn.Conv2d(c_in, c_out, 1, stride, bias=bias)
        self.leak = leak

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = _act(self.bn1(x), self.leak)
        out = self.conv2(_act(self.bn2(self.conv1(pre)), self.leak))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k for 32x32 inputs (Zagoruyko & Komodakis 2016), as used for CIFAR by RATIO and DAT.

    WRN-34-10 (``depth=34, widen_factor=10``) has about 46.2M parameters. ``norm="none"`` with ``leak=0.2`` is the
    WRN-28-10 of JEM (Grathwohl et al. 2020) and EB-JDAT: no BatchNorm, convolutions with biases, LeakyReLU(0.2)
    (settings of the authors' code: norm None, dropout 0, leak 0.2; our block keeps its stride in the first
    convolution and its projection on the pre-activation). The defaults (``norm="batch"``, ``leak=0``: ReLU) are the
    BatchNorm network every other run uses.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        depth: int = 34,
        widen_factor: int = 10,
        norm: str = "batch",
        leak: float = 0.0,
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.normalize = Normalize(mean, std)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=norm == "none")
        blocks, c_in = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(_WideBlock(c_in, width, stride=2 if (stage > 0 and j == 0) else 1, norm=norm, leak=leak))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = _wide_norm(c_in, norm)
        self.fc = nn.Linear(c_in, num_classes)
        self.leak = leak

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _act(self.bn(self.blocks(self.stem(self.normalize(x)))), self.leak)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class Normalized(nn.Module):
    """A library backbone behind :class:`Normalize`: inputs in [0, 1], logits out."""

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


_RESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def torchvision_resnet(num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float], depth: int = 50,
                       width_per_group: int = 64) -> nn.Module:
    """ImageNet ResNet from torchvision (He et al. 2016), randomly initialised, BatchNorm.

    ``depth=50`` is ResNet-50 (25.6M parameters at K=1000); ``width_per_group=256`` is WRN-50-4 (Zagoruyko &
    Komodakis 2016 widening of the bottleneck, as in the robust ImageNet models of Salman et al. 2020).

    Raises:
        ValueError: for a depth torchvision does not build.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    if depth not in _RESNET_LAYERS:
        raise ValueError(f"torchvision_resnet: depth must be one of {sorted(_RESNET_LAYERS)}, got {depth}")
    block = BasicBlock if depth < 50 else Bottleneck
    if block is BasicBlock and width_per_group != 64:
        raise ValueError("torchvision_resnet: width_per_group != 64 needs a bottleneck ResNet (depth >= 50)")
    net = ResNet(block, list(_RESNET_LAYERS[depth]), num_classes=num_classes, width_per_group=width_per_group)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return Normalized(net, mean, std)


class ConvStem(nn.Module):
    """Convolutional stem replacing ConvNeXt's 4x4 patchify stem (Singh, Croce & Hein 2023, "Revisiting Adversarial
    Training for ImageNet"; layout of their published checkpoints, github nmndeep/revisiting-at,
    utils_architecture.py): 3x3 convolutions with bias and padding 1, each followed by a LayerNorm over the channels
    (eps 1e-6) and GELU, overall stride 4 like the patchify stem.

    - ``width`` 96 (ConvNeXt-T/S, their ``ConvBlock1(48)``): 3 -> 48 (stride 2) -> 96 (stride 2);
    - ``width`` >= 128 (ConvNeXt-B 128, ConvNeXt-L 192, their ``ConvBlock3(width / 2)``): 3 -> width/2 (stride 2)
      -> 3 width/4 (stride 2) -> width (stride 1); ConvNeXt-L: 96, 144, 192.

    Parameters sit under ``stem.<i>`` (convolutions i = 0, 3, 6, LayerNorms 1, 4, 7), the published key names.
    Maps (N, in_channels, H, W) to (N, width, ceil(H / 4), ceil(W / 4)).
    """

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        from timm.layers import LayerNorm2d

        widths, strides = ((width // 2, 3 * width // 4, width), (2, 2, 1)) if width >= 128 else ((width // 2, width), (2, 2))
        layers, c_in = [], in_channels
        for c_out, stride in zip(widths, strides):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1), LayerNorm2d(c_out, eps=1e-6),
                       nn.GELU()]
            c_in = c_out
        self.stem = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


def timm_convnext(num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                  variant: str = "convnext_large", convstem: bool = True, drop_path_rate: float = 0.0,
                  depths: Sequence[int] | None = None) -> nn.Module:
    """ConvNeXt from timm (Liu et al. 2022), randomly initialised, LayerNorm (stage 2 leaves it unchanged).

    ``variant="convnext_large"`` with ``convstem=True`` is the paper's ConvNeXt-L + ConvStem (:class:`ConvStem`;
    198.1M parameters at K=1000). ``depths`` (blocks per stage) replaces the variant's, keeping its widths (default:
    the variant's, e.g. (3, 3, 27, 3) for ConvNeXt-L). Published robust weights are loaded through the run's
    ``init_from``, never downloaded here.
    """
    import timm

    extra = {} if depths is None else {"depths": tuple(depths)}
    net = timm.create_model(variant, pretrained=False, num_classes=num_classes, in_chans=in_channels,
                            drop_path_rate=drop_path_rate, **extra)
    if convstem:
        net.stem = ConvStem(in_channels, net.stem[0].out_channels)
    return Normalized(net, mean, std)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet_small": SmallResNet,
    "wide_resnet": WideResNet,
    "torchvision_resnet": torchvision_resnet,
    "timm_convnext": timm_convnext,
}


def build_model(arch: str, *, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float], **kwargs) -> nn.Module:
    """Construct a registered architecture.

    Args:
        arch: a key of ``MODELS``.
        num_classes: K, the number of logits.
        in_channels: 1 (grayscale) or 3 (RGB).
        mean, std: per-channel normalisation applied inside the model to inputs in [0, 1].
        **kwargs: architecture options (e.g. ``widths``, ``depth``, ``widen_factor``).

    Raises:
        ValueError: for an unknown ``arch``, naming the registered ones.
    """
    if arch not in MODELS:
        raise ValueError(f"unknown model arch {arch!r}; registered: {sorted(MODELS)}")
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean/std need {in_channels} values, got mean={list(mean)} std={list(std)}")
    return MODELS[arch](num_classes=num_classes, in_channels=in_channels, mean=mean, std=std, **kwargs)


def energy(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """JEM energy from logits (paper Eq. 1 and 4).

    Args:
        logits: (N, K) float.
        y: optional (N,) int64 class indices.

    Returns:
        (N,) float: E(x, y) = -logits[y] when ``y`` is given, else E(x) = -logsumexp_k logits[:, k].
    """
    if y is None:
        return -torch.logsumexp(logits, dim=1)
    return -logits.gather(1, y.view(-1, 1)).squeeze(1)


def batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """All BatchNorm modules of ``model`` (LayerNorm/GroupNorm are not included)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_train_mode(model: nn.Module, *, freeze_batchnorm: bool) -> None:
    """``model.train()``, then every BatchNorm back to eval mode when ``freeze_batchnorm`` (DAT stage 2, Sec. 3.5).

    In eval mode a BatchNorm layer normalises with its stored running statistics and never updates them,
    so stage 2 keeps the stage-1 statistics unchanged. Models without BatchNorm are unaffected.
    """
    model.train()
    if freeze_batchnorm:
        for module in batchnorm_modules(model):
            module.eval()


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's parameters (where its inputs must go)."""
    return next(model.parameters()).device


def predict_logits(model: Callable[[torch.Tensor], torch.Tensor], x: Any, batch_size: int,
                   device: str | torch.device | None = None,
                   convert: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of ``x`` in batches of ``batch_size`` without gradients, as (N, K) float32 on the CPU.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits (B, K); the caller sets its mode (eval).
        x: (N, C, H, W) float32 images in [0, 1] on any device; or, with ``convert``, any sliceable of N images
            (a uint8 (N, H, W, C) array, :class:`dat.data.ImageFiles`) that ``convert`` turns into such a tensor one
            batch at a time (:func:`dat.data.to_tensor`), so a large test set is never held as floats.
        batch_size: images per forward pass (each batch's logits depend on that batch alone in eval mode).
        device: where the batches go; default the device of the model's parameters.
        convert: see ``x``; None when ``x`` already holds float tensors.

    Raises:
        RuntimeError: from torch when ``x`` is empty.
    """
    device = device_of(model) if device is None else device
    out = []
    with torch.no_grad():
        for i in progress(range(0, len(x), batch_size), "predict"):
            batch = x[i:i + batch_size] if convert is None else convert(x[i:i + batch_size])
            out.append(model(batch.to(device)).cpu())
    return torch.cat(out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
