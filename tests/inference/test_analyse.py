"""One radiograph through the whole pipeline: facing from the file, else the facing model, with its confidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.inference import load_model
from spinemorph.inference.analyse import analyse, facing_of
from spinemorph.inference.segment import _confidence, segment, segment_passes
from spinemorph.io import Radiograph, sagittal_affine
from spinemorph.measure.gates import Gates
from spinemorph.networks import mc_dropout
from spinemorph.transforms import preprocess

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_levels.pt"


def radiograph(facing: str | None, fmt: str) -> tuple[Radiograph, dict]:
    sim = simulate(51, 0, SimConfig(size=128, fov="lumbar", facing="left"))
    spacing = sim.spacing_mm
    return Radiograph(sim.image, spacing, "PixelSpacing", facing, sagittal_affine(spacing, "left"),
                      {"format": fmt}), sim.truth


def test_the_files_facing_wins_and_the_facing_model_answers_only_without_one():
    asked = []

    def model(pixels):
        asked.append(pixels.shape)
        return "right", 0.97

    dicom, _ = radiograph("left", "dicom")
    assert facing_of(dicom, model) == ("left", "PatientOrientation", None) and not asked
    png, _ = radiograph(None, "png")
    assert facing_of(png, model) == ("right", "image", 0.97) and asked == [png.shape]
    assert facing_of(png, None) == (None, "inferred", None)


def test_an_unsure_facing_model_grades_nothing_and_a_sure_one_grades():
    net, spec = load_model(FIXTURE)
    png, _ = radiograph(None, "png")
    unsure = analyse(png, net, spec, facing_model=lambda p: ("left", 0.6)).morphometry
    assert unsure.facing_source == "image" and "facing_uncertain" in unsure.flags
    assert all(r.genant_grade is None for r in unsure.vertebrae)
    sure = analyse(png, net, spec, facing_model=lambda p: ("left", 0.99)).morphometry
    assert "facing_uncertain" not in sure.flags and any(r.genant_grade is not None for r in sure.vertebrae)
    assert sure.level_naming["level_uncertain"]  # a per-level model without the sacrum class has no anchor
    assert np.array_equal(analyse(png, net, spec).labels, analyse(png, net, spec, refiner=None).labels)


def test_the_detector_adds_its_opinion_on_each_vertebra_it_covers():
    from spinemorph.detection import load_detector
    from tests.detection.tiny import FIXTURE as DETECTOR

    net, spec = load_model(FIXTURE)
    detector = load_detector(DETECTOR)
    png, _ = radiograph("left", "png")
    done = analyse(png, net, spec, detector=detector)
    covered = {r.level for r in done.morphometry.vertebrae if r.code in set(detector[1].codes)}
    assert covered and {c["level"] for c in done.fracture_calls} == covered
    for call in done.fracture_calls:
        assert 0.0 <= call["detector_score"] <= 1.0 and call["detector"] == (call["detector_score"] >= 0.5)
        assert (call["measured"] is None) == (call["combined"] is None)
    assert "detector_s" in done.timings and analyse(png, net, spec).fracture_calls is None


def test_without_stage_2_every_body_says_stage_1_drew_it():
    net, spec = load_model(FIXTURE)
    png, _ = radiograph("left", "png")
    records = analyse(png, net, spec).morphometry.vertebrae
    assert records and all(r.stage == 1 for r in records)


def test_confidence_inside_the_labels_box_is_the_mean_over_the_whole_film():
    rng = np.random.default_rng(3)
    body = rng.random((300, 200)).astype(np.float32)
    for _ in range(20):
        labels = np.zeros((300, 200), np.uint8)
        r, c = rng.integers(0, 250), rng.integers(0, 150)
        labels[r:r + 50, c:c + 50] = rng.integers(18, 25, (50, 50)) * (rng.random((50, 50)) < 0.5)
        codes = [int(v) for v in np.unique(labels) if v]
        whole = {c: round(float(m), 4) for c, m in zip(codes, ndimage.mean(body, labels, codes), strict=True)}
        assert _confidence(labels, body) == whole
    assert _confidence(np.zeros((30, 20), np.uint8), body[:30, :20]) == {}



def test_passes_share_one_forward_and_each_draws_its_own_dropout_masks():
    image, _ = radiograph("left", "dicom")
    net, spec = load_model(FIXTURE)
    one = segment(image.pixels, net, spec)
    same = segment_passes(image.pixels, net, spec, passes=3)  # no dropout: three times the one answer
    assert all(np.array_equal(s.labels, one.labels) and np.allclose(s.foreground, one.foreground, atol=1e-5)
               for s in same)
    with mc_dropout(net):
        torch.manual_seed(0)
        sampled = segment_passes(image.pixels, net, spec, passes=3)
    assert not np.allclose(sampled[0].foreground, sampled[1].foreground)
    assert not np.allclose(sampled[1].foreground, sampled[2].foreground)
    measured = analyse(image, net, spec, segmentation=sampled[0])  # measured from the given answer, not a new one
    assert np.array_equal(measured.labels, sampled[0].labels)
    prepared = segment_passes(image.pixels, net, spec, prepared=preprocess(image.pixels, spec.preprocessing))[0]
    assert np.array_equal(prepared.labels, one.labels) and np.allclose(prepared.foreground, one.foreground, atol=1e-5)


class MarkedShort(torch.nn.Module):
    """Stage-2 stand-in: a body the crop's full width wide (2/3 of its side) and a third of its side tall, at its
    centre; half as tall where a bright marker lies in the crop's right quarter. The marker sits right of L2 alone,
    so the crops see L2 crushed and their mirror images see it whole; the mean of the two draws it crushed."""

    def forward(self, x):
        n = x.shape[-1]
        marked = x[..., 3 * n // 4:].amax((1, 2, 3)) > x[..., :n // 4].amax((1, 2, 3)) + 0.2
        r = (torch.arange(n) - (n - 1) / 2).abs()
        tall = (r[:, None] < n / 6) & (r[None, :] < n / 3)
        short = (r[:, None] < n / 12) & (r[None, :] < n / 3)
        inside = torch.where(marked[:, None, None], short, tall)
        return (inside.float() * 20 - 10)[:, None]


def test_a_fracture_only_the_crops_draw_and_not_their_mirror_images_is_not_called():
    from spinemorph.inference.model import ModelSpec
    from spinemorph.inference.segment import Segmentation
    from spinemorph.transforms import Preprocessing

    labels = np.zeros((170, 60), np.uint8)
    for code, top in ((19, 10), (20, 40), (22, 100), (23, 130)):  # T12, L1, L3, L4: 20 x 30 px
        labels[top:top + 20, 15:45] = code
    labels[75:85, 15:45] = 21  # L2, as stage 1 drew it: 10 rows
    pixels = np.zeros(labels.shape, np.uint16)
    pixels[76:84, 47:51] = 4000  # the marker, inside L2's crop alone
    image = Radiograph(pixels, (1.5, 1.5), "PixelSpacing", "left", sagittal_affine((1.5, 1.5), "left"),
                       {"format": "dicom"})
    stage1 = Segmentation(labels, (labels > 0).astype(np.float32), confidence=dict.fromkeys(range(19, 24), 0.99))
    refiner = (MarkedShort(), ModelSpec("unet", "binary", {}, Preprocessing(size=64)))
    done = analyse(image, None, ModelSpec("unet"), refiner=refiner, segmentation=stage1)
    l2 = done.morphometry.by_level()["L2"]
    assert l2.stage == 2 and l2.crush < 0.6  # the mean drew it crushed...
    assert l2.genant_grade is None and l2.flags[-2:] == ["low_confidence", "views_disagree"]  # ...one view alone not
    assert {r.level: r.genant_grade for r in done.morphometry.vertebrae if r.level != "L2"} == dict.fromkeys(
        ("T12", "L1", "L3", "L4"), 0) and "views_s" in done.timings
    opened = analyse(image, None, ModelSpec("unet"), refiner=refiner, segmentation=stage1, gates=Gates(views=False))
    assert opened.morphometry.by_level()["L2"].genant_grade == 3 and "views_s" not in opened.timings


def test_a_merged_segment_is_cut_for_stage_2_and_stays_whole_where_stage_2_draws_nothing():
    """Levels 17 and 18 drawn by stage 1 as one segment named 17 (the naming left 18 missing): a stage 2 that draws
    each crop's body measures both, flagged ``split``; one that draws nothing leaves the segment as stage 1 drew it."""
    from spinemorph.inference.model import ModelSpec
    from spinemorph.inference.segment import Segmentation
    from spinemorph.postprocess import LevelNaming
    from spinemorph.transforms import Preprocessing
    from tests.postprocess.test_split import merged
    from tests.refine.test_refine import Centred

    _, labels = merged([15, 16, 17, 18, 19, 20], 2, 2)
    image = Radiograph(np.zeros(labels.shape, np.uint16), (1.0, 1.0), "PixelSpacing", "left",
                       sagittal_affine((1.0, 1.0), "left"), {"format": "dicom"})
    stage1 = Segmentation(labels, (labels > 0).astype(np.float32), confidence=dict.fromkeys(range(15, 21), 0.99),
                          naming=LevelNaming(None, True))
    spec = ModelSpec("unet", "binary", {}, Preprocessing(size=64))
    drawn = analyse(image, None, ModelSpec("unet"), refiner=(Centred(0.6), spec), segmentation=stage1)
    records = drawn.morphometry.by_level()
    assert {level for level, r in records.items() if "split" in r.flags} == {"T10", "T11"}  # codes 17 and 18
    assert all(records[level].stage == 2 for level in ("T10", "T11")) and "stage2_split_s" in drawn.timings
    nothing = analyse(image, None, ModelSpec("unet"), refiner=(Centred(0.0), spec), segmentation=stage1)
    assert np.array_equal(nothing.labels, labels) and not any("split" in r.flags for r in nothing.morphometry.vertebrae)
