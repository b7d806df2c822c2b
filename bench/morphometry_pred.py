"""Heights, VCR and grades from predicted labelmaps against the truth: stage 1 alone, stage 1 + 2 as served (the
heights of the bodies stage 2 drew from the mean of the six-point landmarks' points, models/landmarks.pt, and the
outline's), stage 1 + 2 with the heights off the outlines alone (``heights=outline``) or the landmarks alone
(``heights=landmarks``), and stage 1 + 2 fused with the fracture detector, on the same held-out images.

Sets (never trained on): simulated full-size radiographs (series seed 4_444: irregular phantom, randomised
processing, fractures in 40 %) and CT-DRRs with fractures made in the CT (series seed 9_000, fractures in 70 %).
Every image goes through spinemorph.inference.analyse as the server runs it, with the file's facing (the facing is
bench/real_anatomy.py's business) and the gates on; a refused grade counts as missed.

  height MAE, VCR MAE / Pearson r, Genant kappa: spinemorph.evaluation.morphometry against the truth six points,
      over every measured vertebra and (in brackets) over the graded ones alone, the rows a reader may trust;
  grade-1 sensitivity at per-vertebra specificity >= 98 %: each graded vertebra scored by its worst height
      reduction (stage 1, stage 1 + 2) or by the soft vote of bench/vcf_detection.py (mean of the detector's score
      and the morphometry's probability), a refused one 0 (no call, as fracture_calls makes none), the threshold
      the lowest that keeps 98 % of normal vertebrae below it;
  paired by body: the same figures with each truth vertebra against the measured record of the same body (the
      nearest centre) whatever its name: the morphometry apart from the level naming, which the pairing by name
      also scores (a body named one level off is compared with its neighbour's truth);
  time: a 2048x2048 DICOM DX read, analysed and written, one thread, after model load, median of 5.

Usage: .venv/bin/python bench/morphometry_pred.py [--n-sim 40] [--n-drr 16] [--model sample-apps/spinemorph_levels]
Writes bench/out/morphometry_pred.json and bench/out/morphometry_pred.png (Bland-Altman, confusion matrices).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from real_anatomy_sets import CT, _randomised  # noqa: E402

from spinemorph.evaluation.morphometry import Pairs, compare, readable_truth, summarise  # noqa: E402
from spinemorph.inference import load_model  # noqa: E402
from spinemorph.inference.analyse import analyse, load_landmarks, load_refiner  # noqa: E402
from spinemorph.inference.fusion import reduction, soft_vote  # noqa: E402
from spinemorph.io import Radiograph, sagittal_affine  # noqa: E402

METHODS = ("stage 1", "stage 1 + 2", "stage 1 + 2, outline heights", "stage 1 + 2, landmark heights",
           "stage 1 + 2 + detector")
#: (method, stage 2, heights): the served default last, as the detector's soft vote reads its bodies.
WAYS = (("stage 1", False, "outline"), ("stage 1 + 2, landmark heights", True, "landmarks"),
        ("stage 1 + 2, outline heights", True, "outline"), ("stage 1 + 2", True, "mean"))


def cases(name: str, n: int) -> list[tuple[Radiograph, dict]]:
    """Return ``n`` held-out (radiograph with its facing, truth) pairs of a set."""
    out = []
    if name == "sim":
        from spinemorph.data.simulate import SimConfig, simulate

        for i in range(n):
            s = simulate(4_444, i, SimConfig(size="full", fracture_rate=0.4, label_sacrum=True))
            out.append(_pair(*_randomised(s.image, s.labels, s.truth, 4_444, i)))
    else:
        from spinemorph.data.ct import load_ct
        from spinemorph.data.ct_cases import CaseConfig, ct_drr_case
        from spinemorph.data.drr import DrrConfig

        ct = load_ct(CT / "cxr.nii.gz", CT / "mask.nii.gz")
        config = CaseConfig(drr=DrrConfig(spacing_mm=0.5), fracture_rate=0.7)
        for i in range(n):
            out.append(_pair(*_randomised(*ct_drr_case(ct, np.random.default_rng([9_000, i]), config), 9_000, i)))
    return out


def _pair(image: np.ndarray, labels: np.ndarray, truth: dict) -> tuple[Radiograph, dict]:
    spacing = tuple(truth["pixel_spacing_mm"])
    return Radiograph(image, spacing, "PixelSpacing", truth["facing"], sagittal_affine(spacing, truth["facing"]),
                      {"format": "dicom"}), truth


def _truth_grade(v: dict) -> int:
    return int(v.get("genant_grade_shown", v.get("genant_grade_measured", v.get("genant_grade", 0))) or 0)


def run(pairs, net, spec, refiner, detector, landmarks=None) -> tuple[dict, Counter]:
    """Return each method's pairs (by name, by body, and by name on the truth bodies their own truth mask reads
    right: ``readable_truth``), vertebra scores (score, truth grade) and CPU seconds per image; and the counts of
    ``readable_truth`` over the set."""
    out = {m: {"pairs": Pairs(), "body_pairs": Pairs(), "readable_pairs": Pairs(), "scores": [], "seconds": []}
           for m in METHODS}
    counts = Counter()
    for image, truth in pairs:
        truth_by = {v["level"]: v for v in truth["vertebrae"] if "Ha_mm" in v and not v.get("truncated")}
        readable, found = readable_truth(truth)
        counts.update(found)
        mine = []
        for method, stage2, heights in (w for w in WAYS if landmarks or "heights" not in w[0]):  # no network: no row
            start = time.process_time()
            done = analyse(image, net, spec, refiner=refiner if stage2 else None, landmarks=landmarks,
                           heights=heights)
            out[method]["seconds"].append(time.process_time() - start)
            compare(done.morphometry, truth, out[method]["pairs"])
            compare(done.morphometry, truth, out[method]["body_pairs"], by="body")  # apart from the naming
            compare(done.morphometry, truth, out[method]["readable_pairs"], levels=readable)
            # a refused vertebra (no grade) is no call, as in the product's fracture_calls: it scores 0
            mine = [(r if rec.genant_grade is not None else 0.0, _truth_grade(truth_by[rec.level]), rec.code,
                     rec.genant_grade is not None) for rec in done.morphometry.vertebrae
                    if rec.level in truth_by and (r := reduction(rec)) is not None]
            out[method]["scores"] += [m[:3] for m in mine]
        if detector is not None:  # the soft vote on stage 1 + 2's bodies (the last loop's)
            from spinemorph.detection.inference import detect

            det = detect(image.pixels, *detector, image.spacing_mm, image.facing, 0.05, scores_only=True)
            score = {d.code: d.score for d in det.candidates}
            out["stage 1 + 2 + detector"]["scores"] += [(soft_vote(score.get(code, 0.0), r) if graded else 0.0,
                                                          grade, code) for r, grade, code, graded in mine]
    return out, counts


def sensitivity_at(scores, specificity: float = 0.98) -> tuple[float, float, int]:
    """Return (grade-1 sensitivity, threshold, grade-1 count) at the lowest threshold meeting ``specificity``."""
    s = np.array([x[0] for x in scores])
    g = np.array([x[1] for x in scores])
    normal, grade1 = s[g == 0], s[g == 1]
    if not normal.size or not grade1.size:
        return float("nan"), float("nan"), int(grade1.size)
    threshold = float(np.quantile(normal, specificity, method="higher")) + 1e-9
    return float(np.mean(grade1 >= threshold)), threshold, int(grade1.size)


def end_to_end_seconds(net, spec, refiner, repeats: int = 5, landmarks=None, heights: str = "mean") -> float:
    """Return the median seconds to read, analyse and write a 2048² DICOM DX, one thread, after model load."""
    import torch

    from spinemorph.data.simulate import SimConfig, simulate
    from spinemorph.io import read_radiograph, write_dx, write_labelmap
    from spinemorph.measure.report import write_outputs

    torch.set_num_threads(1)
    s = simulate(4_445, 0, SimConfig(size=(2048, 2048), fov="lumbar"))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        write_dx(Path(tmp) / "dx.dcm", s.image, s.spacing_mm, s.truth["facing"])
        for _ in range(repeats):
            start = time.perf_counter()
            image = read_radiograph(Path(tmp) / "dx.dcm")
            done = analyse(image, net, spec, refiner=refiner, landmarks=landmarks, heights=heights)
            write_labelmap(Path(tmp) / "labels.nii.gz", done.labels, image)
            write_outputs(done.morphometry, tmp, "dx", done.labels, image.pixels)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    """Run the three methods on both sets; print, plot and save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "sample-apps" / "spinemorph_levels"))
    parser.add_argument("--detector", default=str(REPO / "sample-apps" / "spinemorph_vcf_detection"))
    parser.add_argument("--n-sim", type=int, default=40)
    parser.add_argument("--n-drr", type=int, default=16)
    args = parser.parse_args()
    net, spec = load_model(args.model)
    refiner, landmarks = load_refiner(args.model), load_landmarks(args.model)
    if refiner is None:
        raise SystemExit(f"{args.model} has no stage-2 network (models/refine.pt).")
    from spinemorph.detection import load_detector

    detector = load_detector(args.detector)
    results, figures, truth_counts = {}, {}, {}
    for name, n in (("sim", args.n_sim), ("drr", args.n_drr)):
        results[name], truth_counts[name] = run(cases(name, n), net, spec, refiner, detector, landmarks)
        for method, r in results[name].items():
            summary = summarise(r["pairs"]) if r["pairs"].heights["Ha"] else {}
            if r["body_pairs"].heights["Ha"]:
                summary["by_body"] = summarise(r["body_pairs"])
            if r["readable_pairs"].heights["Ha"]:
                summary["readable_truth"] = summarise(r["readable_pairs"])
            sens, threshold, n1 = sensitivity_at(r["scores"])
            figures[f"{name} | {method}"] = {**summary, "grade1_sensitivity_at_spec98": sens, "threshold": threshold,
                                             "grade1_vertebrae": n1, "cpu_s_per_image":
                                                 float(np.mean(r["seconds"])) if r["seconds"] else None}
    figures["end_to_end_2048_s"] = {m: end_to_end_seconds(net, spec, refiner if stage2 else None, landmarks=landmarks,
                                                          heights=h) for m, stage2, h in WAYS
                                    if landmarks or "heights" not in m}
    print("set | method | height MAE mm (graded) | VCR MAE (graded) | VCR r (graded) | kappa | "
          "G1 sens @ spec 98 % (n) | refused | s/img")
    nan = float("nan")
    for key, f in figures.items():
        if key.startswith("end_to_end"):
            continue
        print(f"{key} | {f.get('height_mae_mm', nan):.3f} ({f.get('height_mae_graded_mm', nan):.3f}) | "
              f"{f.get('vcr_mae_points', nan):.2f} ({f.get('vcr_mae_graded_points', nan):.2f}) | "
              f"{f.get('vcr_r', nan):.3f} ({f.get('vcr_r_graded', nan):.3f}) | {f.get('genant_kappa', nan):.3f} | "
              f"{f['grade1_sensitivity_at_spec98']:.3f} ({f['grade1_vertebrae']}) | {f.get('refused', 0):.0f} | "
              f"{f['cpu_s_per_image'] or float('nan'):.3f}")
    print("set | method | graded against both neighbours: VCR MAE / r | graded against one")
    for key, f in figures.items():
        if not key.startswith("end_to_end") and "vcr_mae_graded_both_neighbours" in f:
            print(f"{key} | {f['vcr_mae_graded_both_neighbours']:.2f} / {f['vcr_r_graded_both_neighbours']:.3f} | "
                  f"{f['graded_one_neighbour']:.0f}")
    print("set | method | paired by body, not by level name: height MAE mm (graded) | VCR MAE / r (graded) | kappa | "
          "measured under another level's name")
    for key, f in figures.items():
        if not key.startswith("end_to_end") and "by_body" in f:
            b = f["by_body"]
            print(f"{key} | {b['height_mae_mm']:.3f} ({b['height_mae_graded_mm']:.3f}) | {b['vcr_mae_points']:.2f} / "
                  f"{b['vcr_r']:.3f} ({b['vcr_mae_graded_points']:.2f} / {b['vcr_r_graded']:.3f}) | "
                  f"{b['genant_kappa']:.3f} | {b['misnamed']:.0f}")
    print("set | truth bodies in view | its measure reads none | no lesion made | of those read as a fracture by "
          "the measure of their own truth mask")
    for name, c in truth_counts.items():
        print(f"{name} | {c['in_view']} | {c['unreadable']} | {c['no_lesion']} | {c['fractured_unmade']}")
    figures["truth_counts"] = {name: dict(c) for name, c in truth_counts.items()}
    print("set | method | by name, on the truth bodies their own mask reads right: height MAE mm (graded) | "
          "VCR MAE / r (graded) | kappa | measured")
    for key, f in figures.items():
        if "readable_truth" in f:
            b = f["readable_truth"]
            print(f"{key} | {b['height_mae_mm']:.3f} ({b['height_mae_graded_mm']:.3f}) | {b['vcr_mae_points']:.2f} / "
                  f"{b['vcr_r']:.3f} ({b['vcr_mae_graded_points']:.2f} / {b['vcr_r_graded']:.3f}) | "
                  f"{b['genant_kappa']:.3f} | {b['vertebrae'] + b['refused']:.0f}")
    print("2048² DICOM DX end to end, one thread, after model load:", figures["end_to_end_2048_s"])
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "morphometry_pred.json").write_text(json.dumps(figures, indent=1, default=float))
    plot(results, out / "morphometry_pred.png")


def plot(results: dict, path: Path) -> None:
    """Bland-Altman of VCR and the confusion matrix by Genant grade, per set, stage 1 against stage 1 + 2."""
    fig, axes = plt.subplots(len(results), 3, figsize=(13, 4 * len(results)), squeeze=False)
    for row, (name, by) in zip(axes, results.items(), strict=True):
        for method, colour in (("stage 1", "tab:grey"), ("stage 1 + 2, outline heights", "tab:green"),
                               ("stage 1 + 2, landmark heights", "tab:orange"), ("stage 1 + 2", "tab:blue")):
            if not by[method]["pairs"].vcr:
                continue
            v = np.asarray(by[method]["pairs"].vcr, float).reshape(-1, 2)
            row[0].scatter(v.mean(1), v[:, 1] - v[:, 0], s=6, alpha=0.6, color=colour, label=method)
        row[0].set(title=f"{name}: VCR Bland-Altman", xlabel="mean of truth and measured", ylabel="measured - truth")
        row[0].axhline(0, color="k", lw=0.5)
        row[0].legend(fontsize=7)
        for ax, method in zip(row[1:], ("stage 1", "stage 1 + 2"), strict=True):
            g = np.asarray(by[method]["pairs"].grade, int).reshape(-1, 2)
            table = np.zeros((4, 4), int)
            np.add.at(table, (g[:, 0], g[:, 1]), 1)
            ax.imshow(np.log1p(table), cmap="Blues")
            for (i, j), c in np.ndenumerate(table):
                ax.text(j, i, str(c), ha="center", va="center", fontsize=8)
            ax.set(title=f"{name}: {method}", xlabel="measured grade", ylabel="true grade", xticks=range(4),
                   yticks=range(4))
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
