"""Train tasks ``hierarchical_posenet`` and ``hierarchical_mnet``: fine-tune one stage of the hierarchical model on
the datastore's final labels (the centres come from the labelmaps) and publish it to what the infer task reads.

Each starts from the stage's served weights, holds out a validation split, prints one ``SPINEMORPH_TRAIN {json}``
line per validation, and replaces ``model_dir/hierarchical/<stage>.pt`` atomically when it is done.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.tasks.train import TrainTask

from lib.configs.hierarchical import HierarchicalConfig
from lib.trainers.segmentation import _report, publish
from spinemorph.hierarchical.model import STAGES
from spinemorph.hierarchical.training import StageConfig, train_patches, train_posenet
from spinemorph.inference import save_model
from spinemorph.training import Case

__all__ = ["HierarchicalTrain", "TRAIN_TASKS"]

log = logging.getLogger(__name__)
#: Train task name -> stage.
TRAIN_TASKS = {"hierarchical_posenet": "posenet", "hierarchical_mnet": "patches"}


class HierarchicalTrain(TrainTask):
    """Fine-tunes one stage ("posenet" or "patches") of the hierarchical model on labels/final."""

    def __init__(self, config: HierarchicalConfig, stage: str) -> None:
        if stage not in ("posenet", "patches"):
            raise ValueError(f"stage must be 'posenet' or 'patches', not {stage!r}.")
        what = "Pose-net (centres from the labelmaps)" if stage == "posenet" else "M-net (jittered vertebra patches)"
        super().__init__(f"Fine-tune the hierarchical model's {what} on the final labels")
        self.cfg, self.stage = config, stage
        self.defaults = {"max_steps": 300, "minutes": 0, "batch_size": 8, "lr": 1e-4, "val_split": 0.2,
                         "eval_every": 100}

    def config(self) -> dict:
        return dict(self.defaults)

    def _stats_path(self) -> Path:
        return self.cfg.published / f"{self.stage}_train_stats.json"

    def stats(self) -> dict:
        path = self._stats_path()
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request, datastore):
        options = {**self.defaults, **{k: v for k, v in request.items() if k in self.defaults}}
        cases = [Case(Path(d["image"]).name, Path(d["image"]), Path(d["label"])) for d in datastore.datalist()]
        if len(cases) < 2:
            raise HTTPException(409, f"Training the hierarchical {self.stage} stage needs at least 2 labelled "
                                     f"images; the datastore has {len(cases)}. Submit labels first.")
        source = self.cfg.stage_weights(self.stage)
        try:
            net, spec = self.cfg.model("cpu").stage(self.stage)
        except FileNotFoundError as err:
            raise HTTPException(409, str(err)) from None
        run = self.cfg.published / f"{self.stage}-run"
        if run.exists():
            shutil.rmtree(run)
        initial = save_model(net, spec, run / "init.pt")
        config = StageConfig(out=str(run), network=spec.network, head=spec.head, kwargs=dict(spec.kwargs),
                             size=spec.preprocessing.size, batch_size=int(options["batch_size"]),
                             lr=float(options["lr"]), max_steps=int(options["max_steps"]),
                             minutes=float(options["minutes"]), eval_every=int(options["eval_every"]),
                             val_fraction=float(options["val_split"]), init=str(initial))
        start = time.time()
        summary = (train_posenet if self.stage == "posenet" else train_patches)(config, cases, progress=_report)
        return publish(run / "model.pt", self.cfg.published / f"{self.stage}.pt", self._stats_path(), summary,
                       source, start, f"the hierarchical {self.stage} stage", STAGES[self.stage])
