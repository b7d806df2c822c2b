"""``spinemorph hierarchical …``: train the two stages, run the pipeline on a radiograph, write the bundle.

Part of the command line (``spinemorph.cli`` adds these sub-commands), so it prints; each handler imports its
stage lazily.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parsers"]

DEFAULT_BUNDLE = Path(__file__).resolve().parents[3] / "sample-apps" / "spinemorph_hierarchical"


def _stage_config(args: argparse.Namespace, network: str, head: str):
    from spinemorph.hierarchical.training import StageConfig

    return StageConfig(out=args.out, network=network, head=head, kwargs={"features": tuple(args.features)},
                       size=args.size, batch_size=args.batch, lr=args.lr, max_steps=args.steps, minutes=args.minutes,
                       eval_every=args.eval_every, val_fraction=args.val_fraction, seed=args.seed,
                       jitter=getattr(args, "jitter", 0.0), fovs=tuple(args.fov) if args.fov else None, init=args.init)


def _train_posenet(args: argparse.Namespace) -> None:
    import torch

    from spinemorph.hierarchical.training import train_posenet
    from spinemorph.training import find_cases

    torch.set_num_threads(args.threads or torch.get_num_threads())
    summary = train_posenet(_stage_config(args, "posenet", args.head), find_cases(*args.studies))
    print(json.dumps(summary, indent=1, default=str))


def _train_patches(args: argparse.Namespace) -> None:
    import torch

    from spinemorph.hierarchical.training import train_patches
    from spinemorph.training import find_cases

    torch.set_num_threads(args.threads or torch.get_num_threads())
    summary = train_patches(_stage_config(args, args.network, "binary"), find_cases(*args.studies))
    print(json.dumps(summary, indent=1, default=str))


def _run(args: argparse.Namespace) -> None:
    from spinemorph.hierarchical.model import load_hierarchical
    from spinemorph.hierarchical.pipeline import HierarchicalOptions, run_hierarchical
    from spinemorph.io import image_id, read_radiograph, write_labelmap

    model = load_hierarchical(args.model)
    image = read_radiograph(args.image)
    options = HierarchicalOptions(view=args.view, level_set=not args.no_level_set, anchor=args.anchor)
    result = run_hierarchical(image, model, options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = image_id(args.image)
    write_labelmap(out / f"{stem}.labels.nii.gz", result.labels, image)
    (out / f"{stem}.hierarchical.json").write_text(json.dumps(result.to_dict(), indent=1))
    print(result.morphometry.table())
    print(f"{len(result.centres)} centres, flags {result.flags or 'none'}; "
          + ", ".join(f"{k} {v:.3f} s" for k, v in result.timings.items()))
    print(f"Wrote {out / (stem + '.labels.nii.gz')} and {stem}.hierarchical.json")


def _bundle(args: argparse.Namespace) -> None:
    from spinemorph.hierarchical.bundle import write_hierarchical_bundle

    readme = Path(args.readme).read_text() if args.readme else "# spinemorph_hierarchical\n"
    out = write_hierarchical_bundle(args.posenet, args.mnet, args.out, args.version, args.changelog, readme)
    print(f"Wrote the MONAI bundle {out}")


def _training_arguments(p: argparse.ArgumentParser, size: int, features: list[int]) -> None:
    p.add_argument("studies", nargs="+", help="studies folders with labels/final/")
    p.add_argument("--out", required=True, help="run folder: model.pt, last.pt, log.csv, summary.json")
    p.add_argument("--features", nargs=5, type=int, default=features)
    p.add_argument("--size", type=int, default=size)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (0: only --minutes limits)")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    p.add_argument("--eval-every", type=int, default=200, help="validate and checkpoint every N steps")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fov", nargs="+", help="keep only these fields of view (from the truth JSON)")
    p.add_argument("--init", help="start from this model.pt")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")


def add_parsers(sub) -> None:
    """Add the ``hierarchical`` command and its sub-commands to the ``spinemorph`` parser's sub-parsers."""
    hier = sub.add_parser("hierarchical", help="Kim et al. 2019: Pose-net, M-net patches, level set")
    steps = hier.add_subparsers(dest="step", required=True)

    pose = steps.add_parser("train-posenet", help="train Pose-net (centres from the labelmaps)")
    _training_arguments(pose, 256, [8, 16, 32, 64, 128])
    pose.add_argument("--head", choices=["binary", "levels"], default="levels",
                      help="binary: the paper's map of all centres; levels: also one map per level (default)")
    pose.set_defaults(run=_train_posenet)

    patch = steps.add_parser("train-patches", help="train the patch segmenter (M-net, or U-Net)")
    _training_arguments(patch, 112, [16, 32, 64, 128, 256])
    patch.add_argument("--network", choices=["mnet", "unet"], default="mnet")
    patch.add_argument("--jitter", type=float, default=0.15, help="centre moves, as a fraction of the gap")
    patch.set_defaults(run=_train_patches)

    run = steps.add_parser("run", help="segment and measure one radiograph with the hierarchical pipeline")
    run.add_argument("image", help="radiograph: DICOM, NIfTI, PNG or JPEG")
    run.add_argument("--model", default=str(DEFAULT_BUNDLE), help="bundle folder (default: the shipped one)")
    run.add_argument("--out", required=True, help="folder for the labelmap and the JSON")
    run.add_argument("--view", choices=["auto", "lumbar"], default="auto",
                     help="lumbar: the paper's five centres from the bottom; auto: name every centre")
    run.add_argument("--anchor", help="level of the lowest centre, e.g. L5 (default: from the model)")
    run.add_argument("--no-level-set", action="store_true", help="skip the level-set refinement")
    run.set_defaults(run=_run)

    bun = steps.add_parser("bundle", help="write Pose-net and M-net as one MONAI bundle")
    bun.add_argument("--posenet", required=True, help="Pose-net model.pt")
    bun.add_argument("--mnet", required=True, help="M-net model.pt")
    bun.add_argument("--out", default=str(DEFAULT_BUNDLE))
    bun.add_argument("--version", default="0.1.0")
    bun.add_argument("--changelog", default="first release")
    bun.add_argument("--readme", help="Markdown file for docs/README.md")
    bun.set_defaults(run=_bundle)
