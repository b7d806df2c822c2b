"""The network's encoder features of a radiograph: its bottleneck, pooled to one vector per forward.

SpineMorph's networks (``spinemorph.networks``) return logits only, so the bottleneck is read with forward hooks:
of every sub-module's output in one forward, the one at the lowest resolution with the most channels, the last
such (an outer module after its inner ones). That is ``down_4`` in the R2U-Net family, M-net and Pose-net, and the
deepest skip connection (encoder and bottom unit) in MONAI's UNet: the same rule for every registered network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["bottleneck_features", "unit_vector"]


def unit_vector(values) -> np.ndarray:
    """Return ``values`` as a float32 vector of length 1 (unchanged when it is all zeros)."""
    v = np.asarray(values, np.float32).ravel()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class _Probe:
    """Keeps, during one forward, the pooled output of the lowest-resolution, widest sub-module seen so far."""

    def __init__(self) -> None:
        self.best: tuple[int, int] | None = None  # (-area, channels)
        self.pooled: torch.Tensor | None = None
        self.vectors: list[np.ndarray] = []

    def see(self, module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            return
        rank = (-output.shape[-1] * output.shape[-2], output.shape[1])
        if self.best is None or rank >= self.best:
            self.best, self.pooled = rank, output[0].detach().float().mean(dim=(1, 2))

    def done(self, module, inputs, output) -> None:
        if self.pooled is not None:
            self.vectors.append(unit_vector(self.pooled.cpu().numpy()))
        self.best, self.pooled = None, None


@contextmanager
def bottleneck_features(net: nn.Module) -> Iterator[list[np.ndarray]]:
    """Yield a list that receives, for each forward of ``net`` while the block runs, the first image's bottleneck
    features averaged over the image (global average pooling) and scaled to length 1: shape (channels,).

    Example::

        with bottleneck_features(net) as vectors:
            segment(pixels, net, spec)
        features = vectors[-1]
    """
    probe = _Probe()
    handles = [m.register_forward_hook(probe.see) for m in net.modules() if m is not net]
    handles.append(net.register_forward_hook(probe.done))
    try:
        yield probe.vectors
    finally:
        for handle in handles:
            handle.remove()
