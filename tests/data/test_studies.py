from __future__ import annotations

import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from spinemorph.cli import main
from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.data.studies import write_case
from spinemorph.io import read_labelmap, read_radiograph


def test_simulate_writes_a_monai_label_studies_folder(tmp_path):
    out = tmp_path / "studies"
    main(["simulate", "--n", "3", "--seed", "2", "--out", str(out), "--preview", "--fracture-rate", "1"])
    images = sorted(out.glob("*.dcm"))
    assert len(images) == 3
    for image in images:
        cid = image.name[: -len(".dcm")]
        assert re.fullmatch(r"sim-(lumbar|thoracolumbar|chest)-[a-z]{8}", cid)  # letters only: no Slicer stacking
        label = out / "labels" / "final" / f"{cid}.nii.gz"
        truth = json.loads((out / "labels" / "final" / f"{cid}.truth.json").read_text())
        assert (out / "previews" / f"{cid}.png").stat().st_size > 10_000
        rad = read_radiograph(image)
        labels, geometry = read_labelmap(label)
        assert labels.shape == rad.shape == tuple(truth["shape"])
        np.testing.assert_allclose(geometry.affine, rad.affine, atol=1e-6)
        assert rad.spacing_mm == pytest.approx(tuple(truth["pixel_spacing_mm"]), rel=1e-5)
        assert rad.facing == truth["facing"]
        assert set(np.unique(labels)) - {0} == {v["code"] for v in truth["vertebrae"]}
        assert truth["image"] == image.name


def test_simulate_is_deterministic_for_a_seed(tmp_path):
    for name in ("a", "b"):
        main(["simulate", "--n", "2", "--seed", "9", "--out", str(tmp_path / name), "--format", "nifti"])
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    for rel in files:
        if rel.suffix == ".gz":
            a, b = nib.load(tmp_path / "a" / rel), nib.load(tmp_path / "b" / rel)
            np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
            assert a.shape[2] == 1  # H×W×1
        else:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--n", "-3"], "must be at least 1"),
    (["--n", "two"], "whole number"),
    (["--n", "1", "--fracture", "L7:wedge:2"], "Unknown vertebral level"),
    (["--n", "1", "--fracture", "L1:wedge:5"], "grade must be 1, 2 or 3"),
    (["--n", "1", "--fracture-rate", "2"], "probability"),
    (["--n", "1", "--size", "huge"], "Unknown size"),
])
def test_bad_arguments_give_a_clear_error_and_exit_status_2(tmp_path, args, message):
    cmd = [sys.executable, "-m", "spinemorph.cli", "simulate", "--out", str(tmp_path / "x"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").glob("*.dcm"))


def test_the_command_line_parses_without_torch_or_monai():
    """Every sub-command's parser is built at each call: none may import torch or MONAI (seconds) to do it, so a
    bad argument is reported at once."""
    code = ("import sys; from spinemorph.cli import _parser; _parser(); "
            "bad = [m for m in ('torch', 'monai', 'scipy', 'skimage') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_labelled_fraction_leaves_the_rest_for_annotation(tmp_path):
    main(["simulate", "--n", "4", "--seed", "3", "--out", str(tmp_path), "--labelled-fraction", "0.5"])
    images = sorted(tmp_path.glob("*.dcm"))
    labels = sorted((tmp_path / "labels" / "final").glob("*.nii.gz"))
    truths = sorted((tmp_path / "labels" / "final").glob("*.truth.json"))
    assert len(images) == 4 and len(labels) == 2 and len(truths) == 4


def test_randomised_studies_are_deterministic_and_monochrome1_files_read_back_bone_bright(tmp_path):
    for name in ("a", "b"):
        main(["simulate", "--n", "6", "--seed", "4", "--out", str(tmp_path / name), "--randomise"])
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    for rel in files:
        if rel.suffix == ".json":
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    claims = []
    for image in sorted((tmp_path / "a").glob("*.dcm")):
        cid = image.name[: -len(".dcm")]
        truth = json.loads((tmp_path / "a" / "labels" / "final" / f"{cid}.truth.json").read_text())
        rad, ds = read_radiograph(image), pydicom.dcmread(str(image))
        labels, _ = read_labelmap(tmp_path / "a" / "labels" / "final" / f"{cid}.nii.gz")
        assert rad.shape == labels.shape == tuple(truth["shape"])
        assert set(np.unique(labels)) - {0} == {v["code"] for v in truth["vertebrae"]}
        assert ds.PhotometricInterpretation == truth["randomisation"]["photometric"]
        claims.append(ds.PhotometricInterpretation)
        ring = ndimage.binary_dilation(labels > 0, iterations=4) & (labels == 0)
        bright = rad.pixels[labels > 0].mean() > rad.pixels[ring].mean()
        assert bright != (truth["randomisation"]["bone_dark"] and ds.PhotometricInterpretation == "MONOCHROME2")
    assert "MONOCHROME1" in claims and "MONOCHROME2" in claims


def test_a_monochrome1_case_stores_inverted_values_and_reads_back_as_it_was(tmp_path):
    sim = simulate(1, 0, SimConfig(fov="lumbar", size=128, bits=12))
    stored = 4095 - sim.image
    truth = {**sim.truth, "randomisation": {"photometric": "MONOCHROME1", "bone_dark": True}}
    path = write_case(tmp_path, "sim-m-one", stored, sim.labels, truth)
    ds = pydicom.dcmread(str(path))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    np.testing.assert_array_equal(ds.pixel_array, stored)
    rad = read_radiograph(path)
    np.testing.assert_array_equal(rad.pixels, sim.image - sim.image.min())


def test_simulate_rejects_a_bad_irregularity(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["simulate", "--out", str(tmp_path / "x"), "--n", "1", "--irregularity", "5"])
    assert stop.value.code == 2 and "irregularity" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
