"""The codes SpineMorph's DICOM results use, and what the SEG and SR writers share (see dicom_results)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.coding import Code
from pydicom.tag import Tag

from spinemorph.io.radiograph import checked_spacing
from spinemorph.levels import LEVELS

__all__ = ["SCHEME", "STATIONS", "level_concept", "read_source", "measurement_spacing", "declare_scheme"]

SCHEME = "99SPMORPH"
#: The six points, in the order the SR's closed polyline visits them (and then returns to the first).
STATIONS = ("superior_anterior", "superior_middle", "superior_posterior",
            "inferior_posterior", "inferior_middle", "inferior_anterior")

ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")  # DICOM CID 7150
FRAME_OF_REFERENCE = Tag("FrameOfReferenceUID")
AI = Code("123110", "DCM", "Artificial Intelligence")  # DICOM CID 7162
VERTEBRA_SCT = {  # DICOM CID 7603 "Vertebra"; S1 is SNOMED CT's "First sacral vertebra"
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003", "C6": "36054005",
    "C7": "87391001", "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006", "T5": "56401006",
    "T6": "45296009", "T7": "62487009", "T8": "11068009", "T9": "82687006", "T10": "7610001", "T11": "12989004",
    "T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
    "S1": "65985001",
}
NUMBERS = {  # JSON field (heights without their unit) -> concept name
    "Ha": Code("HA", SCHEME, "Anterior vertebral body height"),
    "Hm": Code("HM", SCHEME, "Middle vertebral body height"),
    "Hp": Code("HP", SCHEME, "Posterior vertebral body height"),
    "vcr_percent": Code("VCR", SCHEME, "Vertebral compression ratio"),
    "wedge": Code("WEDGE", SCHEME, "Wedge index (Ha/Hp)"),
    "biconcave": Code("BICONCAVE", SCHEME, "Biconcavity index (Hm/Hp)"),
    "crush": Code("CRUSH", SCHEME, "Crush index (Hp over the neighbours' Hp)"),
    "confidence": Code("CONFIDENCE", SCHEME, "Mean body probability over the segment"),
}
FIELDS = {code.value: field for field, code in NUMBERS.items()}
HEIGHTS = ("Ha", "Hm", "Hp")
LENGTH = {"mm": Code("mm", "UCUM", "millimeter"), "px": Code("{pixels}", "UCUM", "pixels")}
UNIT_OF = {code.value: unit for unit, code in LENGTH.items()}
UNIT_WORDS = {"mm": Code("MM", SCHEME, "millimetres"), "px": Code("PIXELS", SCHEME, "pixels (no spacing)")}
UNIT = {"vcr_percent": Code("%", "UCUM", "Percent"), "confidence": Code("1", "UCUM", "no units"),
         **dict.fromkeys(("wedge", "biconcave", "crush"), Code("{ratio}", "UCUM", "ratio"))}
GRADE = Code("GENANT", SCHEME, "Genant semiquantitative grade")
GRADE_WORDS = ("normal", "mild", "moderate", "severe")
DEFORMITY = Code("DEFORMITY", SCHEME, "Vertebral deformity type")
FLAG = Code("FLAG", SCHEME, "SpineMorph flag")
UNITS = Code("UNITS", SCHEME, "Unit of lengths and points")
TRACKING = Code("112039", "DCM", "Tracking Identifier")
GROUP = Code("125007", "DCM", "Measurement Group")
IMAGING = Code("126010", "DCM", "Imaging Measurements")
EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500's report-level evaluations


def level_concept(level: str) -> Code:
    """Return the coded concept of a level ("L1"): SNOMED CT's where one exists, else SpineMorph's own."""
    name = level.strip().upper()
    if name in VERTEBRA_SCT:
        return Code(VERTEBRA_SCT[name], "SCT", "First sacral vertebra" if name == "S1" else f"{name} vertebra")
    if name in LEVELS:
        return Code(name, SCHEME, f"{name} vertebra (transitional)")
    raise ValueError(f"{level!r} is not a vertebral level (C1-C7, T1-T13, L1-L6, S1).")


def read_source(source: str | Path | Dataset) -> Dataset:
    ds = source if isinstance(source, Dataset) else pydicom.dcmread(str(source))
    if "SOPInstanceUID" not in ds or "Rows" not in ds:
        raise ValueError("The source must be the DICOM radiograph the results came from (DX, CR...), not another file.")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError(f"The source has {ds.NumberOfFrames} frames; SpineMorph results refer to one 2D radiograph.")
    return ds


def measurement_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Return the spacing ``spinemorph.io.read_dicom`` measures with: PixelSpacing, else ImagerPixelSpacing."""
    warnings: list[str] = []
    return (checked_spacing(ds.get("PixelSpacing"), "PixelSpacing", warnings)
            or checked_spacing(ds.get("ImagerPixelSpacing"), "ImagerPixelSpacing", warnings))


def declare_scheme(ds: Dataset) -> None:
    item = Dataset()
    item.CodingSchemeDesignator, item.CodingSchemeName = SCHEME, "SpineMorph vertebral morphometry"
    item.CodingSchemeResponsibleOrganization = "SpineMorph"
    ds.CodingSchemeIdentificationSequence = Sequence([item])
