"""Active learning: an unlabelled radiograph drawn at random, the least recently served ones more often."""

from __future__ import annotations

import logging
import random
import time

from monailabel.tasks.activelearning.random import Random

__all__ = ["LeastRecentRandom"]

log = logging.getLogger(__name__)


class LeastRecentRandom(Random):
    """MONAI Label's Random strategy, weighting an image by the seconds since it was last served plus one.

    MONAI Label weights by the seconds alone, so once every unlabelled image was served within the current second
    (two annotators pressing Next at once, or one image left) all weights are 0 and ``random.choices`` raises:
    a 500. A served time in the future (another clock) counts as just served.
    """

    def __call__(self, request, datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy, now = request["strategy"], int(time.time())
        served = [datastore.get_image_info(i).get("strategy", {}).get(strategy, {}).get("ts", 0) for i in images]
        weights = [max(now - ts, 0) + 1 for ts in served]
        index = random.choices(range(len(images)), weights=weights)[0]
        log.info("Random: selected image %s (weight %d of %d)", images[index], weights[index], sum(weights))
        return {"id": images[index], "weight": weights[index]}
