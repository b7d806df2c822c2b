from __future__ import annotations

import numpy as np
import pytest
import torch

from spinemorph.transforms import (
    AspectPad,
    AspectPadd,
    ClaheGaussian,
    ClaheGaussiand,
    NormalizeRadiograph,
    PadGeometry,
    Preprocessing,
    invert_pad,
    preprocess,
    train_augmentation,
)


@pytest.fixture
def radiograph():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:300, :200]
    img = 0.3 + 0.4 * ((y // 40) % 2) * ((x > 60) & (x < 140)) + 0.05 * rng.standard_normal((300, 200))
    return np.clip(img, 0, 1)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_normalisation_is_the_same_for_any_bit_depth(radiograph, bits):
    stored = np.round(radiograph * (2**bits - 1)).astype(np.uint16 if bits > 8 else np.uint8)
    out = NormalizeRadiograph()(torch.as_tensor(stored.astype(np.float32))[None])
    reference = NormalizeRadiograph()(torch.as_tensor(radiograph.astype(np.float32))[None])
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, reference, atol=0.01)


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (512, 512), (77, 1000)])
def test_aspect_pad_keeps_the_aspect_and_pads_with_zeros(shape):
    img = torch.ones(1, *shape)
    out = AspectPad(128)(img)
    g = PadGeometry.of(shape, 128)
    assert out.shape == (1, 128, 128) and max(g.resized) == 128
    assert g.resized[0] / g.resized[1] == pytest.approx(shape[0] / shape[1], rel=0.02)
    inside = out[0, g.top:g.top + g.resized[0], g.left:g.left + g.resized[1]]
    assert torch.allclose(inside, torch.ones_like(inside))
    assert float(out.sum()) == pytest.approx(g.resized[0] * g.resized[1])


def test_the_inverse_returns_to_the_input_grid_exactly_at_full_size(radiograph):
    labels = torch.as_tensor((radiograph > 0.5).astype(np.float32))[None]
    g = PadGeometry.of(labels.shape[-2:], 300)
    back = invert_pad(AspectPad(300, "nearest")(labels, g), g, "nearest")
    assert back.shape == labels.shape and torch.equal(back, labels)
    g = PadGeometry.of(labels.shape[-2:], 128)
    back = invert_pad(AspectPad(128, "bilinear")(labels, g), g) > 0.5
    assert back.shape == labels.shape and float((back == (labels > 0.5)).float().mean()) > 0.98


def test_clahe_raises_local_contrast_and_stays_in_range(radiograph):
    flat = torch.as_tensor(0.45 + 0.1 * radiograph.astype(np.float32))[None]
    out = ClaheGaussian(sigma=0.0)(flat)
    assert out.min() >= 0 and out.max() <= 1 and float(out.std()) > 2 * float(flat.std())
    smooth = ClaheGaussian(sigma=2.0)(flat)
    assert float(torch.diff(smooth, dim=-1).abs().mean()) < float(torch.diff(out, dim=-1).abs().mean())


def test_dictionary_versions_equal_the_array_versions(radiograph):
    img = torch.as_tensor(radiograph.astype(np.float32))[None]
    lab = (img > 0.5).float()
    d = AspectPadd(["image", "label"], 128)({"image": img, "label": lab})
    assert torch.equal(d["image"], AspectPad(128)(img)) and torch.equal(d["label"], AspectPad(128, "nearest")(lab))
    assert d["pad_geometry"]["shape"] == (300, 200)
    assert torch.equal(ClaheGaussiand("image")({"image": img})["image"], ClaheGaussian()(img))


def test_preprocess_is_one_definition_for_every_stage(radiograph):
    stored = (radiograph * 4095).astype(np.uint16)
    x, g = preprocess(stored, Preprocessing(size=96))
    assert x.shape == (1, 96, 96) and g.shape == (300, 200)
    pre = Preprocessing(size=96).transforms(("image", "label"))
    d = pre({"image": torch.as_tensor(stored.astype(np.float32))[None],
             "label": torch.as_tensor(radiograph > 0.5, dtype=torch.float32)[None]})
    assert torch.allclose(d["image"], x, atol=1e-6)
    assert set(torch.unique(d["label"]).tolist()) <= {0.0, 1.0}


def test_a_film_normalised_once_preprocesses_to_the_same_input_for_every_network(radiograph):
    stored = (radiograph * 4095).astype(np.uint16)
    film = NormalizeRadiograph()(torch.as_tensor(stored.astype(np.float32))[None])[0].numpy()
    for size in (64, 96):
        x, g = preprocess(stored, Preprocessing(size=size))
        again, g_again = preprocess(film, Preprocessing(size=size), normalised=True)
        assert torch.equal(x, again) and g == g_again


def test_augmentation_keeps_labels_integral_and_can_flip_the_facing(radiograph):
    torch.manual_seed(0)
    aug = train_augmentation()
    aug.set_random_state(0)
    img = AspectPad(96)(torch.as_tensor(radiograph.astype(np.float32))[None])
    lab = torch.zeros(1, 96, 96)
    lab[0, 30:60, 10:40] = 5
    flipped = 0
    for _ in range(20):
        d = aug({"image": img, "label": lab})
        assert d["image"].shape == (1, 96, 96) and set(torch.unique(torch.as_tensor(d["label"])).tolist()) <= {0.0, 5.0}
        cols = torch.nonzero(torch.as_tensor(d["label"])[0] > 0)[:, 1].float()
        flipped += bool(cols.numel()) and float(cols.mean()) > 48
    assert 2 <= flipped <= 18
