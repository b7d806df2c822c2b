"""One model's configuration: where its weights come from and where training publishes them."""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from spinemorph.inference import load_model
from spinemorph.inference.analyse import load_detector_beside, load_facing, load_landmarks, load_refiner
from spinemorph.inference.identity import weights_identity
from spinemorph.inference.model import load_spec
from spinemorph.inference.runtime import compiled_model, runtime_on
from spinemorph.levels import level_name
from spinemorph.networks import head_classes

__all__ = ["SegmentationConfig"]

log = logging.getLogger(__name__)


@dataclass
class SegmentationConfig:
    """A served model.

    ``published`` is where training writes and inference reads first; ``initial`` is the shipped bundle (or
    weights given with ``--conf <name>_weights PATH``), used until training publishes; ``runtime``: where the infer
    task runs its networks on a CPU (``--conf runtime openvino``; ``spinemorph.inference.runtime``).
    """

    name: str
    network: str
    head: str
    published: Path
    initial: Path | None
    runtime: str = "torch"

    def __post_init__(self) -> None:
        runtime_on(self.runtime)  # a runtime it does not know is refused here, at start
        if self.runtime == "openvino" and importlib.util.find_spec("openvino") is None:
            raise RuntimeError("--conf runtime openvino needs the openvino package: pip install "
                               "'spinemorph[openvino]' (`make setup` installs it), or leave the runtime at torch.")
        self._lock = threading.Lock()
        self._cache: tuple[float, str, object, object] | None = None
        self._companions: dict[str, object] = {}  # the facing model and the stage-2 network, loaded once
        weights = self.weights()
        if weights is not None and self.head != "binary":  # a level model's head is the weights' own
            self.head = load_spec(weights).head

    @property
    def labels(self) -> dict[str, int]:
        """Return the label names and values this model writes."""
        if self.head == "binary":
            return {"vertebral body": 1}
        return {level_name(c): c for c in head_classes(self.head)[1:]}

    def weights(self) -> Path | None:
        """Return the weights to serve: the published model when there is one, else the initial ones."""
        if self.published.is_file():
            return self.published
        return self.initial if self.initial is not None and self.initial.exists() else None

    def _companion(self, kind: str, load):
        """Return a model shipped beside the served weights, else beside the initial bundle's (training publishes
        a segmentation model only), or None when there is neither; loaded once."""
        with self._lock:
            if kind not in self._companions:
                found = (load(p) for p in (self.weights(), self.initial) if p is not None and p.exists())
                self._companions[kind] = next((f for f in found if f is not None), None)
            return self._companions[kind]

    def facing_model(self):
        """Return the facing model (pixels -> facing, confidence), or None."""
        return self._companion("facing", load_facing)

    def refiner(self):
        """Return the stage-2 network and its spec (on the CPU), or None."""
        return self._companion("refiner", load_refiner)

    def landmarks(self):
        """Return the six-point landmark network on stage 2's crops and its spec (on the CPU), or None."""
        return self._companion("landmarks", load_landmarks)

    def detector(self):
        """Return the fracture detector shipped beside the served or the initial bundle (on the CPU), or None."""
        return self._companion("detector", load_detector_beside)

    def identity(self) -> dict[str, str]:
        """Return the served weights' path, SHA-256 (12 hex digits) and version, as infer replies name them."""
        ident = weights_identity(self.weights())
        return {"weights": ident["path"], "weights_sha256": ident["sha256"], "model_version": ident["version"]}

    def model(self, device: str):
        """Return (network, spec), reloaded whenever the weights file changes, so a published model serves next."""
        path = self.weights()
        if path is None:
            raise FileNotFoundError(f"Model {self.name} has no weights yet: train it or ship a bundle.")
        stamp = (path / "models" / "model.pt" if path.is_dir() else path).stat().st_mtime
        with self._lock:
            if self._cache is None or self._cache[:2] != (stamp, f"{path}:{device}"):
                net, spec = load_model(path, device)
                log.info("Loaded %s from %s on %s", self.name, path, device)
                self._cache = (stamp, f"{path}:{device}", net, spec)
            return self._cache[2], self._cache[3]

    def warm_up(self) -> threading.Thread | None:
        """Compile the networks for this config's runtime in the background (none for torch, or with CUDA), so the
        first infer does not wait for the conversions (``compiled`` keeps them for the process); an infer that comes
        sooner waits for them, as it would have made them itself. Return the thread."""
        if self.runtime == "torch" or self.device() != "cpu" or self.weights() is None:
            return None

        def run() -> None:
            try:
                for model in (self.model("cpu"), self.refiner(), self.landmarks()):
                    compiled_model(model, self.runtime, "cpu")
            except Exception:  # the first infer makes them then, and says what failed
                log.exception("Could not compile %s's networks for %s ahead of the first infer", self.name,
                              self.runtime)

        thread = threading.Thread(target=run, name=f"{self.name}-{self.runtime}-warm-up", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def device(requested: str | None = None) -> str:
        """Return the requested device, else CUDA when present, else CPU."""
        if requested and requested != "cuda":
            return requested
        return "cuda" if torch.cuda.is_available() else "cpu"
