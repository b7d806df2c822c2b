from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spinemorph.conventions import near_edge_codes
from spinemorph.data import overlays
from spinemorph.data.randomise import Randomisation, photometric, randomise, reframe
from spinemorph.data.simulate import SimConfig, simulate

_ONLY = {f.name: 0.0 for f in dataclasses.fields(Randomisation) if f.name.startswith("p_")}


def only(**on: float) -> Randomisation:
    """Return a randomisation that applies nothing but the named steps (p_<name> = value)."""
    return Randomisation(**{**_ONLY, **{f"p_{k}": v for k, v in on.items()}})


@pytest.fixture(scope="module")
def record():
    sim = simulate(5, 1, SimConfig(fov="lumbar", size=320))
    return sim.image, sim.labels, sim.truth


def test_off_is_the_identity(record):
    image, labels, truth = record
    for config in (Randomisation.off(), Randomisation(strength=0.0)):
        out = randomise(image, labels, truth, np.random.default_rng(0), config)
        assert out[0] is image and out[1] is labels and out[2] is truth


def test_nothing_drawn_gives_back_the_same_pixels(record):
    image, labels, truth = record
    out, lab, tr = randomise(image, labels, truth, np.random.default_rng(0), only())
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(lab, labels)
    assert tr["randomisation"] == {"photometric": "MONOCHROME2", "bone_dark": False}
    assert {k: v for k, v in tr.items() if k != "randomisation"} == truth


def test_the_same_generator_state_gives_the_same_record(record):
    image, labels, truth = record
    a = randomise(image, labels, truth, np.random.default_rng(11), Randomisation())
    b = randomise(image, labels, truth, np.random.default_rng(11), Randomisation())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    c = randomise(image, labels, truth, np.random.default_rng(12), Randomisation())
    assert c[0].shape != a[0].shape or not np.array_equal(c[0], a[0])


@pytest.mark.parametrize("seed", range(6))
def test_output_is_a_valid_record(record, seed):
    image, labels, truth = record
    out, lab, tr = randomise(image, labels, truth, np.random.default_rng(seed), Randomisation(strength=2.0))
    assert out.dtype == np.uint16 and lab.dtype == np.uint8 and out.shape == lab.shape == tuple(tr["shape"])
    assert out.max() <= 2 ** truth["bits_stored"] - 1
    assert {v["code"] for v in tr["vertebrae"]} == set(np.unique(lab)) - {0}
    assert lab.any()  # a crop keeps the bodies' centre in view


def test_a_crop_shifts_the_truth_by_exactly_its_offset_and_the_labels_match(record):
    image, labels, truth = record
    h, w = image.shape
    r0, c0, rows, cols = 40, 25, h - 100, w - 60
    out, lab, tr = reframe(image, labels, truth, (r0, c0), (rows, cols))
    np.testing.assert_array_equal(out, image[r0:r0 + rows, c0:c0 + cols])
    np.testing.assert_array_equal(lab, labels[r0:r0 + rows, c0:c0 + cols])
    assert tr["shape"] == [rows, cols]
    before = {v["level"]: v for v in truth["vertebrae"]}
    cut = near_edge_codes(lab)
    assert cut, "the crop should cut a body for this test to mean something"
    for rec in tr["vertebrae"]:
        old = before[rec["level"]]
        assert rec["center_px"] == pytest.approx([old["center_px"][0] - r0, old["center_px"][1] - c0], abs=1e-9)
        assert rec["truncated"] == (old["truncated"] or rec["code"] in cut)
        if rec["truncated"]:
            assert "points" not in rec and "Ha_px" not in rec
            continue
        for name, (r, c) in old["points"].items():
            assert rec["points"][name] == pytest.approx([r - r0, c - c0], abs=1e-9)
        spacing = truth["pixel_spacing_mm"]
        for name, (r, c) in old["points_mm"].items():
            assert rec["points_mm"][name] == pytest.approx([r - r0 * spacing[0], c - c0 * spacing[1]], abs=1e-5)
        assert rec["Ha_px"] == old["Ha_px"]
    gone = {v["code"] for v in truth["vertebrae"]} - set(np.unique(lab))
    assert gone and not gone & {v["code"] for v in tr["vertebrae"]}  # bodies out of the window are dropped
    s1 = truth["landmarks"]["S1_center_px"]
    assert tr["landmarks"]["S1_center_px"] == pytest.approx([s1[0] - r0, s1[1] - c0])


def test_a_zoom_out_pads_image_and_labels(record):
    image, labels, truth = record
    h, w = image.shape
    out, lab, tr = reframe(image, labels, truth, (-10, -7), (h + 30, w + 7), fill=99)
    np.testing.assert_array_equal(out[10:10 + h, 7:7 + w], image)
    np.testing.assert_array_equal(lab[10:10 + h, 7:7 + w], labels)
    assert (out[:10] == 99).all() and (out[10 + h:] == 99).all() and (out[:, :7] == 99).all()
    assert not lab[:10].any() and not lab[10 + h:].any()
    assert [v["truncated"] for v in tr["vertebrae"]] == [v["truncated"] for v in truth["vertebrae"]]


def test_randomised_crops_record_their_offset(record):
    image, labels, truth = record
    for seed in range(4):
        out, lab, tr = randomise(image, labels, truth, np.random.default_rng(seed), only(crop=1.0, pad=0.5))
        r0, c0 = tr["randomisation"]["frame"]["offset_px"]
        expect = reframe(image, labels, truth, (r0, c0), out.shape)
        np.testing.assert_array_equal(lab, expect[1])
        assert tr["vertebrae"] == expect[2]["vertebrae"]


@pytest.mark.parametrize("kind, claims", [("monochrome1", "MONOCHROME1"), ("inverted_monochrome2", "MONOCHROME2")])
def test_an_inverted_record_is_inverted_and_says_what_it_claims(record, kind, claims):
    image, labels, truth = record
    out, lab, tr = randomise(image, labels, truth, np.random.default_rng(0), only(**{kind: 1.0}))
    np.testing.assert_array_equal(out, 2 ** truth["bits_stored"] - 1 - image.astype(np.int64))
    assert tr["randomisation"]["bone_dark"] is True
    assert photometric(tr) == claims


def test_shutters_cover_no_body_and_change_only_strips_at_the_edges():
    labels = np.zeros((200, 150), np.uint8)
    labels[60:140, 50:100] = 20
    for seed in range(10):
        x = np.full((200, 150), 0.5, np.float32)
        done = overlays.collimate(x, labels, np.random.default_rng(seed))
        changed = x != 0.5
        assert not changed[labels > 0].any()
        for rec in done:
            assert rec["side"] in ("top", "bottom", "left", "right")
        if not done:
            assert not changed.any()


def test_markers_and_text_change_pixels_only_inside_their_boxes():
    rng = np.random.default_rng(3)
    labels = np.zeros((300, 240), np.uint8)
    labels[100:200, 90:150] = 21
    for seed in range(8):
        x = rng.random((300, 240)).astype(np.float32)
        before = x.copy()
        gen = np.random.default_rng(seed)
        marker = overlays.lead_marker(x, labels, gen)
        texts = overlays.burn_text(x, gen)
        inside = np.zeros(x.shape, bool)
        for rec in ([marker] if marker else []) + texts:
            r0, c0, r1, c1 = rec["box"]
            assert 0 <= r0 < r1 <= 300 and 0 <= c0 < c1 <= 240
            inside[r0:r1, c0:c1] = True
        assert not (x != before)[~inside].any()
        assert texts and (x != before)[inside].any()
        if marker:
            r0, c0, r1, c1 = marker["box"]
            assert not labels[r0:r1, c0:c1].any()


def test_text_past_the_edge_is_clipped_to_the_image():
    x = np.zeros((40, 60), np.float32)
    box = overlays.draw_text(x, "L-SPINE 2024", (30, 35), 20, 1.0)
    assert box is not None and box[2] == 40 and box[3] == 60
    assert overlays.draw_text(x, "R", (50, 70), 20, 1.0) is None


def test_grid_lines_are_periodic_and_faint():
    x = np.full((64, 80), 0.5, np.float32)
    done = overlays.grid_lines(x, np.random.default_rng(2), (0.01, 0.02))
    delta = x - 0.5
    profile = delta[0] if done["direction"] == "vertical" else delta[:, 0]
    assert np.abs(delta).max() <= 0.02 + 1e-6 and np.ptp(profile) > 0
    assert (delta == (delta[:1] if done["direction"] == "vertical" else delta[:, :1])).all()


@pytest.mark.parametrize("kwargs, message", [({"strength": -1}, "strength"), ({"p_crop": 1.5}, "probability"),
                                             ({"gamma": (2.0, 0.5)}, "range"), ({"crop_keep": (0.0, 0.5)}, "crop_keep"),
                                             ({"p_monochrome1": 0.7, "p_inverted_monochrome2": 0.5}, "exceed")])
def test_bad_randomisations_are_rejected_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Randomisation(**kwargs)


def test_bone_detail_keeps_the_cortex_brighter_than_the_inside_of_a_body(record):
    """A thresholded DRR or a strong multiscale LUT: a body's rim stands out against its own inside."""
    from scipy import ndimage

    image, labels, truth = record

    def rim_over_inside(pixels: np.ndarray) -> float:
        ratios = []
        for code in np.unique(labels[labels > 0]):
            body = labels == code
            inside = ndimage.binary_erosion(body, iterations=6)
            if inside.sum() < 50:
                continue
            rim = body & ~ndimage.binary_erosion(body, iterations=2)
            ratios.append(pixels[rim].mean() / max(pixels[inside].mean(), 1e-6))
        return float(np.median(ratios))

    out, lab, tr = randomise(image, labels, truth, np.random.default_rng(3), only(detail=1.0))
    assert set(tr["randomisation"]) == {"detail", "photometric", "bone_dark"} and np.array_equal(lab, labels)
    assert rim_over_inside(out.astype(float)) > rim_over_inside(image.astype(float)) + 0.1
