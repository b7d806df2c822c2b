"""Write the detector as a MONAI bundle: configs/metadata.json (classes in channel_def), configs/inference.json,
models/model.pt, docs/README.md and LICENSE.
"""

from __future__ import annotations

from pathlib import Path

from spinemorph.detection.checkpoint import load_detector
from spinemorph.inference.bundle import metadata_header, write_bundle_files
from spinemorph.networks import count_parameters

__all__ = ["write_detector_bundle"]


def write_detector_bundle(checkpoint: str | Path, out: str | Path, version: str, changelog: str, readme: str,
                          description: str) -> Path:
    """Write the bundle folder ``out`` from a detector checkpoint and return it.

    ``readme`` is the Markdown of docs/README.md ("{date}" becomes today's date).
    """
    net, spec = load_detector(checkpoint)
    out = Path(out)
    size = spec.preprocessing.size
    classes = spec.class_names
    metadata = {
        **metadata_header(out.name, version, changelog,
                          "Vertebral compression fracture detection on lateral spine radiographs: instances (box, "
                          "mask, score) whose classes are fractures by level", description,
                          "SpineMorph simulated lateral radiographs with graded fractures, and DRRs of labelled CT"),
        "label_classes": ", ".join(f"{k}: {v}" for k, v in classes.items()),
        "parameters": count_parameters(net),
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "XR", "num_channels": 1,
                                 "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "object", "format": "instances: boxes (row0, col0, row1, col1), scores, "
                                                             "classes, masks (28x28 per box)",
                                 "num_channels": len(classes), "spatial_shape": [size, size], "dtype": "float32",
                                 "value_range": [0, 1], "is_patch_data": False, "channel_def": classes}},
        },
    }
    inference = {
        "imports": ["$import spinemorph", "$import spinemorph.detection"],
        "bundle_root": ".", "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "spinemorph.detection.build_detector", "levels": spec.levels,
                        "channels": list(spec.channels), "blocks": list(spec.blocks),
                        "fpn_channels": spec.fpn_channels, "anchor_sizes": list(spec.anchor_sizes),
                        "aspect_ratios": list(spec.aspect_ratios), "semantic": spec.semantic,
                        "box_hidden": spec.box_hidden},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "spinemorph.transforms.Preprocessing", **spec.preprocessing.__dict__},
        "spinemorph_detector": spec.to_dict(),
        "note": "Run with spinemorph.detection.load_detector(bundle_root) and "
                "spinemorph.detection.inference.detect(pixels, net, spec, spacing, facing): it repeats the "
                "preprocessing, maps boxes and masks back to the input grid and grades each mask.",
    }
    write_bundle_files(out, metadata, inference, {"model.pt": net.state_dict()}, readme)
    load_detector(out)  # the bundle must load back
    return out
