"""The whole hierarchical pipeline on one radiograph: centres, levels, boxes, patches, level set, one labelmap.

Pose-net sees the image fitted into its frame; its centres go back to the image's pixels, where equation (6)
boxes them. Patches are cut from the full-resolution image, segmented, optionally refined by the level set, and
pasted back: where two patches claim a pixel, the more confident one wins. The labelmap holds VerSe codes on the
input's own grid and is measured with ``spinemorph.measure``. A fracture grade stands only when M-net, shown each
patch's mirror image, draws a body that is graded a fracture too (``views_disagree``, the gate stage 2 of the
default model applies; see bench/calibrate_hierarchical.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from spinemorph.hierarchical.boxes import Box, crop_patch, make_boxes, paste_patch
from spinemorph.hierarchical.centres import Candidate, find_centres, name_centres
from spinemorph.hierarchical.inputs import FitGeometry, full_resolution, pose_input
from spinemorph.hierarchical.levelset import LevelSetOptions, refine_mask
from spinemorph.hierarchical.model import HierarchicalModel
from spinemorph.levels import TRAINED_LEVELS, fill_holes, level_name
from spinemorph.measure import Morphometry, measure_radiograph
from spinemorph.measure import measure as measure_labels
from spinemorph.measure.gates import gate_views

__all__ = ["HierarchicalOptions", "HierarchicalResult", "locate", "segment_boxes", "mirrored_view", "refine_scores",
           "paste_back", "run_hierarchical"]

_L5_COLUMN = TRAINED_LEVELS.index(24)


@dataclass(frozen=True)
class HierarchicalOptions:
    """How to run the pipeline.

    Args:
        view: "lumbar": the paper's five lowest centres as L1-L5; "auto": every accepted centre, named.
        anchor: the level of the lowest centre, when known (e.g. "L5"); None: from the model.
        level_set: refine each patch's mask with the level set.
        window: the score window at the paper's 512-row input; scaled to the model's frame.
        score_ratio: candidates under this share of the mean score are dropped.
        views: a fracture grade needs M-net's outline of each patch's mirror image (flipped back, refined alike)
            to grade the level a fracture too (``views_disagree``, as stage 2 of the default model gates its grades).
    """

    view: str = "auto"
    anchor: str | None = None
    level_set: bool = True
    window: int = 31
    score_ratio: float = 0.5
    views: bool = True
    levelset: LevelSetOptions = field(default_factory=LevelSetOptions)


@dataclass
class HierarchicalResult:
    """The labelmap (VerSe codes, input grid), centres, boxes, flags, morphometry and timings of one image."""

    labels: np.ndarray
    centres: list[dict]
    boxes: list[Box]
    flags: list[str]
    morphometry: Morphometry | None = None
    rejected: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (without the labelmap)."""
        return {"centres": self.centres, "rejected_candidates": self.rejected,
                "boxes": [{"level": c["level"], **b.to_dict()} for c, b in zip(self.centres, self.boxes, strict=False)],
                "flags": self.flags, "morphometry": self.morphometry.to_dict() if self.morphometry else None,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


def _votes(maps: np.ndarray, l5: np.ndarray, found: list[Candidate]) -> np.ndarray:
    """Return (n, 17) level votes: per-level maps (if any) and the L5 map, max over 3×3 at each centre."""
    votes = np.zeros((len(found), len(TRAINED_LEVELS)))
    grown_l5 = ndimage.maximum_filter(l5, 3)
    grown = ndimage.maximum_filter(maps[1:], (1, 3, 3)) if len(maps) > 1 else None
    for i, c in enumerate(found):
        r, col = int(round(c.row)), int(round(c.col))
        if grown is not None:
            votes[i] = grown[:, r, col]
        votes[i, _L5_COLUMN] = max(votes[i, _L5_COLUMN], grown_l5[r, col])
    return np.clip(votes, 0, None)


def _on_image(candidate: Candidate, geometry: FitGeometry) -> bool:
    r, c = geometry.to_image([(candidate.row, candidate.col)])[0]
    return -0.5 <= r <= geometry.shape[0] - 0.5 and -0.5 <= c <= geometry.shape[1] - 0.5


@torch.no_grad()
def locate(pixels: np.ndarray, model: HierarchicalModel, options: HierarchicalOptions):
    """Return (centres (n, 2) in image pixels, VerSe codes, candidates kept, rejected candidates, flags, geometry).

    Only named centres are returned: the paper's five in a lumbar view, every accepted one otherwise.
    """
    x, geometry = pose_input(pixels, model.pose_spec.preprocessing)
    out = model.posenet(x[None].to(model.device), all_outputs=True)
    maps, l5 = out["centres"][0].float().cpu().numpy(), out["l5"][0, 0].float().cpu().numpy()
    window = max(3, int(round(options.window * geometry.frame[0] / 512)) | 1)
    found, rejected = find_centres(maps[0], window, options.score_ratio)
    found = [c for c in found if _on_image(c, geometry)]  # a maximum in the padding is no vertebra
    codes, flags = name_centres([c.row for c in found], _votes(maps, l5, found) if found else None, options.view,
                                options.anchor)
    kept = [(c, code) for c, code in zip(found, codes, strict=True) if code is not None]
    points = geometry.to_image([(c.row, c.col) for c, _ in kept]) if kept else np.zeros((0, 2))
    return points, [code for _, code in kept], [c for c, _ in kept], rejected, flags, geometry


@torch.no_grad()
def segment_boxes(full: np.ndarray, boxes: list[Box], model: HierarchicalModel) -> tuple[np.ndarray, np.ndarray]:
    """Return the boxes' patches (N, P, P) of the full-resolution image and the patch network's body probability."""
    size = model.patch_spec.preprocessing.size
    if not boxes:
        return np.zeros((0, size, size), np.float32), np.zeros((0, size, size), np.float32)
    patches = np.stack([crop_patch(full, b, size) for b in boxes])
    return patches, _body_probability(patches, model)


def _body_probability(patches: np.ndarray, model: HierarchicalModel) -> np.ndarray:
    logits = model.patchnet(torch.as_tensor(np.ascontiguousarray(patches))[:, None].to(model.device))
    return torch.sigmoid(logits[:, 0].float()).cpu().numpy()


@torch.no_grad()
def mirrored_view(patches: np.ndarray, model: HierarchicalModel) -> np.ndarray:
    """Return the patch network's body probability of each patch's mirror image, flipped back onto the patch."""
    return _body_probability(patches[:, :, ::-1], model)[:, :, ::-1] if len(patches) else patches


def refine_scores(patches: np.ndarray, probs: np.ndarray, options: LevelSetOptions) -> list[np.ndarray]:
    """Return each patch's level-set score: a 1-px ramp across the refined contour (above 0.5 inside)."""
    return [np.clip(0.5 - refine_mask(x, y, options) / 2.0, 0.0, 1.0) for x, y in zip(patches, probs, strict=True)]


def paste_back(scores: list[np.ndarray], boxes: list[Box], codes: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Return one labelmap: each box's score above 0.5 pasted with its code, the most confident patch winning."""
    labels, best = np.zeros(shape, np.uint8), np.zeros(shape, np.float32)
    windows: dict[int, list[int]] = {}  # code -> [r0, r1, c0, c1]: every pixel it may hold lies in its boxes
    for score, box, code in zip(scores, boxes, codes, strict=True):
        full, where = paste_patch(score, box, shape)
        win = (full > 0.5) & (full > best[where])
        labels[where][win], best[where][win] = code, full[win]
        w = windows.setdefault(code, [where[0].start, where[0].stop, where[1].start, where[1].stop])
        w[:] = [min(w[0], where[0].start), max(w[1], where[0].stop), min(w[2], where[1].start),
                max(w[3], where[1].stop)]
    for code, (r0, r1, c0, c1) in windows.items():  # one component per level, holes filled: inside its window
        sub = labels[r0:r1, c0:c1]  # a view: the same result as on the whole image, at a fraction of the cost
        comps, n = ndimage.label(sub == code)
        if n == 0:
            continue
        keep = 1
        if n > 1:
            sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
            keep = 1 + int(np.argmax(sizes))
            sub[(comps > 0) & (comps != keep)] = 0
        # A hole lies inside its piece's own box: fill there, not over the whole (1.5× wider) window.
        tight = sub[ndimage.find_objects(comps)[keep - 1]]
        tight[fill_holes(tight == code) & (tight == 0)] = code
    return labels


def _centre_record(point, code: int, candidate: Candidate, image) -> dict:
    rec = {"level": level_name(code), "code": int(code), "center_px": [round(float(v), 2) for v in point],
           "score": round(candidate.score, 4), "peak": round(candidate.peak, 4)}
    if image.spacing_mm:
        rec["center_mm"] = [round(float(point[i]) * image.spacing_mm[i], 2) for i in (0, 1)]
    rec["center_ras"] = [round(float(v), 3) for v in (image.affine @ np.array([point[0], point[1], 0.0, 1.0]))[:3]]
    return rec


def _rejected_record(candidate: Candidate, geometry: FitGeometry) -> dict:
    point = geometry.to_image([(candidate.row, candidate.col)])[0]
    return {"center_px": [round(float(v), 2) for v in point], "score": round(candidate.score, 4)}


def _gate_views(result: Morphometry, image, patches: np.ndarray, boxes: list[Box], codes: list[int],
                model: HierarchicalModel, options: HierarchicalOptions) -> bool:
    """Withdraw the fracture grades that the mirror view does not repeat; return whether there was one to check.

    Only the called bodies and the two on either side are drawn again (all that a grade and its gates read), and
    measured with the facing the whole film was measured with."""
    records = result.vertebrae
    called = [i for i, r in enumerate(records) if r.genant_grade]
    if not called:
        return False
    near = {r.code for i in called for r in records[max(i - 2, 0):i + 3]}
    keep = [i for i, code in enumerate(codes) if code in near]
    probs = mirrored_view(patches[keep], model)
    scores = refine_scores(patches[keep], probs, options.levelset) if options.level_set else list(probs)
    labels = paste_back(scores, [boxes[i] for i in keep], [codes[i] for i in keep], image.shape)
    view = measure_labels(labels, image.spacing_mm, result.facing, facing_source=result.facing_source,
                          facing_confidence=result.facing_confidence, level_naming=result.level_naming)
    gate_views(records, [view])
    return True


def run_hierarchical(image, model: HierarchicalModel, options: HierarchicalOptions = HierarchicalOptions(),
                     measure: bool = True) -> HierarchicalResult:
    """Return the pipeline's result on a ``spinemorph.io.Radiograph``: labelmap, centres, boxes and morphometry."""
    times = {}
    start = time.perf_counter()
    points, codes, kept, rejected, flags, geometry = locate(image.pixels, model, options)
    times["posenet_s"] = time.perf_counter() - start
    start = time.perf_counter()
    boxes = make_boxes(points) if len(points) >= 2 else []
    full = full_resolution(image.pixels, model.patch_spec.preprocessing)
    patches, scores = segment_boxes(full, boxes, model)
    times["patches_s"] = time.perf_counter() - start
    if options.level_set and boxes:
        start = time.perf_counter()
        scores = refine_scores(patches, scores, options.levelset)
        times["level_set_s"] = time.perf_counter() - start
    start = time.perf_counter()
    labels = paste_back(scores, boxes, codes if boxes else [], image.shape)
    times["paste_s"] = time.perf_counter() - start
    result = HierarchicalResult(labels, [_centre_record(p, c, k, image) for p, c, k in zip(points, codes, kept,
                                                                                            strict=True)],
                                boxes, flags, rejected=[_rejected_record(c, geometry) for c in rejected])
    if measure:
        start = time.perf_counter()
        naming = {"anchor": options.anchor, "level_uncertain": "level_uncertain" in flags}
        result.morphometry = measure_radiograph(labels, image, level_naming=naming)
        times["morphometry_s"] = time.perf_counter() - start
        if options.views:
            start = time.perf_counter()
            if _gate_views(result.morphometry, image, patches, boxes, codes, model, options):
                times["views_s"] = time.perf_counter() - start
    result.timings = {**times, "total_s": sum(times.values())}
    return result
