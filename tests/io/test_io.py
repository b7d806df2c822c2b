from __future__ import annotations

import itk
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from spinemorph.io import (
    InvalidImageError,
    facing_from_orientation,
    image_id,
    read_labelmap,
    read_radiograph,
    sagittal_affine,
    write_dx,
    write_labelmap,
    write_nifti,
)


@pytest.fixture
def pixels():
    return (np.random.default_rng(0).random((40, 30)) * 4000).astype(np.uint16)


def _itk_point(img, row, col):
    """Physical point of pixel (row, col) as ITK sees a file, whatever its axis order."""
    dims = img.GetImageDimension()
    size = tuple(img.GetLargestPossibleRegion().GetSize())
    if size[0] == 40 and size[1] == 30:  # NIfTI H×W×1: ITK's x runs along our rows
        index = [row, col, 0][:dims]
    else:
        index = [col, row, 0][:dims]
    return np.array(img.TransformIndexToPhysicalPoint(index))


@pytest.mark.parametrize("facing, orientation", [("left", ["P", "F"]), ("right", ["A", "F"])])
def test_dicom_round_trip_through_pydicom_and_itk(tmp_path, pixels, facing, orientation):
    path = tmp_path / "x.dcm"
    write_dx(path, pixels, (0.143, 0.15), facing, bits_stored=12, key="k")
    ds = pydicom.dcmread(path)
    assert ds.Modality == "DX" and ds.ViewPosition == "LL"
    assert list(ds.PatientOrientation) == orientation
    np.testing.assert_array_equal(ds.pixel_array, pixels)
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.143, 0.15]
    img = itk.imread(str(path))
    np.testing.assert_array_equal(itk.array_from_image(img).reshape(pixels.shape), pixels)
    assert tuple(img.GetSpacing())[:2] == pytest.approx((0.15, 0.143))  # ITK lists (column, row)
    rad = read_radiograph(path)
    assert rad.spacing_mm == (0.143, 0.15) and rad.spacing_source == "PixelSpacing"
    assert rad.facing == facing
    np.testing.assert_array_equal(rad.pixels, pixels)


def test_dicom_files_are_deterministic_and_have_valid_uids(tmp_path, pixels):
    write_dx(tmp_path / "a.dcm", pixels, (0.2, 0.2), "left", key="same")
    write_dx(tmp_path / "b.dcm", pixels, (0.2, 0.2), "left", key="same")
    write_dx(tmp_path / "c.dcm", pixels, (0.2, 0.2), "left", key="other")
    a, b, c = (pydicom.dcmread(tmp_path / f"{n}.dcm") for n in "abc")
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    assert a.StudyInstanceUID != c.StudyInstanceUID
    for uid in (a.SOPInstanceUID, a.StudyInstanceUID, a.SeriesInstanceUID):
        assert uid.is_valid


def test_spacing_rules_pixel_then_imager_then_none(tmp_path, pixels):
    write_dx(tmp_path / "x.dcm", pixels, (0.15, 0.15), "left", key="k")
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    ds.PixelSpacing = [0.12, 0.12]
    ds.save_as(tmp_path / "calibrated.dcm")
    rad = read_radiograph(tmp_path / "calibrated.dcm")
    assert rad.spacing_mm == (0.12, 0.12) and rad.spacing_source == "PixelSpacing"
    # ITK uses ImagerPixelSpacing for DX, so labels must be written in that geometry to overlay in Slicer.
    assert abs(rad.affine[1, 0]) == pytest.approx(0.15)
    del ds.PixelSpacing
    ds.save_as(tmp_path / "imager.dcm")
    rad = read_radiograph(tmp_path / "imager.dcm")
    assert rad.spacing_mm == (0.15, 0.15) and rad.spacing_source == "ImagerPixelSpacing"
    del ds.ImagerPixelSpacing
    ds.save_as(tmp_path / "none.dcm")
    rad = read_radiograph(tmp_path / "none.dcm")
    assert rad.spacing_mm is None and rad.spacing_source == "none"
    assert any("No pixel spacing" in w for w in rad.meta["warnings"])


def test_nan_spacing_is_ignored_with_a_warning(tmp_path, pixels):
    write_dx(tmp_path / "x.dcm", pixels, (0.15, 0.15), "left", key="k")
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    ds.PixelSpacing = ["nan", "0.1"]
    ds.save_as(tmp_path / "nan.dcm")
    rad = read_radiograph(tmp_path / "nan.dcm")
    assert rad.spacing_source == "ImagerPixelSpacing"
    assert any("PixelSpacing" in w for w in rad.meta["warnings"])


@pytest.mark.parametrize("value, facing", [("P\\F", "left"), ("A\\F", "right"), (["A", "H"], "right"),
                                           ("L\\F", None), ("", None), (None, None)])
def test_facing_from_patient_orientation(value, facing):
    assert facing_from_orientation(value) == facing


def test_missing_orientation_is_not_assumed(tmp_path, pixels):
    write_dx(tmp_path / "x.dcm", pixels, (0.15, 0.15), None, key="k")
    assert read_radiograph(tmp_path / "x.dcm").facing is None


@pytest.mark.parametrize("facing", ["left", "right"])
def test_nifti_is_h_w_1_with_spacing_and_facing(tmp_path, pixels, facing):
    path = tmp_path / "x.nii.gz"
    write_nifti(path, pixels, sagittal_affine((0.2, 0.25), facing), facing)
    img = nib.load(path)
    assert img.shape == (40, 30, 1)
    assert img.header.get_zooms()[:2] == pytest.approx((0.2, 0.25))
    rad = read_radiograph(path)
    assert rad.spacing_mm == pytest.approx((0.2, 0.25)) and rad.facing == facing
    np.testing.assert_array_equal(rad.pixels, pixels)
    # Without the header note, a sagittal affine still tells the facing; an identity affine tells nothing.
    nib.save(nib.Nifti1Image(pixels[:, :, None], sagittal_affine((0.2, 0.25), facing)), tmp_path / "y.nii.gz")
    assert read_radiograph(tmp_path / "y.nii.gz").facing == facing
    nib.save(nib.Nifti1Image(pixels[:, :, None], np.eye(4)), tmp_path / "z.nii.gz")
    assert read_radiograph(tmp_path / "z.nii.gz").facing is None


@pytest.mark.parametrize("source", ["dicom", "nifti", "png"])
def test_labelmap_has_the_exact_geometry_of_its_image_for_itk(tmp_path, pixels, source):
    if source == "dicom":
        path = tmp_path / "img.dcm"
        write_dx(path, pixels, (0.143, 0.15), "left", key="k")
    elif source == "nifti":
        path = tmp_path / "img.nii.gz"
        write_nifti(path, pixels, sagittal_affine((0.143, 0.15), "right"), "right")
    else:
        path = tmp_path / "img.png"
        Image.fromarray(pixels).save(path)
    image = read_radiograph(path)
    labels = np.zeros(pixels.shape, np.uint8)
    labels[5:12, 3:9] = 20
    write_labelmap(tmp_path / "lab.nii.gz", labels, image)
    back, _ = read_labelmap(tmp_path / "lab.nii.gz")
    np.testing.assert_array_equal(back, labels)
    img_itk, lab_itk = itk.imread(str(path)), itk.imread(str(tmp_path / "lab.nii.gz"))
    for row, col in [(0, 0), (7, 5), (39, 29), (20, 0)]:
        np.testing.assert_allclose(_itk_point(lab_itk, row, col)[:2], _itk_point(img_itk, row, col)[:2], atol=1e-4)


def test_png_8_and_16_bit(tmp_path, pixels):
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray((pixels // 16).astype(np.uint8)).save(tmp_path / "b.png")
    a, b = read_radiograph(tmp_path / "a.png"), read_radiograph(tmp_path / "b.png")
    assert a.pixels.dtype == np.uint16 and np.array_equal(a.pixels, pixels)
    assert b.pixels.dtype == np.uint8 and b.spacing_mm is None and b.facing is None


def test_bad_images_raise_clear_errors(tmp_path, pixels):
    rgb = np.stack([pixels // 16] * 3, -1).astype(np.uint8)
    rgb[..., 0] = 0
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(InvalidImageError, match="colour"):
        read_radiograph(tmp_path / "rgb.png")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(InvalidImageError, match="2D"):
        read_radiograph(tmp_path / "vol.nii.gz")
    (tmp_path / "note.png").write_text("not an image")
    with pytest.raises(InvalidImageError, match="not an image"):
        read_radiograph(tmp_path / "note.png")
    with pytest.raises(FileNotFoundError):
        read_radiograph(tmp_path / "missing.dcm")


def test_image_ids_follow_monai_label():
    assert image_id("/a/sim-abc-lumbar.nii.gz") == "sim-abc-lumbar"
    assert image_id("x.dcm") == "x" and image_id("y.PNG") == "y"
