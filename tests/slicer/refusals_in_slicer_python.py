"""The server's refusals in Slicer's Measure, in slicer-core's Python: a segmentation as autoSegment leaves it, with
what a stage-2 server said of each level (stage, the two stages' overlap, views_disagree, the landmarks whose mean
with the outline gave L4's heights, L1's landmarks far from its outline), measured by the Logic, then with one
segment edited. Prints the grades and flags, and the anterior heights and their source, by level as JSON
(tests/slicer/test_module_files); then the unedited spine on a film whose blank border comes within 1 mm of L1."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import slicer

MODULE = Path(__file__).resolve().parents[2] / "slicer_module" / "SpineMorph"


def graded(logic) -> dict:
    return {r.level: [r.genant_grade, r.flags, r.Ha_px, r.heights_from] for r in logic.measurement.result.vertebrae}


def main() -> int:
    """Measure the box spine (L3 a grade-2 wedge) as the server sent it, then with L3 edited; print both."""
    sys.path.insert(0, str(MODULE))
    import SpineMorph

    from spinemorph.io import Radiograph, display_affine
    from spinemorph.measure import measure
    from SpineMorphLib import nodes
    from SpineMorphLib.sample import box_spine

    scene = slicer.vtkMRMLScene()
    with tempfile.TemporaryDirectory() as work:
        logic = SpineMorph.SpineMorphLogic(scene=scene, workdir=work)
        labels = box_spine()
        image = Radiograph(labels * 0 + 100, (0.5, 0.5), "PixelSpacing", "left", display_affine((0.5, 0.5)), {})
        volume = nodes.add_image_volume(scene, image, "film")
        seg = nodes.show_labels(scene, labels, volume)
        said = [{"code": c, "stage": 2, "agreement": 0.3 if c == 21 else 0.9,  # L2: stage 2 drew something else
                 "flags": ["low_confidence", "views_disagree"] if c == 22 else ["split"] if c == 24 else []}
                for c in range(20, 25)]  # L5: stage 1 drew it merged with L4
        l4 = measure(labels, (0.5, 0.5), "left").by_level()["L4"].points  # the server's landmarks: L4's
        l4 = {**l4, "inferior_anterior": [l4["inferior_anterior"][0] - 2.0, l4["inferior_anterior"][1]]}  # Ha 2 px less
        said[3].update(heights_from="mean", landmarks=l4)  # its heights: the mean of these and the outline's
        outline_l1 = measure(labels, (0.5, 0.5), "left").by_level()["L1"]
        l1 = {k: [v[0] + (20.0 if k.startswith("inferior") else 0.0), v[1]] for k, v in outline_l1.points.items()}
        said[0].update(heights_from="mean", landmarks=l1,  # L1's landmarks 20 px low at its foot: far from its outline
                       flags=["low_confidence", "landmarks_disagree"])
        nodes.keep_outlines(seg, labels, said, "left")
        logic.measure(seg, volume)
        sent = graded(logic)
        edited = labels.copy()
        edited[(labels == 22) & (np.arange(labels.shape[1])[None, :] > 105)] = 0  # trim L3's posterior edge
        seg = nodes.show_labels(scene, edited, volume, seg)  # the same node, its segments redrawn
        logic.measure(seg, volume)
        edited_ = graded(logic)
        # the same spine on a film padded above row 18: the blank border's edge comes 1 mm from L1, which it may cut
        pixels = np.random.default_rng(0).normal(1000, 100, labels.shape) + 400 * (labels > 0)
        pixels[:18] = 0
        padded = nodes.add_image_volume(scene, Radiograph(pixels.astype(np.uint16), (0.5, 0.5), "PixelSpacing",
                                                          "left", display_affine((0.5, 0.5)), {}), "padded film")
        logic.measure(nodes.show_labels(scene, labels, padded), padded)
        print(json.dumps({"sent": sent, "edited": edited_, "padded": graded(logic), "outline_l1_ha": outline_l1.Ha_px}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
