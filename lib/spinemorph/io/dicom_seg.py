"""The labelmap as a DICOM SEG, and a SEG read back as a labelmap (see dicom_results for the codes)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from spinemorph import __version__
from spinemorph.io.dicom_codes import (
    AI,
    ANATOMICAL_STRUCTURE,
    FRAME_OF_REFERENCE,
    declare_scheme,
    level_concept,
    measurement_spacing,
    read_source,
)
from spinemorph.levels import LEVELS, anatomical_index, codes_in, is_level_code, level_code, level_color, level_name

__all__ = ["make_seg", "write_seg", "seg_labelmap", "segment_level"]

log = logging.getLogger(__name__)


def _cielab(rgb: tuple[int, int, int]) -> list[int]:
    """Return an sRGB colour as RecommendedDisplayCIELabValue holds it (CIELab, D65, scaled to 16 bits)."""
    from highdicom.color import CIELabColor

    c = np.asarray(rgb, float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = (116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2]))
    return list(CIELabColor(float(np.clip(lab[0], 0, 100)), *(float(np.clip(v, -128, 127)) for v in lab[1:])).value)


def make_seg(labels, source: str | Path | Dataset, *, algorithm_type: str = "AUTOMATIC", series_number: int = 901):
    """Return a binary DICOM SEG (highdicom Segmentation) of a labelmap in VerSe codes: one coded segment per level
    present, in anatomical order, on the grid of the single-frame radiograph ``source`` (a path or a dataset).

    The SEG has no frame of reference: a DX or CR has no position in the patient to share, so each frame refers
    to the source instance instead. Its pixel spacing is the one SpineMorph measures with. A projection has no
    slice thickness; the standard asks for none without a frame of reference, but highdicom's reader refuses pixel
    measures without one, so the SEG carries the source's, or a nominal 1 mm.
    """
    import highdicom as hd

    ds = read_source(source)
    labels = np.asarray(labels)
    labels = labels[..., 0] if labels.ndim == 3 and labels.shape[-1] == 1 else labels
    if labels.shape != (ds.Rows, ds.Columns):
        raise ValueError(f"Labelmap shape {labels.shape} differs from the source image's {(ds.Rows, ds.Columns)}.")
    values = codes_in(labels)
    if not values or not all(is_level_code(v) for v in values):
        raise ValueError(f"A SEG needs a labelmap of VerSe level codes (1-26, 28); this one holds {values or 'none'}.")
    codes = sorted(values, key=anatomical_index)
    segments = np.zeros(labels.shape, np.uint8)
    algorithm = None if algorithm_type == "MANUAL" else hd.AlgorithmIdentificationSequence(
        name="SpineMorph", version=__version__, family=AI)
    descriptions = []
    for number, code in enumerate(codes, start=1):
        segments[labels == code] = number
        name = level_name(code)
        desc = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=ANATOMICAL_STRUCTURE,
            segmented_property_type=level_concept(name), algorithm_type=algorithm_type,
            algorithm_identification=algorithm, tracking_id=name, tracking_uid=hd.UID())
        desc.SegmentDescription = f"{name} vertebral body"  # SpineMorph's labels cover the body only
        desc.RecommendedDisplayCIELabValue = _cielab(level_color(code))
        descriptions.append(desc)
    grid = Dataset({tag: elem for tag, elem in ds.items() if tag != FRAME_OF_REFERENCE})
    grid.file_meta = ds.get("file_meta", Dataset())
    grid.is_little_endian, grid.is_implicit_VR = ds.is_little_endian, ds.is_implicit_VR
    spacing = measurement_spacing(ds)
    measures = None if spacing is None else hd.PixelMeasuresSequence(
        pixel_spacing=spacing, slice_thickness=float(ds.get("SliceThickness") or 1.0))
    seg = hd.seg.Segmentation(
        source_images=[grid], pixel_array=segments, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SpineMorph", manufacturer_model_name="SpineMorph",
        software_versions=__version__, device_serial_number="0", pixel_measures=measures,
        series_description="SpineMorph vertebral bodies")
    seg.PatientOrientation = ds.get("PatientOrientation", "")  # General Image needs it without a plane position
    declare_scheme(seg)
    return seg


def write_seg(path: str | Path, labels, source: str | Path | Dataset, **kwargs) -> Path:
    """Write ``make_seg(labels, source)`` to ``path`` and return the path."""
    make_seg(labels, source, **kwargs).save_as(str(path))
    return Path(path)


# -- a SEG read back (the inverse of make_seg): a segment's level from its coded type, else from its label ("L1"),
# so a SEG drawn in another viewer that names its segments by level reads too; other segments are left out
_BY_CONCEPT = {(c.scheme_designator, c.value): code for name, code in LEVELS.items() for c in (level_concept(name),)}


def segment_level(item: Dataset) -> int | None:
    """Return the VerSe code a SEG's segment (an item of its SegmentSequence) stands for, or None."""
    for concept in item.get("SegmentedPropertyTypeCodeSequence", []):
        code = _BY_CONCEPT.get((str(concept.get("CodingSchemeDesignator", "")), str(concept.get("CodeValue", ""))))
        if code is not None:
            return code
    try:
        return level_code(str(item.get("SegmentLabel", "")))
    except ValueError:
        return None


def seg_labelmap(seg: Dataset, source_sop_uid: str) -> np.ndarray:
    """Return the labelmap (rows, columns) in VerSe codes that ``seg`` draws on the image instance ``source_sop_uid``.

    Raises ValueError when the SEG names no level or does not refer to that instance.
    """
    import highdicom as hd

    seg = hd.seg.Segmentation.from_dataset(seg, copy=False)
    levels = {int(item.SegmentNumber): segment_level(item) for item in seg.SegmentSequence}
    unnamed = sorted(n for n, code in levels.items() if code is None)
    if unnamed:
        log.warning("SEG %s: segments %s name no vertebral level; they are left out.", seg.SOPInstanceUID, unnamed)
    numbers = sorted(n for n, code in levels.items() if code is not None)
    if not numbers:
        raise ValueError(f"SEG {seg.SOPInstanceUID} has no segment that names a vertebral level.")
    try:
        masks = seg.get_pixels_by_source_instance([source_sop_uid], segment_numbers=numbers)
    except (KeyError, ValueError, IndexError) as err:
        raise ValueError(f"SEG {seg.SOPInstanceUID} does not segment image instance {source_sop_uid}: {err}") from None
    labels = np.zeros(masks.shape[1:3], np.uint8)
    for index, number in enumerate(numbers):
        labels[masks[0, ..., index] > 0.5] = levels[number]
    return labels
