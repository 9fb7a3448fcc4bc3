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
    ("timm_convnext", {"variant": "convnext_large", "convstem": True}, 1000, 256, 198.14),  # ConvNeXt-L + ConvStem
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


def test_jem_wide_resnet_has_no_batchnorm_and_the_default_keeps_its_layout():
    """JEM's and EB-JDAT's WRN-28-10 (their code: norm None, LeakyReLU 0.2): no BatchNorm, convolutions with biases;
    the default WRN keeps the BatchNorm layout (and state-dict keys) of existing checkpoints."""
    torch.manual_seed(0)
    jem = build_model("wide_resnet", num_classes=10, **RGB, depth=28, widen_factor=10, norm="none", leak=0.2)
    assert batchnorm_modules(jem) == [] and count_parameters(jem) / 1e6 == pytest.approx(36.49, abs=0.02)
    assert all(m.bias is not None for m in jem.modules() if isinstance(m, nn.Conv2d))
    x = torch.rand(2, 3, 32, 32)
    jem.train()
    out = jem(x)
    jem.eval()
    torch.testing.assert_close(jem(x), out)  # nothing depends on the batch or on the mode
    small = dict(num_classes=10, **RGB, depth=10, widen_factor=1)
    default, batch = build_model("wide_resnet", **small), build_model("wide_resnet", **small, norm="batch")
    assert list(default.state_dict()) == list(batch.state_dict()) and len(batchnorm_modules(default)) == 7
    assert not any(m.bias is not None for m in default.modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(ValueError, match="norm must be one of batch, none, got 'layer'"):
        build_model("wide_resnet", **small, norm="layer")


def test_convnext_has_no_batchnorm_and_keeps_layernorm_training():
    model = build_model("timm_convnext", num_classes=10, **RGB, variant="convnext_atto", convstem=True)
    assert batchnorm_modules(model) == []
    set_train_mode(model, freeze_batchnorm=True)
    assert all(m.training for m in model.modules())  # nothing switched to eval: LayerNorm has no running statistics
    stem = model.backbone.stem
    assert [type(m).__name__ for m in stem.stem] == ["Conv2d", "LayerNorm2d", "GELU"] * 2  # width 40: two convs
    assert stem(torch.rand(1, 3, 64, 64)).shape[-1] == 16  # overall stride 4, like the patchify stem


# The stem of Singh et al. (2023)'s ConvNeXt-L + ConvStem as their checkpoints hold it (github nmndeep/revisiting-at,
# utils_architecture.py ConvBlock3(96)): key -> shape
PUBLISHED_CONVNEXT_L_STEM = {
    "stem.stem.0.weight": (96, 3, 3, 3), "stem.stem.0.bias": (96,), "stem.stem.1.weight": (96,), "stem.stem.1.bias": (96,),
    "stem.stem.3.weight": (144, 96, 3, 3), "stem.stem.3.bias": (144,), "stem.stem.4.weight": (144,),
    "stem.stem.4.bias": (144,), "stem.stem.6.weight": (192, 144, 3, 3), "stem.stem.6.bias": (192,),
    "stem.stem.7.weight": (192,), "stem.stem.7.bias": (192,),
}


def _hand_convstem(x: torch.Tensor, weights: dict, strides=(2, 2, 1)) -> torch.Tensor:
    """The published stem computed by hand from its weights: conv 3x3 (padding 1) -> LayerNorm over channels (mean and
    biased variance, eps 1e-6) -> exact GELU, once per stride."""
    for i, stride in enumerate(strides):
        x = nn.functional.conv2d(x, weights[f"stem.stem.{3 * i}.weight"], weights[f"stem.stem.{3 * i}.bias"], stride, 1)
        mu, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
        x = (x - mu) / torch.sqrt(var + 1e-6)
        x = x * weights[f"stem.stem.{3 * i + 1}.weight"].view(1, -1, 1, 1) + weights[f"stem.stem.{3 * i + 1}.bias"].view(1, -1, 1, 1)
        x = 0.5 * x * (1 + torch.erf(x / 2 ** 0.5))
    return x


def test_convnext_l_convstem_is_the_published_stem():
    """ConvNeXt-L's ConvStem has the published layer types, channels (96, 144, 192), strides (2, 2, 1), LayerNorm and
    GELU, under the published key names; its output equals the stem computed by hand."""
    from dat.models import ConvStem

    torch.manual_seed(0)
    stem = ConvStem(3, 192)
    assert {k: tuple(v.shape) for k, v in stem.state_dict().items()} == {
        k.removeprefix("stem."): v for k, v in PUBLISHED_CONVNEXT_L_STEM.items()}
    for m in stem.stem:  # non-trivial LayerNorm affine parameters
        if isinstance(m, nn.LayerNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.rand(2, 3, 37, 40)
    weights = {f"stem.{k}": v for k, v in stem.state_dict().items()}
    with torch.no_grad():
        out = stem(x)
        torch.testing.assert_close(out, _hand_convstem(x, weights), atol=1e-5, rtol=1e-5)
    assert out.shape == (2, 192, 10, 10)  # stride 4 (ceil)


@pytest.mark.parametrize("arch, kwargs, fmt", [
    ("timm_convnext", {"variant": "convnext_large", "convstem": True}, "revisiting_at"),
    ("torchvision_resnet", {"depth": 50, "width_per_group": 256}, "robustness"),
])
def test_full_size_published_key_names_fit_the_imagenet_models(arch, kwargs, fmt):
    """Every key and shape of the full-size ImageNet models in their published layouts (built on the meta device,
    no memory): ConvNeXt-L + ConvStem as Singh et al.'s training script saves it, with (module.base_model.normalize.*,
    .model.*) and without its normalisation layer; WRN-50-4 as the Robustness library saves it."""
    from dat.checkpoint import published_weights

    with torch.device("meta"):
        model = build_model(arch, num_classes=1000, **RGB, **kwargs)
    own = model.state_dict()
    net = {k.removeprefix("backbone."): v for k, v in own.items() if k.startswith("backbone.")}
    if fmt == "revisiting_at":
        assert count_parameters(model) / 1e6 == pytest.approx(198.14, abs=0.01)  # the published 198M
        assert {k: tuple(net[k].shape) for k in net if k.startswith("stem.")} == PUBLISHED_CONVNEXT_L_STEM
        assert tuple(net["stages.1.downsample.1.weight"].shape) == (384, 192, 2, 2)
        assert tuple(net["head.fc.weight"].shape) == (1000, 1536) and "stages.3.blocks.2.gamma" in net
        layouts = [{f"module.base_model.{k}": v for k, v in net.items()},
                   {"module.base_model.normalize.mean": torch.zeros(1, 3, 1, 1, device="meta"),
                    "module.base_model.normalize.std": torch.ones(1, 3, 1, 1, device="meta"),
                    **{f"module.base_model.model.{k}": v for k, v in net.items()}}]
    else:
        assert tuple(net["layer1.0.conv2.weight"].shape) == (256, 256, 3, 3)  # width_per_group 256: WRN-50-4
        assert tuple(net["fc.weight"].shape) == (1000, 2048)
        layouts = [{"model": {**{f"module.model.{k}": v for k, v in net.items()},
                              **{f"module.attacker.model.{k}": v for k, v in net.items()},
                              "module.normalizer.new_mean": torch.zeros(3, 1, 1, device="meta")}}]
    for ckpt in layouts:
        state = published_weights(ckpt, fmt, model)
        assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in own.items()}
        model.load_state_dict(state)  # shapes checked by torch as well
    if fmt == "revisiting_at":
        wrong = dict(layouts[0], **{"module.base_model.stem.stem.3.weight": torch.zeros(192, 96, 3, 3, device="meta")})
        with pytest.raises(ValueError, match=r"does not fit.*other shapes \['backbone.stem.stem.3.weight'\]"):
            published_weights(wrong, fmt, model)


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
