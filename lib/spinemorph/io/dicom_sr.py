"""The morphometry as a TID 1500 measurement report (SR), and the SR read back (see dicom_results for the codes)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from spinemorph import __version__
from spinemorph.io.dicom_codes import (
    ANATOMICAL_STRUCTURE,
    DEFORMITY,
    EVALUATIONS,
    FIELDS,
    FLAG,
    GRADE,
    GRADE_WORDS,
    GROUP,
    HEIGHTS,
    IMAGING,
    LENGTH,
    NUMBERS,
    SCHEME,
    STATIONS,
    TRACKING,
    UNIT,
    UNIT_OF,
    UNIT_WORDS,
    UNITS,
    declare_scheme,
    level_concept,
    read_source,
)
from spinemorph.levels import LEVELS
from spinemorph.measure.flags import naming_caveat

__all__ = ["make_sr", "write_sr", "read_morphometry_sr", "morphometry_from_sr", "finding_sentence"]

#: The report-level sentence of what the image shows (DCM 121071 "Finding").
FINDING = Code("121071", "DCM", "Finding")

log = logging.getLogger(__name__)


def _group(hd, ds: Dataset, rec: dict, unit: str):
    """Return the TID 1410 group of one vertebra (TID 1501 when it has no six points)."""
    fields = [(h, f"{h}_{unit}", LENGTH[unit]) for h in HEIGHTS] + [(f, f, u) for f, u in UNIT.items()]
    numbers = [hd.sr.Measurement(name=NUMBERS[name], value=float(rec[field]), unit=u) for name, field, u in fields
               if rec.get(field) is not None and np.isfinite(rec[field])]
    evaluations = []
    if rec.get("genant_grade") is not None:
        grade = int(rec["genant_grade"])
        evaluations.append(hd.sr.QualitativeEvaluation(
            GRADE, Code(f"G{grade}", SCHEME, f"Genant grade {grade} ({GRADE_WORDS[grade]})")))
    if rec.get("deformity") is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(DEFORMITY, Code(rec["deformity"], SCHEME, rec["deformity"])))
    evaluations += [hd.sr.QualitativeEvaluation(FLAG, Code(f, SCHEME, f)) for f in rec.get("flags", [])]
    level = str(rec["level"])
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=level),
        "finding_type": level_concept(level) if level.upper() in LEVELS else None,
        "finding_category": ANATOMICAL_STRUCTURE,
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
    items = [hd.sr.CodeContentItem(UNITS, UNIT_WORDS[unit], contains)]
    items += [hd.sr.CodeContentItem(FLAG, Code(f, SCHEME, f), contains) for f in data.get("flags", [])]
    text = ("Heights in mm, from the source image's pixel spacing; points in pixels." if unit == "mm" else
            "The source image has no pixel spacing: heights and points are in pixels, none in mm.")
    items.append(hd.sr.TextContentItem(Code("121106", "DCM", "Comment"), text, contains))
    items.append(hd.sr.TextContentItem(FINDING, finding_sentence(data), contains))
    container = hd.sr.ContainerContentItem(EVALUATIONS, relationship_type=contains)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def finding_sentence(data: dict) -> str:
    """Return the image's finding in words, from a morphometry JSON (its ``finding``, else counted from the rows);
    with the levels each fracture may be instead when the level names are uncertain (``naming_caveat``, from the
    image's flags, which the SR keeps)."""
    finding = data.get("finding")
    if not isinstance(finding, dict):
        from spinemorph.measure.records import Morphometry

        finding = Morphometry.from_dict(data).finding
    n, found = finding["vertebrae_graded"], finding["graded_1_or_more"]
    if found:
        sentence = f"Genant grade 1 or more: {', '.join(found)} (of {n} vertebrae graded)."
        caveat = naming_caveat(data.get("flags") or [], found)
        return f"{sentence} {caveat}" if caveat else sentence
    if n:
        return f"No vertebra graded 1 or more among the {n} graded."
    return "No vertebra could be graded (see the flags): no finding."


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

    ds = read_source(source)
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
    declare_scheme(sr)
    return sr


def write_sr(path: str | Path, morphometry, source: str | Path | Dataset, **kwargs) -> Path:
    """Write ``make_sr(morphometry, source)`` to ``path`` and return the path."""
    make_sr(morphometry, source, **kwargs).save_as(str(path))
    return Path(path)


def _code(seq) -> tuple[str, str]:
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
    return str(item.CodingSchemeDesignator), str(value)


def _key(code: Code) -> tuple[str, str]:
    return code.scheme_designator, code.value


def _children(item: Dataset, name: Code) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if _code(c.ConceptNameCodeSequence) == _key(name)]


def _read_group(group: Dataset) -> dict:
    rec = {"level": None, **{f"{h}_{u}": None for h in HEIGHTS for u in LENGTH}, **dict.fromkeys(UNIT),
           "genant_grade": None, "deformity": None, "points": {}, "flags": []}
    for item in group.ContentSequence:
        name = _code(item.ConceptNameCodeSequence)
        if item.ValueType == "TEXT" and name == _key(TRACKING):
            rec["level"] = str(item.TextValue)
        elif item.ValueType == "NUM" and name[0] == SCHEME and name[1] in FIELDS:
            value = item.MeasuredValueSequence[0]
            number = float(value.FloatingPointValue if "FloatingPointValue" in value else value.NumericValue)
            field = FIELDS[name[1]]
            unit_code = _code(value.MeasurementUnitsCodeSequence)[1]
            rec[f"{field}_{UNIT_OF[unit_code]}" if field in HEIGHTS else field] = number
        elif item.ValueType == "CODE":
            value = _code(item.ConceptCodeSequence)[1]
            if name == _key(GRADE):
                rec["genant_grade"] = int(value[1:])
            elif name == _key(DEFORMITY):
                rec["deformity"] = value
            elif name == _key(FLAG):
                rec["flags"].append(value)
        elif item.ValueType == "SCOORD":
            xy = np.asarray(item.GraphicData, float).reshape(-1, 2)
            rec["points"] = {s: [round(float(y) - 0.5, 4), round(float(x) - 0.5, 4)]
                             for s, (x, y) in zip(STATIONS, xy[:6], strict=True)}
    return rec


def read_morphometry_sr(path: str | Path | Dataset) -> dict:
    """Return the morphometry in a SpineMorph SR in the JSON's field names: {"units", "flags", "vertebrae"},
    and ``finding_text``: the report's finding sentence (None in an SR written before it had one).

    Each vertebra holds level, Ha/Hm/Hp (``_mm``, or ``_px`` without a spacing; the other unit None), vcr_percent,
    wedge, biconcave, crush, confidence, genant_grade, deformity, points ({station: [row, col]}) and flags; absent
    values are None.
    """
    ds = path if isinstance(path, Dataset) else pydicom.dcmread(str(path))
    imaging = (_children(ds, IMAGING) or [Dataset()])[0]
    evaluations = (_children(ds, EVALUATIONS) or [Dataset()])[0]
    said = [_code(c.ConceptCodeSequence) for c in _children(evaluations, UNITS)]
    unit = "px" if _key(UNIT_WORDS["px"]) in said else "mm"
    flags = [_code(c.ConceptCodeSequence)[1] for c in _children(evaluations, FLAG)]
    groups = _children(imaging, GROUP)
    finding = [c.TextValue for c in _children(evaluations, FINDING)]
    return {"units": unit, "flags": flags, "finding_text": finding[0] if finding else None,
            "vertebrae": [_read_group(g) for g in groups]}


def morphometry_from_sr(path: str | Path | Dataset, spacing_mm: tuple[float, float] | None = None):
    """Return a SpineMorph SR as a ``Morphometry`` (to show, edit and measure again); ``spacing_mm`` is the source
    image's measurement spacing, used when the SR's heights are in mm."""
    from spinemorph.measure.records import Morphometry

    data = read_morphometry_sr(path)
    data["spacing_mm"] = list(spacing_mm) if spacing_mm and data["units"] == "mm" else None
    return Morphometry.from_dict({**data, "facing_source": "file"})
