"""Uncertainty with diversity: a core-set (greedy k-center) on the encoder's features over the most uncertain images.

A round of m picks takes the 3×m unlabelled images with the highest morphometry uncertainty
(lib/activelearning/morphometry.py) and, from them, greedily the image farthest in feature space from everything
already covered, m times: so a round does not spend labels on near-copies. "Covered" is the labelled images and the
images served (by any strategy) within the last day, which annotators are labelling now. A single next-sample call
is one greedy step: the candidate farthest from the labelled and recently served images. Features are the served
network's pooled bottleneck (``encoder_features``, unit length; distances are Euclidean, in [0, 2]), only those
computed with the weights served now.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from monailabel.interfaces.tasks.strategy import Strategy

from lib.activelearning.morphometry import FEATURES, RESET_S, SCORE, ranked_by_uncertainty, served_ts

__all__ = ["k_center_greedy", "distances_to", "DiverseUncertainty", "POOL_FACTOR", "ROUND_SIZE"]

log = logging.getLogger(__name__)
POOL_FACTOR = 3  # candidates per pick of a round: the 3×m most uncertain
ROUND_SIZE = 10  # m when a request does not say


def distances_to(candidates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return each candidate row's Euclidean distance to its nearest ``reference`` row (inf when there is none)."""
    candidates = np.asarray(candidates, float)
    reference = np.asarray(reference, float)
    if not reference.size:
        return np.full(len(candidates), np.inf)
    return np.linalg.norm(candidates[:, None, :] - reference[None, :, :], axis=2).min(axis=1)


def k_center_greedy(candidates: np.ndarray, reference: np.ndarray, k: int) -> list[tuple[int, float | None]]:
    """Return ``k`` picks (candidate index, its distance to what was covered before it) by greedy k-center.

    Each pick is the candidate row farthest from the ``reference`` rows and the earlier picks; ties go to the lower
    index (order the candidates most uncertain first). With no reference, the first pick is candidate 0 and its
    distance None.

    Example::

        k_center_greedy(np.array([[0, 0], [1, 0], [5, 0]]), np.array([[0, 0]]), 2)  # [(2, 5.0), (1, 1.0)]
    """
    candidates = np.asarray(candidates, float)
    gaps = distances_to(candidates, reference)
    free = np.ones(len(candidates), bool)
    picks: list[tuple[int, float | None]] = []
    for _ in range(min(k, len(candidates))):
        best = int(np.argmax(np.where(free, gaps, -1.0)))
        picks.append((best, float(gaps[best]) if np.isfinite(gaps[best]) else None))
        free[best] = False
        gaps = np.minimum(gaps, np.linalg.norm(candidates - candidates[best], axis=1))
    return picks


def _vector(info: dict, sha: str | None) -> np.ndarray | None:
    found = info.get(FEATURES)
    if not isinstance(found, dict) or (sha is not None and found.get("weights_sha256") != sha):
        return None
    try:
        v = np.asarray(found.get("vector"), float)
    except (TypeError, ValueError):
        return None
    return v if v.ndim == 1 and v.size and np.isfinite(v).all() else None


class DiverseUncertainty(Strategy):
    """Greedy k-center on the encoder features of the most uncertain unlabelled images.

    Args:
        config: the scored model (its served weights' SHA-256 selects comparable features); None accepts any.
        round_size: m, the picks of a round, when a request gives no "m" (the candidates are the top 3×m).
        recent_s: images served within this many seconds count as covered.
    """

    def __init__(self, config=None, round_size: int = ROUND_SIZE, recent_s: float = RESET_S) -> None:
        super().__init__("Core-set (greedy k-center) on encoder features over the 3×m most uncertain images")
        self.cfg, self.round_size, self.recent_s = config, round_size, recent_s

    def __call__(self, request, datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        m = request.get("m", self.round_size)
        m = m if isinstance(m, int) and not isinstance(m, bool) and m >= 1 else self.round_size
        picks, candidates = self.select(datastore, images, 1, m, request.get("label_tag"), request.get("labels"))
        image_id, distance = picks[0]
        log.info("Diverse: selected %s (distance %s) of candidates %s", image_id, distance, candidates)
        return {"id": image_id, "distance": distance, "candidates": candidates,
                SCORE: datastore.get_image_info(image_id).get(SCORE)}

    def select_round(self, datastore, m: int, label_tag=None, labels=None) -> list[str]:
        """Return a whole round: ``m`` unlabelled image ids, each farthest from the covered ones and the earlier
        picks (a benchmark's round, in one call)."""
        images = datastore.get_unlabeled_images(label_tag, labels)
        if not images:
            return []
        picks, _ = self.select(datastore, images, m, m, label_tag, labels)
        return [image_id for image_id, _ in picks]

    def select(self, datastore, images: list[str], k: int, m: int, label_tag=None, labels=None):
        """Return ``k`` picks (id, distance) from the top 3×``m`` of ``images``, and each candidate's distance to
        the covered images (id -> distance, None when nothing is covered or it has no features).

        The candidates are the most uncertain images not served recently; when every image was, the least
        recently served (then all are covered, and the first of them is the pick).
        """
        now = time.time()
        served = {i: served_ts(datastore.get_image_info(i)) for i in images}
        fresh = [i for i in images if now - served[i] >= self.recent_s]
        if fresh:
            pool = [image_id for image_id, _ in ranked_by_uncertainty(datastore, fresh)[:POOL_FACTOR * m]]
        else:
            pool = sorted(images, key=lambda i: (served[i], i))[:POOL_FACTOR * m]
        sha = self.cfg.identity()["weights_sha256"] if self.cfg is not None else None
        vectors = {i: _vector(datastore.get_image_info(i), sha) for i in pool}
        usable = [i for i in pool if vectors[i] is not None]
        if not usable:  # not scored with these weights yet: the candidates' order alone
            log.info("Diverse: no encoder features for the served weights yet; most uncertain first")
            return [(i, None) for i in pool[:k]], dict.fromkeys(pool)
        covered = set(datastore.get_labeled_images(label_tag, labels)) | {i for i in images if i not in fresh}
        found = [v for v in (_vector(datastore.get_image_info(i), sha) for i in sorted(covered)) if v is not None]
        reference = np.stack(found) if found else np.zeros((0, 0))
        features = np.stack([vectors[i] for i in usable])
        picks = [(usable[i], d) for i, d in k_center_greedy(features, reference, k)]
        gaps = distances_to(features, reference)
        return picks, {**dict.fromkeys(pool), **{i: round(float(d), 5) if np.isfinite(d) else None
                                                  for i, d in zip(usable, gaps, strict=True)}}
