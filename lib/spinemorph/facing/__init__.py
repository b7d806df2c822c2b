"""Which side of a lateral radiograph the patient's anterior is on, learned from the image: the facing classifier.

A small CNN made antisymmetric under a left-right flip (``FacingNet``: ``g(x) - g(flip(x))``), so a mirrored image
gets exactly the mirrored facing with the same confidence. ``train_facing`` learns it from studies folders;
``predict_facing`` answers for one radiograph with P(anterior on the left) and a confidence. The names load on
first use (``spinemorph.lazy``).
"""

from __future__ import annotations

from spinemorph.lazy import lazy_names

__all__, __getattr__, __dir__ = lazy_names(__name__, {
    "model": ["FacingNet", "FacingSpec", "build_facing_net", "load_facing_model", "save_facing_model"],
    "predict": ["FacingPrediction", "facing_logit", "predict_facing"],
    "train": ["FacingTrainConfig", "train_facing"],
})
