"""Training the facing classifier on studies folders: Adam, binary cross-entropy, a step or time budget.

The facing of each case comes from its truth JSON, else from the image file (DICOM PatientOrientation, NIfTI
geometry). Cases split reproducibly by hashed id (``spinemorph.training.split_cases``); every ``eval_every`` steps
the held-out cases are scored, a row goes to ``log.csv``, ``last.pt`` is written and, when the held-out loss
improves, ``model.pt`` (what inference loads). Both are written atomically.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler

from spinemorph.facing.data import FacingDataset
from spinemorph.facing.model import FacingNet, FacingSpec, save_facing_model
from spinemorph.networks import count_parameters
from spinemorph.training import Case, split_cases
from spinemorph.training.trainer import append_csv
from spinemorph.transforms import Preprocessing

__all__ = ["FacingTrainConfig", "train_facing"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FacingTrainConfig:
    """Everything a facing training run needs, parsed once.

    Args:
        out: run folder for model.pt (best held-out loss), last.pt and log.csv.
        size: the network's input square (``Preprocessing.size``).
        features: the network's channels (``FacingNet``).
        max_steps / minutes: stop after this many optimiser steps or this much time, whichever comes first
            (0: no limit; at least one must be set). The learning rate follows a cosine over that budget.
        eval_every: steps between held-out evaluations (and log rows, and checkpoints).
        balance_folders: draw every studies folder equally often, however many images it holds.
        augment: random crops, flips and looks (off only to test the mechanics).
    """

    out: str
    size: int = 160
    features: tuple[int, ...] = (16, 24, 32, 48, 64)
    batch_size: int = 32
    lr: float = 2e-3
    max_steps: int = 3000
    minutes: float = 0.0
    eval_every: int = 100
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 0
    balance_folders: bool = True
    augment: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.minutes < 0 or not (self.max_steps or self.minutes):
            raise ValueError("Give the run a budget: max_steps or minutes (or both) must be positive.")
        if self.batch_size < 1 or self.eval_every < 1 or self.lr <= 0:
            raise ValueError("batch_size and eval_every must be at least 1 and lr positive.")

    def spec(self) -> FacingSpec:
        """Return the model spec this run trains."""
        return FacingSpec(tuple(self.features), Preprocessing(size=self.size))


def _batches(ds: FacingDataset, config: FacingTrainConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield training batches forever, each studies folder drawn equally often when ``balance_folders``."""
    folders = [c.image.parent for c in ds.cases]
    counts = Counter(folders)
    weights = [1.0 / counts[f] if config.balance_folders else 1.0 for f in folders]
    generator = torch.Generator().manual_seed(config.seed)
    sampler = WeightedRandomSampler(weights, len(ds), replacement=True, generator=generator)
    loader = DataLoader(ds, config.batch_size, sampler=sampler, num_workers=config.workers,
                        worker_init_fn=FacingDataset.worker_init, persistent_workers=config.workers > 0)
    while True:
        yield from loader


@torch.no_grad()
def _evaluate(net: FacingNet, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Return held-out loss, accuracy and confidences (an antisymmetric net scores a mirrored copy the same)."""
    if len(inputs) == 0:
        return {}
    net.eval()
    logits = torch.cat([net(chunk) for chunk in inputs.split(64)])
    net.train()
    wrong = (logits > 0).float() != targets
    confidence = torch.sigmoid(logits.abs())
    return {"val_loss": float(F.binary_cross_entropy_with_logits(logits, targets)),
            "val_accuracy": float(1.0 - wrong.float().mean()), "val_wrong": int(wrong.sum()),
            "val_max_wrong_confidence": float(confidence[wrong].max()) if wrong.any() else 0.0,
            "val_min_confidence": float(confidence.min())}


def _stacked(ds: FacingDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Return every (input, target) of an unaugmented dataset as two tensors, computed once."""
    if len(ds) == 0:
        return torch.zeros(0, 1, ds.settings.size, ds.settings.size), torch.zeros(0)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _progress(config: FacingTrainConfig, step: int, elapsed: float) -> float:
    """Return the share of the budget spent, in [0, 1]."""
    shares = [step / config.max_steps if config.max_steps else 0.0,
              elapsed / (60.0 * config.minutes) if config.minutes else 0.0]
    return min(1.0, max(shares))


def train_facing(config: FacingTrainConfig, cases: list[Case], progress: Callable[[dict], None] | None = None) -> dict:
    """Train on ``cases`` (split into train and held-out) and return a summary of the run.

    ``progress`` receives each log row (a dict) as it is written.
    """
    torch.manual_seed(config.seed)
    spec, out = config.spec(), Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    train_cases, val_cases = split_cases(cases, config.val_fraction, config.seed)
    train_ds = FacingDataset(train_cases, spec.preprocessing, config.augment, config.seed)
    if len(train_ds) == 0:
        raise ValueError("No training cases with a known facing: the studies folders hold no labelled images.")
    val_ds = FacingDataset(val_cases, spec.preprocessing)
    val_x, val_y = _stacked(val_ds)
    net = spec.build()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    meta = {"config": {**asdict(config), "features": list(config.features)}, "train_cases": len(train_ds),
            "val_cases": len(val_ds), "parameters": count_parameters(net)}
    log.info("Facing: %d training and %d held-out cases, %d parameters.", len(train_ds), len(val_ds),
             meta["parameters"])
    start, step, best, losses, row = time.monotonic(), 0, math.inf, [], {}
    for x, y in _batches(train_ds, config):
        share = _progress(config, step, time.monotonic() - start)
        for group in optimizer.param_groups:  # cosine over the budget, down to 5 %
            group["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * share)))
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step, done = step + 1, _progress(config, step + 1, time.monotonic() - start) >= 1.0
        losses.append(float(loss.detach()))
        if step % config.eval_every and not done:
            continue
        row = {"step": step, "train_loss": sum(losses) / len(losses), **_evaluate(net, val_x, val_y),
               "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.monotonic() - start, 1)}
        losses = []
        append_csv(out / "log.csv", row)
        save_facing_model(net, spec, out / "last.pt", {**meta, "metrics": row})
        score = row.get("val_loss", row["train_loss"])
        if score < best:
            best = score
            save_facing_model(net, spec, out / "model.pt", {**meta, "metrics": row})
        log.info("facing step %d: %s", step, row)
        if progress:
            progress(row)
        if done:
            break
    chosen_by = "val_loss" if len(val_ds) else "train_loss"
    return {"model": str(out / "model.pt"), "steps": step, "chosen_by": chosen_by, "best": best, "last": row, **meta}
