"""Table 2 of Kim et al. 2019 on our data: whole-image U-Net and M-net against Pose-net + U-Net / M-net patches, each
with and without the level set; then level accuracy on the lateral VerSe DRRs.

Usage (CPU; each training and the evaluation under the shared lock):
    flock /tmp/spinemorph-heavy.lock .venv/bin/python bench/hierarchical.py [--n 40] [--steps 1500] \
        [--minutes 4] [--bundle sample-apps/spinemorph_hierarchical]

The shipped bundle gives Pose-net and M-net. The baselines are trained here once (and reused from bench/out/ on a
second run): U-Net and M-net on the whole image (binary body head, 256² input) and U-Net on the same jittered
patches as M-net, all with the shipped M-net's features and batch size, for its 1500 steps or ``--minutes`` of
training each, whichever comes first (their summaries say which). Whole-image segmenters name their
five lowest components L1-L5 (they have no localisation stage); Pose-net rows use the paper's lumbar rule (five
centres from the bottom). Region metrics count a pixel only with its own level. Writes bench/out/hierarchical.png
and bench/out/hierarchical.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from segmentation import VERSE, verse_cases  # noqa: E402

from spinemorph.evaluation import hierarchical as H  # noqa: E402
from spinemorph.evaluation.morphometry import Pairs, compare  # noqa: E402
from spinemorph.evaluation.morphometry import summarise as summarise_pairs  # noqa: E402
from spinemorph.hierarchical.boxes import make_boxes  # noqa: E402
from spinemorph.hierarchical.inputs import full_resolution  # noqa: E402
from spinemorph.hierarchical.levelset import refine_mask  # noqa: E402
from spinemorph.hierarchical.model import HierarchicalModel, load_hierarchical  # noqa: E402
from spinemorph.hierarchical.pipeline import (  # noqa: E402
    HierarchicalOptions,
    locate,
    paste_back,
    refine_scores,
    segment_boxes,
)
from spinemorph.hierarchical.targets import body_centres  # noqa: E402
from spinemorph.hierarchical.training import StageConfig, select_cases, train_patches  # noqa: E402
from spinemorph.inference import load_model, segment  # noqa: E402
from spinemorph.io import read_labelmap, read_radiograph  # noqa: E402
from spinemorph.measure import measure_radiograph  # noqa: E402
from spinemorph.postprocess import clean_binary  # noqa: E402
from spinemorph.training import TrainConfig, find_cases, train  # noqa: E402
from spinemorph.transforms import Preprocessing  # noqa: E402

SEGMENTERS = ("U-Net (whole image)", "M-net (whole image)", "Pose-net + U-Net", "Pose-net + M-net")
COLUMNS = ("dice", "precision", "sensitivity", "specificity")


BASELINES = {"unet": "hier-unet-whole", "mnet": "hier-mnet-whole", "patch-unet": "hier-unet-patches"}


def _baseline(name: str, args, mnet_spec, out: Path) -> str:
    """Return a baseline's checkpoint, training it first if ``out`` has none (with the shipped M-net's budget)."""
    run = out / BASELINES[name]
    if (run / "model.pt").is_file():
        return str(run / "model.pt")
    features = tuple(mnet_spec.kwargs.get("features", (8, 16, 32, 64, 128)))
    cases = find_cases(*args.train)
    if name == "patch-unet":
        train_patches(StageConfig(out=str(run), network="unet", kwargs={"features": features},
                                  size=mnet_spec.preprocessing.size, batch_size=args.batch, max_steps=args.steps,
                                  minutes=args.minutes, eval_every=150, val_fraction=0.05), cases)
    else:
        train(TrainConfig(out=str(run), network=name, head="binary", loss="dicebce", kwargs={"features": features},
                          size=args.size, epochs=10_000, batch_size=args.batch, max_steps=args.steps,
                          time_budget_s=60 * args.minutes, val_fraction=0.05), cases)
    return str(run / "model.pt")


def _whole_image(pixels, net, spec, level_set: bool) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    seg = segment(pixels, net, spec)
    mask = seg.labels > 0
    if level_set:
        mask = clean_binary(refine_mask(full_resolution(pixels, Preprocessing()), seg.foreground) < 0) > 0
    return H.lowest_five(mask), time.perf_counter() - start


def _pose_rows(pixels, pose: HierarchicalModel, patchnets: dict) -> dict[str, tuple[np.ndarray, dict, float]]:
    """Return, per Pose-net row, (labels, centres by code, seconds); Pose-net's time is counted in every row."""
    start = time.perf_counter()
    points, codes, *_ = locate(pixels, pose, HierarchicalOptions(view="lumbar"))
    boxes = make_boxes(points) if len(points) >= 2 else []
    full = full_resolution(pixels, pose.patch_spec.preprocessing)
    shared = time.perf_counter() - start
    centres = {c: (float(p[0]), float(p[1])) for p, c in zip(points, codes, strict=True)}
    rows = {}
    for name, model in patchnets.items():
        start = time.perf_counter()
        patches, probs = segment_boxes(full, boxes, model)
        plain = time.perf_counter() - start
        rows[name] = (paste_back(list(probs), boxes, codes if boxes else [], pixels.shape), centres, shared + plain)
        start = time.perf_counter()
        refined = refine_scores(patches, probs, HierarchicalOptions().levelset)
        rows[name + " + level set"] = (paste_back(refined, boxes, codes if boxes else [], pixels.shape), centres,
                                       shared + plain + time.perf_counter() - start)
    return rows


def _score(labels, centres, seconds, truth, spacing) -> dict:
    true_centres = {b.code: (b.row, b.col) for b in body_centres(truth) if b.code in H.LUMBAR}
    errors = H.centre_errors(centres, true_centres, spacing)
    return {**H.region_metrics(labels, truth), "errors_px": [e[0] for e in errors.values()],
            "errors_mm": [e[1] for e in errors.values()], "success": H.detection_success(centres, truth),
            "seconds": seconds}


def _lumbar_truth(case) -> dict:
    """Return the truth JSON with only L1-L5, so that the truth's VCR uses the neighbours a lumbar result has."""
    truth = json.loads(case.truth.read_text())
    return {**truth, "vertebrae": [v for v in truth["vertebrae"] if v["code"] in H.LUMBAR]}


def evaluate(cases, pose: HierarchicalModel, whole: dict, patchnets: dict) -> tuple[dict, dict]:
    """Return every row's per-image scores on the test cases, and its morphometry pairs (L1-L5 against truth)."""
    results: dict[str, list[dict]] = {}
    pairs: dict[str, Pairs] = {}
    for case in cases:
        image = read_radiograph(case.image)
        truth, _ = read_labelmap(case.label)
        lumbar = _lumbar_truth(case)
        rows = {}
        for name, (net, spec) in whole.items():
            for level_set in (False, True):
                labels, seconds = _whole_image(image.pixels, net, spec, level_set)
                rows[name + (" + level set" if level_set else "")] = (labels, H.component_centres(labels), seconds)
        rows.update(_pose_rows(image.pixels, pose, patchnets))
        for name, (labels, centres, seconds) in rows.items():
            results.setdefault(name, []).append(_score(labels, centres, seconds, truth, image.spacing_mm))
            compare(measure_radiograph(labels, image), lumbar, pairs.setdefault(name, Pairs()))
    return results, pairs


def summarise(results: dict[str, list[dict]], pairs: dict) -> dict[str, dict]:
    """Return mean ± sd per column and row, and the morphometry errors."""
    out = {}
    for name, per_image in results.items():
        row = {k: (float(np.mean([m[k] for m in per_image])), float(np.std([m[k] for m in per_image])))
               for k in (*COLUMNS, "seconds")}
        for unit in ("px", "mm"):
            errors = np.concatenate([m[f"errors_{unit}"] for m in per_image])
            row[f"centre_{unit}"] = (float(np.mean(errors)), float(np.std(errors))) if errors.size else (np.nan,) * 2
        row["success"] = float(np.mean([m["success"] for m in per_image]))
        row["images"] = len(per_image)
        row["morphometry"] = summarise_pairs(pairs[name])
        out[name] = row
    return out


def verse_levels(pose: HierarchicalModel, whole: dict) -> dict[str, dict]:
    """Return detection and level accuracy on the VerSe DRRs: Pose-net (auto and lumbar naming), whole-image nets."""
    counts: dict[str, dict[str, int]] = {}
    for path, masks in verse_cases(VERSE):
        pixels = read_radiograph(path).pixels
        named = {}
        for view in ("auto", "lumbar"):
            points, codes, *_ = locate(pixels, pose, HierarchicalOptions(view=view))
            named[f"Pose-net ({view} naming)"] = list(zip(codes, map(tuple, points), strict=True))
        for name, (net, spec) in whole.items():
            named[name] = [(c, p) for c, p in H.component_centres(_whole_image(pixels, net, spec, False)[0]).items()]
        for name, found in named.items():
            _count(counts.setdefault(name, {}), found, masks)
    return {name: {**c, "detected": c["detected"] / max(c["vertebrae"], 1),
                   "level_accuracy": c["correct"] / max(c["vertebrae"], 1),
                   "lumbar_level_accuracy": c["lumbar_correct"] / max(c["lumbar"], 1)} for name, c in counts.items()}


def auto_naming(cases, pose: HierarchicalModel) -> dict[str, dict]:
    """Return, per field of view, how many whole bodies get a centre (detected) and their own level (named)."""
    from spinemorph.levels import level_name

    counts: dict[str, dict] = {}
    for case in cases:
        fov = json.loads(case.truth.read_text())["fov"]
        truth, _ = read_labelmap(case.label)
        points, codes, *_ = locate(read_radiograph(case.image).pixels, pose, HierarchicalOptions(view="auto"))
        masks = {level_name(b.code): truth == b.code for b in body_centres(truth) if not b.at_edge}
        _count(counts.setdefault(fov, {"images": 0}), list(zip(codes, map(tuple, points), strict=True)), masks)
        counts[fov]["images"] += 1
    return {fov: {**c, "detected": c["detected"] / max(c["vertebrae"], 1),
                  "level_accuracy": c["correct"] / max(c["vertebrae"], 1)} for fov, c in counts.items()}


def _count(counts: dict, found, masks: dict[str, np.ndarray]) -> None:
    from spinemorph.levels import level_code

    for key in ("vertebrae", "detected", "correct", "lumbar", "lumbar_correct", "centres", "outside"):
        counts.setdefault(key, 0)
    pixels = [(c, int(round(r)), int(round(col))) for c, (r, col) in found]
    counts["centres"] += len(found)
    inside = {level: [c for c, r, col in pixels if mask[r, col]] for level, mask in masks.items()}
    counts["outside"] += sum(not any(m[r, col] for m in masks.values()) for _, r, col in pixels)
    for level, codes in inside.items():
        lumbar = level.startswith("L")
        counts["vertebrae"] += 1
        counts["lumbar"] += lumbar
        counts["detected"] += bool(codes)
        counts["correct"] += level_code(level) in codes
        counts["lumbar_correct"] += lumbar and level_code(level) in codes


def print_naming(naming: dict) -> None:
    """Print the auto naming's detection and level accuracy per field of view."""
    print("\nBeyond the paper: every accepted centre named (auto view), simulated test images of each field of view")
    print(f"{'field of view':16s} {'images':>6s} {'bodies':>7s} {'detected':>9s} {'level acc':>9s} {'outside':>8s}")
    for fov, c in naming.items():
        print(f"{fov:16s} {c['images']:6d} {c['vertebrae']:7d} {c['detected']:9.3f} {c['level_accuracy']:9.3f} "
              f"{c['outside']:4d}/{c['centres']:<3d}")


def print_table(summary: dict, verse: dict, args, n: int) -> None:
    """Print the Table 2 rows and the VerSe level accuracy."""
    print(f"\nTable 2 on {n} held-out simulated lumbar radiographs (T11 or T12 to L5 labelled, 320 px tall), L1-L5; "
          "CPU, one thread")
    head = " ".join(f"{c:>15s}" for c in ("Dice", "Precision", "Sensitivity", "Specificity"))
    print(f"{'method':36s} {head} {'centre px':>13s} {'centre mm':>13s} {'success':>8s} {'s/image':>8s} "
          f"{'height MAE':>10s} {'VCR MAE':>8s}")
    for name, r in summary.items():
        cells = " ".join(f"{100 * r[k][0]:6.2f}±{100 * r[k][1]:5.2f}%" for k in COLUMNS)
        m = r["morphometry"]
        print(f"{name:36s} {cells} {r['centre_px'][0]:6.2f}±{r['centre_px'][1]:5.2f} "
              f"{r['centre_mm'][0]:6.2f}±{r['centre_mm'][1]:5.2f} {100 * r['success']:7.1f}% {r['seconds'][0]:8.3f} "
              f"{m['height_mae_mm']:8.2f}mm {m['vcr_mae_points']:8.2f}")
    print(f"\nVerSe lateral DRRs ({VERSE.name}: 6 images, whole-vertebra masks): a centre counts for the vertebra "
          "whose mask it lies in")
    print(f"{'method':36s} {'vertebrae':>9s} {'detected':>9s} {'level acc':>9s} {'L1-L5 acc':>9s} {'outside':>8s}")
    for name, v in verse.items():
        print(f"{name:36s} {v['vertebrae']:9d} {v['detected']:9.3f} {v['level_accuracy']:9.3f} "
              f"{v['lumbar_level_accuracy']:9.3f} {v['outside']:4d}/{v['centres']:<3d}")


def figure(summary: dict, example, pose: HierarchicalModel, path: Path) -> None:
    """Write bars of Dice and success per row, and one test image with the pipeline's centres, boxes and labels."""
    from spinemorph.hierarchical.pipeline import run_hierarchical
    from spinemorph.overlay import draw_labels, to_rgb

    image = read_radiograph(example.image)
    result = run_hierarchical(image, pose, HierarchicalOptions(view="lumbar"), measure=False)
    fig, (bars, pic) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.6, 1]})
    names = list(summary)
    y = np.arange(len(names))
    bars.barh(y - 0.2, [100 * summary[n]["dice"][0] for n in names], 0.4, xerr=[100 * summary[n]["dice"][1]
              for n in names], label="Dice (%)")
    bars.barh(y + 0.2, [100 * summary[n]["success"] for n in names], 0.4, label="success: L1-L5 all found (%)")
    bars.set(yticks=y, yticklabels=names, xlim=(0, 100), title="Kim et al. 2019, Table 2, on simulated lumbar views")
    bars.invert_yaxis()
    bars.legend(loc="lower left", fontsize=8)
    pic.imshow(np.asarray(draw_labels(to_rgb(image.pixels), result.labels, names=False)))
    for c, b in zip(result.centres, result.boxes, strict=False):
        t, lft, btm, rgt = b.bounds()
        pic.add_patch(plt.Rectangle((lft, t), rgt - lft, btm - t, fill=False, color="w", lw=0.8))
        pic.plot(c["center_px"][1], c["center_px"][0], "c+", ms=8)
        pic.text(rgt + 2, c["center_px"][0], c["level"], color="w", fontsize=8, va="center")
    pic.set(title="Pose-net + M-net + level set", xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", default=[".cache/train/sim"])
    parser.add_argument("--test", nargs="+", default=[".cache/test/sim"])
    parser.add_argument("--n", type=int, default=40, help="lumbar test images")
    parser.add_argument("--n-naming", type=int, default=25, help="test images per field of view for auto naming")
    parser.add_argument("--bundle", default="sample-apps/spinemorph_hierarchical")
    parser.add_argument("--steps", type=int, default=1500, help="baselines' steps (the shipped M-net's)")
    parser.add_argument("--minutes", type=float, default=0.0, help="baselines' training time box (0: steps only)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="whole-image input side")
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--train-only", choices=sorted(BASELINES), help="train this baseline (if missing) and stop")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pose = load_hierarchical(args.bundle)
    if args.train_only:
        print(f"{args.train_only}: {_baseline(args.train_only, args, pose.patch_spec, out)}")
        return
    paths = {name: _baseline(name, args, pose.patch_spec, out) for name in BASELINES}
    whole = {SEGMENTERS[0]: load_model(paths["unet"]), SEGMENTERS[1]: load_model(paths["mnet"])}
    unet = HierarchicalModel(pose.posenet, pose.pose_spec, *load_model(paths["patch-unet"]))
    patchnets = {SEGMENTERS[2]: unet, SEGMENTERS[3]: pose}
    cases = select_cases(find_cases(*args.test), ("lumbar",))[:args.n]
    refine_mask(np.random.default_rng(0).random((32, 32)), np.pad(np.ones((16, 16)), 8))  # load ITK before timing
    summary = summarise(*evaluate(cases, pose, whole, patchnets))
    verse = verse_levels(pose, whole)
    everything = find_cases(*args.test)
    naming = auto_naming([c for fov in ("lumbar", "thoracolumbar", "chest")
                          for c in select_cases(everything, (fov,))[:args.n_naming]], pose)
    print_table(summary, verse, args, len(cases))
    print_naming(naming)
    (out / "hierarchical.json").write_text(json.dumps({"table2": summary, "verse": verse, "auto_naming": naming,
                                                       "args": vars(args)}, indent=1, default=float))
    figure(summary, cases[0], pose, out / "hierarchical.png")
    print(f"Wrote {out / 'hierarchical.png'} and {out / 'hierarchical.json'}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
