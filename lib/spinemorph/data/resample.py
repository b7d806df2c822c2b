"""Fast resampling for smooth fields: bilinear upsampling by an integer factor and a three-tap blur."""

from __future__ import annotations

import numpy as np

__all__ = ["upsample", "blur3"]


def _weights(n_out: int, k: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Output pixel j sits at input coordinate (j + 0.5)/k - 0.5: the centres of k-pixel blocks line up.
    x = np.clip((np.arange(n_out) + 0.5) / k - 0.5, 0.0, n_in - 1)
    i0 = np.floor(x).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (x - i0).astype(np.float32)


def upsample(small: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Return ``small`` (h, w), sampled every ``k`` pixels, bilinearly interpolated to ``shape``."""
    if k == 1:
        return small[: shape[0], : shape[1]].astype(np.float32)
    r0, r1, wr = _weights(shape[0], k, small.shape[0])
    c0, c1, wc = _weights(shape[1], k, small.shape[1])
    # Columns first, while the array is small; then whole rows, which gather contiguously.
    small = small.astype(np.float32, copy=False)
    cols = small[:, c0] * (1 - wc) + small[:, c1] * wc
    out = cols[r0]
    out *= 1 - wr[:, None]
    out += cols[r1] * wr[:, None]
    return out


def blur3(image: np.ndarray, sigma: float) -> np.ndarray:
    """Return ``image`` blurred by a separable three-tap Gaussian of ``sigma`` pixels (meant for sigma < 0.8)."""
    side = float(np.exp(-0.5 / sigma**2))
    w_side = np.float32(side / (1 + 2 * side))
    w_mid = np.float32(1 - 2 * w_side)
    out = image * w_mid
    out[1:] += image[:-1] * w_side
    out[:-1] += image[1:] * w_side
    out[0] += image[0] * w_side
    out[-1] += image[-1] * w_side
    res = out * w_mid
    res[:, 1:] += out[:, :-1] * w_side
    res[:, :-1] += out[:, 1:] * w_side
    res[:, 0] += out[:, 0] * w_side
    res[:, -1] += out[:, -1] * w_side
    return res
