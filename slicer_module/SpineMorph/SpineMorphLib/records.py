"""Measurement records for the module: segments to VerSe codes, table rows, and re-grading after a point moves.

No Slicer here: the Logic turns nodes into arrays and back; this file works on arrays, names and records.
"""

from __future__ import annotations

import numpy as np

from spinemorph.levels import is_level_code, level_code, level_color, level_name
from spinemorph.measure import Morphometry, VertebraRecord
from spinemorph.measure.flags import explain
from spinemorph.measure.gates import GATE_FLAGS
from spinemorph.measure.indices import GRADED_FIELDS, NEIGHBOUR_FLAGS, grade_records, neighbours
from spinemorph.measure.references import flagged_reasons, references
from spinemorph.overlay import GRADE_COLORS, UNGRADED_COLOR

__all__ = [
    "STATIONS", "TABLE_FIELDS", "segment_code", "segment_style", "labels_from_export", "table_headers", "table_rows",
    "row_colors", "review_order", "set_station", "regrade", "flag_words",
]

#: The three height stations: the six points are their superior and inferior ends.
STATIONS: dict[str, str] = {"anterior": "Ha", "middle": "Hm", "posterior": "Hp"}
#: Record fields of the results table, in order (heights in the result's unit; confidence: the network's mean body
#: probability over the segment, blank when the labels did not come from the network).
TABLE_FIELDS: tuple[str, ...] = (
    "level", "Ha", "Hm", "Hp", "wedge", "biconcave", "crush", "vcr_percent", "genant_grade", "deformity",
    "confidence", "flags",
)
_HEADERS = {"level": "Level", "wedge": "Wedge", "biconcave": "Biconcave", "crush": "Crush", "vcr_percent": "VCR %",
            "genant_grade": "Genant grade", "deformity": "Type", "confidence": "Confidence", "flags": "Flags"}


def segment_code(name: str, label_value: int | None = None) -> int | None:
    """Return the VerSe code of a segment named by level ("L1", "20"), else its label value if that is a code."""
    try:
        return level_code(name)
    except ValueError:
        pass
    if label_value is not None and is_level_code(label_value):
        return int(label_value)
    return None


def segment_style(code: int) -> tuple[str, tuple[float, float, float]]:
    """Return a level's segment name and its fixed colour as RGB in 0-1."""
    return level_name(code), tuple(v / 255.0 for v in level_color(code))


def labels_from_export(exported, codes: list[int | None]) -> np.ndarray:
    """Return a labelmap of VerSe codes from an export where segment ``i`` has value ``i + 1``.

    Segments without a level (``None``) are vertebral bodies of unknown level: when no segment has a level, the
    result is a 0/1 body mask that ``spinemorph.measure`` splits and names V1..Vn; mixed with named segments, they
    are an error, since a body cannot be both named and anonymous.
    """
    exported = np.asarray(exported)
    named = [c for c in codes if c is not None]
    if named and len(named) != len(codes):
        raise ValueError("Some segments are named by level and some are not: name every segment by its level "
                         "(T12, L1, ...) or none of them.")
    lut = np.zeros(len(codes) + 1, np.uint8)
    for i, code in enumerate(codes):
        lut[i + 1] = code if code is not None else 1
    if exported.size and int(exported.max()) > len(codes):
        raise ValueError(f"The export holds value {int(exported.max())} but only {len(codes)} segments.")
    return lut[exported.astype(np.intp)]


def table_headers(unit: str) -> list[str]:
    """Return the results table's column titles, heights in ``unit``."""
    return [f"{f} ({unit})" if f in ("Ha", "Hm", "Hp") else _HEADERS[f] for f in TABLE_FIELDS]


def _cell(field: str, value) -> str:
    if value is None or value == "":
        return ""
    if field == "vcr_percent":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table_rows(result: Morphometry) -> list[list[str]]:
    """Return one row of text cells (TABLE_FIELDS) per vertebra."""
    rows = []
    for rec in result.vertebrae:
        row = {**rec.row(result.unit), "confidence": rec.confidence}
        rows.append([_cell(f, row.get(f)) for f in TABLE_FIELDS])
    return rows


def flag_words(cell: str) -> str:
    """Return a Flags cell of ``table_rows`` in words (``spinemorph.measure.flags.explain``): its tooltip."""
    return explain(cell.split(";")) if cell else ""


def review_order(result: Morphometry) -> list[int]:
    """Return the vertebrae's indices in the order to review them: the least sure first (lowest confidence), then
    those without a confidence, each group in spine order."""
    sure = [(rec.confidence is None, rec.confidence or 0.0, i) for i, rec in enumerate(result.vertebrae)]
    return [i for *_, i in sorted(sure)]


def row_colors(result: Morphometry) -> list[tuple[int, int, int]]:
    """Return one RGB colour (0-255) per vertebra: its Genant grade's colour, grey when it has no grade."""
    return [GRADE_COLORS.get(rec.genant_grade, UNGRADED_COLOR) for rec in result.vertebrae]


def set_station(record: VertebraRecord, station: str, superior, inferior, spacing) -> None:
    """Move one station's two points to (row, column) pixels and recompute its height in px (and mm)."""
    if station not in STATIONS:
        raise ValueError(f"Unknown station {station!r}: use one of {', '.join(STATIONS)}.")
    top, bottom = np.asarray(superior, float), np.asarray(inferior, float)
    record.points[f"superior_{station}"] = [round(float(v), 4) for v in top]
    record.points[f"inferior_{station}"] = [round(float(v), 4) for v in bottom]
    # A segment the gates called no body had its heights withheld: placing one of its points makes all six the
    # annotator's, and all three heights come back from them.
    moved = list(STATIONS) if "heights_withheld" in record.flags else [station]
    # Points the annotator placed are the annotator's measurement: the gates that judged the segment no longer apply.
    record.flags = [f for f in record.flags if f not in ("low_confidence", "heights_withheld", *GATE_FLAGS)]
    if "placed_by_annotator" not in record.flags:
        record.flags.append("placed_by_annotator")
    scale = None if spacing is None else np.asarray(spacing, float)
    for name in moved:
        top, bottom = (np.asarray(record.points[f"{end}_{name}"], float) for end in ("superior", "inferior"))
        setattr(record, f"{STATIONS[name]}_px", float(np.linalg.norm(top - bottom)))
        if scale is not None:
            setattr(record, f"{STATIONS[name]}_mm", float(np.linalg.norm((top - bottom) * scale)))
    if scale is not None:
        record.points_mm = {k: [round(v[0] * scale[0], 4), round(v[1] * scale[1], 4)]
                            for k, v in record.points.items()}


def regrade(result: Morphometry) -> None:
    """Recompute every record's indices, VCR and Genant grade in place from its current heights; a record the gates
    refused (``low_confidence``, ``facing_uncertain``) stays ungraded, and one refused on its own is no neighbour's
    VCR reference unless ``measure`` would take it (``references``), so an unedited result re-grades as measured."""
    for rec in result.vertebrae:
        for name in GRADED_FIELDS:
            setattr(rec, name, None)
        rec.flags = [f for f in rec.flags if f not in NEIGHBOUR_FLAGS]  # grade_records adds them again
    codes = [rec.code for rec in result.vertebrae]
    centres = [np.asarray(rec.center_px, float) for rec in result.vertebrae]
    reasons = flagged_reasons(result.vertebrae)
    grade_records(result.vertebrae, references(result.vertebrae, neighbours(codes, centres), reasons), result.unit)
    for rec in result.vertebrae:
        if "low_confidence" in rec.flags or "facing_uncertain" in rec.flags:
            rec.genant_grade, rec.deformity = None, None
