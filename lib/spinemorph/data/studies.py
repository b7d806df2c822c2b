"""Write cases into a MONAI Label studies folder: images at the top, labels and truth in labels/final/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom

from spinemorph.data.randomise import photometric
from spinemorph.io import Radiograph, display_affine, sagittal_affine, write_dx, write_labelmap, write_nifti
from spinemorph.io.dicom import ds_number
from spinemorph.overlay import draw_labels, draw_measurements, fit_height, to_rgb

__all__ = ["FORMATS", "case_id", "write_case", "write_preview", "label_dir", "truth_path"]

FORMATS = ("dicom", "nifti")
_BODY_PART = {"lumbar": "LSPINE", "thoracolumbar": "SPINE", "chest": "CHEST", "spine": "SPINE"}


def case_id(prefix: str, *key) -> str:
    """Return a stable, letters-only id, so that Slicer never stacks neighbouring files as a numbered series."""
    digest = hashlib.sha1(":".join(map(str, key)).encode()).digest()
    token = "".join(chr(ord("a") + b % 26) for b in digest[:8])
    return f"{prefix}-{token}"


def label_dir(studies: Path) -> Path:
    """Return the folder MONAI Label reads final labels from."""
    return Path(studies) / "labels" / "final"


def truth_path(studies: Path, cid: str) -> Path:
    """Return where a case's ground truth JSON lives, beside its label."""
    return label_dir(studies) / f"{cid}.truth.json"


def write_case(studies: Path, cid: str, image: np.ndarray, labels: np.ndarray, truth: dict, fmt: str = "dicom",
               preview: bool = False) -> Path:
    """Write one case: the image (DICOM DX or NIfTI), its body labels and truth JSON, and optionally a preview PNG.

    ``image`` holds the stored values. When the truth says they are MONOCHROME1 (``randomise`` inverted them),
    a DICOM file says so and readers turn it back to bone bright; NIfTI cannot say it, so there it stays bone
    dark, as an inverted image claiming MONOCHROME2 does. Returns the image path.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: use 'dicom' or 'nifti'.")
    studies = Path(studies)
    label_dir(studies).mkdir(parents=True, exist_ok=True)
    spacing = tuple(float(ds_number(v)) for v in truth["pixel_spacing_mm"])  # what the file can hold
    facing = truth.get("facing")
    if fmt == "dicom":
        path = studies / f"{cid}.dcm"
        write_dx(path, image, spacing, facing, bits_stored=int(truth.get("bits_stored", 16)),
                 body_part=_BODY_PART.get(truth.get("fov"), "SPINE"), patient_id=cid, key=cid,
                 magnification=truth.get("magnification"), sdd_mm=truth.get("sdd_mm"), sod_mm=truth.get("sod_mm"))
        if photometric(truth) == "MONOCHROME1":
            _declare_monochrome1(path)
        affine = display_affine(spacing)
    else:
        path = studies / f"{cid}.nii.gz"
        affine = sagittal_affine(spacing, facing)
        write_nifti(path, image, affine, facing, "spinemorph radiograph")
    geometry = Radiograph(image, spacing, "PixelSpacing", facing, affine)
    write_labelmap(label_dir(studies) / f"{cid}.nii.gz", labels, geometry)
    truth = {"image": path.name, **truth}
    truth_path(studies, cid).write_text(json.dumps(truth, indent=1))
    if preview:
        shown = image.max() - image if photometric(truth) == "MONOCHROME1" else image  # as a viewer shows it
        write_preview(studies / "previews" / f"{cid}.png", shown, labels, truth.get("vertebrae", []))
    return path


def _declare_monochrome1(path: Path) -> None:
    """Mark a written DX file's stored values as MONOCHROME1 (lowest value white), and their relation to the
    beam intensity as the opposite of what the writer gave the uninverted values."""
    ds = pydicom.dcmread(str(path))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelIntensityRelationshipSign = -int(ds.get("PixelIntensityRelationshipSign", 1))
    ds.save_as(str(path), write_like_original=False)


def write_preview(path: Path, image: np.ndarray, labels: np.ndarray, records: list[dict]) -> None:
    """Write a PNG of the image with its labels coloured by level and the truth's six points and heights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pic = to_rgb(image, fit_height(image.shape))
    pic = draw_labels(pic, labels)
    pic = draw_measurements(pic, [r for r in records if not r.get("truncated")], image.shape)
    pic.save(str(path))


