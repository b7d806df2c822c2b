"""Infer task: a radiograph in, a labelmap in its exact geometry out, with the morphometry in the JSON."""

from __future__ import annotations

import logging
import os
import tempfile
import time

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.configs.segmentation import SegmentationConfig
from lib.datastore import checked_radiograph
from spinemorph.inference import segment
from spinemorph.io import write_labelmap
from spinemorph.measure import measure

__all__ = ["SegmentationInfer"]

log = logging.getLogger(__name__)
_RESULTS = tempfile.mkdtemp(prefix="spinemorph-infer-")


class SegmentationInfer(InferTask):
    """Segments vertebral bodies (one label per level, or one body label) and measures them."""

    def __init__(self, config: SegmentationConfig) -> None:
        self.cfg = config
        head = "per-level" if config.head == "levels" else "binary body"
        super().__init__(InferType.SEGMENTATION, config.labels, 2,
                         f"{config.network} ({head} head): vertebral bodies of a lateral radiograph, with VCR and "
                         "Genant grade", config={"device": "cuda|cpu (default: cuda when present)"})

    def is_valid(self) -> bool:
        return self.cfg.weights() is not None

    def __call__(self, request):
        times = {}
        start = time.perf_counter()
        # An uploaded file sits in the system temp folder under a name the user never saw.
        uploaded = os.path.dirname(os.path.abspath(request["image"])) == tempfile.gettempdir()
        image = checked_radiograph(request["image"], "the uploaded image" if uploaded else None)
        times["load_s"] = time.perf_counter() - start
        device = SegmentationConfig.device(request.get("device"))
        try:
            net, spec = self.cfg.model(device)
        except FileNotFoundError as err:
            raise HTTPException(503, str(err)) from None
        seg = segment(image.pixels, net, spec, device)
        times.update(seg.timings)
        start = time.perf_counter()
        anchor = request.get("anchor") if spec.head == "binary" else None
        result = measure(seg.labels, image.spacing_mm, image.facing, anchor=anchor,
                         facing_source="PatientOrientation" if image.meta.get("format") == "dicom" else "file")
        times["morphometry_s"] = time.perf_counter() - start
        start = time.perf_counter()
        # A folder of its own: the server deletes the file after answering, and a client on this machine saves
        # its copy under the same name in the system temp folder, which must not be the same file.
        out = tempfile.NamedTemporaryFile(suffix=".nii.gz", dir=_RESULTS, delete=False).name
        write_labelmap(out, seg.labels, image)
        times["write_s"] = time.perf_counter() - start
        times["total_s"] = sum(times.values())
        levels = {r.level: r.code for r in result.vertebrae}
        log.info("%s: %d bodies in %.3f s", self.cfg.name, len(levels), times["total_s"])
        return out, {
            "model": self.cfg.name, "label_names": levels, "morphometry": result.to_dict(),
            "timings": {k: round(v, 4) for k, v in times.items()},
            "spacing_mm": image.spacing_mm, "spacing_source": image.spacing_source, "facing": result.facing,
            "shape": list(image.shape), "device": device, **self.cfg.identity(),
        }
