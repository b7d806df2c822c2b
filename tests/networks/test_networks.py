from __future__ import annotations

import numpy as np
import pytest
import torch

from spinemorph.networks import (
    LEVEL_CLASSES,
    NETWORKS,
    build_network,
    class_to_code,
    code_to_class,
    count_parameters,
    head_channels,
    mc_dropout,
)

TINY = (4, 8, 16, 32, 64)


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("head", ["binary", "levels"])
@pytest.mark.parametrize("shape", [(64, 64), (96, 80), (128, 100), (50, 37)])
def test_output_shape_matches_any_input_size(name, head, shape):
    net = build_network(name, head, features=TINY).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, head_channels(head), *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_parameter_counts_are_reported_and_grow_with_width(name):
    small = count_parameters(build_network(name, "levels", features=TINY))
    large = count_parameters(build_network(name, "levels", features=(8, 16, 32, 64, 128)))
    assert 1_000 < small < large


def test_the_multi_dilated_stem_is_what_mdr2unet_adds_to_r2unet():
    r2 = count_parameters(build_network("r2unet", "binary", features=TINY))
    mdr = count_parameters(build_network("mdr2unet", "binary", features=TINY))
    assert mdr > r2
    dilations = {m.dilation for m in build_network("mdr2unet", "binary", features=TINY).modules()
                 if isinstance(m, torch.nn.Conv2d)}
    assert {(2, 2), (4, 4), (8, 8), (16, 16)} <= dilations


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_eval_mode_is_deterministic_and_mc_dropout_samples(name):
    torch.manual_seed(0)
    net = build_network(name, "levels", features=TINY, dropout=0.3).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        with mc_dropout(net):
            a, b = net(x), net(x)
        assert not torch.allclose(a, b)
        assert not net.training and torch.equal(net(x), net(x))  # eval mode restored


def test_seeded_mc_dropout_draws_the_same_masks_and_leaves_the_process_generator_alone():
    net = build_network("mdr2unet", "levels", features=TINY, dropout=0.3)
    x = torch.randn(1, 1, 64, 64)
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    with torch.no_grad():
        with mc_dropout(net, seed=1):
            a = net(x)
        with mc_dropout(net, seed=1):
            b = net(x)
        with mc_dropout(net, seed=2):
            c = net(x)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(torch.rand(3), expected_next)  # the masks came from a forked generator
    assert net.training  # built in training mode, and left in it


def test_unknown_networks_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Unknown network 'segnet2'"):
        build_network("segnet2")
    with pytest.raises(ValueError, match="five channel counts"):
        build_network("unet", features=(8, 16, 32))
    with pytest.raises(ValueError, match="Unknown head"):
        build_network("unet", head="boxes")
    with pytest.raises(ValueError, match="dropout"):
        build_network("r2unet", dropout=1.5)


def test_per_level_head_maps_verse_codes_both_ways():
    assert LEVEL_CLASSES[0] == 0 and LEVEL_CLASSES[1] == 8 and LEVEL_CLASSES[-1] == 24 and len(LEVEL_CLASSES) == 18
    labels = np.array([[0, 8, 19], [20, 24, 26]])
    classes = code_to_class(labels, "levels")
    assert classes.tolist() == [[0, 1, 12], [13, 17, 0]]  # S1 is outside the head: background
    assert class_to_code(classes, "levels").tolist() == [[0, 8, 19], [20, 24, 0]]
    assert code_to_class(labels, "binary").tolist() == [[0, 1, 1], [1, 1, 0]]  # the sacrum is no body
    anchored = code_to_class(labels, "anchored")
    assert anchored.tolist() == [[0, 1, 12], [13, 17, 18]] and head_channels("anchored") == 19
    assert class_to_code(anchored, "anchored").tolist() == labels.tolist()
    assert build_network("unet", "anchored", features=(4, 8, 16, 32, 64))(torch.zeros(1, 1, 32, 32)).shape[1] == 19
    with pytest.raises(ValueError, match="Unknown head"):
        head_channels("sacral")
