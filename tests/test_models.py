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
