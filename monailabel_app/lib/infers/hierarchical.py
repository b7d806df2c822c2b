"""Infer task ``hierarchical``: Pose-net centres, M-net patches, level set; a labelmap in the input's geometry and
a JSON with the centres, the boxes and the morphometry.

Request options: ``view`` ("auto": name every centre; "lumbar": the paper's five lowest as L1-L5), ``anchor`` (the
lowest centre's level, e.g. "L5"), ``level_set`` (default true), ``output`` ("labels", the default, or "centres":
a labelmap of small discs at the centres, coloured by level, for display).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import numpy as np
from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.configs.hierarchical import HierarchicalConfig
from lib.configs.segmentation import SegmentationConfig
from lib.datastore import checked_radiograph
from lib.infers.results import result_file
from spinemorph.hierarchical.pipeline import HierarchicalOptions, run_hierarchical
from spinemorph.io import write_labelmap
from spinemorph.levels import TRAINED_LEVELS, level_name

__all__ = ["HierarchicalInfer", "centre_discs"]

log = logging.getLogger(__name__)


def centre_discs(shape: tuple[int, int], centres: list[dict]) -> np.ndarray:
    """Return a labelmap with a disc (radius 1 % of the image height, at least 2 px) at each centre, in its code."""
    out = np.zeros(shape, np.uint8)
    radius = max(2.0, 0.01 * shape[0])
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    for c in centres:
        r, col = c["center_px"]
        out[(rows - r) ** 2 + (cols - col) ** 2 <= radius**2] = c["code"]
    return out


def _flag(value, default: bool) -> bool:
    if value is None:
        return default
    return value if isinstance(value, bool) else str(value).strip().lower() not in ("false", "0", "no", "off")


class HierarchicalInfer(InferTask):
    """Kim et al. 2019: vertebral centres, one patch per vertebra, level-set refinement, one label per level."""

    def __init__(self, config: HierarchicalConfig) -> None:
        self.cfg = config
        super().__init__(InferType.SEGMENTATION, {level_name(c): c for c in TRAINED_LEVELS}, 2,
                         "Hierarchical (Kim et al. 2019): Pose-net centres, M-net patches, level set; VCR and Genant "
                         "grade", config={"device": "cuda|cpu", "view": "auto|lumbar", "level_set": True,
                                          "output": "labels|centres"})

    def is_valid(self) -> bool:
        return self.cfg.ready()

    def _options(self, request) -> HierarchicalOptions:
        view = str(request.get("view") or "auto")
        if view not in ("auto", "lumbar"):
            raise HTTPException(422, f"view must be 'auto' or 'lumbar', not {view!r}.")
        anchor = request.get("anchor") or None
        if anchor is not None and level_name_or_none(anchor) is None:
            raise HTTPException(422, f"anchor {anchor!r} is not a level between T1 and L5.")
        return HierarchicalOptions(view=view, anchor=anchor, level_set=_flag(request.get("level_set"), True))

    def __call__(self, request):
        start = time.perf_counter()
        uploaded = os.path.dirname(os.path.abspath(request["image"])) == tempfile.gettempdir()
        image = checked_radiograph(request["image"], "the uploaded image" if uploaded else None)
        load_s = time.perf_counter() - start
        options = self._options(request)
        output = str(request.get("output") or "labels")
        if output not in ("labels", "centres"):
            raise HTTPException(422, f"output must be 'labels' or 'centres', not {output!r}.")
        device = SegmentationConfig.device(request.get("device"))
        try:
            model = self.cfg.model(device)
        except FileNotFoundError as err:
            raise HTTPException(503, str(err)) from None
        result = run_hierarchical(image, model, options)
        start = time.perf_counter()
        out = result_file("spinemorph-hierarchical-", ".nii.gz")
        labels = result.labels if output == "labels" else centre_discs(image.shape, result.centres)
        write_labelmap(out, labels, image)
        timings = {"load_s": load_s, **result.timings, "write_s": time.perf_counter() - start}
        body = result.to_dict()
        log.info("hierarchical: %d centres, flags %s, %.3f s", len(result.centres), result.flags,
                 result.timings["total_s"])
        return out, {
            "model": "hierarchical", "output": output, "label_names": {c["level"]: c["code"] for c in result.centres},
            **body, "timings": {k: round(v, 4) for k, v in timings.items()}, "spacing_mm": image.spacing_mm,
            "facing": result.morphometry.facing if result.morphometry else image.facing,
            "shape": list(image.shape), "device": device, "view": options.view, "level_set": options.level_set,
            **self.cfg.identity(),
        }


def level_name_or_none(level) -> str | None:
    """Return the name of a level in T1..L5, or None if ``level`` is not one."""
    from spinemorph.levels import level_code

    try:
        code = level_code(level)
    except ValueError:
        return None
    return level_name(code) if code in TRAINED_LEVELS else None
