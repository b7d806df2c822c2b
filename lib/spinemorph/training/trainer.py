"""The training loop: Adam at 1e-3 with ReduceLROnPlateau (Kim et al. 2021), AMP on CUDA, DDP under torchrun.

Every epoch validates on the held-out cases, logs to CSV (and TensorBoard when installed), saves ``last.pt``
(to resume) and, when validation improves, ``model.pt`` (what inference loads). ``progress`` receives a dict
per epoch, which is how the MONAI Label app reports status.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from spinemorph.inference.model import ModelSpec, save_model
from spinemorph.training.data import Case, RadiographDataset, split_cases
from spinemorph.training.losses import build_loss
from spinemorph.transforms import Preprocessing

__all__ = ["TrainConfig", "train", "append_csv"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, parsed once.

    Args:
        out: folder for model.pt (best), last.pt (resume), log.csv and tb/.
        init: weights to start from (a model.pt or a bundle folder), e.g. the shipped model.
        max_steps / time_budget_s: stop early after this many optimiser steps or seconds (0: no limit).
    """

    out: str
    network: str = "mdr2unet"
    head: str = "levels"
    kwargs: dict = field(default_factory=lambda: {"features": (16, 32, 64, 128, 256), "dropout": 0.1})
    loss: str = "dicece"
    size: int = 256
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    workers: int = 0
    amp: bool | None = None  # None: on when training on CUDA
    device: str | None = None
    resume: bool = False
    init: str | None = None
    max_steps: int = 0
    time_budget_s: float = 0.0

    def spec(self) -> ModelSpec:
        """Return the model spec this run trains."""
        return ModelSpec(self.network, self.head, dict(self.kwargs), Preprocessing(size=self.size))


def _dice(pred: torch.Tensor, target: torch.Tensor, classes: int) -> tuple[float, float]:
    """Return (body Dice, mean per-class Dice over classes present) for class maps (B, H, W)."""
    body_p, body_t = pred > 0, target > 0
    body = float(2 * (body_p & body_t).sum() / max(int(body_p.sum() + body_t.sum()), 1))
    scores = []
    for c in range(1, classes):
        p, t = pred == c, target == c
        if t.any() or p.any():
            scores.append(float(2 * (p & t).sum() / (p.sum() + t.sum())))
    return body, (sum(scores) / len(scores)) if scores else body


@torch.no_grad()
def _validate(net, loader, loss_fn, device, head: str) -> dict[str, float]:
    net.eval()
    losses, body, level, n = 0.0, 0.0, 0.0, 0
    for image, target in loader:
        image, target = image.to(device), target.to(device)
        logits = net(image)
        losses += float(loss_fn(logits, target)) * len(image)
        pred = (logits[:, 0] > 0).long() if head == "binary" else logits.argmax(1)
        for p, t in zip(pred, target[:, 0], strict=True):
            b, lv = _dice(p, t, logits.shape[1] if head != "binary" else 2)
            body, level, n = body + b, level + lv, n + 1
    net.train()
    return {"val_loss": losses / max(n, 1), "val_body_dice": body / max(n, 1), "val_level_dice": level / max(n, 1)}


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world) if world > 1 else (0, 0, 1)


def train(config: TrainConfig, cases: list[Case], progress: Callable[[dict], None] | None = None) -> dict:
    """Train on ``cases`` (split into train/validation) and return a summary with the best validation Dice."""
    rank, local_rank, world = _distributed()
    device = torch.device(config.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda" if config.amp is None else config.amp and device.type == "cuda"
    torch.manual_seed(config.seed)
    train_cases, val_cases = split_cases(cases, config.val_fraction, config.seed)
    if not train_cases:
        raise ValueError("No training cases: the studies folders hold no labelled images.")
    spec, out = config.spec(), Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    train_ds = RadiographDataset(train_cases, spec.preprocessing, spec.head, augment=True, progress=rank == 0,
                                 seed=config.seed + rank)
    val_ds = RadiographDataset(val_cases, spec.preprocessing, spec.head, progress=rank == 0)
    sampler = DistributedSampler(train_ds, seed=config.seed) if world > 1 else None
    loader = DataLoader(train_ds, config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.workers, drop_last=len(train_ds) > config.batch_size)
    val_loader = DataLoader(val_ds, config.batch_size, num_workers=config.workers)
    net = _initial(spec, config.init).to(device)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = build_loss(config.loss, spec.head)
    state = _resume(out / "last.pt", net, optimizer, scheduler) if config.resume else {"epoch": 0, "best": -1.0,
                                                                                        "step": 0}
    writer = _writer(out) if rank == 0 else None
    start = time.monotonic()
    key = "val_body_dice" if spec.head == "binary" else "val_level_dice"
    row: dict = {}
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=rank != 0, leave=False)
        for image, target in bar:
            image, target = image.to(device), target.to(device)
            with torch.autocast(device.type, enabled=amp):
                loss = loss_fn(net(image), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = float(loss.detach())
            total, seen, state["step"] = total + value * len(image), seen + len(image), state["step"] + 1
            bar.set_postfix(loss=f"{value:.4f}")
            if _out_of_budget(config, state["step"], start):
                break
        if rank == 0:
            row = {"epoch": epoch, "step": state["step"], "train_loss": total / max(seen, 1),
                   **_validate(net, val_loader, loss_fn, device, spec.head), "lr": optimizer.param_groups[0]["lr"],
                   "seconds": round(time.monotonic() - start, 1)}
            scheduler.step(row[key])
            improved = row[key] > state["best"]
            state["best"] = max(state["best"], row[key])
            _log(out, row, writer)
            extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                     "best": state["best"], "step": state["step"], "config": asdict(config)}
            save_model(net, spec, out / "last.pt", extra)
            if improved:
                save_model(net, spec, out / "model.pt", {"metrics": row, "config": asdict(config)})
            log.info("epoch %d: %s", epoch, row)
            if progress:
                progress({**row, "epochs": config.epochs, "best": state["best"]})
        state["epoch"] = epoch
        if _out_of_budget(config, state["step"], start):
            break
    if world > 1:
        dist.barrier()
    return {"best_" + key: state["best"], "epochs": state["epoch"], "steps": state["step"],
            "model": str(out / "model.pt"), "train_cases": len(train_cases), "val_cases": len(val_cases), "last": row}


def _initial(spec: ModelSpec, init: str | None):
    """Return the network to train: fresh, or from ``init``'s weights. A per-level model can start an anchored one
    (its classes are the anchored head's first ones: only the sacrum's output channel starts fresh)."""
    net = spec.build()
    if init:
        from spinemorph.inference.model import load_model

        source, source_spec = load_model(init)
        grows = (source_spec.head, spec.head) == ("levels", "anchored")
        if source_spec.network != spec.network or (source_spec.head != spec.head and not grows):
            raise ValueError(f"Cannot start a {spec.network}/{spec.head} model from a "
                             f"{source_spec.network}/{source_spec.head} one ({init}).")
        if not grows:
            net.load_state_dict(source.state_dict())
            return net
        state = net.state_dict()
        for name, value in source.state_dict().items():
            if value.shape == state[name].shape:
                state[name] = value
            else:  # the output layer: one more class (along dim 0 of a conv, dim 1 of a transposed conv)
                state[name][tuple(slice(0, n) for n in value.shape)] = value
        net.load_state_dict(state)
    return net


def _resume(path: Path, net, optimizer, scheduler) -> dict:
    if not path.is_file():
        log.info("Nothing to resume at %s: starting afresh.", path)
        return {"epoch": 0, "best": -1.0, "step": 0}
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    (net.module if hasattr(net, "module") else net).load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    log.info("Resumed from %s at epoch %d.", path, ckpt["epoch"])
    return {"epoch": ckpt["epoch"], "best": ckpt["best"], "step": ckpt.get("step", 0)}


def _out_of_budget(config: TrainConfig, step: int, start: float) -> bool:
    return bool((config.max_steps and step >= config.max_steps) or
                (config.time_budget_s and time.monotonic() - start >= config.time_budget_s))


def _writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional; the CSV log always exists
        return None
    return SummaryWriter(str(out / "tb"))


def append_csv(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV log at ``path``, writing the header first if the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _log(out: Path, row: dict, writer) -> None:
    append_csv(out / "log.csv", row)
    if writer is not None:
        for k, v in row.items():
            if k not in ("epoch", "step"):
                writer.add_scalar(k, v, row["step"])
        writer.flush()
