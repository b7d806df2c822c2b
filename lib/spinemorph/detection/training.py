"""Training the fracture detector: SGD with momentum 0.9 and weight decay 1e-4 (Paik et al. 2024).

Two stages share one loop. ``stage="pretrain"`` trains only the backbone and the per-level segmentation head on
segmentation data (the substitute for COCO weights, which cannot be downloaded here); ``stage="detect"``
trains the whole detector, keeping the segmentation loss as an auxiliary term. The learning rate warms up
linearly, then follows a cosine to zero over the run (steps, or the time budget). Every ``val_every`` steps
the held-out cases are scored (mAP@0.5 and the per-patient accuracy), ``last.pt`` is written, and
``model.pt`` when validation improves; one CSV row is logged and ``progress`` gets the same dict.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spinemorph.detection.checkpoint import load_detector, save_detector
from spinemorph.detection.data import DetectionDataset, collate
from spinemorph.detection.model import DetectorSpec
from spinemorph.detection.validation import validate
from spinemorph.training.data import Case, split_cases
from spinemorph.training.trainer import append_csv
from spinemorph.transforms import Preprocessing

__all__ = ["DetectorTrainConfig", "train_detector"]

log = logging.getLogger(__name__)
STAGES = ("pretrain", "detect")


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Everything a detector training run needs, parsed once.

    Args:
        out: folder for model.pt (best), last.pt, log.csv.
        stage: "pretrain" (backbone + segmentation head) or "detect".
        init: weights to start from: a pretraining run's or a detector's model.pt, or a bundle folder.
        minutes / max_steps: stop after this much training time or this many steps (0: use ``epochs``).
        semantic_weight: weight of the auxiliary per-level segmentation loss in the detect stage.
    """

    out: str
    stage: str = "detect"
    levels: str = "all"
    size: int = 320
    channels: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    fpn_channels: int = 64
    box_hidden: int = 256
    epochs: int = 20
    batch_size: int = 4
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    semantic_weight: float = 0.5
    augment: bool = True
    val_fraction: float = 0.1
    val_every: int = 200
    seed: int = 0
    init: str | None = None
    max_steps: int = 0
    minutes: float = 0.0
    device: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"Unknown stage {self.stage!r}: use 'pretrain' or 'detect'.")
        if self.lr <= 0 or self.batch_size < 1:
            raise ValueError("The learning rate must be positive and the batch size at least 1.")

    def spec(self) -> DetectorSpec:
        """Return the detector spec this run trains."""
        return DetectorSpec(levels=self.levels, channels=tuple(self.channels), blocks=tuple(self.blocks),
                            fpn_channels=self.fpn_channels, box_hidden=self.box_hidden,
                            preprocessing=Preprocessing(size=self.size))


def _initial(config: DetectorTrainConfig, spec: DetectorSpec, device: torch.device):
    net = spec.build()
    if config.init:
        source, source_spec = load_detector(config.init)
        if source_spec.levels != spec.levels and config.stage == "detect":
            # A pretrained backbone carries no fracture classes: keep everything but the class-specific layer.
            state = {k: v for k, v in source.state_dict().items() if "box_head.classifier" not in k}
            net.load_state_dict(state, strict=False)
        else:
            net.load_state_dict(source.state_dict())
        log.info("Started from %s", config.init)
    return net.to(device).train()


def _learning_rate(config: DetectorTrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / max(config.warmup_steps, 1))
    return config.lr * warm * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _loss(net, images, targets, config: DetectorTrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    if config.stage == "pretrain":
        parts = {"semantic": net.semantic_loss(net.backbone(images), targets)}
    else:
        parts = net(images, targets)
        if "semantic" in parts:
            parts["semantic"] = parts["semantic"] * config.semantic_weight
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}


def _step(net, optimizer, trainable, images, targets, config: DetectorTrainConfig, device, state: dict) -> None:
    """Run one optimiser step and update the running mean of each loss term."""
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    loss, parts = _loss(net, images.to(device), targets, config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 10.0)
    optimizer.step()
    state["step"] += 1
    for k, v in parts.items():
        state["running"][k] = 0.9 * state["running"].get(k, v) + 0.1 * v


def _checkpoint(net, spec: DetectorSpec, val_ds, config: DetectorTrainConfig, device, lr: float, state: dict,
                progress: Callable[[dict], None] | None) -> None:
    """Validate, write last.pt (and model.pt when validation improved), log a CSV row and report progress."""
    out = Path(config.out)
    row = {"step": state["step"], "seconds": round(time.monotonic() - state["start"], 1), "lr": lr,
           **{f"train_{k}": round(v, 5) for k, v in state["running"].items()},
           **validate(net, val_ds, config.stage, device)}
    extra = {"config": asdict(config), "step": state["step"], "metrics": row}
    save_detector(net, spec, out / "last.pt", extra)
    if row["val_score"] > state["best"]:
        state["best"] = row["val_score"]
        save_detector(net, spec, out / "model.pt", extra)
    append_csv(out / "log.csv", row)
    log.info("step %d: %s", state["step"], row)
    if progress:
        progress({**row, "best": state["best"]})
    state["row"] = row
    net.train()


def train_detector(config: DetectorTrainConfig, cases: list[Case],
                   progress: Callable[[dict], None] | None = None) -> dict:
    """Train on ``cases`` (split into train/validation) and return a summary with the best validation score."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    spec = config.spec()
    Path(config.out).mkdir(parents=True, exist_ok=True)
    train_cases, val_cases = split_cases(cases, config.val_fraction, config.seed)
    if not train_cases:
        raise ValueError("No training cases: the studies folders hold no labelled images.")
    train_ds = DetectionDataset(train_cases, spec.preprocessing, spec.codes, augment=config.augment)
    val_ds = DetectionDataset(val_cases, spec.preprocessing, spec.codes)
    loader = DataLoader(train_ds, config.batch_size, shuffle=True, collate_fn=collate,
                        drop_last=len(train_ds) > config.batch_size)
    net = _initial(config, spec, device)
    trainable = [p for n, p in net.named_parameters()
                 if config.stage == "detect" or n.startswith(("backbone.", "semantic."))]
    optimizer = torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    total, budget = config.max_steps or config.epochs * len(loader), config.minutes * 60.0
    state = {"start": time.monotonic(), "step": 0, "best": -math.inf, "row": {}, "running": {}}
    done = False
    while not done:
        for images, targets in loader:
            elapsed = time.monotonic() - state["start"]
            lr = _learning_rate(config, state["step"], max(state["step"] / max(total, 1), elapsed / budget if budget
                                                           else 0.0))
            for group in optimizer.param_groups:
                group["lr"] = lr
            _step(net, optimizer, trainable, images, targets, config, device, state)
            done = state["step"] >= total or bool(budget and time.monotonic() - state["start"] >= budget)
            if state["step"] % config.val_every == 0 or done:
                _checkpoint(net, spec, val_ds, config, device, lr, state, progress)
            if done:
                break
    return {"best_val_score": state["best"], "steps": state["step"], "model": str(Path(config.out) / "model.pt"),
            "minutes": round((time.monotonic() - state["start"]) / 60, 2), "train_cases": len(train_cases),
            "val_cases": len(val_cases), "last": state["row"]}
