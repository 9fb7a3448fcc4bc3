"""Paper-scale architectures: sizes match the paper's, each runs forward and backward at batch 2 on a CPU, inputs in
[0, 1] are normalised inside, and stage 2's BatchNorm freeze leaves LayerNorm models untouched."""

import pytest
import torch
from torch import nn

from dat.models import batchnorm_modules, build_model, count_parameters, set_train_mode

RGB = {"in_channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("arch, kwargs, num_classes, size, millions", [
    ("wide_resnet", {"depth": 34, "widen_factor": 10}, 10, 32, 46.16),           # CIFAR-10 WRN-34-10
    ("wide_resnet", {"depth": 34, "widen_factor": 10}, 100, 32, 46.22),          # CIFAR-100
    ("torchvision_resnet", {"depth": 50}, 9, 224, 23.53),                        # RestrictedImageNet ResNet-50
    ("torchvision_resnet", {"depth": 50}, 1000, 256, 25.56),                     # ImageNet ResNet-50
    ("torchvision_resnet", {"depth": 50, "width_per_group": 256}, 1000, 256, 223.44),  # WRN-50-4
    ("timm_convnext", {"variant": "convnext_large", "convstem": True}, 1000, 256, 197.93),  # ConvNeXt-L + ConvStem
])
def test_paper_architectures_size_and_backward(arch, kwargs, num_classes, size, millions):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes, **RGB, **kwargs)
    assert count_parameters(model) / 1e6 == pytest.approx(millions, abs=0.02)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    set_train_mode(model, freeze_batchnorm=True)
    logits = model(x)
    assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()  # -E(x), the BCE branch's logit
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_convnext_has_no_batchnorm_and_keeps_layernorm_training():
    model = build_model("timm_convnext", num_classes=10, **RGB, variant="convnext_atto", convstem=True)
    assert batchnorm_modules(model) == []
    set_train_mode(model, freeze_batchnorm=True)
    assert all(m.training for m in model.modules())  # nothing switched to eval: LayerNorm has no running statistics
    stem = model.backbone.stem
    assert [type(m).__name__ for m in stem] == ["Conv2d", "LayerNorm2d", "GELU", "Conv2d", "LayerNorm2d"]
    assert stem(torch.rand(1, 3, 64, 64)).shape[-1] == 16  # overall stride 4, like the patchify stem


def test_resnet_freeze_puts_every_batchnorm_in_eval():
    model = build_model("torchvision_resnet", num_classes=9, **RGB, depth=18)
    set_train_mode(model, freeze_batchnorm=True)
    bns = batchnorm_modules(model)
    assert len(bns) == 20 and not any(m.training for m in bns)
    assert all(m.training for m in model.modules() if not isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_unknown_depth_is_named():
    with pytest.raises(ValueError, match="depth must be one of"):
        build_model("torchvision_resnet", num_classes=9, **RGB, depth=42)


class _TradesBlock(nn.Module):
    """The TRADES/RobustBench WideResNet block, written from its published description (pre-activation; the 1x1
    shortcut, when shapes change, takes the activated input)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.equal = c_in == c_out
        self.convShortcut = None if self.equal else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        a = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(a))))
        return out + (x if self.equal else self.convShortcut(a))


class _TradesGroup(nn.Module):
    def __init__(self, n, c_in, c_out, stride):
        super().__init__()
        self.layer = nn.Sequential(*[_TradesBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class _TradesWRN(nn.Module):
    """RobustBench key layout: conv1, block1-3 (.layer.i), bn1, fc, sub_block1 (unused), mu/sigma buffers."""

    def __init__(self, depth=16, k=2, num_classes=10):
        super().__init__()
        n, w = (depth - 4) // 6, [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1, self.sub_block1 = _TradesGroup(n, 16, w[1], 1), _TradesGroup(n, 16, w[1], 1)
        self.block2, self.block3 = _TradesGroup(n, w[1], w[2], 2), _TradesGroup(n, w[2], w[3], 2)
        self.bn1, self.fc = nn.BatchNorm2d(w[3]), nn.Linear(w[3], num_classes)
        self.register_buffer("mu", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("sigma", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))

    def forward(self, x):
        h = self.block3(self.block2(self.block1(self.conv1((x - self.mu) / self.sigma))))
        h = torch.relu(self.bn1(h))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


def test_robustbench_wideresnet_checkpoint_gives_the_same_logits():
    """A RobustBench-layout WRN (e.g. RATIO's official checkpoint) imported as format robustbench computes the
    same function; a checkpoint of another depth names the keys that do not fit."""
    from dat.checkpoint import published_weights

    torch.manual_seed(0)
    theirs = _TradesWRN()
    for m in theirs.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    theirs.eval()
    ours = build_model("wide_resnet", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.5] * 3, depth=16,
                       widen_factor=2).eval()
    ckpt = {"state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()}}  # a DataParallel save
    ours.load_state_dict(published_weights(ckpt, "robustbench", ours))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    deeper = build_model("wide_resnet", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.5] * 3, depth=22,
                         widen_factor=2)
    with pytest.raises(ValueError, match="robustbench checkpoint does not fit.*missing"):
        published_weights(ckpt, "robustbench", deeper)
