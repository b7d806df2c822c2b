"""Results as DICOM: the labelmap as a SEG, the morphometry as a TID 1500 measurement report (SR), and the SR read back.

The writers need highdicom (the ``ml`` extra); ``read_morphometry_sr`` needs pydicom alone, so 3D Slicer's Python
can read a report without it.

Codes: a level is the SNOMED CT concept of DICOM CID 7603 "Vertebra" (C1-L5), S1 is SCT 65985001 "First sacral
vertebra", and the transitional T13 and L6, which SNOMED CT has no concept for, are codes of SpineMorph's own
scheme ``99SPMORPH`` (a "99" scheme is a private one, PS3.16 section 8.2), as are the quantities (heights, indices,
VCR, Genant grade and type, flags). Both files declare the scheme in their Coding Scheme Identification Sequence.

Points: an SCOORD is in DICOM image coordinates (column, row) with (0, 0) the top left corner of the top left
pixel, so the centre of pixel (row r, column c) is (c + 0.5, r + 0.5). DICOM keeps them as 32-bit floats: they
come back to the JSON's four decimals on films under 1024 pixels, to about 1e-4 pixel on larger ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.coding import Code
from pydicom.tag import Tag

from spinemorph import __version__
from spinemorph.io.radiograph import checked_spacing
from spinemorph.levels import LEVELS, anatomical_index, is_level_code, level_code, level_color, level_name

__all__ = [
    "make_seg", "make_sr", "write_seg", "write_sr", "write_dicom_results", "read_morphometry_sr",
    "morphometry_from_sr", "seg_labelmap", "segment_level", "level_concept", "SCHEME", "STATIONS",
]

log = logging.getLogger(__name__)

SCHEME = "99SPMORPH"
#: The six points, in the order the SR's closed polyline visits them (and then returns to the first).
STATIONS = ("superior_anterior", "superior_middle", "superior_posterior",
            "inferior_posterior", "inferior_middle", "inferior_anterior")

_ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")  # DICOM CID 7150
_FRAME_OF_REFERENCE = Tag("FrameOfReferenceUID")
_AI = Code("123110", "DCM", "Artificial Intelligence")  # DICOM CID 7162
_VERTEBRA_SCT = {  # DICOM CID 7603 "Vertebra"; S1 is SNOMED CT's "First sacral vertebra"
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003", "C6": "36054005",
    "C7": "87391001", "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006", "T5": "56401006",
    "T6": "45296009", "T7": "62487009", "T8": "11068009", "T9": "82687006", "T10": "7610001", "T11": "12989004",
    "T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
    "S1": "65985001",
}
_NUMBERS = {  # JSON field (heights without their unit) -> concept name
    "Ha": Code("HA", SCHEME, "Anterior vertebral body height"),
    "Hm": Code("HM", SCHEME, "Middle vertebral body height"),
    "Hp": Code("HP", SCHEME, "Posterior vertebral body height"),
    "vcr_percent": Code("VCR", SCHEME, "Vertebral compression ratio"),
    "wedge": Code("WEDGE", SCHEME, "Wedge index (Ha/Hp)"),
    "biconcave": Code("BICONCAVE", SCHEME, "Biconcavity index (Hm/Hp)"),
    "crush": Code("CRUSH", SCHEME, "Crush index (Hp over the neighbours' Hp)"),
    "confidence": Code("CONFIDENCE", SCHEME, "Mean body probability over the segment"),
}
_FIELDS = {code.value: field for field, code in _NUMBERS.items()}
_HEIGHTS = ("Ha", "Hm", "Hp")
_LENGTH = {"mm": Code("mm", "UCUM", "millimeter"), "px": Code("{pixels}", "UCUM", "pixels")}
_UNIT_OF = {code.value: unit for unit, code in _LENGTH.items()}
_UNIT_WORDS = {"mm": Code("MM", SCHEME, "millimetres"), "px": Code("PIXELS", SCHEME, "pixels (no spacing)")}
_UNIT = {"vcr_percent": Code("%", "UCUM", "Percent"), "confidence": Code("1", "UCUM", "no units"),
         **dict.fromkeys(("wedge", "biconcave", "crush"), Code("{ratio}", "UCUM", "ratio"))}
_GRADE = Code("GENANT", SCHEME, "Genant semiquantitative grade")
_GRADE_WORDS = ("normal", "mild", "moderate", "severe")
_DEFORMITY = Code("DEFORMITY", SCHEME, "Vertebral deformity type")
_FLAG = Code("FLAG", SCHEME, "SpineMorph flag")
_UNITS = Code("UNITS", SCHEME, "Unit of lengths and points")
_TRACKING = Code("112039", "DCM", "Tracking Identifier")
_GROUP = Code("125007", "DCM", "Measurement Group")
_IMAGING = Code("126010", "DCM", "Imaging Measurements")
_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500's report-level evaluations


def level_concept(level: str) -> Code:
    """Return the coded concept of a level ("L1"): SNOMED CT's where one exists, else SpineMorph's own."""
    name = level.strip().upper()
    if name in _VERTEBRA_SCT:
        return Code(_VERTEBRA_SCT[name], "SCT", "First sacral vertebra" if name == "S1" else f"{name} vertebra")
    if name in LEVELS:
        return Code(name, SCHEME, f"{name} vertebra (transitional)")
    raise ValueError(f"{level!r} is not a vertebral level (C1-C7, T1-T13, L1-L6, S1).")


def _read_source(source: str | Path | Dataset) -> Dataset:
    ds = source if isinstance(source, Dataset) else pydicom.dcmread(str(source))
    if "SOPInstanceUID" not in ds or "Rows" not in ds:
        raise ValueError("The source must be the DICOM radiograph the results came from (DX, CR...), not another file.")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError(f"The source has {ds.NumberOfFrames} frames; SpineMorph results refer to one 2D radiograph.")
    return ds


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """Return the spacing ``spinemorph.io.read_dicom`` measures with: PixelSpacing, else ImagerPixelSpacing."""
    warnings: list[str] = []
    return (checked_spacing(ds.get("PixelSpacing"), "PixelSpacing", warnings)
            or checked_spacing(ds.get("ImagerPixelSpacing"), "ImagerPixelSpacing", warnings))


def _declare_scheme(ds: Dataset) -> None:
    item = Dataset()
    item.CodingSchemeDesignator, item.CodingSchemeName = SCHEME, "SpineMorph vertebral morphometry"
    item.CodingSchemeResponsibleOrganization = "SpineMorph"
    ds.CodingSchemeIdentificationSequence = Sequence([item])


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

    ds = _read_source(source)
    labels = np.asarray(labels)
    labels = labels[..., 0] if labels.ndim == 3 and labels.shape[-1] == 1 else labels
    if labels.shape != (ds.Rows, ds.Columns):
        raise ValueError(f"Labelmap shape {labels.shape} differs from the source image's {(ds.Rows, ds.Columns)}.")
    values = [int(v) for v in np.unique(labels) if v]
    if not values or not all(is_level_code(v) for v in values):
        raise ValueError(f"A SEG needs a labelmap of VerSe level codes (1-26, 28); this one holds {values or 'none'}.")
    codes = sorted(values, key=anatomical_index)
    segments = np.zeros(labels.shape, np.uint8)
    algorithm = None if algorithm_type == "MANUAL" else hd.AlgorithmIdentificationSequence(
        name="SpineMorph", version=__version__, family=_AI)
    descriptions = []
    for number, code in enumerate(codes, start=1):
        segments[labels == code] = number
        name = level_name(code)
        desc = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=_ANATOMICAL_STRUCTURE,
            segmented_property_type=level_concept(name), algorithm_type=algorithm_type,
            algorithm_identification=algorithm, tracking_id=name, tracking_uid=hd.UID())
        desc.SegmentDescription = f"{name} vertebral body"  # SpineMorph's labels cover the body only
        desc.RecommendedDisplayCIELabValue = _cielab(level_color(code))
        descriptions.append(desc)
    grid = Dataset({tag: elem for tag, elem in ds.items() if tag != _FRAME_OF_REFERENCE})
    grid.file_meta = ds.get("file_meta", Dataset())
    grid.is_little_endian, grid.is_implicit_VR = ds.is_little_endian, ds.is_implicit_VR
    spacing = _spacing(ds)
    measures = None if spacing is None else hd.PixelMeasuresSequence(
        pixel_spacing=spacing, slice_thickness=float(ds.get("SliceThickness") or 1.0))
    seg = hd.seg.Segmentation(
        source_images=[grid], pixel_array=segments, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SpineMorph", manufacturer_model_name="SpineMorph",
        software_versions=__version__, device_serial_number="0", pixel_measures=measures,
        series_description="SpineMorph vertebral bodies")
    seg.PatientOrientation = ds.get("PatientOrientation", "")  # General Image needs it without a plane position
    _declare_scheme(seg)
    return seg


def _group(hd, ds: Dataset, rec: dict, unit: str):
    """Return the TID 1410 group of one vertebra (TID 1501 when it has no six points)."""
    fields = [(h, f"{h}_{unit}", _LENGTH[unit]) for h in _HEIGHTS] + [(f, f, u) for f, u in _UNIT.items()]
    numbers = [hd.sr.Measurement(name=_NUMBERS[name], value=float(rec[field]), unit=u) for name, field, u in fields
               if rec.get(field) is not None and np.isfinite(rec[field])]
    evaluations = []
    if rec.get("genant_grade") is not None:
        grade = int(rec["genant_grade"])
        evaluations.append(hd.sr.QualitativeEvaluation(
            _GRADE, Code(f"G{grade}", SCHEME, f"Genant grade {grade} ({_GRADE_WORDS[grade]})")))
    if rec.get("deformity") is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(_DEFORMITY, Code(rec["deformity"], SCHEME, rec["deformity"])))
    evaluations += [hd.sr.QualitativeEvaluation(_FLAG, Code(f, SCHEME, f)) for f in rec.get("flags", [])]
    level = str(rec["level"])
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=level),
        "finding_type": level_concept(level) if level.upper() in LEVELS else None,
        "finding_category": _ANATOMICAL_STRUCTURE,
        "algorithm_id": hd.sr.AlgorithmIdentification(name="SpineMorph", version=__version__),
        "measurements": numbers or None, "qualitative_evaluations": evaluations or None,
    }
    points = rec.get("points") or {}
    if not all(s in points for s in STATIONS):
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    xy = np.array([[points[s][1] + 0.5, points[s][0] + 0.5] for s in (*STATIONS, STATIONS[0])])
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=xy,
                               source_image=hd.sr.SourceImageForRegion(ds.SOPClassUID, ds.SOPInstanceUID))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)


def _report_evaluations(hd, data: dict, unit: str) -> Dataset:
    """Return TID 1500's report-level "Qualitative Evaluations": the unit, the image's flags and a sentence."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items = [hd.sr.CodeContentItem(_UNITS, _UNIT_WORDS[unit], contains)]
    items += [hd.sr.CodeContentItem(_FLAG, Code(f, SCHEME, f), contains) for f in data.get("flags", [])]
    text = ("Heights in mm, from the source image's pixel spacing; points in pixels." if unit == "mm" else
            "The source image has no pixel spacing: heights and points are in pixels, none in mm.")
    items.append(hd.sr.TextContentItem(Code("121106", "DCM", "Comment"), text, contains))
    container = hd.sr.ContainerContentItem(_EVALUATIONS, relationship_type=contains)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _describable(hd, ds: Dataset) -> bool:
    """Return True when highdicom can put ``ds`` in the report's image library: for a projection it needs
    ImagerPixelSpacing and a two-valued PatientOrientation. The library is optional; the points and the evidence
    name the image either way."""
    try:
        hd.sr.ImageLibraryEntryDescriptors(ds)
    except (AttributeError, IndexError):
        log.info("%s: no image library entry (the image lacks ImagerPixelSpacing or PatientOrientation).",
                 ds.SOPInstanceUID)
        return False
    return True


def make_sr(morphometry, source: str | Path | Dataset, *, series_number: int = 902):
    """Return a TID 1500 measurement report (highdicom Comprehensive3DSR) of a morphometry (a ``Morphometry`` or
    its JSON dict): one measurement group per vertebra, tracked by its level name, its six points an SCOORD on
    ``source``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    ds = _read_source(source)
    data = morphometry.to_dict() if hasattr(morphometry, "to_dict") else dict(morphometry)
    unit = "mm" if data.get("units", "mm") == "mm" else "px"
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="SpineMorph", manufacturer_name="SpineMorph", model_name=__version__))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[_group(hd, ds, rec, unit) for rec in data.get("vertebrae", [])],
        referenced_images=[ds] if _describable(hd, ds) else None)
    report[0].ContentSequence.append(_report_evaluations(hd, data, unit))
    sr = hd.sr.Comprehensive3DSR(
        evidence=[ds], content=report[0], series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SpineMorph", is_complete=True,
        series_description="SpineMorph vertebral morphometry")
    _declare_scheme(sr)
    return sr


def write_seg(path: str | Path, labels, source: str | Path | Dataset, **kwargs) -> Path:
    """Write ``make_seg(labels, source)`` to ``path`` and return the path."""
    make_seg(labels, source, **kwargs).save_as(str(path))
    return Path(path)


def write_sr(path: str | Path, morphometry, source: str | Path | Dataset, **kwargs) -> Path:
    """Write ``make_sr(morphometry, source)`` to ``path`` and return the path."""
    make_sr(morphometry, source, **kwargs).save_as(str(path))
    return Path(path)


def write_dicom_results(out_dir: str | Path, stem: str, labels, morphometry, source: str | Path | Dataset
                        ) -> dict[str, Path]:
    """Write ``stem``.seg.dcm (when the labelmap holds a level) and ``stem``.sr.dcm; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = _read_source(source)
    paths = {}
    if np.any(np.asarray(labels)):
        paths["seg"] = write_seg(out / f"{stem}.seg.dcm", labels, ds)
    else:
        log.warning("%s: the labelmap is empty, so there is no SEG to write.", stem)
    paths["sr"] = write_sr(out / f"{stem}.sr.dcm", morphometry, ds)
    return paths


def _code(seq) -> tuple[str, str]:
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
    return str(item.CodingSchemeDesignator), str(value)


def _key(code: Code) -> tuple[str, str]:
    return code.scheme_designator, code.value


def _children(item: Dataset, name: Code) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if _code(c.ConceptNameCodeSequence) == _key(name)]


def _read_group(group: Dataset) -> dict:
    rec = {"level": None, **{f"{h}_{u}": None for h in _HEIGHTS for u in _LENGTH}, **dict.fromkeys(_UNIT),
           "genant_grade": None, "deformity": None, "points": {}, "flags": []}
    for item in group.ContentSequence:
        name = _code(item.ConceptNameCodeSequence)
        if item.ValueType == "TEXT" and name == _key(_TRACKING):
            rec["level"] = str(item.TextValue)
        elif item.ValueType == "NUM" and name[0] == SCHEME and name[1] in _FIELDS:
            value = item.MeasuredValueSequence[0]
            number = float(value.FloatingPointValue if "FloatingPointValue" in value else value.NumericValue)
            field = _FIELDS[name[1]]
            unit_code = _code(value.MeasurementUnitsCodeSequence)[1]
            rec[f"{field}_{_UNIT_OF[unit_code]}" if field in _HEIGHTS else field] = number
        elif item.ValueType == "CODE":
            value = _code(item.ConceptCodeSequence)[1]
            if name == _key(_GRADE):
                rec["genant_grade"] = int(value[1:])
            elif name == _key(_DEFORMITY):
                rec["deformity"] = value
            elif name == _key(_FLAG):
                rec["flags"].append(value)
        elif item.ValueType == "SCOORD":
            xy = np.asarray(item.GraphicData, float).reshape(-1, 2)
            rec["points"] = {s: [round(float(y) - 0.5, 4), round(float(x) - 0.5, 4)]
                             for s, (x, y) in zip(STATIONS, xy[:6], strict=True)}
    return rec


def read_morphometry_sr(path: str | Path | Dataset) -> dict:
    """Return the morphometry in a SpineMorph SR in the JSON's field names: {"units", "flags", "vertebrae"}.

    Each vertebra holds level, Ha/Hm/Hp (``_mm``, or ``_px`` without a spacing; the other unit None), vcr_percent,
    wedge, biconcave, crush, confidence, genant_grade, deformity, points ({station: [row, col]}) and flags; absent
    values are None.
    """
    ds = path if isinstance(path, Dataset) else pydicom.dcmread(str(path))
    imaging = (_children(ds, _IMAGING) or [Dataset()])[0]
    evaluations = (_children(ds, _EVALUATIONS) or [Dataset()])[0]
    said = [_code(c.ConceptCodeSequence) for c in _children(evaluations, _UNITS)]
    unit = "px" if _key(_UNIT_WORDS["px"]) in said else "mm"
    flags = [_code(c.ConceptCodeSequence)[1] for c in _children(evaluations, _FLAG)]
    groups = _children(imaging, _GROUP)
    return {"units": unit, "flags": flags, "vertebrae": [_read_group(g) for g in groups]}


def morphometry_from_sr(path: str | Path | Dataset, spacing_mm: tuple[float, float] | None = None):
    """Return a SpineMorph SR as a ``Morphometry`` (to show, edit and measure again); ``spacing_mm`` is the source
    image's measurement spacing, used when the SR's heights are in mm."""
    from spinemorph.measure.records import Morphometry

    data = read_morphometry_sr(path)
    data["spacing_mm"] = list(spacing_mm) if spacing_mm and data["units"] == "mm" else None
    return Morphometry.from_dict({**data, "facing_source": "file"})


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
