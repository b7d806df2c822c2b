"""The detector: scatter, blur, quantum noise and the log-transformed, windowed 12- or 16-bit image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinemorph.data.resample import blur3, upsample

__all__ = ["Detector", "sample_detector", "expose"]

_REFERENCE_PITCH_MM = 0.15


@dataclass(frozen=True)
class Detector:
    """How a flat-panel detector turns transmitted intensity into a presentation image.

    Args:
        bits: bits stored, 12 or 16.
        blur_mm: Gaussian sigma of the detector's point-spread function, at the detector.
        scatter_to_primary: scatter-to-primary ratio behind the anti-scatter grid.
        photons: quanta per 0.15 mm pixel with nothing in the beam; fewer quanta, more noise.
        equalisation: how much of the large-scale density range presentation processing removes (0-1),
            as the multiscale contrast equalisation of clinical DX images does.
    """

    bits: int = 12
    blur_mm: float = 0.15
    scatter_to_primary: float = 0.5
    photons: float = 8e4
    equalisation: float = 0.6

    def __post_init__(self) -> None:
        if self.bits not in (12, 16):
            raise ValueError(f"The detector writes 12- or 16-bit images, not {self.bits}-bit.")


def sample_detector(rng: np.random.Generator, bits: int | None = None) -> Detector:
    """Return a random but plausible detector."""
    return Detector(bits=int(rng.choice([12, 16])) if bits is None else bits, blur_mm=float(rng.uniform(0.08, 0.2)),
                    scatter_to_primary=float(rng.uniform(0.3, 1.0)), photons=float(np.exp(rng.uniform(np.log(3e4),
                                                                                                     np.log(2e5)))),
                    equalisation=float(rng.uniform(0.4, 0.75)))


def expose(line: np.ndarray, pitch_mm: float, det: Detector, rng: np.random.Generator) -> np.ndarray:
    """Return the uint16 presentation image (bone bright, MONOCHROME2) of a line-integral image."""
    primary = np.exp(-line, dtype=np.float32)
    # Scatter, and the large-scale trend that presentation processing removes, are smooth: work them out on
    # a coarse grid, then bring both to full size in one interpolation. Scatter is the transmission of the
    # blurred line integral (a geometric mean of the neighbourhood), so behind thick anatomy it stays a few
    # times the primary, as behind a grid, instead of being swamped by bright lungs next door.
    k = max(int(round(4.0 / pitch_mm)), 1)
    small_line = line[::k, ::k]
    blurred = ndimage.gaussian_filter(small_line, sigma=40.0 / (pitch_mm * k), mode="nearest")
    scatter = det.scatter_to_primary * np.exp(-blurred, dtype=np.float32)
    trend = ndimage.gaussian_filter(-np.log(np.exp(-small_line) + scatter), sigma=25.0 / (pitch_mm * k),
                                    mode="nearest")
    trend -= trend.mean()
    signal = upsample(scatter, k, line.shape)
    signal += primary
    sigma = det.blur_mm / pitch_mm
    if sigma > 0.8:
        signal = ndimage.gaussian_filter(signal, sigma=sigma, mode="nearest", truncate=3.0)
    elif sigma > 0.25:
        signal = blur3(signal, sigma)
    # Quantum noise: Poisson in its Gaussian form (variance = mean), exact at the >= 100 quanta a pixel receives.
    quanta = np.float32(det.photons * (pitch_mm / _REFERENCE_PITCH_MM) ** 2)
    signal *= quanta
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= np.sqrt(signal)
    signal += noise
    np.maximum(signal, 0.5, out=signal)
    signal /= quanta
    density = np.log(signal, out=signal)
    density *= -1
    density -= np.float32(det.equalisation) * upsample(trend, k, line.shape)
    sample = density[::4, ::4]
    lo, hi = np.percentile(sample, [0.5, 99.9])
    top = 2**det.bits - 1
    density -= np.float32(lo)
    density *= np.float32(top / max(hi - lo, 1e-6))
    np.clip(density, 0.0, top, out=density)
    return np.rint(density, out=density).astype(np.uint16)

