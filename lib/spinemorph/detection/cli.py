"""``spinemorph vcf-train`` / ``vcf-detect`` / ``vcf-bundle``: the fracture detector on the command line.

Part of the command line (``spinemorph.cli`` adds these sub-commands), so it prints; each handler imports its
stage lazily.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = ["add_parsers"]


def _train(args: argparse.Namespace) -> None:
    import torch

    from spinemorph.detection.training import DetectorTrainConfig, train_detector
    from spinemorph.training import find_cases

    torch.set_num_threads(args.threads or torch.get_num_threads())
    logging.getLogger("spinemorph").setLevel(logging.INFO)
    config = DetectorTrainConfig(out=args.out, stage=args.stage, levels=args.levels, size=args.size,
                                 channels=tuple(args.channels), fpn_channels=args.fpn_channels, epochs=args.epochs,
                                 batch_size=args.batch, lr=args.lr, semantic_weight=args.semantic_weight,
                                 val_fraction=args.val_fraction, val_every=args.val_every, seed=args.seed,
                                 init=args.init, max_steps=args.max_steps, minutes=args.minutes)
    summary = train_detector(config, find_cases(*args.studies))
    print(json.dumps(summary, indent=1, default=str))


def _detect(args: argparse.Namespace) -> None:
    from spinemorph.detection import load_detector
    from spinemorph.detection.inference import detect
    from spinemorph.io import read_radiograph, write_labelmap

    net, spec = load_detector(args.model)
    image = read_radiograph(args.image)
    result = detect(image.pixels, net, spec, image.spacing_mm, image.facing, args.threshold)
    text = json.dumps({**result.to_dict(), "timings": result.timings}, indent=1, default=str)
    print(json.dumps(result.verdict))
    for d in result.detections:
        print(f"{d.level:4s} score {d.score:.3f}  Genant {d.genant_grade}  box {d.box}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_labelmap(out / "fractures.nii.gz", result.labels, image)
        (out / "fractures.json").write_text(text)
        print(f"Wrote {out / 'fractures.nii.gz'} and {out / 'fractures.json'}")


def _bundle(args: argparse.Namespace) -> None:
    from spinemorph.detection.bundle import write_detector_bundle

    readme = Path(args.readme).read_text() if args.readme else f"# {Path(args.out).name}\n\n{args.description}\n"
    out = write_detector_bundle(args.model, args.out, args.version, args.changelog, readme, args.description)
    print(f"Wrote the MONAI bundle {out}")


def add_parsers(sub) -> None:
    """Add the detector's sub-commands to the ``spinemorph`` parser's subparsers."""
    tra = sub.add_parser("vcf-train", help="train the compression-fracture detector (or pretrain its backbone)")
    tra.add_argument("studies", nargs="+", help="studies folders with labels/final/ and truth JSON")
    tra.add_argument("--out", required=True, help="run folder: model.pt, last.pt, log.csv")
    tra.add_argument("--stage", choices=["pretrain", "detect"], default="detect",
                     help="pretrain: backbone + per-level segmentation head only; detect: the whole detector")
    tra.add_argument("--levels", choices=["all", "paper"], default="all", help="all: T4-L5; paper: T11-L4")
    tra.add_argument("--size", type=int, default=320, help="padded square side, a multiple of 32")
    tra.add_argument("--channels", nargs=4, type=int, default=[16, 32, 64, 128], help="backbone channels C2-C5")
    tra.add_argument("--fpn-channels", type=int, default=64)
    tra.add_argument("--epochs", type=int, default=20)
    tra.add_argument("--batch", type=int, default=4)
    tra.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (momentum 0.9, weight decay 1e-4)")
    tra.add_argument("--semantic-weight", type=float, default=0.5, help="auxiliary segmentation loss weight")
    tra.add_argument("--val-fraction", type=float, default=0.1)
    tra.add_argument("--val-every", type=int, default=200, help="validate and checkpoint every N steps")
    tra.add_argument("--seed", type=int, default=0)
    tra.add_argument("--init", help="start from a pretraining run's or a detector's model.pt, or a bundle")
    tra.add_argument("--max-steps", type=int, default=0)
    tra.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    tra.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    tra.set_defaults(run=_train)

    det = sub.add_parser("vcf-detect", help="find compression fractures on one radiograph with a trained detector")
    det.add_argument("image", help="radiograph: DICOM, NIfTI, PNG or JPEG")
    det.add_argument("--model", required=True, help="detector model.pt or bundle folder")
    det.add_argument("--threshold", type=float, default=0.5, help="score at which a detection is a fracture")
    det.add_argument("--out", help="folder for fractures.nii.gz (instance labelmap) and fractures.json")
    det.set_defaults(run=_detect)

    bun = sub.add_parser("vcf-bundle", help="write a trained detector as a MONAI bundle")
    bun.add_argument("model", help="detector model.pt")
    bun.add_argument("--out", required=True, help="bundle folder, e.g. sample-apps/spinemorph_vcf_detection")
    bun.add_argument("--version", default="0.1.0")
    bun.add_argument("--changelog", default="first release")
    bun.add_argument("--description", default="SpineMorph compression-fracture detector (Mask R-CNN style)")
    bun.add_argument("--readme", help="Markdown for docs/README.md (data, commands, metrics)")
    bun.set_defaults(run=_bundle)
