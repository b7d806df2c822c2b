"""The exposed field: a blank border's edge cuts a body as the image's own edge does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spinemorph.io import Radiograph, write_nifti
from spinemorph.io.nifti import sagittal_affine
from spinemorph.measure import exposed_field, measure, measure_radiograph
from spinemorph.measure.gates import TRUTH_GATES


def film(shape=(300, 240), seed=0):
    """Return a noisy film: soft tissue with quantum noise, a darker band (anatomy's edges are shorter than a row)."""
    rng = np.random.default_rng(seed)
    x = 1500 + 300 * rng.standard_normal(shape)
    x[:, 60:90] += 400  # a vertical band: edges along columns, never across a whole row
    return np.clip(x, 0, 4095).astype(np.uint16)


def column(shape=(300, 240), top=0, value=20, n=4, height=40, gap=12):
    """Return labels of ``n`` bodies from row ``top`` down, 60 px deep."""
    labels = np.zeros(shape, np.uint8)
    for i in range(n):
        r = top + i * (height + gap)
        labels[r:r + height, 100:160] = value + i
    return labels


def test_a_noisy_film_without_a_border_is_all_field():
    x = film()
    assert exposed_field(x) == (0, 0, 299, 239)
    x[::3] += 60  # grid lines across every row: a step, but not an edge
    assert exposed_field(x) == (0, 0, 299, 239)
    assert exposed_field(x[..., None]) == (0, 0, 299, 239)  # H×W×1, as a NIfTI stores it


@pytest.mark.parametrize("fill", [0, 4095])
def test_a_padded_border_is_found_to_the_pixel_on_every_side(fill):
    x = np.full((300, 240), fill, np.uint16)
    x[23:281, 31:200] = film((258, 169))
    assert exposed_field(x) == (23, 31, 280, 199)


def padded_film():
    """Return a film whose top 30 rows are a blank border, and labels: four whole bodies and, above them, the
    bottom of a T12 the border cut, a short "crushed" body."""
    x = np.full((300, 240), 0, np.uint16)
    x[30:, :] = film((270, 240))
    labels = column(top=30 + 20)
    labels[30:40, 100:160] = 19
    return x, labels


def test_a_body_the_padded_border_cuts_is_truncated_not_graded():
    x, labels = padded_film()
    spacing = (0.5, 0.5)
    plain = measure(labels, spacing, "left").by_level()
    assert plain["T12"].Ha_mm is not None  # the image's own edge is 30 rows away: measured, as before
    by = measure(labels, spacing, "left", field=exposed_field(x)).by_level()
    assert "truncated" in by["T12"].flags and by["T12"].Ha_mm is None and by["T12"].genant_grade is None
    assert "no_upper_neighbour" in by["L1"].flags  # the cut body is no VCR reference for its neighbour
    image = Radiograph(x, spacing, "PixelSpacing", "left", sagittal_affine(spacing, "left"), {"format": "dicom"})
    assert "truncated" in measure_radiograph(labels, image).by_level()["T12"].flags  # the pixels give the field


def test_an_outline_stopping_short_of_the_edge_is_truncated_by_the_gates_margin_in_mm():
    labels = column(top=8)  # the top body's outline stops 8 px short of the top edge
    near = measure(labels, (0.1, 0.1), "left").by_level()["L1"]  # 8 px = 0.8 mm, inside the 1 mm margin
    assert "truncated" in near.flags
    assert measure(labels, (0.1, 0.1), "left", gates=TRUTH_GATES).by_level()["L1"].Ha_mm is not None  # 3 px
    assert measure(labels, (0.5, 0.5), "left").by_level()["L1"].Ha_mm is not None  # 8 px = 4 mm: whole


def test_the_measure_command_takes_the_field_from_its_image(tmp_path):
    x, labels = padded_film()
    affine = sagittal_affine((0.5, 0.5), "left")
    write_nifti(tmp_path / "film.nii.gz", x, affine, "left")
    write_nifti(tmp_path / "labels.nii.gz", labels, affine, "left")
    done = subprocess.run([sys.executable, "-m", "spinemorph.cli", "measure", str(tmp_path / "labels.nii.gz"),
                           "--image", str(tmp_path / "film.nii.gz"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (path,) = (tmp_path / "out").glob("*.morphometry.json")
    by = {v["level"]: v for v in json.loads(path.read_text())["vertebrae"]}
    assert "truncated" in by["T12"]["flags"] and by["T12"].get("Ha_mm") is None and by["L1"]["Ha_mm"] > 0
