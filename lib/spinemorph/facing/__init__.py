"""Which side of a lateral radiograph the patient's anterior is on, learned from the image: the facing classifier.

A small CNN made antisymmetric under a left-right flip (``FacingNet``: ``g(x) - g(flip(x))``), so a mirrored image
gets exactly the mirrored facing with the same confidence. ``train_facing`` learns it from studies folders;
``predict_facing`` answers for one radiograph with P(anterior on the left) and a confidence.
"""

from __future__ import annotations

from spinemorph.facing.model import FacingNet, FacingSpec, build_facing_net, load_facing_model, save_facing_model
from spinemorph.facing.predict import FacingPrediction, facing_logit, predict_facing
from spinemorph.facing.train import FacingTrainConfig, train_facing

__all__ = ["FacingNet", "FacingSpec", "build_facing_net", "load_facing_model", "save_facing_model",
           "FacingPrediction", "facing_logit", "predict_facing", "FacingTrainConfig", "train_facing"]
