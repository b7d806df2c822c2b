"""Train task: fine-tune a served model on the datastore's final labels and publish it to what infer reads.

Training starts from the weights being served (the shipped bundle, or the last published model), holds out a
validation split, prints one ``SPINEMORPH_TRAIN {json}`` line per epoch (the /train status shows the last
lines of the run), and replaces the published model atomically when it is done. It ends after ``max_epochs``, or
sooner at ``max_steps`` optimiser steps or after ``minutes`` (0: no such limit). ``multi_gpu`` runs the same
training under torchrun across the visible GPUs.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from fastapi import HTTPException
from monailabel.interfaces.tasks.train import TrainTask

from lib.configs.segmentation import SegmentationConfig
from lib.options import as_bool
from spinemorph.inference import load_model
from spinemorph.inference.identity import publish_checkpoint, weights_identity
from spinemorph.store import atomic_write_text
from spinemorph.training import Case, TrainConfig, train

__all__ = ["SegmentationTrain"]

log = logging.getLogger(__name__)
PREFIX = "SPINEMORPH_TRAIN"


class SegmentationTrain(TrainTask):
    """Fine-tunes one served model on labels/final."""

    def __init__(self, config: SegmentationConfig, defaults: dict | None = None) -> None:
        super().__init__(f"Fine-tune {config.name} ({config.network}, {config.head} head) on the final labels")
        self.cfg = config
        # pretrained=False keeps the served network's architecture and starts from random weights.
        self.defaults = {"max_epochs": 10, "max_steps": 0, "batch_size": 8, "val_split": 0.2, "lr": 1e-3, "minutes": 0,
                         "pretrained": True, "multi_gpu": False, **(defaults or {})}

    def config(self) -> dict:
        return dict(self.defaults)

    def stats(self) -> dict:
        path = self.cfg.published.with_name("train_stats.json")
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request, datastore):
        options = {**self.defaults, **{k: v for k, v in request.items() if k in self.defaults}}
        cases = [Case(Path(d["image"]).name, Path(d["image"]), Path(d["label"])) for d in datastore.datalist()]
        if len(cases) < 2:
            raise HTTPException(409, f"Training {self.cfg.name} needs at least 2 labelled images; the datastore "
                                     f"has {len(cases)}. Submit labels first.")
        initial = self.cfg.weights()
        if initial is None:
            raise HTTPException(409, f"{self.cfg.name} has no weights to start from.")
        _, spec = load_model(initial)
        run = self.cfg.published.parent / "run"
        if run.exists():
            shutil.rmtree(run)
        config = TrainConfig(out=str(run), network=spec.network, head=spec.head, kwargs=dict(spec.kwargs),
                             loss="dice" if spec.head == "binary" else "dicece", size=spec.preprocessing.size,
                             epochs=int(options["max_epochs"]), batch_size=int(options["batch_size"]),
                             lr=float(options["lr"]), val_fraction=float(options["val_split"]),
                             init=str(initial) if as_bool(options["pretrained"]) else None,
                             max_steps=int(options["max_steps"]), time_budget_s=float(options["minutes"]) * 60)
        start = time.time()
        if options["multi_gpu"] and torch.cuda.device_count() > 1:
            summary = _torchrun(config, datastore)
        else:
            summary = train(config, cases, progress=_report)
        return publish(run / "model.pt", self.cfg.published, self.cfg.published.with_name("train_stats.json"),
                       summary, initial, start, self.cfg.name, scratch=config.init is None)


def publish(best: Path, published: Path, stats_path: Path, summary: dict, started_from, start: float,
            what: str, weights_name: str = "model.pt", scratch: bool = False) -> dict:
    """Replace ``published`` with the run's ``best`` model atomically (the next infer loads it), versioned after
    the weights it started from; write, print and return the run's stats, which name the new weights' SHA-256.

    ``scratch``: the run kept ``started_from``'s architecture but not its weights.
    """
    if not best.is_file():
        raise HTTPException(500, f"Training {what} produced no model.")
    base = weights_identity(started_from, weights_name)["version"].split("+")[0]
    version = f"{base}+trained.{time.strftime('%Y%m%dT%H%M%S')}"
    publish_checkpoint(best, published, version)
    origin = f"random weights ({started_from}'s architecture)" if scratch else str(started_from)
    stats = {**summary, "published": str(published), "sha256": weights_identity(published)["sha256"],
             "version": version, "started_from": origin, "seconds": round(time.time() - start, 1),
             "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(stats_path, json.dumps(stats, indent=1, default=str))
    print(f"{PREFIX} {json.dumps({'done': True, **stats}, default=str)}", flush=True)
    return stats


def _report(row: dict) -> None:
    print(f"{PREFIX} {json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})}",
          flush=True)


def _torchrun(config: TrainConfig, datastore) -> dict:
    """Run the same training under torchrun on every visible GPU; return its summary."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={torch.cuda.device_count()}", "-m", "spinemorph.cli", "train", datastore._datastore_path,
           "--out", config.out, "--network", config.network, "--head", config.head, "--loss", config.loss,
           "--features", *map(str, config.kwargs.get("features", (16, 32, 64, 128, 256))),
           "--dropout", str(config.kwargs.get("dropout", 0.0)), "--size", str(config.size), "--epochs",
           str(config.epochs), "--batch", str(config.batch_size), "--lr", str(config.lr), "--val-fraction",
           str(config.val_fraction), "--max-steps", str(config.max_steps), "--minutes", str(config.time_budget_s / 60),
           *(["--init", str(config.init)] if config.init else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HTTPException(500, f"Multi-GPU training failed: {done.stderr[-1000:]}")
    return json.loads(done.stdout[done.stdout.index("{"):])
