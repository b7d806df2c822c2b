"""Which side of a radiograph the patient's anterior is on, with a confidence, from the facing classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from spinemorph.facing.data import checked_pixels, network_input
from spinemorph.facing.model import FacingNet, FacingSpec

__all__ = ["FacingPrediction", "predict_facing", "facing_logit"]


@dataclass(frozen=True)
class FacingPrediction:
    """The side the anterior is on ("left"/"right"), P(left) and the confidence max(p, 1 - p)."""

    facing: str
    confidence: float
    p_left: float

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


@torch.no_grad()
def facing_logit(pixels, net: FacingNet, spec: FacingSpec) -> float:
    """Return the logit that the anterior is on the left of (H, W) ``pixels``; a mirrored image gets its negative.

    The network is antisymmetric by construction; the preprocessing (thinning grid, padding parity, CLAHE tiles)
    is only nearly mirror-symmetric, so the image and its mirror are both preprocessed and the logit is half the
    difference of the two network outputs: exactly antisymmetric at the pixel level too.
    """
    arr = checked_pixels(pixels)
    settings = spec.preprocessing
    x = torch.stack([network_input(arr, settings), network_input(arr[:, ::-1], settings)])
    device = next(net.parameters()).device
    logits = net(x.to(device)).double().cpu()
    return float(logits[0] - logits[1]) / 2.0


def predict_facing(pixels, net: FacingNet, spec: FacingSpec) -> FacingPrediction:
    """Return the facing of an (H, W) radiograph (bone bright, as ``spinemorph.io`` reads it) with its confidence.

    Raises ValueError for anything but one finite, non-empty 2D plane. An exactly mirror-symmetric image gets
    p_left 0.5 (reported as "left", confidence 0.5).

    Example::

        net, spec = load_facing_model("/tmp/facing/run/model.pt")
        pred = predict_facing(read_radiograph("film.png").pixels, net, spec)
    """
    logit = facing_logit(pixels, net, spec)
    p_left = float(torch.sigmoid(torch.tensor(logit, dtype=torch.float64)))
    return FacingPrediction("left" if logit >= 0 else "right", max(p_left, 1.0 - p_left), p_left)
