from __future__ import annotations

import pytest
import torch

from spinemorph.hierarchical.training import pose_loss
from spinemorph.networks import build_network, count_parameters
from spinemorph.networks.mnet import mean_of_sides
from spinemorph.training import build_loss

TINY = (4, 8, 16, 32, 64)


@pytest.mark.parametrize("shape", [(112, 112), (100, 90)])
def test_mnet_has_four_side_outputs_and_their_mean_is_the_output(shape):
    torch.manual_seed(0)
    net = build_network("mnet", "binary", features=TINY)
    x = torch.randn(2, 1, *shape)
    out = net(x)  # training mode: everything the loss needs
    assert set(out) == {"sides", "out"} and len(out["sides"]) == 4
    assert all(s.shape == (2, 1, *shape) for s in out["sides"])
    mean = torch.stack([torch.sigmoid(s) for s in out["sides"]]).mean(0)
    torch.testing.assert_close(torch.sigmoid(out["out"]), mean, atol=1e-5, rtol=1e-4)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 1, *shape)
        assert set(net(x, all_outputs=True)) == {"sides", "out"}


def test_the_mean_of_per_level_sides_is_a_softmax_mean():
    sides = [torch.randn(1, 18, 8, 8) for _ in range(4)]
    mean = torch.stack([torch.softmax(s, 1) for s in sides]).mean(0)
    torch.testing.assert_close(torch.softmax(mean_of_sides(sides), 1), mean, atol=1e-5, rtol=1e-4)


def test_the_mnet_loss_is_the_mean_of_the_side_losses():
    torch.manual_seed(0)
    net = build_network("mnet", "binary", features=TINY)
    x, target = torch.randn(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).long()
    out = net(x)
    loss = build_loss("dicebce", "binary")
    expected = torch.stack([loss(s, target) for s in out["sides"]]).mean()
    torch.testing.assert_close(loss(out, target), expected)


def test_the_multi_scale_input_reaches_every_encoder_level():
    net = build_network("mnet", "binary", features=TINY)
    inner = net.net
    assert inner.conv_1.conv_0.conv.in_channels == 2 * TINY[0]  # pooled features + the half-scale image
    assert inner.conv_3.conv_0.conv.in_channels == 2 * TINY[2]
    assert count_parameters(net) > 10_000


@pytest.mark.parametrize("head,channels", [("binary", 1), ("levels", 18)])
def test_posenet_returns_both_stages_for_training_and_the_centre_maps_for_inference(head, channels):
    net = build_network("posenet", head, features=TINY)
    x = torch.randn(2, 1, 128, 64)
    out = net(x)
    assert out["l5"].shape == (2, 1, 128, 64) and out["centres"].shape == (2, channels, 128, 64)
    target = torch.zeros(2, 1 + channels, 128, 64)
    expected = (out["l5"] ** 2).sum((1, 2, 3)).mean() + (out["centres"] ** 2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(pose_loss(out, target), expected)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, channels, 128, 64)
