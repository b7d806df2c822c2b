"""The compression-fracture detector as a served model: where its weights come from and where training publishes.

Served from the published checkpoint (``model_dir/vcf_detection/model.pt``, written by the train task) when there
is one, else from the shipped bundle ``sample-apps/spinemorph_vcf_detection`` (or ``--conf vcf_detection_weights
PATH``, a checkpoint or a bundle).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from spinemorph.detection import DetectorSpec, VcfMaskRCNN, load_detector
from spinemorph.detection.model import LEVEL_SETS
from spinemorph.inference.identity import weights_identity
from spinemorph.levels import level_name

__all__ = ["VCF_DETECTION", "DetectionConfig"]

log = logging.getLogger(__name__)
VCF_DETECTION = "vcf_detection"
BUNDLE = "spinemorph_vcf_detection"


@dataclass
class DetectionConfig:
    """The served detector: ``published`` (what training writes) first, else the ``initial`` weights."""

    published: Path
    initial: Path | None
    name: str = VCF_DETECTION

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: tuple[float, str, VcfMaskRCNN, DetectorSpec] | None = None

    @classmethod
    def from_conf(cls, conf: dict, model_dir: Path, bundles: Path) -> DetectionConfig:
        """Return the config the app's ``--conf`` options describe."""
        initial = conf.get(f"{VCF_DETECTION}_weights") or Path(bundles) / BUNDLE
        return cls(Path(model_dir) / VCF_DETECTION / "model.pt", Path(initial))

    @property
    def labels(self) -> dict[str, int]:
        """Return the label names and values the instance labelmap can hold (the "all" level set's codes)."""
        return {level_name(c): c for c in LEVEL_SETS["all"]}

    def weights(self) -> Path | None:
        """Return the weights to serve: the published model when there is one, else the initial ones."""
        if self.published.is_file():
            return self.published
        return self.initial if self.initial is not None and self.initial.exists() else None

    def identity(self) -> dict[str, str]:
        """Return the served weights' path, SHA-256 (12 hex digits) and version, as infer replies name them."""
        ident = weights_identity(self.weights())
        return {"weights": ident["path"], "weights_sha256": ident["sha256"], "model_version": ident["version"]}

    def model(self, device: str) -> tuple[VcfMaskRCNN, DetectorSpec]:
        """Return (detector, spec), reloaded whenever the weights file changes, so a published model serves next."""
        path = self.weights()
        if path is None:
            raise FileNotFoundError(f"{self.name} has no weights yet: ship the {BUNDLE} bundle or pass "
                                    f"--conf {VCF_DETECTION}_weights PATH.")
        stamp = (path / "models" / "model.pt" if path.is_dir() else path).stat().st_mtime
        with self._lock:
            if self._cache is None or self._cache[:2] != (stamp, f"{path}:{device}"):
                net, spec = load_detector(path, device)
                log.info("Loaded %s from %s on %s", self.name, path, device)
                self._cache = (stamp, f"{path}:{device}", net, spec)
            return self._cache[2], self._cache[3]
