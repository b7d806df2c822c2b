"""Domain randomisation: one transform chain over every training source's record (image, labels, truth).

A record is what each source (the phantom, CT DRRs, ...) yields: a uint16 presentation image, bone bright; its
body labels (uint8, VerSe codes); its truth dict (shape, spacing, vertebrae with pixel coordinates). The chain
varies everything a network must ignore on real films, in the order a film meets it:

1. field of view: a random crop and/or a zoom out with a padded border (image, labels and truth together);
2. acquisition: collimator shutters, a lead side marker, anti-scatter grid lines, extra blur and noise;
3. processing: kVp-like contrast and exposure, multiscale equalisation or unsharp masking, then one look-up
   table of histogram equalisation, window/level or a sigmoid, gamma and the stored range;
4. burned-in annotation text, an 8-bit export now and then;
5. storage: MONOCHROME1 (stored values inverted, the file says so) or, rarer, an inverted image that still
   claims MONOCHROME2, as a careless export writes it.

Patient pose is the sources' business. ``truth["randomisation"]`` records what was applied; its "photometric"
entry is what a DICOM writer must write (see ``photometric``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from spinemorph.conventions import near_edge_codes
from spinemorph.data import overlays
from spinemorph.data.resample import blur3, upsample
from spinemorph.levels import label_box

__all__ = ["Randomisation", "randomise", "photometric", "reframe"]

_LUT_SIZE = 4096
_MEASURED = ("points", "points_mm", "Ha_px", "Hm_px", "Hp_px", "Ha_mm", "Hm_mm", "Hp_mm")  # gone when truncated


@dataclass(frozen=True)
class Randomisation:
    """Probabilities (``p_*``) and ranges of the randomisation; ``strength`` scales every probability.

    ``Randomisation.off()`` (strength 0) is the identity. Ranges are (low, high), drawn uniformly; image values
    are on a 0-1 scale, sizes in pixels or as a share of the image side.
    """

    strength: float = 1.0
    p_crop: float = 0.5
    crop_keep: tuple[float, float] = (0.55, 1.0)  # share of each side a crop keeps
    p_pad: float = 0.2
    pad_share: tuple[float, float] = (0.02, 0.2)  # border added at each side, as a share of that side
    p_collimation: float = 0.4
    p_marker: float = 0.5
    p_grid: float = 0.2
    grid_contrast: tuple[float, float] = (0.005, 0.03)
    p_blur: float = 0.2
    blur_px: tuple[float, float] = (0.4, 1.6)
    p_noise: float = 0.3
    noise_sd: tuple[float, float] = (0.003, 0.03)
    p_contrast: float = 0.8
    contrast_gain: tuple[float, float] = (0.6, 1.5)  # kVp-like: bone against soft tissue
    exposure: tuple[float, float] = (-0.12, 0.12)
    p_equalise: float = 0.35  # half global histogram equalisation, half multiscale (large-scale trend removed)
    p_unsharp: float = 0.4
    unsharp_px: tuple[float, float] = (2.0, 40.0)
    unsharp_amount: tuple[float, float] = (0.3, 2.0)
    p_detail: float = 0.25  # bone detail: the density at body scale taken away, edges and cortices kept
    detail_sigma: tuple[float, float] = (0.008, 0.03)  # as a share of the image side (about 3-10 mm)
    detail_keep: tuple[float, float] = (0.05, 0.4)  # share of the image itself that stays under the detail
    p_window: float = 0.3
    window_quantiles: tuple[float, float] = (0.25, 0.75)  # lowest upper and highest lower quantile of a window
    p_sigmoid: float = 0.2
    sigmoid_width: tuple[float, float] = (0.06, 0.25)
    p_gamma: float = 0.5
    gamma: tuple[float, float] = (0.5, 2.0)  # drawn log-uniformly
    p_range: float = 0.3
    range_low: tuple[float, float] = (0.0, 0.2)
    range_high: tuple[float, float] = (0.7, 1.0)
    p_text: float = 0.5
    p_eight_bit: float = 0.1
    p_monochrome1: float = 0.2
    p_inverted_monochrome2: float = 0.05

    def __post_init__(self) -> None:
        if self.strength < 0:
            raise ValueError(f"The randomisation strength must be 0 or more, not {self.strength}.")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} is a probability between 0 and 1, not {value}.")
            if isinstance(value, tuple) and not value[0] <= value[1]:
                raise ValueError(f"{f.name} is a (low, high) range; got {value}.")
        if not 0.0 < self.crop_keep[0] <= self.crop_keep[1] <= 1.0:
            raise ValueError(f"crop_keep must lie in (0, 1], not {self.crop_keep}.")
        if self.p_monochrome1 + self.p_inverted_monochrome2 > 1.0:
            raise ValueError("p_monochrome1 + p_inverted_monochrome2 must not exceed 1.")

    @classmethod
    def off(cls) -> Randomisation:
        """Return the identity: nothing is ever applied."""
        return cls(strength=0.0)

    def fires(self, rng: np.random.Generator, name: str) -> bool:
        """Return whether the step ``p_<name>`` is applied this time (one draw, whatever the strength)."""
        return bool(rng.random() < min(1.0, getattr(self, f"p_{name}") * self.strength))


def photometric(truth: dict) -> str:
    """Return the PhotometricInterpretation a record's stored values need: MONOCHROME1 or MONOCHROME2."""
    return truth.get("randomisation", {}).get("photometric", "MONOCHROME2")


def randomise(image: np.ndarray, labels: np.ndarray, truth: dict, rng: np.random.Generator,
              config: Randomisation = Randomisation()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return the randomised record (image uint16, labels uint8, truth); the same generator state, the same output.

    With strength 0 the inputs come back unchanged (the same objects).
    """
    if config.strength == 0:
        return image, labels, truth
    top = float(2 ** int(truth.get("bits_stored", 16)) - 1)
    done: dict = {}
    if (window := _frame(labels, rng, config)) is not None:
        fill = 1.0 if rng.random() < 0.5 else 0.0
        image, labels, truth = reframe(image, labels, truth, window[:2], window[2:], fill * top)
        done["frame"] = {"offset_px": list(window[:2]), "shape": list(window[2:]), "fill": fill}
    x = image.astype(np.float32)
    x *= np.float32(1.0 / top)
    _acquire(x, labels, rng, config, done)
    _process(x, rng, config, done)
    if config.fires(rng, "text"):
        done["text"] = overlays.burn_text(x, rng)
    if config.fires(rng, "eight_bit"):
        np.round(np.clip(x, 0.0, 1.0, out=x) * 255.0, out=x)
        x *= np.float32(1.0 / 255.0)
        done["eight_bit"] = True
    u = rng.random()
    bone_dark = u < min(1.0, (config.p_monochrome1 + config.p_inverted_monochrome2) * config.strength)
    claims = "MONOCHROME1" if bone_dark and u < min(1.0, config.p_monochrome1 * config.strength) else "MONOCHROME2"
    np.clip(x, 0.0, 1.0, out=x)
    if bone_dark:
        np.subtract(1.0, x, out=x)
    out = np.rint(x * np.float32(top)).astype(np.uint16)
    truth = {**truth, "randomisation": {**done, "photometric": claims, "bone_dark": bool(bone_dark)}}
    return out, labels, truth


def reframe(image: np.ndarray, labels: np.ndarray, truth: dict, offset: tuple[int, int], shape: tuple[int, int],
            fill: float = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return the record seen through a ``shape`` window whose top-left is pixel ``offset`` of the old image.

    A window reaching past the image pads the image with ``fill`` and the labels with 0. Truth pixel
    coordinates shift by the offset; a body the new edge cuts becomes truncated (its points and heights go, as
    for a body the source's own edge cut); a body no longer in the labels is dropped.
    """
    (r0, c0), (h, w) = offset, shape
    new_image = np.full((h, w), fill, dtype=image.dtype)
    new_labels = np.zeros((h, w), dtype=labels.dtype)
    src = np.s_[max(r0, 0): min(r0 + h, image.shape[0]), max(c0, 0): min(c0 + w, image.shape[1])]
    dst = np.s_[src[0].start - r0: src[0].stop - r0, src[1].start - c0: src[1].stop - c0]
    new_image[dst], new_labels[dst] = image[src], labels[src]
    present = np.bincount(new_labels.ravel(), minlength=256)
    cut = near_edge_codes(new_labels)
    spacing = truth.get("pixel_spacing_mm") or (1.0, 1.0)
    vertebrae = []
    for rec in truth.get("vertebrae", []):
        if not present[rec["code"]]:
            continue
        rec = {k: _shifted(v, (r0, c0)) if k == "center_px" else v for k, v in rec.items()}
        for key, step in (("points", (r0, c0)), ("points_mm", (r0 * spacing[0], c0 * spacing[1]))):
            if key in rec:
                rec[key] = {k: _shifted(v, step) for k, v in rec[key].items()}
        if "area_px" in rec:
            rec["area_px"] = int(present[rec["code"]])
        if rec["code"] in cut and not rec.get("truncated"):
            rec = {k: v for k, v in rec.items() if k not in _MEASURED} | {"truncated": True}
        vertebrae.append(rec)
    out = {**truth, "shape": [h, w], "vertebrae": vertebrae}
    if "landmarks" in truth:
        out["landmarks"] = {k: _shifted(v, (r0, c0)) if k.endswith("_px") and isinstance(v, list) else v
                            for k, v in truth["landmarks"].items()}
    return new_image, new_labels, out


def _shifted(value, offset: tuple[float, float]):
    """Return a (row, col) point, or a list of them, moved into a window whose top-left is ``offset``."""
    if len(value) and isinstance(value[0], (list, tuple)):
        return [_shifted(v, offset) for v in value]
    return [round(float(value[0]) - offset[0], 5), round(float(value[1]) - offset[1], 5)]


def _frame(labels: np.ndarray, rng: np.random.Generator, config: Randomisation) -> tuple[int, ...] | None:
    """Return a window (row0, col0, rows, cols) to crop and/or pad to, or None; it keeps the bodies' centre inside."""
    crop, pad = config.fires(rng, "crop"), config.fires(rng, "pad")
    if not crop and not pad:
        return None
    box = label_box(labels)
    window = []
    for axis, n in enumerate(labels.shape):
        centre = n / 2 if box is None else (box[axis] + box[axis + 2]) / 2
        keep = max(32, int(round(n * rng.uniform(*config.crop_keep)))) if crop else n
        lo, hi = max(0, int(centre - 0.8 * keep)), min(n - keep, int(centre - 0.2 * keep))
        start = int(rng.integers(lo, hi + 1)) if crop and hi >= lo else max(0, min(n - keep, int(centre - keep / 2)))
        before, after = (int(round(n * rng.uniform(*config.pad_share))) for _ in range(2)) if pad else (0, 0)
        window.append((start - before, keep + before + after))
    return window[0][0], window[1][0], window[0][1], window[1][1]


def _acquire(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, config: Randomisation, done: dict) -> None:
    """Apply what happens before processing: shutters, a lead marker, grid lines, blur and noise (in place)."""
    if config.fires(rng, "collimation"):
        done["collimation"] = overlays.collimate(x, labels, rng)
    if config.fires(rng, "marker"):
        done["marker"] = overlays.lead_marker(x, labels, rng)
    if config.fires(rng, "grid"):
        done["grid"] = overlays.grid_lines(x, rng, config.grid_contrast)
    if config.fires(rng, "blur"):
        sigma = float(rng.uniform(*config.blur_px))
        x[:] = blur3(x, sigma) if sigma < 0.8 else ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=3.0)
        done["blur_px"] = round(sigma, 4)
    if config.fires(rng, "noise"):
        sd = float(rng.uniform(*config.noise_sd))
        # Two random bytes summed: triangular noise, as good as Gaussian at these levels and five times cheaper.
        pair = np.frombuffer(rng.bytes(2 * x.size), np.uint8).reshape(2, *x.shape)
        noise = pair[0].astype(np.float32)
        noise += pair[1]
        noise -= np.float32(255.0)
        noise *= np.float32(sd / np.sqrt(2 * (256**2 - 1) / 12))
        x += noise
        done["noise_sd"] = round(sd, 5)


def _process(x: np.ndarray, rng: np.random.Generator, config: Randomisation, done: dict) -> None:
    """Apply presentation processing (in place): contrast, spatial equalisation or sharpening, one look-up table."""
    if config.fires(rng, "contrast"):
        gain, shift = float(rng.uniform(*config.contrast_gain)), float(rng.uniform(*config.exposure))
        mid = np.float32(np.median(x[::8, ::8]))
        x -= mid
        x *= np.float32(gain)
        x += mid + np.float32(shift)
        np.clip(x, 0.0, 1.0, out=x)
        done["contrast"] = {"gain": round(gain, 4), "exposure": round(shift, 4)}
    equalise = config.fires(rng, "equalise")
    global_eq = equalise and rng.random() < 0.5
    if equalise and not global_eq:  # multiscale: take away part of the large-scale density trend
        share, sigma = float(rng.uniform(0.3, 0.9)), float(rng.uniform(0.04, 0.12) * max(x.shape))
        trend = _smooth(x, sigma)
        trend -= np.float32(trend.mean())
        trend *= np.float32(share)
        x -= trend
        done["equalise"] = {"kind": "multiscale", "share": round(share, 4), "sigma_px": round(sigma, 2)}
    if config.fires(rng, "unsharp"):
        sigma, amount = float(rng.uniform(*config.unsharp_px)), float(rng.uniform(*config.unsharp_amount))
        detail = x - _smooth(x, sigma)
        detail *= np.float32(amount)
        x += detail
        done["unsharp"] = {"sigma_px": round(sigma, 2), "amount": round(amount, 4)}
    if config.fires(rng, "detail"):  # as bone-window DRR renderers and strong multiscale processing show a spine
        _bone_detail(x, rng, config, done)
    lut, steps = _lut(x, rng, config, global_eq)
    if steps:
        index = np.clip(x, 0.0, 1.0, out=x)
        index *= np.float32(_LUT_SIZE - 1)
        x[:] = lut[np.rint(index).astype(np.int32)]
        done["lut"] = steps


def _bone_detail(x: np.ndarray, rng: np.random.Generator, config: Randomisation, done: dict) -> None:
    """Keep the edges and a little of the image (in place): cortices and endplates bright, the trabecular inside of
    a body and the soft tissue dim, as a thresholded DRR or a strong multiscale LUT shows them."""
    sigma = float(rng.uniform(*config.detail_sigma) * max(x.shape))
    keep = float(rng.uniform(*config.detail_keep))
    detail = x - _smooth(x, sigma)
    np.maximum(detail, np.float32(-0.25) * np.abs(detail).max(), out=detail)  # dark halos stay dark, not black
    x *= np.float32(keep)
    x += detail * np.float32(4.0)
    lo, hi = np.quantile(x[::4, ::4], [float(rng.uniform(0.01, 0.6)), 0.998])  # soft tissue grey to black
    x -= np.float32(lo)
    x *= np.float32(1.0 / max(float(hi - lo), 1e-6))
    np.clip(x, 0.0, 1.0, out=x)
    done["detail"] = {"sigma_px": round(sigma, 2), "keep": round(keep, 4)}


def _lut(x: np.ndarray, rng: np.random.Generator, config: Randomisation, global_eq: bool) -> tuple[np.ndarray, list]:
    """Return one look-up table over [0, 1] composing the point operations drawn now, and their records.

    Every step is monotone, so the quantiles a window is placed at are the table's values at the image's own.
    """
    grid = np.linspace(0.0, 1.0, _LUT_SIZE, dtype=np.float32)
    lut, steps = grid.copy(), []
    sample = np.clip(x[::4, ::4], 0.0, 1.0).ravel()
    if global_eq:
        hist = np.bincount(np.rint(sample * (_LUT_SIZE - 1)).astype(np.int64), minlength=_LUT_SIZE)
        cdf = np.cumsum(hist, dtype=np.float64) / max(hist.sum(), 1)
        share = float(rng.uniform(0.4, 1.0))
        lut = (1 - share) * lut + share * cdf.astype(np.float32)
        steps.append({"kind": "histogram_equalisation", "share": round(share, 4)})
    if config.fires(rng, "window"):
        q_lo, q_hi = rng.uniform(0.0, config.window_quantiles[0]), rng.uniform(config.window_quantiles[1], 1.0)
        lo, hi = np.interp(np.quantile(sample, [q_lo, q_hi]), grid, lut)
        lut = np.clip((lut - lo) / max(hi - lo, 1e-3), 0.0, 1.0)
        steps.append({"kind": "window", "low": round(float(lo), 4), "high": round(float(hi), 4)})
    elif config.fires(rng, "sigmoid"):
        centre = float(np.interp(np.quantile(sample, rng.uniform(0.3, 0.7)), grid, lut))
        width = float(rng.uniform(*config.sigmoid_width))
        ends = 1.0 / (1.0 + np.exp(-(np.array([0.0, 1.0]) - centre) / width))
        lut = (1.0 / (1.0 + np.exp(-(lut - centre) / width)) - ends[0]) / (ends[1] - ends[0])
        steps.append({"kind": "sigmoid", "centre": round(centre, 4), "width": round(width, 4)})
    if config.fires(rng, "gamma"):
        gamma = float(np.exp(rng.uniform(*np.log(config.gamma))))
        lut = np.clip(lut, 0.0, 1.0) ** gamma
        steps.append({"kind": "gamma", "gamma": round(gamma, 4)})
    if config.fires(rng, "range"):
        low, high = float(rng.uniform(*config.range_low)), float(rng.uniform(*config.range_high))
        lut = low + (high - low) * np.clip(lut, 0.0, 1.0)
        steps.append({"kind": "stored_range", "low": round(low, 4), "high": round(high, 4)})
    return lut.astype(np.float32), steps


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Return ``x`` Gaussian-blurred by ``sigma`` px; wide blurs run on a block-averaged grid, then upsampled."""
    k = max(1, int(sigma // 3))
    if k == 1:
        return ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=3.0)
    h, w = (x.shape[0] // k) * k, (x.shape[1] // k) * k
    small = x[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma / k, mode="nearest", truncate=3.0)
    return upsample(small, k, x.shape)
