from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spinemorph.inference.model import ModelSpec, load_model, save_model
from spinemorph.networks.norms import GroupInstanceNorm, group_instance_norms
from spinemorph.refine.landmarks import load_landmarks

BUNDLE = Path(__file__).resolve().parents[2] / "sample-apps" / "spinemorph_levels"


@pytest.mark.parametrize("affine", [False, True])
def test_group_instance_norm_normalises_as_instance_norm(affine):
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(6, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(3, 6, 40, 24) * 5 + 2
    swapped = GroupInstanceNorm(norm)
    torch.testing.assert_close(swapped(x), norm(x), rtol=1e-5, atol=1e-5)
    assert (swapped.weight is None) == (not affine)


def test_swap_keeps_the_parameters_and_leaves_running_statistics_alone():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.InstanceNorm2d(4, affine=True),
                        nn.Sequential(nn.InstanceNorm2d(4), nn.InstanceNorm2d(4, track_running_stats=True)))
    keys = set(net.state_dict())
    group_instance_norms(net)
    assert isinstance(net[1], GroupInstanceNorm) and isinstance(net[2][0], GroupInstanceNorm)
    assert type(net[2][1]) is nn.InstanceNorm2d  # eval mode normalises by its running statistics: not a group norm
    assert set(net.state_dict()) == keys


def test_loaded_networks_compute_what_the_built_ones_do(tmp_path):
    torch.manual_seed(1)
    spec = ModelSpec("unet", "binary", {"features": (4, 8, 16, 32, 64)})
    built = spec.build().eval()
    path = save_model(built, spec, tmp_path / "tiny.pt")
    loaded, _ = load_model(path)
    assert any(isinstance(m, GroupInstanceNorm) for m in loaded.modules())
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in loaded.modules())
    x = torch.rand(2, 1, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), built(x), rtol=1e-4, atol=1e-4)


def test_the_shipped_networks_load_with_group_norms():
    for net in (load_model(BUNDLE)[0], load_landmarks(BUNDLE)[0]):
        assert not any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
        assert any(isinstance(m, GroupInstanceNorm) for m in net.modules())
