"""The hierarchical model (Kim et al. 2019): where its two networks come from and where training publishes them.

Each stage is served from its published checkpoint (``model_dir/hierarchical/<stage>.pt``, written by the stage's
train task) when there is one, else from the shipped bundle (or ``--conf hierarchical_weights DIR``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from spinemorph.hierarchical.model import STAGES, HierarchicalModel
from spinemorph.inference import ModelSpec, load_model
from spinemorph.inference.identity import weights_identity

__all__ = ["HIERARCHICAL", "HierarchicalConfig"]

log = logging.getLogger(__name__)
HIERARCHICAL = "hierarchical"


@dataclass
class HierarchicalConfig:
    """The served hierarchical model: ``published`` folder (one checkpoint per stage) and the ``initial`` bundle."""

    published: Path
    initial: Path | None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str, torch.nn.Module, ModelSpec]] = {}

    @classmethod
    def from_conf(cls, conf: dict, model_dir: Path, bundles: Path) -> HierarchicalConfig:
        """Return the config the app's ``--conf`` options describe."""
        initial = conf.get(f"{HIERARCHICAL}_weights") or bundles / "spinemorph_hierarchical"
        return cls(Path(model_dir) / HIERARCHICAL, Path(initial))

    def stage_weights(self, stage: str) -> Path | None:
        """Return the checkpoint a stage ("posenet" or "patches") serves, or None if there is none."""
        published = self.published / f"{stage}.pt"
        if published.is_file():
            return published
        if self.initial is not None and (self.initial / "models" / STAGES[stage]).is_file():
            return self.initial
        return None

    def identity(self) -> dict[str, dict[str, str]]:
        """Return each stage's served weights: path, SHA-256 (12 hex digits) and version, as infer replies name them."""
        idents = {s: weights_identity(self.stage_weights(s), STAGES[s]) for s in STAGES}
        return {"weights": {s: i["path"] for s, i in idents.items()},
                "weights_sha256": {s: i["sha256"] for s, i in idents.items()},
                "model_version": {s: i["version"] for s, i in idents.items()}}

    def ready(self) -> bool:
        """Return True when both stages have weights."""
        return all(self.stage_weights(s) is not None for s in STAGES)

    def _stage(self, stage: str, device: str) -> tuple[torch.nn.Module, ModelSpec]:
        path = self.stage_weights(stage)
        if path is None:
            raise FileNotFoundError(f"The hierarchical model's {stage} stage has no weights: train it or ship the "
                                    "spinemorph_hierarchical bundle.")
        weights = path / "models" / STAGES[stage] if path.is_dir() else path
        key = f"{path}:{device}"
        cached = self._cache.get(stage)
        if cached is None or cached[:2] != (weights.stat().st_mtime, key):
            net, spec = self._load(path, stage, device)
            log.info("Loaded the hierarchical %s stage from %s on %s", stage, path, device)
            self._cache[stage] = (weights.stat().st_mtime, key, net, spec)
        return self._cache[stage][2:]

    @staticmethod
    def _load(path: Path, stage: str, device: str) -> tuple[torch.nn.Module, ModelSpec]:
        if path.is_dir():
            from spinemorph.hierarchical.model import load_hierarchical

            return load_hierarchical(path, device).stage(stage)
        return load_model(path, device)

    def model(self, device: str) -> HierarchicalModel:
        """Return both stages on ``device``, reloaded whenever a stage's weights change."""
        with self._lock:
            posenet, pose_spec = self._stage("posenet", device)
            patchnet, patch_spec = self._stage("patches", device)
        return HierarchicalModel(posenet, pose_spec, patchnet, patch_spec, device)
