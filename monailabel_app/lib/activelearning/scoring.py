"""Scoring: Dice between the model's and the annotator's labels, and MC-dropout epistemic uncertainty."""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.configs.segmentation import SegmentationConfig
from spinemorph.inference.segment import pass_probabilities
from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.networks import mc_dropout
from spinemorph.transforms import preprocess

__all__ = ["LevelDice", "EpistemicScore", "InfoUpdates", "mean_dice"]

log = logging.getLogger(__name__)

SEED = 0  # of the epistemic passes' dropout masks


class InfoUpdates:
    """The image info a scoring method writes, gathered and written at most every ``every_s`` seconds and when the
    block ends (``with InfoUpdates(datastore) as updates: updates.add(image_id, info)``): one write of the
    datastore's JSON for many images, where the datastore can (``update_image_infos``), else one per image. A
    server stopped mid-scoring loses at most ``every_s`` seconds of scores, which the next scoring makes again."""

    def __init__(self, datastore, every_s: float = 10.0) -> None:
        self.datastore, self.every_s = datastore, every_s
        self.pending: dict[str, dict] = {}
        self.written = time.monotonic()

    def add(self, image_id: str, info: dict) -> None:
        self.pending.setdefault(image_id, {}).update(info)
        if time.monotonic() - self.written >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            if hasattr(self.datastore, "update_image_infos"):
                self.datastore.update_image_infos(self.pending)
            else:
                for image_id, info in self.pending.items():
                    self.datastore.update_image_info(image_id, info)
        self.pending, self.written = {}, time.monotonic()

    def __enter__(self) -> InfoUpdates:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Return the mean Dice over the levels present in either labelmap (1.0 when both are empty)."""
    levels = [int(v) for v in np.union1d(np.unique(a), np.unique(b)) if v]
    if not levels:
        return 1.0
    return float(np.mean([2 * ((a == v) & (b == v)).sum() / max(int((a == v).sum() + (b == v).sum()), 1)
                          for v in levels]))


class LevelDice(ScoringMethod):
    """Mean per-level Dice of the final label against the model's original one: the plugin's accuracy bar."""

    def __init__(self) -> None:
        super().__init__("Mean per-level Dice of the submitted label against the model's")

    def __call__(self, request, datastore):
        result = {}
        for image_id in datastore.list_images():
            final = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
            original = datastore.get_label_by_image_id(image_id, DefaultLabelTag.ORIGINAL)
            if not (final and original):
                continue
            a, _ = read_labelmap(datastore.get_label_uri(final, DefaultLabelTag.FINAL))
            b, _ = read_labelmap(datastore.get_label_uri(original, DefaultLabelTag.ORIGINAL))
            if a.shape != b.shape:
                continue
            result[image_id] = mean_dice(a, b)
            datastore.update_image_info(image_id, {"dice": result[image_id]})
        return result


class EpistemicScore(ScoringMethod):
    """Entropy of the mean of N MC-dropout predictions per unlabelled image, normalised to [0, 1].

    The epistemic strategy then serves the image the model is least sure of. The passes run as one batched forward
    of a private copy of the served network (an infer running meanwhile keeps its dropout off), with masks drawn
    from a fixed seed: an image scores the same every time, and images are ranked under the same masks.
    """

    def __init__(self, config: SegmentationConfig, passes: int = 8) -> None:
        super().__init__(f"Epistemic uncertainty of {config.name}: entropy over {passes} MC-dropout passes")
        self.cfg, self.passes = config, passes

    @torch.no_grad()
    def score(self, pixels: np.ndarray, net: torch.nn.Module, spec, device: str = "cpu") -> float:
        """Return the normalised predictive entropy of one radiograph (``net`` is put in dropout mode meanwhile:
        pass a private copy)."""
        x, _ = preprocess(pixels, spec.preprocessing)
        with mc_dropout(net, SEED):
            probs = pass_probabilities(x, net, spec, device, self.passes).mean(0, keepdim=True)
        entropy = -(probs * torch.log(probs.clamp_min(1e-8))).sum(1) / np.log(probs.shape[1])
        return float(entropy.mean())

    def __call__(self, request, datastore):
        device = SegmentationConfig.device(request.get("device"))
        weights = self.cfg.weights()
        stamp = weights.stat().st_mtime if weights is not None else 0
        shared, spec = self.cfg.model(device)
        net = copy.deepcopy(shared)  # dropout on a copy: infers share the served network
        result = {}
        with InfoUpdates(datastore) as updates:
            for image_id in datastore.get_unlabeled_images():
                info = datastore.get_image_info(image_id)
                if info.get("epistemic_model_ts") == stamp:
                    continue  # already scored by this model
                pixels = read_radiograph(datastore.get_image_uri(image_id)).pixels
                result[image_id] = self.score(pixels, net, spec, device)
                updates.add(image_id, {"epistemic_entropy": result[image_id], "epistemic_model_ts": stamp,
                                       "epistemic_ts": int(time.time())})
        log.info("Epistemic scores: %s", result)
        return result
