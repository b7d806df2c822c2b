"""Infer task: a radiograph in, a labelmap in its exact geometry out, with the morphometry in the JSON."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import zipfile

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.configs.segmentation import SegmentationConfig
from lib.datastore import checked_radiograph
from lib.infers.results import result_file
from lib.options import as_bool
from spinemorph.inference.analyse import HEIGHTS, analyse
from spinemorph.inference.runtime import compiled_model, runtime_on
from spinemorph.io import write_labelmap
from spinemorph.levels import codes_in, level_name

__all__ = ["SegmentationInfer"]

log = logging.getLogger(__name__)


class SegmentationInfer(InferTask):
    """Segments vertebral bodies (one label per level, or one body label) and measures them."""

    def __init__(self, config: SegmentationConfig) -> None:
        self.cfg = config
        head = {"levels": "per-level", "anchored": "per-level + S1 anchor"}.get(config.head, "binary body")
        super().__init__(InferType.SEGMENTATION, config.labels, 2,
                         f"{config.network} ({head} head): vertebral bodies of a lateral radiograph, with VCR and "
                         "Genant grade", config={"device": "cuda|cpu (default: cuda when present)",
                                 "stage2": "redraw every body in its full-resolution crop and check each fracture "
                                           "grade against the crop's mirror view (default true; false: stage "
                                           "1's outlines, given no fracture grade)",
                                 "heights": "where stage 2's heights come from: mean (default: of the six-point "
                                            "landmark network's points and the outline's, 0.6 and 0.4), landmarks, "
                                            "or outline "
                                            "(the landmark network is not run); landmarks=true|false, as 0.3.0 "
                                            "took it, means landmarks|outline",
                                 "detector": "add the fracture detector's opinion per vertebra (default true)",
                                 "output": "dicom: answer with a zip of the labelmap, a DICOM SEG and a TID 1500 SR "
                                           "(DICOM radiographs)"})

    def is_valid(self) -> bool:
        return self.cfg.weights() is not None

    def __call__(self, request):
        times = {}
        start = time.perf_counter()
        # An uploaded file sits in the system temp folder under a name the user never saw.
        uploaded = os.path.dirname(os.path.abspath(request["image"])) == tempfile.gettempdir()
        image = checked_radiograph(request["image"], "the uploaded image" if uploaded else None)
        as_dicom = str(request.get("output", "")).lower() == "dicom"
        if as_dicom and image.meta.get("format") != "dicom":
            raise HTTPException(422, "output=dicom writes a SEG and an SR that refer to a DICOM radiograph; this "
                                     f"image is {image.meta.get('format', 'not DICOM')}: ask for the NIfTI labelmap.")
        if as_dicom and as_bool(request.get("save_label", False)):
            raise HTTPException(400, "output=dicom answers with a zip, which is not a label to save: save the label "
                                     "with a second infer without output=dicom.")
        times["load_s"] = time.perf_counter() - start
        device = SegmentationConfig.device(request.get("device"))
        try:
            net, spec = self.cfg.model(device)
        except FileNotFoundError as err:
            raise HTTPException(503, str(err)) from None
        refiner = self.cfg.refiner() if as_bool(request.get("stage2", True)) else None
        heights = _heights(request)
        landmarks = self.cfg.landmarks() if refiner and heights != "outline" else None
        detector = self.cfg.detector() if as_bool(request.get("detector", True)) else None
        refiner, landmarks, detector = (None if m is None else (m[0].to(device), m[1])
                                        for m in (refiner, landmarks, detector))
        net, spec = compiled_model((net, spec), self.cfg.runtime, device)  # as the runtime runs them (made once)
        refiner, landmarks = (compiled_model(m, self.cfg.runtime, device) for m in (refiner, landmarks))
        done = analyse(image, net, spec, device, self.cfg.facing_model(), anchor=request.get("anchor"),
                       refiner=refiner, detector=detector, landmarks=landmarks, heights=heights)
        times.update(done.timings)
        result = done.morphometry
        start = time.perf_counter()
        out = result_file("spinemorph-infer-", ".nii.gz")
        write_labelmap(out, done.labels, image)
        dicom = {}
        if as_dicom:  # the labelmap, the SEG and the SR in one zip: MONAI Label answers with one file
            out, dicom = _dicom_zip(out, done.labels, result, request["image"])
        times["write_s"] = time.perf_counter() - start
        times["total_s"] = sum(times.values())
        levels = {level_name(c): c for c in codes_in(done.labels)}  # with S1, the anchor, when found
        log.info("%s: %d bodies in %.3f s", self.cfg.name, len(result.vertebrae), times["total_s"])
        return out, {
            "model": self.cfg.name, "label_names": levels, "morphometry": result.to_dict(),
            "timings": {k: round(v, 4) for k, v in times.items()},
            "spacing_mm": image.spacing_mm, "spacing_source": image.spacing_source, "facing": result.facing,
            "shape": list(image.shape), "device": device, "runtime": runtime_on(self.cfg.runtime, device),
            **self.cfg.identity(),
            **({"fracture_calls": done.fracture_calls} if done.fracture_calls is not None else {}),
            **({"dicom": dicom} if dicom else {}),
        }


def _heights(request: dict) -> str:
    """Return where the request wants stage 2's heights from: "mean", "landmarks" or "outline"."""
    if "heights" not in request and "landmarks" in request:  # 0.3.0's switch
        return "landmarks" if as_bool(request["landmarks"]) else "outline"
    heights = str(request.get("heights", "mean")).lower()
    if heights not in HEIGHTS:
        raise HTTPException(422, f"heights={heights!r}: ask for mean, landmarks or outline.")
    return heights


def _dicom_zip(labels_file: str, labels, morphometry, source: str) -> tuple[str, dict]:
    """Return a zip of the labelmap NIfTI, the DICOM SEG and the TID 1500 SR of ``source``, and their names."""
    from spinemorph.io.dicom_results import write_dicom_results

    with tempfile.TemporaryDirectory() as tmp:
        written = write_dicom_results(tmp, "result", labels, morphometry, source)
        out = result_file("spinemorph-infer-", ".zip")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(labels_file, "labels.nii.gz")
            for kind, path in written.items():
                zf.write(path, f"{kind}.dcm")
    os.unlink(labels_file)
    return out, {"zip": ["labels.nii.gz", *(f"{k}.dcm" for k in written)],
                 "note": "seg.dcm: DICOM SEG, one segment per level; sr.dcm: TID 1500 measurement report"}
