"""Segment one radiograph: preprocess, run the network, and bring the result back to the radiograph's grid."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spinemorph.inference.model import ModelSpec
from spinemorph.levels import label_window
from spinemorph.measure.field import exposed_field
from spinemorph.networks import class_to_code
from spinemorph.postprocess import LevelNaming, clean_binary, name_levels
from spinemorph.transforms import PadGeometry, invert_pad, preprocess

__all__ = ["Segmentation", "segment", "segment_passes", "pass_probabilities"]


@dataclass
class Segmentation:
    """A labelmap on the input's grid (VerSe codes, or 1 for a binary head), its body probability and timings.

    ``confidence`` maps each level code in ``labels`` to the mean body probability over its segment;
    ``naming`` says how a level head's bodies were named (``spinemorph.postprocess.LevelNaming``).
    """

    labels: np.ndarray
    foreground: np.ndarray  # P(body) per pixel, float32, input grid
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    confidence: dict[int, float] = dataclasses.field(default_factory=dict)
    naming: LevelNaming | None = None


def _probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    if head == "binary":
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def pass_probabilities(x: torch.Tensor, net: nn.Module, spec: ModelSpec, device: str | torch.device = "cpu",
                       passes: int = 1) -> torch.Tensor:
    """Return the class probabilities (passes, C, h, w), on the CPU, of a preprocessed input (1, h, w) from one
    batched forward of ``passes`` copies of it (alike, unless ``net`` samples: MC dropout)."""
    batch = x[None].to(device).expand(passes, *x.shape).contiguous()
    return _probabilities(net(batch), spec.head).float().cpu()  # to the CPU waits for a GPU to finish


def _confidence(labels: np.ndarray, body: np.ndarray) -> dict[int, float]:
    """Return each code's mean body probability over its segment."""
    box = label_window(labels)
    if box is None:
        return {}
    # Only labelled pixels count, and they all lie in this box: the same means as over the whole film, 4-7× faster
    # on a 2048² one. The sums are ndimage.mean's own (bincount, in the same order), without its checks and copies.
    codes = labels[box].ravel()
    counts = np.bincount(codes)
    sums = np.bincount(codes, weights=body[box].ravel())
    return {int(c): round(float(sums[c] / counts[c]), 4) for c in np.flatnonzero(counts) if c}


@torch.no_grad()
def segment(pixels: np.ndarray, net: nn.Module, spec: ModelSpec, device: str | torch.device = "cpu",
            postprocess: bool = True) -> Segmentation:
    """Return the segmentation of an (H, W) radiograph on its own pixel grid."""
    return segment_passes(pixels, net, spec, device, 1, postprocess)[0]


@torch.no_grad()
def segment_passes(pixels: np.ndarray, net: nn.Module, spec: ModelSpec, device: str | torch.device = "cpu",
                   passes: int = 1, postprocess: bool = True,
                   prepared: tuple[torch.Tensor, PadGeometry] | None = None,
                   field: tuple[int, int, int, int] | None = None) -> list[Segmentation]:
    """Return ``passes`` segmentations of one radiograph from one preprocessing and one batched forward: the same
    answer ``passes`` times, unless ``net`` samples (MC dropout, whose masks differ per batch item).

    ``prepared``: ``preprocess(pixels, spec.preprocessing)``, when the caller has it already (one preprocessing
    for a pass without dropout and the MC passes after it). ``field``: the film's exposed field, when the caller
    has it (``spinemorph.measure.exposed_field``; else found here), whose edge may cut the sacrum the levels are
    counted from.
    """
    times = {}
    start = time.perf_counter()
    x, geometry = prepared if prepared is not None else preprocess(pixels, spec.preprocessing)
    times["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    probs = pass_probabilities(x, net, spec, device, passes)
    times["network_s"] = time.perf_counter() - start
    if postprocess and spec.head != "binary" and field is None:
        field = exposed_field(pixels)
    return [_on_grid(p, geometry, spec, postprocess, dict(times), field) for p in probs]


def _on_grid(probs: torch.Tensor, geometry, spec: ModelSpec, postprocess: bool, times: dict,
             field: tuple[int, int, int, int] | None = None) -> Segmentation:
    """Return the segmentation of one item's class probabilities, brought back to the radiograph's grid."""
    start = time.perf_counter()
    # Only the body probability needs smooth edges on the input grid; which level a body pixel belongs to is
    # the same at the network's resolution (discs separate levels), so one channel is resized bilinearly and
    # the class map by nearest neighbour, not all 18 probability maps. The sacrum of an anchored head is not a
    # body: it is its own channel, kept where it wins over the bodies.
    anchored = spec.head == "anchored"
    sacrum = probs[-1:] if anchored else torch.zeros_like(probs[:1])
    body = invert_pad(1.0 - probs[:1] - sacrum, geometry)[0]  # one channel a call: 4x faster than two at once
    inside = (body > 0.5).numpy()
    if spec.head == "binary":
        labels = class_to_code(inside, spec.head)
    else:
        # Classes become codes on the network's grid, before the nearest-neighbour resize (the two commute): a
        # lookup of 65 k pixels, not of 4 M.
        levels = probs[1:-1] if anchored else probs[1:]
        codes = class_to_code((levels.argmax(0, keepdim=True) + 1).numpy(), spec.head)
        level = invert_pad(torch.from_numpy(codes).float(), geometry, "nearest")[0]
        labels = np.where(inside, level.numpy().astype(np.uint8), np.uint8(0))
        if anchored:
            s1 = (invert_pad(sacrum, geometry)[0] > 0.5).numpy() & ~inside
            labels[s1] = class_to_code(np.array(len(probs) - 1), spec.head)
    naming = None
    if postprocess and spec.head == "binary":
        labels = clean_binary(labels)
    elif postprocess:
        labels, naming = name_levels(labels, field=field)
    times["postprocess_s"] = time.perf_counter() - start
    foreground = body.numpy().astype(np.float32)
    return Segmentation(labels, foreground, times, _confidence(labels, foreground), naming)
