"""Stage 2's heights three ways, through the product's grading (``spinemorph.inference.analyse``'s ``heights``): from
the mean of the six-point landmarks' points (models/landmarks.pt) and the outline's (served), from the outlines
alone, from the landmarks alone.

Calibration images only, all three ways in the same run: 60 full-size simulations (series 4500, 4600 and
4700; bench/morphometry_pred.py's scoring and the confusion matrix of grades), 60
simulations at 512 px (1200) and 24 CT-DRRs (8000), bench/real_anatomy.py's scoring (0 skips a set). Never the test
series.

Usage: .venv/bin/python bench/landmarks_graded.py [--n-full 20] [--series 4500,4600,4700] [--n-sim 60] [--n-drr 24]
Writes bench/out/landmarks_graded.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import landmarks as lm  # noqa: E402
import morphometry_pred as mp  # noqa: E402
import numpy as np  # noqa: E402
import real_anatomy as ra  # noqa: E402
from real_anatomy_sets import drr, sim  # noqa: E402

from spinemorph.evaluation.morphometry import summarise  # noqa: E402
from spinemorph.inference import load_model  # noqa: E402
from spinemorph.inference.analyse import load_landmarks, load_refiner  # noqa: E402

#: name: (bench/morphometry_pred.py's method, the ``heights`` option)
WAYS = {"mean (served)": ("stage 1 + 2", "mean"), "outline heights": ("stage 1 + 2, outline heights", "outline"),
        "landmark heights": ("stage 1 + 2, landmark heights", "landmarks")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-full", type=int, default=20, help="full-size simulations per series")
    parser.add_argument("--series", default="4500,4600,4700", help="full-size calibration series")
    parser.add_argument("--n-sim", type=int, default=60)
    parser.add_argument("--n-drr", type=int, default=24)
    args = parser.parse_args()
    seg, spec = load_model(lm.BUNDLE)
    refiner, landmarks = load_refiner(lm.BUNDLE), load_landmarks(lm.BUNDLE)
    full = [mp._pair(*lm.case(int(seed), i)) for seed in args.series.split(",") for i in range(args.n_full)]
    sets = {k: v for k, v in (("sim", sim(args.n_sim, 1200) if args.n_sim else []),
                              ("drr", drr(args.n_drr, 8000) if args.n_drr else [])) if v}
    both = mp.run(full, seg, spec, refiner, None, landmarks)
    out = {}
    for name, (method, heights) in WAYS.items():
        s = summarise(both[method]["pairs"])
        s["g1_sens_spec98"] = mp.sensitivity_at(both[method]["scores"])[0]
        grades = np.asarray(both[method]["pairs"].grade, int).reshape(-1, 2)
        s["confusion_true_by_measured"] = np.histogram2d(grades[:, 0], grades[:, 1], bins=4, range=[[0, 4]] * 2)[
            0].astype(int).tolist()
        pictures = []
        out[name] = {"full": s, **ra.run_model(lm.BUNDLE, sets, pictures, heights)}
        out[name]["landmarks_disagree"] = sum("landmarks_disagree" in r.flags for *_, m in pictures
                                              for r in m.vertebrae)
    keys = ("height_mae_graded_mm", "height_mae_mm", "vcr_mae_graded_points", "vcr_r_graded",
            "vcr_mae_graded_both_neighbours", "vcr_r_graded_both_neighbours", "graded_one_neighbour",
            "vcr_mae_points", "vcr_r", "genant_kappa", "refused", "g1_sens_spec98")
    print(f"{'figure':44s} " + " ".join(f"{m:>18s}" for m in out))
    for k in keys:
        print(f"{'full-size ' + k:44s} " + " ".join(f"{out[m]['full'].get(k, float('nan')):18.3f}" for m in out))
    for m in out:
        table = out[m]["full"]["confusion_true_by_measured"]
        print(f"full-size grades, {m} (rows: true 0-3, columns: measured 0-3): {table}")
    for s in sets:
        print(f"{s + ' false G>=1 per image':44s} " + " ".join(f"{out[m][s]['false_grades_per_image']:18.3f}"
                                                             for m in out))
        print(f"{s + ' G1/G2/G3 found':44s} " + " ".join(
            f"{'/'.join(f'{v[0]:.2f}' for v in out[m][s]['sensitivity_by_grade'].values()):>18s}" for m in out))
    print(f"{'sets: landmarks_disagree':44s} " + " ".join(f"{out[m]['landmarks_disagree']:18d}" for m in out))
    path = REPO / "bench" / "out" / "landmarks_graded.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
