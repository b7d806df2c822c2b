"""Table 1 of Kim et al. 2021 on our data: U-Net, R2U-Net and MDR2-UNet trained with the same budget.

Usage:
    .venv/bin/python bench/segmentation.py --train .cache/train/sim .cache/train/drr --test .cache/test/sim \
        [--size 128] [--steps 1500] [--features 8 16 32 64 128] [--default sample-apps/spinemorph_levels]

Each network is trained with the paper's binary body head and Dice loss, Adam 1e-3, the same number of steps,
batch size, training split and input size, then evaluated on the held-out simulated test set: the paper's
columns per image (mean ± sd), parameters, CPU inference time per image, VCR and Genant errors of the
predicted labelmaps. On the lateral VerSe DRRs in ../shared/data/verse-lateral-drr, whose masks cover the
whole vertebra, it reports detection (and, for a per-level model such as the shipped default, level
accuracy), not Dice. Writes bench/out/segmentation.png (ROC and PR curves) and bench/out/segmentation.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from spinemorph.evaluation.run import TABLE1, evaluate  # noqa: E402
from spinemorph.evaluation.segmentation import roc_pr_curves  # noqa: E402
from spinemorph.inference import load_model, segment  # noqa: E402
from spinemorph.networks import count_parameters  # noqa: E402
from spinemorph.training import TrainConfig, find_cases, train  # noqa: E402

VERSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "verse-lateral-drr"


def verse_cases(folder: Path) -> list[tuple[Path, dict[str, np.ndarray]]]:
    """Return each VerSe DRR with its whole-vertebra masks by level name."""
    out = []
    for image in sorted((folder / "images").glob("*.png")):
        subject, k = re.match(r"(verse\d+)_LA_(\d+)", image.stem).groups()
        masks = {}
        for m in sorted((folder / "masks").glob(f"{subject}_LA_*_whole_{k}.png")):
            level = m.stem.split("_")[2]
            masks[level] = np.asarray(Image.open(m).convert("L")) > 127
        out.append((image, masks))
    return out


def verse_scores(net, spec, folder: Path) -> dict[str, float]:
    """Return detection and (per-level heads) level accuracy on the VerSe DRRs."""
    from spinemorph.io import read_radiograph
    from spinemorph.levels import level_code

    found = named = total = 0
    for image, masks in verse_cases(folder):
        labels = segment(read_radiograph(image).pixels, net, spec).labels
        comps, _ = ndimage.label(labels > 0)
        for level, whole in masks.items():
            total += 1
            inside = comps[whole]
            inside = inside[inside > 0]
            if not inside.size:
                continue
            comp = int(np.bincount(inside).argmax())
            body = comps == comp
            if (body & whole).sum() >= 0.5 * body.sum():  # the predicted body lies in this vertebra
                found += 1
                codes = labels[body]
                named += spec.head != "binary" and int(np.bincount(codes).argmax()) == level_code(level)
    return {"verse_vertebrae": total, "verse_detected": found / max(total, 1),
            "verse_level_accuracy": named / max(total, 1) if spec.head != "binary" else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", default=[".cache/train/sim", ".cache/train/drr"])
    parser.add_argument("--test", nargs="+", default=[".cache/test/sim"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--features", nargs=5, type=int, default=[8, 16, 32, 64, 128])
    parser.add_argument("--networks", nargs="+", default=["unet", "r2unet", "mdr2unet"])
    parser.add_argument("--default", default="sample-apps/spinemorph_levels", help="shipped per-level model, if any")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_cases, test_cases = find_cases(*args.train), find_cases(*args.test)
    print(f"train {len(train_cases)} cases ({', '.join(args.train)}), test {len(test_cases)} ({', '.join(args.test)})")
    rows, curves = {}, {}
    models = {}
    for name in args.networks:
        config = TrainConfig(out=str(out / f"seg-{name}"), network=name, head="binary", loss="dice",
                             kwargs={"features": tuple(args.features)}, size=args.size, epochs=10_000,
                             batch_size=args.batch, max_steps=args.steps, val_fraction=0.1)
        start = time.perf_counter()
        summary = train(config, train_cases)
        models[name] = (summary["model"], time.perf_counter() - start, summary["steps"])
    if Path(args.default).is_dir():
        models["default (per-level)"] = (args.default, float("nan"), 0)
    for name, (path, seconds, steps) in models.items():
        net, spec = load_model(path)
        ev = evaluate(net, spec, test_cases, keep_curves=True)
        s = ev.summary()
        row = {k: s[k] for k in TABLE1}
        row["seconds_per_image_cpu"] = s["seconds"]["mean"]
        row["parameters"] = count_parameters(net)
        row["train_minutes"], row["steps"] = seconds / 60, steps
        row["morphometry"] = s["morphometry"]
        row["level_identified"] = s.get("level_identified")
        row.update(verse_scores(net, spec, VERSE))
        rows[name] = row
        curves[name] = roc_pr_curves(np.concatenate(ev.scores), np.concatenate(ev.truths))
    print(f"\nTest set: {len(test_cases)} held-out simulated radiographs, input {args.size}², binary body head, "
          f"{args.steps} steps of batch {args.batch} each (CPU; no GPU lent to this run: GPU times n/a)")
    head = " ".join(f"{c:>15s}" for c in ("Sens", "Spec", "Acc", "DSC", "IoU", "ROC-AUC", "PR-AUC"))
    print(f"{'network':22s} {head} {'params':>9s} {'CPU s/img':>9s} {'VCR MAE':>8s} {'kappa':>6s} "
          f"{'VerSe det':>9s} {'VerSe lvl':>9s}")
    for name, r in rows.items():
        cells = " ".join(f"{r[k]['mean']:.4f}±{r[k]['sd']:.4f}" for k in TABLE1)
        m = r["morphometry"]
        print(f"{name:22s} {cells} {r['parameters']:9d} {r['seconds_per_image_cpu']:9.3f} "
              f"{m.get('vcr_mae_points', float('nan')):8.2f} {m.get('genant_kappa', float('nan')):6.3f} "
              f"{r['verse_detected']:9.3f} {r['verse_level_accuracy']:9.3f}")
    (out / "segmentation.json").write_text(json.dumps(rows, indent=1, default=float))
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, c in curves.items():
        roc.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {rows[name]['roc_auc']['mean']:.4f})")
        pr.plot(c["recall"], c["precision"], label=f"{name} (AP {rows[name]['pr_auc']['mean']:.4f})")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 0.2))
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0.5, 1.01))
    for ax in (roc, pr):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "segmentation.png", dpi=110)
    print(f"Wrote {out / 'segmentation.png'} and {out / 'segmentation.json'}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
