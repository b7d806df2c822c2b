"""Project a phantom: Beer-Lambert line integrals on the detector and the body labelmap that goes with them.

A label pixel belongs to the body its ray crosses for the longest distance, so where two bodies overlap on
the detector (oblique rays at the edges of the field) each pixel still has exactly one level. The ground
truth in ``spinemorph.data.truth`` uses the same rule. A body's trabecular texture modulates its own line
integral inside its footprint, so it changes the image and never the labels.
"""

from __future__ import annotations

import numpy as np

from spinemorph.data.geometry import Projection
from spinemorph.data.resample import upsample

__all__ = ["render"]

_TRABECULA_MM = 0.9  # grain of the trabecular texture, in the patient


def _box_chords(prim, proj: Projection, box, step: int = 1) -> np.ndarray:
    """Return the chord length (mm) of ``prim`` at every pixel of ``box`` of the ``step`` grid, flattened."""
    origin, direction, norm = proj.box_rays(box, step)
    return prim.chord(origin, direction) * norm


def render(phantom, proj: Projection, context_step: int = 1, rib_step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return the line-integral image (float32) and the body labelmap (uint8, VerSe codes, S1 included).

    Soft tissue (``phantom.context``) varies slowly and is cast every ``context_step`` pixels, then
    interpolated; ribs, soft on a lateral view where left and right superimpose, every ``rib_step``
    pixels; the spine and pelvis at every pixel.
    """
    h, w = proj.shape
    line = np.zeros((h, w), np.float32)
    labels = np.zeros((h, w), np.uint8)
    best = np.zeros((h, w), np.float32)
    for body in phantom.bodies:
        box = proj.bbox(body.outer.corners())
        if box is None:
            continue
        r0, r1, c0, c1 = box
        origin, direction, norm = proj.box_rays(box)
        outer = body.outer.chord(origin, direction) * norm
        hit = outer > 0
        inner = np.zeros_like(outer)
        o = origin[:, hit] if proj.parallel else origin
        inner[hit] = body.inner.chord(o, direction[:, hit]) * norm[hit]
        shape = (r1 - r0, c1 - c0)
        density = body.outer.mu * outer + body.inner.mu * inner
        if body.texture is not None:
            density += (body.outer.mu + body.inner.mu) * inner * _texture(shape, *body.texture, proj)
        line[r0:r1, c0:c1] += density.reshape(shape)
        outer = outer.reshape(shape).astype(np.float32)
        mine = outer > best[r0:r1, c0:c1]
        best[r0:r1, c0:c1][mine] = outer[mine]
        labels[r0:r1, c0:c1][mine] = body.code
    for prim in _in_view(phantom.bone, proj):
        _accumulate(line, prim, proj)
    for prims, step in ((phantom.ribs, rib_step), (phantom.context, context_step)):
        prims = _in_view(prims, proj)
        if step <= 1:
            for prim in prims:
                _accumulate(line, prim, proj)
        elif prims:
            line += _coarse(prims, proj, step)
    return line, labels


def _texture(shape: tuple[int, int], seed: int, contrast: float, proj: Projection) -> np.ndarray:
    """Return band-limited noise over a box (flattened), of standard deviation about ``contrast``.

    The grain is ``_TRABECULA_MM`` in the patient; summing three neighbouring rows of the coarse noise streaks it
    along the body's axis, as the vertical trabeculae of a vertebral body are.
    """
    k = max(1, int(round(_TRABECULA_MM * proj.magnification / proj.pitch_mm)))
    white = np.random.default_rng(seed).standard_normal((-(-shape[0] // k) + 2, -(-shape[1] // k)), np.float32)
    coarse = white[:-2] + white[1:-1] + white[2:]
    coarse *= np.float32(contrast / np.sqrt(3.0) * (1.0 if k == 1 else 1.5))  # bilinear upsampling smooths
    return upsample(coarse, k, shape).ravel()


def _in_view(prims, proj: Projection) -> list:
    """Return the primitives whose bounding spheres reach the detector."""
    if not prims:
        return []
    spheres = [p.bounding_sphere() for p in prims]
    keep = proj.visible(np.stack([c for c, _ in spheres], axis=1), np.array([r for _, r in spheres]))
    return [p for p, k in zip(prims, keep, strict=True) if k]


def _accumulate(line: np.ndarray, prim, proj: Projection) -> None:
    box = proj.bbox(prim.corners())
    if box is None:
        return
    r0, r1, c0, c1 = box
    line[r0:r1, c0:c1] += (prim.mu * _box_chords(prim, proj, box)).reshape(r1 - r0, c1 - c0).astype(np.float32)


def _coarse(prims, proj: Projection, k: int) -> np.ndarray:
    """Return the line integrals of ``prims`` cast on a grid k times coarser, interpolated to full size."""
    h, w = proj.shape
    hc, wc = -(-h // k), -(-w // k)
    coarse = np.zeros((hc, wc), np.float32)
    for prim in prims:
        box = proj.bbox(prim.corners(), margin=k)
        if box is None:
            continue
        cbox = (box[0] // k, min(-(-box[1] // k), hc), box[2] // k, min(-(-box[3] // k), wc))
        r0, r1, c0, c1 = cbox
        coarse[r0:r1, c0:c1] += (prim.mu * _box_chords(prim, proj, cbox, k)).reshape(r1 - r0, c1 - c0)
    return upsample(coarse, k, (h, w))
