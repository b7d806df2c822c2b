"""Train task ``vcf_detection``: fine-tune the served detector on the datastore's final labels and publish it.

A label's fractures come from its truth JSON beside it (simulated cases) or, for an annotated label, from
measuring it (Genant grade >= 1 is a fracture). Training starts from the weights being served, with the paper's
SGD, flips and rotations; one ``SPINEMORPH_TRAIN {json}`` line is printed per validation, and the best model
replaces the published one atomically.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.tasks.train import TrainTask

from lib.configs.vcf_detection import DetectionConfig
from lib.trainers.segmentation import _report, publish
from spinemorph.detection import load_detector
from spinemorph.detection.training import DetectorTrainConfig, train_detector
from spinemorph.training import Case

__all__ = ["VcfDetectionTrain"]

log = logging.getLogger(__name__)


def _cases(datastore) -> list[Case]:
    cases = []
    for d in datastore.datalist():
        image, label = Path(d["image"]), Path(d["label"])
        truth = label.with_name(label.name.replace(".nii.gz", "").replace(".nii", "") + ".truth.json")
        cases.append(Case(image.name, image, label, truth if truth.is_file() else None))
    return cases


class VcfDetectionTrain(TrainTask):
    """Fine-tunes the fracture detector on labels/final."""

    def __init__(self, config: DetectionConfig, defaults: dict | None = None) -> None:
        super().__init__("Fine-tune the compression-fracture detector on the final labels")
        self.cfg = config
        self.defaults = {"max_epochs": 5, "batch_size": 4, "val_split": 0.2, "lr": 0.005, "minutes": 0,
                         **(defaults or {})}

    def config(self) -> dict:
        return dict(self.defaults)

    def stats(self) -> dict:
        path = self.cfg.published.with_name("train_stats.json")
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request, datastore):
        options = {**self.defaults, **{k: v for k, v in request.items() if k in self.defaults}}
        cases = _cases(datastore)
        if len(cases) < 2:
            raise HTTPException(409, f"Training {self.cfg.name} needs at least 2 labelled images; the datastore has "
                                     f"{len(cases)}. Submit labels first.")
        initial = self.cfg.weights()
        if initial is None:
            raise HTTPException(409, f"{self.cfg.name} has no weights to start from.")
        _, spec = load_detector(initial)
        run = self.cfg.published.parent / "run"
        shutil.rmtree(run, ignore_errors=True)
        config = DetectorTrainConfig(out=str(run), levels=spec.levels, size=spec.preprocessing.size,
                                     channels=spec.channels, blocks=spec.blocks, fpn_channels=spec.fpn_channels,
                                     box_hidden=spec.box_hidden,
                                     epochs=int(options["max_epochs"]), batch_size=int(options["batch_size"]),
                                     lr=float(options["lr"]), warmup_steps=10, val_fraction=float(options["val_split"]),
                                     val_every=10_000, init=str(initial), minutes=float(options["minutes"]))
        start = time.time()
        summary = train_detector(config, cases, progress=_report)
        return publish(run / "model.pt", self.cfg.published, self.cfg.published.with_name("train_stats.json"),
                       summary, initial, start, self.cfg.name)
