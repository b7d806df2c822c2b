"""One radiograph from pixels to a graded VCR table, the same way everywhere: the CLI, the server and the benches.

segment (levels named from the sacrum when in view) → stage 2 (each body redrawn in a full-resolution crop, when the
model has a refiner and it is not switched off) → the facing (DICOM PatientOrientation when the file has it, else
the facing model, else the labelmap's own curvature, each with its confidence) → measure, with the gates that
refuse to grade an implausible body or an unsure facing; a fracture grade stands only when stage 2's crops alone
and their mirror images alone grade a fracture too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spinemorph.inference.model import ModelSpec
from spinemorph.inference.segment import Segmentation, segment_passes
from spinemorph.io import Radiograph
from spinemorph.levels import codes_in
from spinemorph.measure import LANDMARK_HEIGHTS, Morphometry, measure
from spinemorph.measure.field import exposed_field
from spinemorph.measure.gates import DEFAULT_GATES, Gates, gate_views
from spinemorph.postprocess.split import split_merged
from spinemorph.refine.crops import normalised
from spinemorph.refine.stage import refine
from spinemorph.transforms import preprocess

__all__ = ["Analysis", "analyse", "HEIGHTS", "facing_of", "load_facing", "load_refiner", "load_landmarks",
           "load_detector_beside", "FACING_FILE", "Networks", "load_networks"]

#: Where ``analyse`` takes stage 2's heights from (the server's ``heights``, ``spinemorph segment --heights``).
HEIGHTS = (*LANDMARK_HEIGHTS, "outline")

#: A facing model: pixels -> (facing "left"/"right", confidence in [0.5, 1]).
FacingModel = Callable[..., tuple[str, float]]
#: Where a bundle keeps its facing model, beside models/model.pt.
FACING_FILE = "facing.pt"


def load_facing(model_path: str | Path) -> FacingModel | None:
    """Return the facing model shipped beside a segmentation model (a bundle's models/facing.pt), or None."""
    path = Path(model_path)
    path = path / "models" / FACING_FILE if path.is_dir() else path.with_name(FACING_FILE)
    if not path.is_file():
        return None
    from spinemorph.facing import load_facing_model, predict_facing

    net, spec = load_facing_model(path)

    def predict(pixels) -> tuple[str, float]:
        guess = predict_facing(pixels, net, spec)
        return guess.facing, guess.confidence

    return predict


@dataclass
class Analysis:
    """A radiograph's labelmap (input grid, VerSe codes; stage 2's when it ran), stage 1's segmentation and the
    morphometry."""

    labels: object
    segmentation: Segmentation
    morphometry: Morphometry
    timings: dict[str, float]
    fracture_calls: list[dict] | None = None  # the measured and the detector's opinions, and the combined call
    agreement: dict[int, float] | None = None  # per level code: IoU of the stage-1 and stage-2 outlines


def load_refiner(model_path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec] | None:
    """Return the stage-2 network shipped beside a segmentation model (a bundle's models/refine.pt), or None."""
    from spinemorph.inference.model import load_model
    from spinemorph.refine import REFINER_FILE

    path = Path(model_path)
    path = path / "models" / REFINER_FILE if path.is_dir() else path.with_name(REFINER_FILE)
    return load_model(path, device) if path.is_file() else None


def load_landmarks(model_path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec] | None:
    """Return the landmark network shipped beside a segmentation model (a bundle's models/landmarks.pt), or None."""
    from spinemorph.refine.landmarks import load_landmarks as load

    return load(model_path, device)


def load_detector_beside(model_path: str | Path, device: str | torch.device = "cpu") -> tuple | None:
    """Return the fracture detector shipped beside a segmentation bundle (sample-apps/spinemorph_vcf_detection), or
    None."""
    path = Path(model_path).resolve()
    folder = path if path.is_dir() else path.parent.parent if path.parent.name == "models" else path.parent
    bundle = folder.parent / "spinemorph_vcf_detection"
    if not (bundle / "configs" / "inference.json").is_file():
        return None
    from spinemorph.detection import load_detector

    return load_detector(bundle, device)


@dataclass
class Networks:
    """A bundle's networks as ``analyse`` takes them: stage 1 and its spec, the facing model, stage 2, the landmark
    network and the detector (None where absent or not wanted)."""

    net: nn.Module
    spec: ModelSpec
    facing: FacingModel | None
    refiner: tuple[nn.Module, ModelSpec] | None
    landmarks: tuple[nn.Module, ModelSpec] | None
    detector: tuple | None


def load_networks(model_path: str | Path, device: str | torch.device = "cpu", stage2: bool = True,
                  heights: str = "mean", detector: bool = True, runtime: str = "torch") -> Networks:
    """Return the networks of a segmentation model and those shipped beside it, as the served default runs them:
    stage 2 unless ``stage2`` is False, the landmark network unless ``heights`` is "outline", the detector unless
    ``detector`` is False; stage 1, stage 2 and the landmarks on ``runtime`` (``spinemorph.inference.runtime``)."""
    from spinemorph.inference.model import load_model
    from spinemorph.inference.runtime import compiled_model

    net, spec = compiled_model(load_model(model_path, device), runtime, device)
    refiner = compiled_model(load_refiner(model_path, device) if stage2 else None, runtime, device)
    landmarks = load_landmarks(model_path, device) if stage2 and heights != "outline" else None
    return Networks(net, spec, load_facing(model_path), refiner, compiled_model(landmarks, runtime, device),
                    load_detector_beside(model_path, device) if detector else None)


def facing_of(image: Radiograph, facing_model: FacingModel | None = None) -> tuple[str | None, str, float | None]:
    """Return (facing, source, confidence): the file's own facing when it has one, else the facing model's."""
    if image.facing is not None:
        return image.facing, "PatientOrientation" if image.meta.get("format") == "dicom" else "file", None
    if facing_model is None:
        return None, "inferred", None
    facing, confidence = facing_model(image.pixels)
    return facing, "image", round(float(confidence), 4)


def _refine_split(pixels, seg: Segmentation, refiner: tuple[nn.Module, ModelSpec], device, film):
    """Return stage 2's refinement of stage 1's labelmap, with bodies stage 1 merged cut apart first
    (``spinemorph.postprocess.split``), and the map from each part's code to its segment's. A segment with a part
    stage 2 did not redraw stays whole, and stage 2 runs again (rare: a film with such a segment)."""
    start = time.perf_counter()
    cut, parts = split_merged(seg.labels) if seg.naming is not None else (seg.labels, {})
    split_s = time.perf_counter() - start
    done = refine(pixels, cut, *refiner, device, prepared=film)
    undone = {whole for code, whole in parts.items() if done.stages.get(code) != 2}
    if undone:
        cut = np.where(np.isin(cut, [code for code, whole in parts.items() if whole in undone]), seg.labels, cut)
        parts = {code: whole for code, whole in parts.items() if whole not in undone}
        first, done = done.timings, refine(pixels, cut, *refiner, device, prepared=film)
        done.timings = {k: v + first.get(k, 0.0) for k, v in done.timings.items()}
    done.timings["stage2_split_s"] = split_s
    return done, parts


def analyse(image: Radiograph, net: nn.Module, spec: ModelSpec, device: str | torch.device = "cpu",
            facing_model: FacingModel | None = None, gates: Gates = DEFAULT_GATES, anchor: str | None = None,
            refiner: tuple[nn.Module, ModelSpec] | None = None, detector: tuple | None = None,
            segmentation: Segmentation | None = None, landmarks: tuple[nn.Module, ModelSpec] | None = None,
            heights: str = "mean") -> Analysis:
    """Return the analysis of one radiograph; ``anchor`` names the lowest body of a binary model's output;
    ``refiner`` (a stage-2 network and its spec) redraws every body at native resolution (None: stage 1 alone);
    ``landmarks`` (a landmark network and its spec) places the six points of the bodies stage 2 drew, and with them
    their heights: ``heights`` (``HEIGHTS``) "mean" (of the landmarks and the outline) or "landmarks"
    (``spinemorph.measure``); "outline", no ``landmarks`` or no stage 2: the heights come from the outlines and the
    network is not run; ``detector`` (the fracture detector and its spec)
    adds its opinion on each vertebra and the combined call;
    ``segmentation``: stage 1's answer when it is already made (``segment_passes``), else ``net`` makes it."""
    if heights not in HEIGHTS:
        raise ValueError(f"heights must be one of {HEIGHTS}, not {heights!r}.")
    # One normalisation of the film for every network that reads it (stage 1, stage 2's crops, the detector).
    refiner = refiner if spec.head != "binary" else None
    landmarks = landmarks if heights != "outline" else None
    start = time.perf_counter()
    field = exposed_field(image.pixels)  # a blank border's edge cuts bodies (measure) and the sacrum (naming)
    field_s = time.perf_counter() - start
    start = time.perf_counter()
    film = normalised(image.pixels) if segmentation is None or refiner or detector else None
    normalise_s = time.perf_counter() - start
    if segmentation is None:
        start = time.perf_counter()
        prepared = preprocess(film, spec.preprocessing, normalised=True)
        preprocess_s = time.perf_counter() - start
        segmentation = segment_passes(image.pixels, net, spec, device, prepared=prepared, field=field)[0]
        segmentation.timings["preprocess_s"] = preprocess_s
    seg = segmentation
    timings = {"field_s": field_s, "normalise_s": normalise_s, **seg.timings}
    labels, confidence = seg.labels, dict(seg.confidence)
    stages = dict.fromkeys(codes_in(labels), 1)  # stage 1 drew every outline, unless stage 2 redraws it
    agreement = None
    parts: dict[int, int] = {}
    if refiner is not None:
        done, parts = _refine_split(image.pixels, seg, refiner, device, film)
        confidence.update({code: confidence[whole] for code, whole in parts.items() if whole in confidence})
        labels, stages, agreement = done.labels, done.stages, done.agreement
        confidence.update(done.confidence)
        timings.update(done.timings)
    placed = None
    if refiner is not None and landmarks is not None:
        from spinemorph.refine.landmarks import find_landmarks

        drawn = {code for code, stage in stages.items() if stage == 2}
        found = find_landmarks(image.pixels, labels, *landmarks, device, codes=drawn, prepared=film)
        placed = found.points
        timings.update(found.timings)
    start = time.perf_counter()
    facing, source, facing_confidence = facing_of(image, facing_model)
    timings["facing_s"] = time.perf_counter() - start
    start = time.perf_counter()
    naming = seg.naming.to_dict() if seg.naming else None

    def measured(labels, confidence, stages, agreement, landmarks=None):
        return measure(labels, image.spacing_mm, facing, anchor=anchor if spec.head == "binary" else None,
                       facing_source=source, facing_confidence=facing_confidence, confidence=confidence,
                       level_naming=naming, gates=gates, stages=stages, agreement=agreement, landmarks=landmarks,
                       heights="mean" if heights == "outline" else heights, field=field)

    result = measured(labels, confidence, stages, agreement, placed)  # each view alone below: its own outlines
    for rec in result.vertebrae:
        if rec.code in parts:
            rec.flags.append("split")
    timings["morphometry_s"] = time.perf_counter() - start
    called = [i for i, r in enumerate(result.vertebrae) if r.genant_grade]
    if refiner is not None and gates.views and called:
        # Only a film with a fracture call pays for measuring each view alone, and only of the called bodies and
        # the two on either side, all a grade and its gates read (on 40 calibration films: the grades and flags of
        # views of the whole film, VCR within 0.001 points; 0.1-0.2 s instead of 0.2-0.3 s on 2048² films).
        start = time.perf_counter()
        near = {r.code for i in called for r in result.vertebrae[max(i - 2, 0):i + 3]}
        gate_views(result.vertebrae, [measured(v.labels, {**seg.confidence, **v.confidence}, v.stages, v.agreement)
                                      for v in done.views(near)])
        timings["views_s"] = time.perf_counter() - start
    calls = None
    if detector is not None:
        from spinemorph.detection.inference import detect
        from spinemorph.inference.fusion import fracture_calls

        start = time.perf_counter()
        found = detect(image.pixels, *detector, image.spacing_mm, facing, 0.05, device, scores_only=True,
                       normalised=film)
        scores: dict[int, float] = {}
        for d in found.candidates:
            scores[d.code] = max(scores.get(d.code, 0.0), d.score)
        calls = fracture_calls(result, scores, set(detector[1].codes))
        timings["detector_s"] = time.perf_counter() - start
    return Analysis(labels, seg, result, timings, calls, agreement)
