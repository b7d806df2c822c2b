"""Training augmentation for the facing classifier: partial views, pose, a flip of the facing, and film looks.

Facing must hold on any part of a spine and on any processing of the film, so each draw is cut to a random part
of the image (a partial spine must still work), zoomed out or rotated a little, and given a random look: window,
gamma, inversion (bone dark), blur, noise, a heel-effect ramp and marker-like blocks. A left-right flip flips the
target too; for the antisymmetric network it changes only what the preprocessing does at the borders.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from spinemorph.transforms import NormalizeRadiograph

__all__ = ["FacingAugmentation"]

_NORMALIZE = NormalizeRadiograph()


class FacingAugmentation:
    """Random crop/zoom/rotation, left-right flip and photometric changes of a thinned (H, W) radiograph.

    Args:
        seed: seeds the generator, so a run repeats exactly (one process; see ``reseed`` for workers).
        crop: (probability, smallest height fraction, smallest width fraction) of a random crop.
        rotate_deg: largest in-plane rotation.

    ``__call__(image)`` returns (the augmented image in [0, 1], whether it was flipped left-right).
    """

    def __init__(self, seed: int = 0, crop: tuple[float, float, float] = (0.7, 0.35, 0.45),
                 rotate_deg: float = 12.0) -> None:
        if not (0 <= crop[0] <= 1 and 0 < crop[1] <= 1 and 0 < crop[2] <= 1) or rotate_deg < 0:
            raise ValueError("crop needs a probability and two fractions in (0, 1]; rotate_deg must be >= 0.")
        self.crop, self.rotate_deg = crop, rotate_deg
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int, stream: int) -> None:
        """Restart the generator on stream ``stream`` of ``seed`` (one per DataLoader worker)."""
        self.rng = np.random.default_rng([seed, stream])

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        x = _NORMALIZE(torch.as_tensor(image, dtype=torch.float32)[None]).numpy()[0]
        x = self._geometry(x)
        flipped = bool(self.rng.random() < 0.5)
        if flipped:
            x = x[:, ::-1]
        return np.ascontiguousarray(self._look(x), dtype=np.float32), flipped

    def _geometry(self, x: np.ndarray) -> np.ndarray:
        rng = self.rng
        p, min_h, min_w = self.crop
        if rng.random() < p:  # a part of the spine only
            h, w = x.shape
            ch, cw = max(8, round(h * rng.uniform(min_h, 1))), max(8, round(w * rng.uniform(min_w, 1)))
            r0, c0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            x = x[r0:r0 + ch, c0:c0 + cw]
        elif rng.random() < 0.3:  # zoomed out: a collimated border
            pads = [(round(n * rng.uniform(0, 0.2)), round(n * rng.uniform(0, 0.2))) for n in x.shape]
            x = np.pad(x, pads, constant_values=0.0)
        if rng.random() < 0.5:
            x = ndimage.rotate(x, rng.uniform(-self.rotate_deg, self.rotate_deg), reshape=False, order=1,
                               mode="constant", cval=0.0)
        return x

    def _look(self, x: np.ndarray) -> np.ndarray:
        rng = self.rng
        if rng.random() < 0.5:  # a narrow window: soft tissue gone, bone only (as in CT-DRRs of bone)
            lo = rng.uniform(0.0, 0.45)
            hi = rng.uniform(lo + 0.3, 1.0)
            x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        x = np.clip(x, 0.0, 1.0) ** np.exp(rng.uniform(-0.8, 0.8))
        if rng.random() < 0.3:  # heel effect / uneven exposure
            angle = rng.uniform(0, 2 * np.pi)
            rows, cols = np.mgrid[0:x.shape[0], 0:x.shape[1]]
            ramp = (np.cos(angle) * rows / x.shape[0] + np.sin(angle) * cols / x.shape[1])
            x = x + rng.uniform(-0.25, 0.25) * (ramp - ramp.mean())
        if rng.random() < 0.2:  # side markers, labels, rulers: bright blocks anywhere
            for _ in range(rng.integers(1, 4)):
                h, w = (max(2, round(n * rng.uniform(0.03, 0.1))) for n in x.shape)
                r, c = rng.integers(0, x.shape[0] - h + 1), rng.integers(0, x.shape[1] - w + 1)
                x[r:r + h, c:c + w] = rng.uniform(0.7, 1.0)
        if rng.random() < 0.25:  # inverted: bone dark
            x = 1.0 - x
        if rng.random() < 0.3:
            x = ndimage.gaussian_filter(x, rng.uniform(0.5, 2.0))
        if rng.random() < 0.5:
            x = x + rng.normal(0.0, rng.uniform(0.005, 0.06), x.shape)
        return x
