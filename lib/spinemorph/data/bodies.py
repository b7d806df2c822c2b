"""Vertebral bodies from whole-vertebra CT masks, and the mapping of CT vertebra labels to VerSe codes.

The masks of VerSe or TotalSegmentator hold the whole vertebra: body, pedicles, laminae and processes. A lateral
radiograph's labels hold only the body, so :func:`extract_bodies` cuts everything behind the posterior wall of
the body off. That wall is the anterior wall of the spinal canal, which the vertebrae themselves outline:

1. **Canal, per axial slice.** The canal is the largest hole the union of all vertebra masks encloses in the
   slice (``binary_fill_holes(union) & ~union``), kept when its area lies within ``CANAL_AREA_MM2``. Where the
   slice alone encloses none (the arch cut obliquely, a gap in the mask), the union over a slab of
   ``±SLAB_HALF_MM`` is tried, widening slice by slice. At disc levels and the scan's ends there is often none.
2. **Canal line.** For each slice with a canal: its centroid (x, y), and its anterior wall: the anterior-most
   canal voxel within ``±CANAL_HALF_WIDTH_MM`` of the centroid, plus half a voxel (the bone surface). Slices
   more than ``OUTLIER_MM`` off a running median (over ±20 mm worth of slices with a canal) are dropped; the rest are
   interpolated linearly over the slices without a canal (held constant past the ends), then smoothed along
   the spine (Gaussian, ``SMOOTH_MM``).
3. **Body.** Per vertebra, the voxels whose AP position lies more than ``margin_mm`` anterior of the smoothed
   wall in their slice; of those, the largest 6-connected component, with its holes (cancellous gaps some
   masks leave) filled slice by slice. The cut removes pedicles, laminae and spinous and transverse
   processes; it keeps the body apart from the slivers of its posterolateral corners that bulge behind the
   wall's midline point, and keeps the pedicles' roots where they join the body in front of the cut.

Arrays are in RAS voxel order (axis 0 towards the patient's right, 1 anterior, 2 superior), as
``spinemorph.data.ct`` reorients them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spinemorph.levels import is_level_code, level_code

__all__ = [
    "LABEL_CONVENTIONS", "TOTALSEGMENTATOR_V2", "CanalLine", "Bodies", "vertebra_codes", "extract_bodies", "find_canal",
]

log = logging.getLogger(__name__)

LABEL_CONVENTIONS = ("auto", "verse", "totalsegmentator")
#: TotalSegmentator v2 vertebra ids (26 = vertebrae_S1 ... 50 = vertebrae_C1) to VerSe codes; 25, the whole
#: sacrum, and the organ ids are not vertebrae and map to nothing.
TOTALSEGMENTATOR_V2: dict[int, int] = {
    26 + i: level_code(name) for i, name in enumerate(
        ["S1", *(f"L{k}" for k in range(5, 0, -1)), *(f"T{k}" for k in range(12, 0, -1)),
         *(f"C{k}" for k in range(7, 0, -1))])
}
CANAL_AREA_MM2 = (30.0, 1000.0)
CANAL_HALF_WIDTH_MM = 3.0
OUTLIER_MM = 6.0
SMOOTH_MM = 5.0
SLAB_HALF_MM = 5.0


@dataclass(frozen=True)
class CanalLine:
    """The spinal canal per axial slice, in voxel indices.

    Attributes:
        center: (K, 2) canal centre (i, j) per slice, interpolated and smoothed.
        wall: (K,) j of the canal's anterior wall (the posterior surface of the body) per slice.
        found: (K,) True where the slice (or its slab) showed a closed canal that passed the outlier check.
    """

    center: np.ndarray
    wall: np.ndarray
    found: np.ndarray


@dataclass(frozen=True)
class Bodies:
    """Vertebral-body labels (uint8 VerSe codes, the shape of the input) and the canal line they were cut at."""

    labels: np.ndarray
    canal: CanalLine


def vertebra_codes(mask: np.ndarray, convention: str = "auto") -> np.ndarray:
    """Return the vertebrae of a label volume as VerSe codes (uint8); every other structure becomes 0.

    ``convention`` is "verse", "totalsegmentator" (v2 ids; v1 numbered its classes differently) or "auto":
    TotalSegmentator when any value exceeds 28, the largest VerSe code, else VerSe.
    """
    if convention not in LABEL_CONVENTIONS:
        raise ValueError(f"Unknown label convention {convention!r}: use one of {', '.join(LABEL_CONVENTIONS)}.")
    values = np.asarray(mask)
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)
    if values.size and values.min() < 0:
        raise ValueError("A label volume holds non-negative ids; this one has negative values.")
    top = int(values.max(initial=0))
    if convention == "auto":
        convention = "totalsegmentator" if top > 28 else "verse"
        log.info("Label values reach %d: reading them as %s ids.", top,
                 "TotalSegmentator v2" if convention == "totalsegmentator" else "VerSe")
    lut = np.zeros(max(top, 50) + 1, np.uint8)
    if convention == "totalsegmentator":
        for ts_id, code in TOTALSEGMENTATOR_V2.items():
            lut[ts_id] = code
    else:
        for code in range(1, 29):
            lut[code] = code if is_level_code(code) else 0
    return lut[values]


def extract_bodies(vertebrae: np.ndarray, zooms: tuple[float, float, float], margin_mm: float = 1.0) -> Bodies:
    """Return the vertebral bodies of a VerSe-coded whole-vertebra volume (RAS order) and the canal line used.

    Args:
        vertebrae: (I, J, K) VerSe codes, axis 1 anterior and axis 2 superior.
        zooms: voxel size (mm) along the three axes.
        margin_mm: how far anterior of the canal's anterior wall the cut lies.
    """
    vertebrae = np.asarray(vertebrae)
    if vertebrae.ndim != 3:
        raise ValueError(f"Expected a 3D label volume, got shape {vertebrae.shape}.")
    canal = find_canal(vertebrae > 0, zooms)
    bodies = np.zeros(vertebrae.shape, np.uint8)
    if not canal.found.any():
        log.warning("No spinal canal found in any axial slice: no vertebral bodies extracted.")
        return Bodies(bodies, canal)
    cut = canal.wall + margin_mm / zooms[1]
    anterior = np.arange(vertebrae.shape[1])[:, None] > cut[None, :]  # (J, K)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    for code, box in enumerate(ndimage.find_objects(vertebrae), start=1):
        if box is None:
            continue
        part = (vertebrae[box] == code) & anterior[None, box[1], box[2]]
        comp, n = ndimage.label(part)
        if n == 0:
            log.info("Level %d keeps nothing anterior of the canal; it has no body here.", code)
            continue
        body = comp == 1 + int(np.argmax(np.bincount(comp.ravel())[1:]))
        body = ndimage.binary_fill_holes(body, structure=in_plane)  # cancellous gaps some masks leave
        bodies[box][body & np.isin(vertebrae[box], (0, code))] = code
    return Bodies(bodies, canal)


def find_canal(union: np.ndarray, zooms: tuple[float, float, float]) -> CanalLine:
    """Return the spinal canal line of a boolean vertebra mask (RAS order), found slice by slice."""
    n = union.shape[2]
    raw_center, raw_wall = np.full((n, 2), np.nan), np.full(n, np.nan)
    box = ndimage.find_objects(union.astype(np.uint8))
    if not box:
        return CanalLine(np.zeros((n, 2)), np.zeros(n), np.zeros(n, bool))
    bi, bj, bk = box[0]
    sub = union[bi, bj]
    for k in range(bk.start, bk.stop):
        for half in range(max(int(round(SLAB_HALF_MM / zooms[2])), 0) + 1):
            found = _slice_canal(sub[:, :, max(k - half, 0): k + half + 1].any(axis=2), zooms)
            if found is not None:
                (ci, cj), wall = found
                raw_center[k], raw_wall[k] = (ci + bi.start, cj + bj.start), wall + bj.start
                break
    return _smooth_line(raw_center, raw_wall, zooms)


def _slice_canal(sl: np.ndarray, zooms: tuple[float, float, float]) -> tuple[tuple[float, float], float] | None:
    """Return the canal centroid (i, j) and anterior wall j in one axial slice (or slab) of bone, or None."""
    holes, count = ndimage.label(ndimage.binary_fill_holes(sl) & ~sl)
    if count == 0:
        return None
    sizes = np.bincount(holes.ravel())[1:]
    best = int(np.argmax(sizes))
    area = sizes[best] * zooms[0] * zooms[1]
    if not CANAL_AREA_MM2[0] <= area <= CANAL_AREA_MM2[1]:
        return None
    ii, jj = np.nonzero(holes == best + 1)
    ci, cj = ii.mean(), jj.mean()
    near = np.abs(ii - ci) * zooms[0] <= CANAL_HALF_WIDTH_MM
    return (ci, cj), jj[near].max() + 0.5


def _smooth_line(center: np.ndarray, wall: np.ndarray, zooms: tuple[float, float, float]) -> CanalLine:
    """Return the canal line after outlier removal, interpolation over missing slices and smoothing."""
    zooms = np.asarray(zooms, dtype=np.float64)
    n = wall.size
    found = np.isfinite(wall)
    if found.any():
        ks = np.flatnonzero(found)
        pts = np.column_stack([center[ks] * zooms[:2], wall[ks] * zooms[1]])
        width = max(int(round(20.0 / zooms[2])), 1)  # median over ±20 mm worth of slices with a canal
        med = np.stack([ndimage.median_filter(pts[:, c], size=2 * width + 1, mode="nearest") for c in range(3)], 1)
        good = np.abs(pts - med).max(axis=1) <= OUTLIER_MM
        found[ks[~good]] = False
    if not found.any():
        return CanalLine(np.zeros((n, 2)), np.zeros(n), found)
    ks, k_all = np.flatnonzero(found), np.arange(n)
    sigma = SMOOTH_MM / zooms[2]
    cols = [np.interp(k_all, ks, v[ks]) for v in (center[:, 0], center[:, 1], wall)]
    cols = [ndimage.gaussian_filter1d(c, sigma, mode="nearest") for c in cols]
    return CanalLine(np.column_stack(cols[:2]), cols[2], found)
