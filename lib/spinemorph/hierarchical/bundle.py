"""Write Pose-net and M-net as one MONAI bundle: configs/metadata.json, configs/inference.json, models/posenet.pt,
models/mnet.pt, docs/README.md and LICENSE. ``spinemorph.hierarchical.model.load_hierarchical`` reads it back.
"""

from __future__ import annotations

from pathlib import Path

from spinemorph.hierarchical.inputs import pose_frame
from spinemorph.hierarchical.model import STAGES, load_hierarchical
from spinemorph.inference import load_model
from spinemorph.inference.bundle import metadata_header, write_bundle_files
from spinemorph.levels import TRAINED_LEVELS, level_name
from spinemorph.networks import count_parameters

__all__ = ["write_hierarchical_bundle"]

def _pose_channels(n: int) -> dict[str, str]:
    names = {"0": "all vertebral centres (confidence map)"}
    if n > 1:
        names.update({str(i + 1): f"{level_name(c)} centre (confidence map)" for i, c in enumerate(TRAINED_LEVELS)})
    return names


def _metadata(out: Path, version: str, changelog: str, pose, mnet) -> dict:
    (posenet, pose_spec), (patchnet, patch_spec) = pose, mnet
    frame, patch = list(pose_frame(pose_spec.preprocessing)), patch_spec.preprocessing.size
    pose_channels = _pose_channels(posenet.net.centres_head.out_channels)
    image = {"type": "image", "format": "magnitude", "modality": "XR", "num_channels": 1, "dtype": "float32",
             "value_range": [0, 1], "is_patch_data": False, "channel_def": {"0": "image"}}
    return {
        **metadata_header(out.name, version, changelog,
                          "Vertebra detection, per-vertebra segmentation and level-set refinement on lateral "
                          "spine radiographs (Kim et al. 2019), one label per level",
                          "Pose-net finds the vertebral centres, M-net segments a patch around each (equation (6) "
                          "boxes), a level set refines each mask; the labelmap holds VerSe level codes.",
                          "SpineMorph simulated lateral radiographs", {"itk": "5.4"}),
        "label_classes": "VerSe level codes: " + ", ".join(f"{level_name(c)}: {c}" for c in TRAINED_LEVELS),
        "parameters": {"posenet": count_parameters(posenet), "mnet": count_parameters(patchnet)},
        "network_data_format": {
            "inputs": {"image": {**image, "spatial_shape": frame},
                       "patch": {**image, "spatial_shape": [patch, patch], "is_patch_data": True}},
            "outputs": {
                "l5": {"type": "image", "format": "magnitude", "num_channels": 1, "spatial_shape": frame,
                       "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                       "channel_def": {"0": "L5 centre (Pose-net stage one)"}},
                "centres": {"type": "image", "format": "magnitude", "num_channels": len(pose_channels),
                            "spatial_shape": frame, "dtype": "float32", "value_range": [0, 1],
                            "is_patch_data": False, "channel_def": pose_channels},
                "pred": {"type": "image", "format": "segmentation", "num_channels": 1, "spatial_shape": [patch, patch],
                         "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                         "channel_def": {"0": "the patch's central vertebral body (logit)"}},
            },
        },
    }


def _inference(pose_spec, patch_spec) -> dict:
    def network(spec) -> dict:
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.kwargs.items()}
        return {"_target_": "spinemorph.networks.build_network", "name": spec.network, "head": spec.head, **kwargs}

    return {
        "imports": ["$import spinemorph", "$import spinemorph.hierarchical.pipeline"],
        "bundle_root": ".", "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "posenet_def": network(pose_spec), "mnet_def": network(patch_spec),
        "posenet": "$@posenet_def.to(@device)", "mnet": "$@mnet_def.to(@device)",
        "spinemorph": {"posenet": pose_spec.to_dict(), "patches": patch_spec.to_dict()},
        "note": "Run with spinemorph.hierarchical.model.load_hierarchical(bundle_root) and "
                "spinemorph.hierarchical.pipeline.run_hierarchical(radiograph, model): Pose-net, centres, equation "
                "(6) boxes, M-net patches, level set, paste-back into VerSe codes, morphometry.",
    }


def write_hierarchical_bundle(posenet: str | Path, mnet: str | Path, out: str | Path, version: str, changelog: str,
                              readme: str) -> Path:
    """Write the bundle folder ``out`` from the two training checkpoints and return it."""
    pose, patches = load_model(posenet), load_model(mnet)
    out = Path(out)
    weights = {name: net.state_dict() for (net, _), name in zip((pose, patches), STAGES.values(), strict=True)}
    write_bundle_files(out, _metadata(out, version, changelog, pose, patches), _inference(pose[1], patches[1]),
                       weights, readme)
    load_hierarchical(out)  # the bundle must load back
    return out
