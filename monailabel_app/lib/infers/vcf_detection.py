"""Infer task ``vcf_detection``: fractured vertebrae as instances, a labelmap in the input's geometry, a verdict.

The labelmap holds each kept detection's mask in its level's VerSe code; the JSON lists every detection (level,
score, box as row0, col0, row1, col1 in the image's pixels, the mask's measured Genant grade) and the
per-patient verdict. Request options: ``threshold`` (score at which a detection counts, default 0.5), ``device``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.configs.segmentation import SegmentationConfig
from lib.configs.vcf_detection import DetectionConfig
from lib.datastore import checked_radiograph
from lib.infers.results import result_file
from spinemorph.detection.inference import detect
from spinemorph.io import write_labelmap

__all__ = ["VcfDetectionInfer"]

log = logging.getLogger(__name__)


class VcfDetectionInfer(InferTask):
    """Mask R-CNN-style detector (Paik et al. 2024): fractures by level, each graded by measuring its mask."""

    def __init__(self, config: DetectionConfig) -> None:
        self.cfg = config
        super().__init__(InferType.DETECTION, config.labels, 2,
                         "Compression-fracture detector (Mask R-CNN style, Paik et al. 2024): fractured vertebrae by "
                         "level, each mask's Genant grade, and a per-patient verdict",
                         config={"device": "cuda|cpu (default: cuda when present)", "threshold": 0.5})

    def is_valid(self) -> bool:
        return self.cfg.weights() is not None

    def __call__(self, request):
        start = time.perf_counter()
        uploaded = os.path.dirname(os.path.abspath(request["image"])) == tempfile.gettempdir()
        image = checked_radiograph(request["image"], "the uploaded image" if uploaded else None)
        load_s = time.perf_counter() - start
        device = SegmentationConfig.device(request.get("device"))
        try:
            threshold = float(request.get("threshold", 0.5))
        except (TypeError, ValueError):
            raise HTTPException(422, f"threshold must be a number, not {request.get('threshold')!r}.") from None
        if not 0.0 <= threshold <= 1.0:
            raise HTTPException(422, f"threshold is a score between 0 and 1, not {threshold}.")
        try:
            net, spec = self.cfg.model(device)
        except FileNotFoundError as err:
            raise HTTPException(503, str(err)) from None
        result = detect(image.pixels, net, spec, image.spacing_mm, image.facing, threshold, device)
        start = time.perf_counter()
        out = result_file("spinemorph-vcf-", ".nii.gz")
        write_labelmap(out, result.labels, image)
        times = {"load_s": load_s, **result.timings, "write_s": time.perf_counter() - start}
        times["total_s"] = sum(times.values())
        log.info("%s: %d fractures in %.3f s", self.cfg.name, len(result.detections), times["total_s"])
        return out, {
            "model": self.cfg.name, "levels": spec.levels, **result.to_dict(),
            "label_names": {d.level: d.code for d in result.detections},
            "box_order": "row0, col0, row1, col1 in image pixels",
            "timings": {k: round(v, 4) for k, v in times.items()}, "spacing_mm": image.spacing_mm,
            "facing": image.facing, "shape": list(image.shape), "device": device, **self.cfg.identity(),
        }
