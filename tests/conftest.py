from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


class TinyConv(nn.Module):
    """A 2-layer conv net with BatchNorm: small enough for property tests, shaped like the real models."""

    def __init__(self, channels: int = 1, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    model = TinyConv()
    model.eval()
    return model


@pytest.fixture
def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(1 * 6 * 6, 4)).eval()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 1, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)


@pytest.fixture
def run_json():
    """Build a resolved run JSON as the workflow writes it (``dat.resolve``): the run ``run`` (default fmnist_dat) of
    config/smoke.yaml with the dict ``changes`` deep-merged into it (``dat.config.deep_merge``)."""
    import yaml

    from dat.config import deep_merge
    from dat.resolve import Resolved, validate

    resolved = Resolved(validate(yaml.safe_load((REPO / "config/smoke.yaml").read_text())), check=False)

    def make(changes: dict | None = None, run: str = "fmnist_dat") -> dict:
        return deep_merge(resolved.run_cfg(run), changes)

    return make
