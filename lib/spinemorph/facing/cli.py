"""``spinemorph facing-train`` / ``facing``: the facing classifier on the command line.

Part of the command line (``spinemorph.cli`` adds these sub-commands), so it prints; each handler imports its
stage lazily.
"""

from __future__ import annotations

import argparse
import json
import logging

__all__ = ["add_parsers"]


def _train(args: argparse.Namespace) -> None:
    import torch

    from spinemorph.facing.train import FacingTrainConfig, train_facing
    from spinemorph.training import find_cases

    torch.set_num_threads(args.threads or torch.get_num_threads())
    logging.getLogger("spinemorph").setLevel(logging.INFO)
    config = FacingTrainConfig(out=args.out, size=args.size, features=tuple(args.features), batch_size=args.batch,
                               lr=args.lr, max_steps=args.steps, minutes=args.minutes, eval_every=args.eval_every,
                               val_fraction=args.val_fraction, seed=args.seed, workers=args.workers,
                               balance_folders=not args.no_balance)
    summary = train_facing(config, find_cases(*args.studies))
    print(json.dumps(summary, indent=1, default=str))


def _facing(args: argparse.Namespace) -> None:
    import time

    import torch

    from spinemorph.facing.model import load_facing_model
    from spinemorph.facing.predict import predict_facing
    from spinemorph.io import read_radiograph

    torch.set_num_threads(args.threads)
    net, spec = load_facing_model(args.model)
    for path in args.images:
        image = read_radiograph(path)
        start = time.perf_counter()
        pred = predict_facing(image.pixels, net, spec)
        ms = 1000 * (time.perf_counter() - start)
        if args.json:
            print(json.dumps({"image": path, **pred.to_dict(), "file_facing": image.facing, "ms": round(ms, 1)}))
            continue
        said = f"; the file says {image.facing}" if image.facing else ""
        print(f"{path}: anterior on the {pred.facing} (confidence {pred.confidence:.3f}, P(left) {pred.p_left:.3f}, "
              f"{ms:.0f} ms){said}")


def add_parsers(sub) -> None:
    """Add the ``facing-train`` and ``facing`` sub-commands to the ``spinemorph`` parser's ``sub``."""
    tra = sub.add_parser("facing-train", help="train the facing classifier (which side the anterior is on)")
    tra.add_argument("studies", nargs="+", help="studies folders (facing from truth JSON or the image file)")
    tra.add_argument("--out", required=True, help="run folder: model.pt, last.pt, log.csv")
    tra.add_argument("--size", type=int, default=160, help="the network's input square (default 160)")
    tra.add_argument("--features", nargs="+", type=int, default=[16, 24, 32, 48, 64],
                     help="channels of the stem and of each stride-2 stage")
    tra.add_argument("--steps", type=int, default=3000, help="optimiser steps (0: only --minutes)")
    tra.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    tra.add_argument("--batch", type=int, default=32)
    tra.add_argument("--lr", type=float, default=2e-3)
    tra.add_argument("--eval-every", type=int, default=100, help="steps between held-out scores and checkpoints")
    tra.add_argument("--val-fraction", type=float, default=0.1)
    tra.add_argument("--seed", type=int, default=0)
    tra.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    tra.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    tra.add_argument("--no-balance", action="store_true",
                     help="draw images uniformly instead of each studies folder equally often")
    tra.set_defaults(run=_train)

    fac = sub.add_parser("facing", help="say which side of a radiograph the patient's anterior is on")
    fac.add_argument("images", nargs="+", metavar="IMAGE", help="radiographs: DICOM, NIfTI, PNG or JPEG")
    fac.add_argument("--model", required=True, help="facing model.pt written by facing-train")
    fac.add_argument("--json", action="store_true", help="one JSON line per image")
    fac.add_argument("--threads", type=int, default=1,
                     help="torch threads (default 1: the network is tiny, more threads only wait on each other)")
    fac.set_defaults(run=_facing)
