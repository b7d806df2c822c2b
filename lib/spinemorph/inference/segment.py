"""Segment one radiograph: preprocess, run the network, and bring the result back to the radiograph's grid."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from spinemorph.inference.model import ModelSpec
from spinemorph.networks import class_to_code
from spinemorph.postprocess import clean_binary, consistent_levels
from spinemorph.transforms import invert_pad, preprocess

__all__ = ["Segmentation", "segment"]


@dataclass
class Segmentation:
    """A labelmap on the input's grid (VerSe codes, or 1 for a binary head), its body probability and timings."""

    labels: np.ndarray
    foreground: np.ndarray  # P(body) per pixel, float32, input grid
    timings: dict[str, float] = field(default_factory=dict)


def _probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    if head == "binary":
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


@torch.no_grad()
def segment(pixels: np.ndarray, net: nn.Module, spec: ModelSpec, device: str | torch.device = "cpu",
            postprocess: bool = True) -> Segmentation:
    """Return the segmentation of an (H, W) radiograph on its own pixel grid."""
    times = {}
    start = time.perf_counter()
    x, geometry = preprocess(pixels, spec.preprocessing)
    times["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    probs = _probabilities(net(x[None].to(device)), spec.head)[0].float()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    times["network_s"] = time.perf_counter() - start
    start = time.perf_counter()
    # Only the body probability needs smooth edges on the input grid; which level a body pixel belongs to is
    # the same at the network's resolution (discs separate levels), so one channel is resized bilinearly and
    # the class map by nearest neighbour, not all 18 probability maps.
    probs = probs.cpu()
    body = invert_pad(1.0 - probs[:1], geometry)[0]
    inside = (body > 0.5).numpy()
    if spec.head == "binary":
        classes = inside.astype(np.int64)
    else:
        level = invert_pad((probs[1:].argmax(0, keepdim=True) + 1).float(), geometry, "nearest")[0]
        classes = np.where(inside, level.numpy().astype(np.int64), 0)
    labels = class_to_code(classes, spec.head)
    if postprocess:
        labels = clean_binary(labels) if spec.head == "binary" else consistent_levels(labels)
    times["postprocess_s"] = time.perf_counter() - start
    return Segmentation(labels, body.numpy().astype(np.float32), times)
