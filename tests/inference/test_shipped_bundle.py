"""The shipped default model: a complete MONAI bundle that finds, names and measures bodies on unseen simulated
images, with its facing model and its stage-2 network. Its quality is read from the committed weights, never from a
model trained during the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinemorph.data.deformity import Fracture
from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.inference import load_model, segment
from spinemorph.inference.analyse import analyse, load_facing, load_landmarks, load_refiner
from spinemorph.io import Radiograph, sagittal_affine
from spinemorph.levels import level_name
from spinemorph.measure import exposed_field
from spinemorph.networks import head_classes

BUNDLE = Path(__file__).resolve().parents[2] / "sample-apps" / "spinemorph_levels"
S1 = 26


def test_bundle_files_and_metadata():
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    classes = head_classes("anchored")
    assert channels["0"] == "background" and len(channels) == len(classes)
    assert [channels[str(i)] for i in range(1, len(classes))] == [level_name(c) for c in classes[1:]]
    assert channels[str(len(classes) - 1)] == "S1"
    assert json.loads((BUNDLE / "configs" / "inference.json").read_text())["spinemorph"]["network"] == "r2unet"
    for name in ("model.pt", "facing.pt", "refine.pt", "landmarks.pt"):
        assert (BUNDLE / "models" / name).stat().st_size <= 10 * 2**20, name
    readme = (BUNDLE / "docs" / "README.md").read_text()
    assert "spinemorph train" in readme and "refine-train" in readme and "facing-train" in readme
    assert "bench/landmarks.py" in readme and set(meta["companions"]) == {"facing.pt", "refine.pt", "landmarks.pt"}


@pytest.mark.parametrize("index", [0, 1])
def test_bundle_segments_unseen_lumbar_views(index):
    """Seed 4242 is in none of the training series (1100, 1300, 1400) nor the benches' (999, 1200, 4444)."""
    sim = simulate(4242, index, SimConfig(size=448, fov="lumbar"))
    net, spec = load_model(BUNDLE)
    result = segment(sim.image, net, spec)
    assert result.labels.shape == sim.image.shape
    pred, truth = (result.labels > 0) & (result.labels != S1), sim.labels > 0
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice >= 0.9, dice


def test_a_lumbar_view_with_its_sacrum_is_named_l1_to_l5_from_the_bottom():
    """The anchored head finds S1 and the count runs up from it: no level_uncertain flag."""
    sim = simulate(4242, 3, SimConfig(size=448, fov="lumbar", label_sacrum=True))
    net, spec = load_model(BUNDLE)
    result = segment(sim.image, net, spec)
    assert spec.head == "anchored" and result.naming.anchor == "S1" and not result.naming.level_uncertain
    assert {"L1", "L2", "L3", "L4", "L5"} <= {level_name(c) for c in np.unique(result.labels) if c}
    for level in ("L1", "L3", "L5"):  # most pixels of each true lumbar body carry its own code
        code = next(v["code"] for v in sim.truth["vertebrae"] if v["level"] == level)
        assert np.mean(result.labels[sim.labels == code] == code) > 0.5, level


def test_the_facing_model_answers_a_film_and_its_mirror_alike():
    sim = simulate(4242, 4, SimConfig(size=448, fov="lumbar", facing="left"))
    facing = load_facing(BUNDLE)
    side, sure = facing(sim.image)
    mirrored, sure_mirrored = facing(np.ascontiguousarray(np.fliplr(sim.image)))
    assert (side, mirrored) == ("left", "right") and sure == pytest.approx(sure_mirrored, abs=1e-6) and sure > 0.9


def wedge_film() -> tuple[Radiograph, dict]:
    """Return a full-size lumbar DICOM-like film with an L2 wedge of 30 % (facing left), and L2's truth."""
    sim = simulate(4242, 5, SimConfig(size="full", fov="lumbar", facing="left",
                                      fractures=(Fracture("L2", "wedge", 2, 0.30),)))
    truth = next(v for v in sim.truth["vertebrae"] if v["level"] == "L2")
    return Radiograph(sim.image, sim.spacing_mm, "PixelSpacing", "left", sagittal_affine(sim.spacing_mm, "left"),
                      {"format": "dicom"}), truth


@pytest.mark.parametrize("heights", ["mean", "outline", "landmarks"])
def test_stage_2_measures_a_simulated_fracture_within_1_5_points(heights):
    """A full-size lumbar film with an L2 wedge of 30 % (as the detector shows it): stage 1 + 2 measure it, with the
    heights of the mean of the landmark network's and the outline's points (the default), or of either alone."""
    image, truth = wedge_film()
    net, spec = load_model(BUNDLE)
    done = analyse(image, net, spec, refiner=load_refiner(BUNDLE), landmarks=load_landmarks(BUNDLE), heights=heights)
    rec = done.morphometry.by_level()["L2"]
    assert rec.stage == 2 and rec.heights_from == heights and done.labels.shape == image.shape
    assert abs((1 - rec.wedge) - truth["reduction_shown"]) <= 0.015, (rec.wedge, truth["reduction_shown"])


def test_a_body_the_films_blank_border_cuts_is_truncated_as_at_the_films_own_edge():
    """The wedge film cut through its top body: once as it is, once padded with 200 blank rows above. The analysis
    finds the border and truncates the cut body either way, with no heights and no grade."""
    image, _ = wedge_film()
    sim = simulate(4242, 5, SimConfig(size="full", fov="lumbar", facing="left",
                                      fractures=(Fracture("L2", "wedge", 2, 0.30),)))
    top = min((v for v in sim.truth["vertebrae"] if not v["truncated"]), key=lambda v: v["center_px"][0])
    cut = int(top["center_px"][0])  # through the middle of the topmost whole body
    pixels = image.pixels[cut:]
    padded = np.vstack([np.zeros((200, pixels.shape[1]), pixels.dtype), pixels])
    assert exposed_field(padded) == (200, 0, padded.shape[0] - 1, padded.shape[1] - 1)
    net, spec = load_model(BUNDLE)
    for film in (pixels, padded):
        done = analyse(Radiograph(film, image.spacing_mm, "PixelSpacing", "left", image.affine, {"format": "dicom"}),
                       net, spec, refiner=load_refiner(BUNDLE), landmarks=load_landmarks(BUNDLE))
        highest = min(done.morphometry.vertebrae, key=lambda r: r.center_px[0])
        assert "truncated" in highest.flags and highest.Ha_mm is None and highest.genant_grade is None, highest.flags
        assert sum(r.Ha_mm is not None for r in done.morphometry.vertebrae) >= 3  # the whole bodies below


def test_spinemorph_segment_takes_the_heights_from_where_it_is_told_to(tmp_path):
    from spinemorph.cli import main as cli
    from spinemorph.io import write_dx

    sim = simulate(4_343, 1, SimConfig(size=1024, fov="lumbar", facing="left"))
    write_dx(tmp_path / "dx.dcm", sim.image, sim.spacing_mm, "left")
    said = {}
    for name, flags in (("landmarks", ["--landmarks"]), ("default", []), ("outline", ["--heights", "outline"])):
        assert cli(["segment", str(tmp_path / "dx.dcm"), "--out", str(tmp_path / name), "--device", "cpu",
                    "--no-detector", *flags]) == 0
        said[name] = json.loads((tmp_path / name / "dx.morphometry.json").read_text())["vertebrae"]
    for name in ("landmarks", "default"):
        stage2 = [v for v in said[name] if v["stage"] == 2 and v["Ha_mm"] is not None]
        assert {v["heights_from"] for v in stage2 if "landmarks_disagree" not in v["flags"]} == {
            "mean" if name == "default" else name}
        assert all(v["landmarks"] for v in stage2)  # the network's own points, whichever heights they gave
    assert {v["heights_from"] for v in said["outline"] if v["Ha_mm"] is not None} == {"outline"}
    assert not any(v["landmarks"] for v in said["outline"])  # the network did not run


def test_two_bodies_stage_1_drew_as_one_are_cut_apart_and_measured_each_in_its_own_crop():
    """The wedge film with stage 1's L3 and L4 painted as one segment named L3, the disc between them too, as stage 1
    draws them on an odd contrast: the segment is cut at the level the naming left missing, stage 2 redraws each
    part, and both bodies get the heights they get when stage 1 drew them apart (flagged ``split``)."""
    from dataclasses import replace

    from scipy import ndimage

    from spinemorph.inference.segment import segment_passes
    from spinemorph.levels import level_code

    image, _ = wedge_film()
    net, spec = load_model(BUNDLE)
    networks = {"refiner": load_refiner(BUNDLE), "landmarks": load_landmarks(BUNDLE)}
    seg = segment_passes(image.pixels, net, spec)[0]
    l3, l4 = level_code("L3"), level_code("L4")
    both = ndimage.binary_closing((seg.labels == l3) | (seg.labels == l4), np.ones((81, 1), bool))
    merged = np.where(both, l3, np.where(seg.labels == l4, 0, seg.labels)).astype(seg.labels.dtype)
    apart = analyse(image, net, spec, segmentation=seg, **networks).morphometry.by_level()
    cut = analyse(image, net, spec, segmentation=replace(seg, labels=merged), **networks).morphometry.by_level()
    for level in ("L3", "L4"):
        assert cut[level].stage == 2 and "split" in cut[level].flags and "split" not in apart[level].flags
        for h in ("Ha_mm", "Hm_mm", "Hp_mm"):
            assert abs(getattr(cut[level], h) - getattr(apart[level], h)) <= 0.5, (level, h)
    assert cut["L2"].genant_grade == apart["L2"].genant_grade == 2
