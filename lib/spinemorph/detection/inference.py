"""Detect compression fractures on one radiograph: detections, an instance labelmap, their grades, a verdict.

The radiograph goes through the detector's own preprocessing; boxes come back to the input's pixel grid
through the padding geometry, and each kept mask is pasted onto that grid by bilinear sampling of its 28×28
probabilities. At most one detection is kept per level (the best), at ``threshold`` or above; the masks form
a labelmap in VerSe codes. ``spinemorph.measure`` grades each mask (Genant) among its neighbours: the other
bodies come from the detector's per-level segmentation head, so the crush index (height against the
neighbours') counts as it does for a segmented spine. Without that head a mask is graded alone, from its
wedge and biconcave indices only (flags ``no_upper_neighbour`` / ``no_lower_neighbour``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from spinemorph.detection.model import DetectorSpec, VcfMaskRCNN
from spinemorph.levels import codes_in, level_name
from spinemorph.measure import Morphometry, measure
from spinemorph.networks import class_to_code
from spinemorph.postprocess import consistent_levels
from spinemorph.transforms import PadGeometry, invert_pad, preprocess

__all__ = ["Detection", "DetectionResult", "detect", "to_input_grid", "paste_mask"]


@dataclass
class Detection:
    """One detected fracture: level, score, box (row0, col0, row1, col1 in input pixels) and measured grade."""

    level: str
    code: int
    score: float
    box: list[float]
    genant_grade: int | None = None
    deformity: str | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class DetectionResult:
    """Everything ``detect`` found: the kept detections, every scored candidate, the labelmap and the verdict."""

    detections: list[Detection]
    candidates: list[Detection]  # every detection above the model's score floor, for AP and PR curves
    labels: np.ndarray  # (H, W) VerSe codes of the kept detections, on the input grid
    verdict: dict
    morphometry: Morphometry | None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (without the labelmap)."""
        return {"detections": [asdict(d) for d in self.detections], "verdict": self.verdict,
                "morphometry": self.morphometry.to_dict() if self.morphometry else None}


def to_input_grid(boxes: torch.Tensor, geometry: PadGeometry) -> np.ndarray:
    """Return boxes (N, 4) from the padded square back on the input's (H, W) pixel grid."""
    g = geometry
    scale = np.array([g.shape[0] / g.resized[0], g.shape[1] / g.resized[1]] * 2)
    offset = np.array([g.top, g.left] * 2, float)
    out = (boxes.detach().cpu().numpy().reshape(-1, 4) - offset) * scale
    return np.clip(out, 0, np.array([g.shape[0], g.shape[1]] * 2, float))


def paste_mask(probability: torch.Tensor, box, shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray]:
    """Return where a (m, m) mask probability over ``box`` lands on an image of ``shape``: rows, cols and the mask."""
    r0, c0, r1, c1 = (float(v) for v in box)
    rows = slice(max(int(np.floor(r0)), 0), min(int(np.ceil(r1)), shape[0]))
    cols = slice(max(int(np.floor(c0)), 0), min(int(np.ceil(c1)), shape[1]))
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return rows, cols, np.zeros((0, 0), bool)
    r = (torch.arange(rows.start, rows.stop, dtype=torch.float32) + 0.5 - r0) / max(r1 - r0, 1e-6) * 2 - 1
    c = (torch.arange(cols.start, cols.stop, dtype=torch.float32) + 0.5 - c0) / max(c1 - c0, 1e-6) * 2 - 1
    grid = torch.stack(torch.meshgrid(c, r, indexing="xy"), dim=-1)[None]  # (1, h, w, 2): x = column, y = row
    sampled = F.grid_sample(probability.float().cpu()[None, None], grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)[0, 0]
    return rows, cols, (sampled >= 0.5).numpy()


def _candidates(raw: dict, spec: DetectorSpec, geometry: PadGeometry) -> list[Detection]:
    boxes = to_input_grid(raw["boxes"], geometry)
    out = []
    for box, score, cls in zip(boxes, raw["scores"].tolist(), raw["classes"].tolist(), strict=True):
        code = spec.codes[int(cls) - 1]
        out.append(Detection(level_name(code), code, round(float(score), 5), [round(float(v), 2) for v in box]))
    return out


@torch.no_grad()
def detect(pixels: np.ndarray, net: VcfMaskRCNN, spec: DetectorSpec, spacing=None, facing: str | None = None,
           threshold: float = 0.5, device: str | torch.device = "cpu", scores_only: bool = False,
           normalised: np.ndarray | None = None) -> DetectionResult:
    """Return the fractures found on an (H, W) radiograph, with an instance labelmap on its grid and a verdict.

    ``scores_only``: the candidates and the verdict alone, for a caller that reads only the scores (the fusion with
    the segmentation's morphometry): no mask is pasted or graded, ``labels`` stays empty and ``morphometry`` None.
    ``normalised``: ``spinemorph.refine.crops.normalised(pixels)`` when the caller has it.
    """
    times = {}
    start = time.perf_counter()
    x, geometry = preprocess(pixels if normalised is None else normalised, spec.preprocessing, normalised is not None)
    times["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    raw = {k: v.cpu() for k, v in net.eval()(x[None].to(device), masks=not scores_only)[0].items()}
    times["network_s"] = time.perf_counter() - start
    start = time.perf_counter()
    candidates = _candidates(raw, spec, geometry)
    best: dict[int, int] = {}
    for i, d in enumerate(candidates):  # candidates come best first: keep each level's first at the threshold
        if d.score >= threshold and d.code not in best:
            best[d.code] = i
    kept = sorted(best.values(), key=lambda i: candidates[i].score)  # the best one paints last, on top
    labels = np.zeros(geometry.shape, np.uint8)
    for i in [] if scores_only else kept:
        rows, cols, mask = paste_mask(raw["masks"][i], candidates[i].box, geometry.shape)
        labels[rows, cols][mask] = candidates[i].code
    times["paste_s"] = time.perf_counter() - start
    start = time.perf_counter()
    detections = [candidates[i] for i in sorted(kept, key=lambda i: -candidates[i].score)]
    morphometry = _graded(labels, raw.get("semantic"), geometry, spacing, facing) if kept and not scores_only else None
    _grade(detections, morphometry)
    times["morphometry_s"] = time.perf_counter() - start
    verdict = {"fracture": bool(detections), "levels": [d.level for d in detections],
               "max_score": max((d.score for d in candidates), default=0.0), "threshold": threshold}
    return DetectionResult(detections, candidates, labels, verdict, morphometry, times)


def _graded(labels: np.ndarray, semantic: torch.Tensor | None, geometry: PadGeometry, spacing,
            facing: str | None) -> Morphometry:
    """Return the morphometry of the detected masks, measured among the semantic head's other bodies."""
    context = labels
    detected = set(codes_in(labels))
    if semantic is not None:
        levels = invert_pad(semantic[None].float(), geometry, "nearest")[0].numpy().astype(np.int64)
        others = consistent_levels(class_to_code(levels, "levels"))
        for code in codes_in(others):  # a detected body is its mask alone
            body = others == code
            if code in detected or (labels[body] > 0).mean() > 0.3:
                others[body] = 0
        context = np.where(labels > 0, labels, others)
    full = measure(context, spacing, facing)
    return Morphometry([r for r in full.vertebrae if r.code in detected], full.facing, full.facing_source,
                       full.spacing_mm, full.flags, full.facing_confidence)


def _grade(detections: list[Detection], morphometry: Morphometry | None) -> None:
    if morphometry is None:
        return
    records = morphometry.by_level()
    for d in detections:
        rec = records.get(d.level)
        if rec is None:
            d.flags.append("mask_lost")
            continue
        d.genant_grade, d.deformity, d.flags = rec.genant_grade, rec.deformity, list(rec.flags)
