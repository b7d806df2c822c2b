"""Compression-fracture detection on held-out radiographs: the detector, measure-then-grade, and both combined.

Usage:
    .venv/bin/python bench/vcf_detection.py [--test .cache/test/vcf] [--detector sample-apps/spinemorph_vcf_detection]
        [--segmentation sample-apps/spinemorph_levels] [--out bench/out]

On one simulated test set that includes radiographs without fractures (as Paik et al. 2024 held out normal
radiographs), in the same run:
  (a) the detector (``spinemorph.detection``): a fracture is a detection scoring >= 0.5;
  (b) measure-then-grade: the default per-level segmentation model, then ``spinemorph.measure``; a fracture is a
      body graded Genant >= 1 (its height reduction, max(1 - wedge, 1 - biconcave, 1 - crush), >= 0.20);
  (c) both combined, a soft vote fixed before testing: the mean of the detector's score for a segmented body and
      the morphometry's probability p = logistic((reduction - 0.20) / 0.02); a fracture at >= 0.5.
Ground truth: the simulator's Genant grade; fractures at levels outside the detector's classes, or cut by the image
edge, are ignored (a detection on one is neither true nor false). Prints per-level AP@0.5 and mAP, the per-patient
table (the paper's Tables 2-3), per-vertebra sensitivity and specificity by Genant grade, and CPU time per image;
writes bench/out/vcf_detection.png (precision-recall curves) and bench/out/vcf_detection.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from spinemorph.conventions import GRADE_LIMITS  # noqa: E402
from spinemorph.detection import load_detector  # noqa: E402
from spinemorph.detection.inference import detect  # noqa: E402
from spinemorph.detection.targets import truth_grades  # noqa: E402
from spinemorph.evaluation.detection import (  # noqa: E402
    ImageDetections,
    ap_by_class,
    box_iou_np,
    confusion,
    match_image,
    pr_curve,
)
from spinemorph.inference import load_model, segment  # noqa: E402
from spinemorph.inference.fusion import reduction, soft_vote  # noqa: E402
from spinemorph.io import read_labelmap, read_radiograph  # noqa: E402
from spinemorph.levels import level_name  # noqa: E402
from spinemorph.measure import measure  # noqa: E402
from spinemorph.training import find_cases  # noqa: E402

METHODS = {"a": "(a) detector", "b": "(b) measure-then-grade", "c": "(c) combined"}
PAPER = {"map50": 0.58, "sensitivity": 79.8, "specificity": 89.4, "accuracy": 85.7, "f1": 82.6}
THRESHOLD = 0.5
GRADE_1 = GRADE_LIMITS[0]  # the height reduction at which Genant grade 1 starts


def boxes_of(labels: np.ndarray, codes) -> dict[int, np.ndarray]:
    """Return each code's tight box (row0, col0, row1, col1) in a labelmap."""
    out = {}
    for code in codes:
        rows, cols = np.nonzero(labels == code)
        if rows.size:
            out[int(code)] = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], float)
    return out


def best_overlap(box: np.ndarray, others: list[np.ndarray]) -> tuple[int, float]:
    """Return the index and IoU of the box in ``others`` overlapping ``box`` most (-1, 0 when none)."""
    if not others:
        return -1, 0.0
    iou = box_iou_np(box, np.array(others))[0]
    return int(iou.argmax()), float(iou.max())


def ground_truth(case, codes: set[int]) -> tuple[dict, set[int], set[int], list[int], dict]:
    """Return body boxes, the fractures to find, the ignored ones, the vertebrae to call, and the grades."""
    labels, _ = read_labelmap(case.label)
    grades = truth_grades(case.truth)
    gt = boxes_of(labels, [c for c in np.unique(labels) if c])
    fracture = {c for c, (g, t) in grades.items() if g >= 1 and not t and c in codes and c in gt}
    ignored = {c for c, (g, t) in grades.items() if g >= 1 and c not in fracture and c in gt}
    vertebrae = [c for c in gt if c in codes and not grades.get(c, (0, True))[1]]
    return gt, fracture, ignored, vertebrae, grades


def candidates(image, detector, det_spec, seg_net, seg_spec) -> tuple[dict[str, list], float, float, list]:
    """Return each method's scored candidates (code, box, score), the CPU seconds of (a) and (b), the detections."""
    codes = set(det_spec.codes)
    start = time.process_time()
    det = detect(image.pixels, detector, det_spec, image.spacing_mm, image.facing, THRESHOLD)
    time_a = time.process_time() - start
    start = time.process_time()
    seg = segment(image.pixels, seg_net, seg_spec)
    morph = measure(seg.labels, image.spacing_mm, image.facing)
    time_b = time.process_time() - start
    seg_boxes = boxes_of(seg.labels, [r.code for r in morph.vertebrae if r.code in codes])
    bodies = [(r.code, seg_boxes[r.code], reduction(r)) for r in morph.vertebrae if r.code in seg_boxes]
    bodies = [b for b in bodies if b[2] is not None]  # measured bodies only (not truncated, not unmeasurable)
    found = {"a": [(d.code, np.array(d.box), d.score) for d in det.candidates], "b": bodies, "c": []}
    used = set()
    for code, box, r in bodies:  # the soft vote: each segmented body with the detector's score for it
        hits = [i for i, (_, b, _) in enumerate(found["a"]) if box_iou_np(box, b)[0, 0] >= 0.5]
        used.update(hits)
        d = max((found["a"][i][2] for i in hits), default=0.0)
        found["c"].append((code, box, soft_vote(d, r)))
    found["c"] += [(c, b, s / 2) for i, (c, b, s) in enumerate(found["a"]) if i not in used]
    return found, time_a, time_b, det.detections


def evaluate_case(case, detector, det_spec, seg_net, seg_spec) -> dict:
    """Return one test image's ground truth, candidates and calls for the three methods, and timings."""
    gt, fracture, ignored, vertebrae, grades = ground_truth(case, set(det_spec.codes))
    found, time_a, time_b, kept = candidates(read_radiograph(case.image), detector, det_spec, seg_net, seg_spec)
    out = {"id": case.id, "truth": bool(fracture), "excluded": bool(ignored) and not fracture,
           "time_a": time_a, "time_b": time_b, "vertebrae": [],
           "graded": [(grades[d.code][0], d.genant_grade) for d in kept  # (truth, mask's measured grade) of hits
                      if d.code in fracture and box_iou_np(d.box, gt[d.code])[0, 0] >= 0.5]}
    for m, items in found.items():
        out[m] = ImageDetections(np.array([b for _, b, _ in items]).reshape(-1, 4), np.array([s for *_, s in items]),
                                 np.array([c for c, *_ in items]), np.array([gt[c] for c in sorted(fracture)]),
                                 np.array(sorted(fracture)), np.array([gt[c] for c in sorted(ignored)]).reshape(-1, 4))
        cutoff = GRADE_1 if m == "b" else THRESHOLD
        out[f"call_{m}"] = any(s >= cutoff for *_, s in items)
    for code in vertebrae:
        scores = {}
        for m, items in found.items():
            if m == "b":  # the segmented body on this vertebra, if any: its reduction
                i, iou = best_overlap(gt[code], [b for _, b, _ in items])
                scores[m] = items[i][2] if iou >= 0.5 else 0.0
            else:
                scores[m] = max((s for _, b, s in items if box_iou_np(gt[code], b)[0, 0] >= 0.5), default=0.0)
        out["vertebrae"].append({"level": level_name(code), "grade": grades.get(code, (0, False))[0], **scores})
    return out


def tables(results: list[dict]) -> dict:
    """Return per method: per-level AP, mAP, the per-patient table, per-vertebra rates by grade, PR curves, time."""
    summary = {}
    patients = [r for r in results if not r["excluded"]]
    for m in METHODS:
        per_class = ap_by_class([r[m] for r in results])
        aps = {level_name(c): v for c, v in per_class.items() if v["truths"]}
        cutoff = GRADE_1 if m == "b" else THRESHOLD
        by_grade = {}
        for g in range(4):
            hits = [v[m] >= cutoff for r in results for v in r["vertebrae"] if v["grade"] == g]
            rate = 100.0 * float(np.mean(hits)) if hits else float("nan")
            by_grade[g] = {"n": len(hits), "rate": rate if g else 100.0 - rate}
        matched = [match_image(r[m]) for r in results]
        scores = np.concatenate([r[m].scores[k] for r, (k, _, _) in zip(results, matched, strict=True)])
        flags = np.concatenate([tp[k] for k, tp, _ in matched])
        n_gt = sum(len(r[m].gt_classes) for r in results)
        recall, precision, _ = pr_curve(scores, flags, n_gt)
        verts = [(v[m], v["grade"] >= 1) for r in results for v in r["vertebrae"]]
        v_recall, v_precision, _ = pr_curve([s for s, _ in verts], [t for _, t in verts], sum(t for _, t in verts))
        seconds = [r["time_a"] for r in results] if m == "a" else [r["time_b"] for r in results] if m == "b" else \
            [r["time_a"] + r["time_b"] for r in results]
        summary[m] = {"ap": aps, "map50": float(np.nanmean([v["ap"] for v in aps.values()])) if aps else float("nan"),
                      "patient": confusion([r[f"call_{m}"] for r in patients], [r["truth"] for r in patients]),
                      "by_grade": by_grade, "seconds_per_image": float(np.mean(seconds)),
                      "curve": (recall, precision), "vertebra_curve": (v_recall, v_precision)}
    return summary


def report(summary: dict, results: list[dict], args) -> None:
    """Print the tables."""
    n_pos = sum(r["truth"] for r in results if not r["excluded"])
    n_neg = sum(not r["truth"] for r in results if not r["excluded"])
    print(f"\nTest set {args.test}: {len(results)} radiographs, {n_pos} with fractures, {n_neg} without "
          f"({sum(r['excluded'] for r in results)} whose only fracture is ignored are left out of the patient table)")
    levels = sorted({lv for s in summary.values() for lv in s["ap"]}, key=lambda n: ("TL".index(n[0]), int(n[1:])))
    print("\nAP@0.5 by level (truths)   " + "  ".join(f"{lv:>6s}" for lv in levels) + "     mAP")
    counts = summary["a"]["ap"]
    print(f"{'':27s}" + "  ".join(f"{'(' + str(counts[lv]['truths']) + ')':>6s}" for lv in levels))
    for m, name in METHODS.items():
        cells = "  ".join(f"{summary[m]['ap'][lv]['ap']:6.3f}" for lv in levels)
        print(f"{name:27s}{cells}  {summary[m]['map50']:6.3f}")
    print(f"{'Paik et al. 2024 (paper)':27s}{'':{8 * len(levels)}s}{PAPER['map50']:6.3f}")
    print("\nPer patient (threshold: score 0.5; Genant >= 1 for b)")
    print(f"{'method':27s} {'TP':>4s} {'FP':>4s} {'TN':>4s} {'FN':>4s} {'sens %':>7s} {'spec %':>7s} {'acc %':>7s} "
          f"{'F1':>6s}")
    for m, name in METHODS.items():
        t = summary[m]["patient"]
        print(f"{name:27s} {t['TP']:4d} {t['FP']:4d} {t['TN']:4d} {t['FN']:4d} {t['sensitivity']:7.1f} "
              f"{t['specificity']:7.1f} {t['accuracy']:7.1f} {t['f1']:6.1f}")
    p = PAPER
    print(f"{'Paik et al. 2024 (paper)':27s} {'':19s} {p['sensitivity']:7.1f} {p['specificity']:7.1f} "
          f"{p['accuracy']:7.1f} {p['f1']:6.1f}")
    print("\nPer vertebra (not cut by the edge, levels T4-L5): grade 0 specificity, grades 1-3 sensitivity, %")
    heads = [f"G{g} (n={summary['a']['by_grade'][g]['n']})" for g in range(4)]
    print(f"{'method':27s}" + "".join(f"{h:>14s}" for h in heads))
    for m, name in METHODS.items():
        print(f"{name:27s}" + "".join(f"{summary[m]['by_grade'][g]['rate']:14.1f}" for g in range(4)))
    pairs = [(t, g) for r in results for t, g in r["graded"]]
    if pairs:
        exact = 100.0 * np.mean([t == g for t, g in pairs])
        called = 100.0 * np.mean([g is not None and g >= 1 for t, g in pairs])
        print(f"\nGenant grade of the (a) masks on their {len(pairs)} true fractures: {exact:.1f} % the true grade, "
              f"{called:.1f} % graded >= 1")
    print("\nCPU time per image (s, process time, one thread)")
    for m, name in METHODS.items():
        print(f"{name:27s} {summary[m]['seconds_per_image']:.3f}")


def plot(summary: dict, path: Path) -> None:
    """Write the precision-recall curves: detections by level (AP@0.5) and vertebrae (fracture or not)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for m, name in METHODS.items():
        recall, precision = summary[m]["curve"]
        left.plot(recall, precision, label=f"{name} (mAP {summary[m]['map50']:.3f})")
        recall, precision = summary[m]["vertebra_curve"]
        right.plot(recall, precision, label=name)
    left.set(xlabel="recall", ylabel="precision", title="fracture instances by level, IoU >= 0.5 (pooled)")
    right.set(xlabel="recall (fractured vertebrae)", ylabel="precision", title="per vertebra, any level")
    for ax in (left, right):
        ax.set(xlim=(0, 1.01), ylim=(0, 1.01))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", default=".cache/test/vcf")
    parser.add_argument("--detector", default="sample-apps/spinemorph_vcf_detection",
                        help="detector bundle folder or checkpoint (default: the shipped bundle)")
    parser.add_argument("--segmentation", default="sample-apps/spinemorph_levels",
                        help="segmentation bundle folder or checkpoint for (b) (default: the shipped default model)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N test images (0: all)")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    detector, det_spec = load_detector(args.detector)
    seg_net, seg_spec = load_model(args.segmentation)
    cases = find_cases(args.test)[: args.limit or None]
    print(f"detector {args.detector} (levels {det_spec.levels}, input {det_spec.preprocessing.size}²); segmentation "
          f"{args.segmentation} ({seg_spec.network}, {seg_spec.head}, input {seg_spec.preprocessing.size}²)")
    results = [evaluate_case(c, detector, det_spec, seg_net, seg_spec) for c in cases]
    summary = tables(results)
    report(summary, results, args)
    plot(summary, out / "vcf_detection.png")
    keep = {m: {k: v for k, v in s.items() if "curve" not in k} for m, s in summary.items()}
    (out / "vcf_detection.json").write_text(json.dumps({"detector": args.detector, "segmentation": args.segmentation,
                                                        "test": args.test, "images": len(results), **keep},
                                                       indent=1, default=float))
    print(f"Wrote {out / 'vcf_detection.png'} and {out / 'vcf_detection.json'}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
