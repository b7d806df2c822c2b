"""Training Pose-net and the patch segmenters (M-net, or U-Net for the ablation) from labelled studies folders.

Adam at 1e-3 with ReduceLROnPlateau, a fixed budget of steps (or minutes), validation every ``eval_every``
steps on a held-out split, a CSV log, ``last.pt`` and, when validation improves, ``model.pt``: checkpoints that
``spinemorph.inference.load_model`` reads. Pose-net's loss is the sum of both stages' L2 losses (equations
(2)-(5)); a patch network's is Dice + BCE, averaged over M-net's side outputs (equations (7)-(8)).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spinemorph.hierarchical.datasets import PatchDataset, PoseDataset
from spinemorph.inference.model import ModelSpec, save_model
from spinemorph.networks import head_channels
from spinemorph.training import build_loss, split_cases
from spinemorph.training.trainer import append_csv
from spinemorph.transforms import Preprocessing

__all__ = ["StageConfig", "pose_loss", "train_posenet", "train_patches", "select_cases"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageConfig:
    """One stage's training run, parsed once.

    Args:
        out: folder for model.pt (best), last.pt, log.csv and summary.json.
        network: "posenet", or the patch network ("mnet"; "unet" for the ablation).
        head: "binary" (the paper), or "levels" (Pose-net only: also one map per level).
        size: Pose-net's frame height (width = size // 2), or the patch side.
        fovs: keep only cases whose truth JSON names one of these fields of view (None: all cases).
        jitter: patch networks: centre moves, as a fraction of the gap to the neighbours.
        init: weights to start from (a model.pt of the same network and head).
        defects: stage 2 only: share of the training crops given a film defect (``spinemorph.refine.train``).
    """

    out: str
    network: str = "posenet"
    head: str = "binary"
    kwargs: dict = field(default_factory=lambda: {"features": (8, 16, 32, 64, 128)})
    size: int = 256
    batch_size: int = 8
    lr: float = 1e-3
    max_steps: int = 2000
    minutes: float = 0.0
    eval_every: int = 200
    val_fraction: float = 0.1
    seed: int = 0
    jitter: float = 0.15
    fovs: tuple[str, ...] | None = None
    init: str | None = None
    defects: float = 0.0

    def spec(self) -> ModelSpec:
        """Return the spec of the network this run trains."""
        return ModelSpec(self.network, self.head, dict(self.kwargs), Preprocessing(size=self.size))


def pose_loss(out: dict, target: torch.Tensor) -> torch.Tensor:
    """Return the sum of both stages' L2 losses, summed over pixels and maps, averaged over the batch."""
    l5 = ((out["l5"] - target[:, :1]) ** 2).sum(dim=(1, 2, 3))
    centres = ((out["centres"] - target[:, 1:]) ** 2).sum(dim=(1, 2, 3))
    return (l5 + centres).mean()


def select_cases(cases, fovs: tuple[str, ...] | None) -> list:
    """Return the cases whose truth JSON names one of ``fovs``; all of them when ``fovs`` is None."""
    if not fovs:
        return list(cases)
    return [c for c in cases if c.truth is not None and json.loads(c.truth.read_text()).get("fov") in fovs]


@torch.no_grad()
def _validate(net, loader, loss_fn, dice: bool, stages: bool) -> dict[str, float]:
    net.eval()
    total, overlap, n = 0.0, 0.0, 0
    for image, target in loader:
        out = net(image, all_outputs=True) if stages else net(image)
        total += float(loss_fn(out, target)) * len(image)
        if dice:
            pred = (out["out"] if isinstance(out, dict) else out) > 0
            t = target > 0
            overlap += float((2 * (pred & t).sum((1, 2, 3)) / (pred.sum((1, 2, 3)) + t.sum((1, 2, 3))).clamp_min(1)
                              ).sum())
        n += len(image)
    net.train()
    row = {"val_loss": total / max(n, 1)}
    if dice:
        row["val_dice"] = overlap / max(n, 1)
    return row


def fit(config: StageConfig, train_ds, val_ds, loss_fn: Callable, key: str,
        progress: Callable[[dict], None] | None = None) -> dict:
    """Train ``config``'s network on the datasets; keep the best ``key`` (val_loss: lowest; else highest)."""
    out, spec = Path(config.out), config.spec()
    out.mkdir(parents=True, exist_ok=True)
    net = _initial(config)
    loader = DataLoader(train_ds, config.batch_size, shuffle=True, drop_last=len(train_ds) > config.batch_size)
    val_loader = DataLoader(val_ds, config.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    lower = key == "val_loss"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if lower else "max", factor=0.5,
                                                           patience=3)
    best, step, running, seen, start = None, 0, 0.0, 0, time.monotonic()
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    row: dict = {}
    while True:
        image, target = next(batches)
        loss = loss_fn(net(image), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step, running, seen = step + 1, running + float(loss.detach()), seen + 1
        done = step >= config.max_steps > 0 or (config.minutes and time.monotonic() - start >= config.minutes * 60)
        if step % config.eval_every and not done:
            continue
        row = {"step": step, "train_loss": running / seen, **_validate(net, val_loader, loss_fn, key == "val_dice",
                                                                             config.network == "posenet"),
               "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.monotonic() - start, 1)}
        running, seen = 0.0, 0
        scheduler.step(row[key])
        improved = best is None or (row[key] < best if lower else row[key] > best)
        best = row[key] if improved else best
        append_csv(out / "log.csv", row)
        extra = {"config": asdict(config), "metrics": row}
        save_model(net, spec, out / "last.pt", extra)
        if improved:
            save_model(net, spec, out / "model.pt", extra)
        log.info("step %d: %s", step, row)
        if progress:
            progress({**row, "max_steps": config.max_steps, "best": best})
        if done:
            break
    summary = {"best_" + key: best, "steps": step, "minutes": round((time.monotonic() - start) / 60, 2),
               "model": str(out / "model.pt"), "train": len(train_ds), "val": len(val_ds), "last": row}
    (out / "summary.json").write_text(json.dumps({**summary, "config": asdict(config)}, indent=1, default=str))
    return summary


def _initial(config: StageConfig):
    """Return the network to train, seeded, in training mode, started from ``config.init`` when given."""
    torch.manual_seed(config.seed)
    net = config.spec().build()
    if config.init:
        from spinemorph.inference.model import load_model

        net.load_state_dict(load_model(config.init)[0].state_dict())
    return net.train()


def train_posenet(config: StageConfig, cases, progress: Callable[[dict], None] | None = None) -> dict:
    """Train Pose-net on labelled cases (centres from their labelmaps) and return the run's summary."""
    if config.network != "posenet":
        raise ValueError(f"train_posenet trains network 'posenet', not {config.network!r}.")
    train_cases, val_cases = split_cases(select_cases(cases, config.fovs), config.val_fraction, config.seed)
    if not train_cases:
        raise ValueError("No training cases: the studies folders hold no labelled images of the chosen views.")
    settings, n = Preprocessing(size=config.size), head_channels(config.head)
    return fit(config, PoseDataset(train_cases, settings, n, augment=True), PoseDataset(val_cases, settings, n),
               pose_loss, "val_loss", progress)


def train_patches(config: StageConfig, cases, progress: Callable[[dict], None] | None = None) -> dict:
    """Train a patch segmenter (M-net, or U-Net) on jittered vertebra patches and return the run's summary."""
    if config.head != "binary":
        raise ValueError("A patch network segments the patch's own vertebra: use the binary head.")
    train_cases, val_cases = split_cases(select_cases(cases, config.fovs), config.val_fraction, config.seed)
    if not train_cases:
        raise ValueError("No training cases: the studies folders hold no labelled images of the chosen views.")
    settings = Preprocessing(size=config.size)
    train_ds = PatchDataset(train_cases, settings, config.jitter, augment=True)
    val_ds = PatchDataset(val_cases, settings, config.jitter, seed=config.seed)
    return fit(config, train_ds, val_ds, build_loss("dicebce", "binary"), "val_dice", progress)
