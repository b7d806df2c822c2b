"""Morphometry uncertainty: how much N MC-dropout passes of the served model disagree on each vertebra's heights,
VCR and grade (the score is defined in lib/activelearning/spread.py), and the strategy that serves the image it is
highest on.

Each pass is an infer's own pipeline (``spinemorph.inference.analyse``: the same preprocessing, network, level
naming and gated measurement; stage 2 and the fracture detector are not run), with the network's dropout sampling.
A first pass without dropout is the served answer: it fixes the facing for every pass (the file's, the facing
model's, or the one its labelmap shows), so that no pass swaps Ha and Hp, and gives the encoder features the
diversity strategy (lib/activelearning/diversity.py) compares.

Image info written by the scoring method (``MorphometryScore``):

- ``morphometry_score``: the image's score (unlabelled images);
- ``morphometry_uncertainty``: ``{weights_sha256, passes, ts, facing, unit, vertebrae: [...]}``, one record per
  level found in any pass (``spread.vertebra_spread``: found, Ha/Hm/Hp_sd_rel, vcr_sd, grades, grade_disagreement,
  uncertainty), for clients such as the Slicer table;
- ``encoder_features``: ``{weights_sha256, vector}``, the pooled bottleneck of the served pass (every image,
  labelled ones too: the diversity strategy measures distances to them).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import replace

import numpy as np
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from lib.activelearning.features import bottleneck_features
from lib.activelearning.scoring import InfoUpdates
from lib.activelearning.spread import morphometry_spread
from lib.configs.segmentation import SegmentationConfig
from spinemorph.inference import segment
from spinemorph.inference.analyse import Analysis, FacingModel, analyse
from spinemorph.inference.segment import segment_passes
from spinemorph.io import Radiograph, read_radiograph
from spinemorph.measure import Morphometry
from spinemorph.measure.gates import DEFAULT_GATES
from spinemorph.networks import mc_dropout
from spinemorph.transforms import preprocess

__all__ = ["MorphometryScore", "MorphometryUncertainty", "mc_morphometry", "ranked_by_uncertainty", "served_ts",
           "number", "scored_config", "SCORE", "DETAIL", "FEATURES", "DEFAULT_PASSES", "RESET_S"]

log = logging.getLogger(__name__)

SCORE, DETAIL, FEATURES = "morphometry_score", "morphometry_uncertainty", "encoder_features"
DEFAULT_PASSES = 4
SEED = 0  # of the dropout masks
#: The passes are stage 1's: their fracture grades are compared (a ranking signal), not withheld as a reading's are.
PASS_GATES = replace(DEFAULT_GATES, fine_fracture=False)
RESET_S = 24 * 60 * 60  # an image served within this long ranks after every image not served (MONAI's Epistemic)


def number(value) -> float | None:
    """Return ``value`` as a finite float, or None: image info is JSON any client can write."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def mc_morphometry(image: Radiograph, net, spec, passes: int = DEFAULT_PASSES, device: str = "cpu",
                   facing_model: FacingModel | None = None,
                   seed: int = SEED) -> tuple[Analysis, list[Morphometry], np.ndarray]:
    """Return the served pass's analysis (dropout off), the ``passes`` MC-dropout passes' morphometry and the
    served pass's pooled bottleneck features. ``net`` is put in dropout mode meanwhile: pass a private copy.

    The dropout masks come from ``seed``: an image scores the same every time, and images of one size are
    compared under the same masks (common random numbers), so that their ranking is not the masks' noise. The
    passes share one batched forward (each batch item draws its own masks), and the preprocessing of the served
    pass.
    """
    prepared = preprocess(image.pixels, spec.preprocessing)
    with bottleneck_features(net) as vectors:
        first = segment_passes(image.pixels, net, spec, device, prepared=prepared)[0]
    served = analyse(image, net, spec, device, facing_model, PASS_GATES, segmentation=first)
    facing = served.morphometry.facing
    fixed = replace(image, facing=facing) if facing else image
    with mc_dropout(net, seed):
        sampled = segment_passes(image.pixels, net, spec, device, passes, prepared=prepared)
    results = [analyse(fixed, net, spec, device, gates=PASS_GATES, segmentation=seg).morphometry for seg in sampled]
    return served, results, vectors[-1]


class MorphometryScore(ScoringMethod):
    """Scores every unlabelled image by its morphometry uncertainty and stores every image's encoder features,
    once per served weights (images already done with these weights are skipped)."""

    def __init__(self, config: SegmentationConfig, passes: int = DEFAULT_PASSES) -> None:
        if passes < 2:
            raise ValueError(f"Morphometry uncertainty needs at least 2 MC-dropout passes, not {passes}.")
        super().__init__(f"Morphometry uncertainty of {config.name}: spread of heights, VCR and grade over {passes} "
                         "MC-dropout passes; encoder features for the diversity strategy")
        self.cfg, self.passes = config, passes

    def __call__(self, request, datastore):
        device = SegmentationConfig.device(request.get("device"))
        sha = self.cfg.identity()["weights_sha256"]
        shared, spec = self.cfg.model(device)
        net = copy.deepcopy(shared)  # dropout and hooks on a copy: infers share the served network
        unlabelled = set(datastore.get_unlabeled_images())
        result = {}
        with InfoUpdates(datastore) as updates:
            for image_id in datastore.list_images():
                info = datastore.get_image_info(image_id)
                done = info.get(DETAIL) if isinstance(info.get(DETAIL), dict) else {}
                scored_by = (done.get("weights_sha256"), done.get("passes"))
                score = image_id in unlabelled and scored_by != (sha, self.passes)
                features = not isinstance(info.get(FEATURES), dict) or info[FEATURES].get("weights_sha256") != sha
                if not (score or features):
                    continue
                try:
                    update = self.measure(read_radiograph(datastore.get_image_uri(image_id)), net, spec, device, sha,
                                          score)
                except Exception as err:  # one unreadable image must not stop the others' scoring
                    log.warning("Morphometry uncertainty: skipped %s (%s)", image_id, err)
                    continue
                updates.add(image_id, update)
                if SCORE in update:
                    result[image_id] = update[SCORE]
        log.info("Morphometry uncertainty scores: %s", result)
        return result

    def measure(self, image: Radiograph, net, spec, device: str, sha: str, score: bool = True) -> dict:
        """Return the image info to store for one radiograph: its features, and its score when ``score``."""
        if not score:  # a labelled image: its features only, from the network's forward
            with bottleneck_features(net) as vectors:
                segment(image.pixels, net, spec, device, postprocess=False)
            return {FEATURES: {"weights_sha256": sha, "vector": [round(float(v), 5) for v in vectors[-1]]}}
        served, results, vector = mc_morphometry(image, net, spec, self.passes, device, self.cfg.facing_model())
        value, vertebrae = morphometry_spread(results)
        return {SCORE: value,
                DETAIL: {"weights_sha256": sha, "passes": self.passes, "ts": int(time.time()),
                         "facing": served.morphometry.facing, "unit": served.morphometry.unit,
                         "vertebrae": vertebrae},
                FEATURES: {"weights_sha256": sha, "vector": [round(float(v), 5) for v in vector]}}


def scored_config(configs: dict[str, SegmentationConfig], preferred: str) -> SegmentationConfig | None:
    """Return the model the scoring methods run: ``preferred`` when served, else the first; None when it has no
    weights."""
    config = configs.get(preferred) or next(iter(configs.values()), None)
    return config if config is not None and config.weights() is not None else None


def served_ts(info: dict, strategy: str | None = None) -> int:
    """Return when an image was last served by ``strategy`` (by any strategy when None), in epoch seconds; 0 if
    never."""
    served = info.get("strategy") if isinstance(info.get("strategy"), dict) else {}
    times = [number(v.get("ts")) for k, v in served.items() if isinstance(v, dict) and strategy in (None, k)]
    return int(max((t for t in times if t is not None), default=0))


def ranked_by_uncertainty(datastore, images: list[str], strategy: str | None = None,
                          reset: float = RESET_S) -> list[tuple[str, float | None]]:
    """Return (image id, morphometry score or None) from the most to the least worth serving: images served by
    ``strategy`` within ``reset`` seconds last, then the higher score first (unscored after scored), then the
    least recently served, then by id."""
    now = time.time()
    rows = []
    for image_id in images:
        info = datastore.get_image_info(image_id)
        score, ts = number(info.get(SCORE)), served_ts(info, strategy) if strategy else 0
        rows.append((now - ts < reset, score is None, -(score or 0.0), ts, image_id, score))
    return [(row[4], row[5]) for row in sorted(rows)]


class MorphometryUncertainty(Strategy):
    """Serves the unlabelled image whose morphometry the model is least sure of (``morphometry_score``), the
    least recently served first among images it served within a day."""

    def __init__(self, reset: float = RESET_S) -> None:
        super().__init__("The unlabelled image with the largest MC-dropout spread of heights, VCR and grade")
        self.reset = reset

    def __call__(self, request, datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        image_id, score = ranked_by_uncertainty(datastore, images, request["strategy"], self.reset)[0]
        log.info("Morphometry uncertainty: selected %s (score %s)", image_id, score)
        return {"id": image_id, SCORE: score}
