"""``spinemorph refine-train``: train stage 2 (each body redrawn in its full-resolution crop) from studies folders.

Part of the command line (``spinemorph.cli`` adds the sub-command), so it prints; the handler imports lazily.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parsers"]


def _train(args: argparse.Namespace) -> None:
    import torch

    from spinemorph.hierarchical.training import StageConfig
    from spinemorph.refine.train import train_refiner
    from spinemorph.training import find_cases

    torch.set_num_threads(args.threads or torch.get_num_threads())
    config = StageConfig(out=args.out, network=args.network, head="binary", kwargs={"features": tuple(args.features)},
                         size=args.size, batch_size=args.batch, lr=args.lr, max_steps=args.steps,
                         minutes=args.minutes, eval_every=args.eval_every, val_fraction=args.val_fraction,
                         seed=args.seed, jitter=args.jitter, init=args.init, defects=args.defects)
    print(json.dumps(train_refiner(config, find_cases(*args.studies)), indent=1, default=str))


def add_parsers(sub) -> None:
    """Add ``refine-train`` to the ``spinemorph`` sub-command parsers."""
    p = sub.add_parser("refine-train", help="train stage 2: each body segmented again in its full-resolution crop")
    p.add_argument("studies", nargs="+", help="studies folders with labels/final/ (full-size images are best)")
    p.add_argument("--out", required=True, help="run folder: model.pt, last.pt, log.csv, summary.json")
    p.add_argument("--network", choices=["unet", "mdr2unet", "r2unet", "mnet"], default="unet")
    p.add_argument("--features", type=int, nargs=5, default=[8, 16, 32, 64, 128])
    p.add_argument("--size", type=int, default=192, help="crop side in pixels (default 192)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--jitter", type=float, default=0.08, help="crop centre moves, as a share of the crop side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", help="start from these weights (a refine-train model.pt)")
    p.add_argument("--defects", type=float, default=0.0,
                   help="share of the training crops given a film defect: low-dose noise, a dark ramp, burned-in text")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.set_defaults(run=_train)
