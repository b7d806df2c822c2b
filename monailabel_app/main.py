"""SpineMorph's MONAI Label app: vertebra segmentation and morphometry for lateral radiographs.

    monailabel start_server --app monailabel_app --studies DIR [--conf models all] [--conf model_dir DIR]

Conf keys: ``models`` (comma list or "all"), ``model_dir`` (where training publishes; default
monailabel_app/model), ``sample_apps`` (the bundles' folder), ``<model>_weights`` (start a model from other
weights), ``epistemic_passes`` (MC-dropout passes, default 8), ``modalities`` (DICOMweb, default CR,DX,RG,DR),
``allow_delete`` (default false: the API never deletes a radiograph, label or model; when true, deleted images and
labels go to the studies' .spinemorph/trash), ``infer_concurrency`` (infers run at once, default 2),
``morphometry_passes`` (MC-dropout passes of the morphometry uncertainty, default 4), ``runtime`` (where the infer
tasks run their networks on a CPU: torch, the default, or openvino, sooner; spinemorph.inference.runtime).

In server mode every API route is guarded (lib/guard.py): ids stay ids, JSON is checked, unknown names get a 404.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.epistemic import Epistemic
from monailabel.tasks.activelearning.first import First

import spinemorph
from lib.activelearning.annotation import annotation_times, progress
from lib.activelearning.diversity import DiverseUncertainty
from lib.activelearning.morphometry import DEFAULT_PASSES, MorphometryScore, MorphometryUncertainty, scored_config
from lib.activelearning.random import LeastRecentRandom
from lib.activelearning.scoring import EpistemicScore, LevelDice
from lib.auth import guard_login, use_asymmetric_algorithms
from lib.configs import CONFIGS, SegmentationConfig
from lib.configs.hierarchical import HIERARCHICAL, HierarchicalConfig
from lib.configs.vcf_detection import VCF_DETECTION, DetectionConfig
from lib.datastore import SpineMorphDatastore
from lib.dicomweb import dicomweb_datastore
from lib.guard import check_id, install
from lib.infers.batch import BatchInfer
from lib.infers.hierarchical import HierarchicalInfer
from lib.infers.segmentation import SegmentationInfer
from lib.infers.vcf_detection import VcfDetectionInfer
from lib.options import as_bool
from lib.trainers.hierarchical import TRAIN_TASKS, HierarchicalTrain
from lib.trainers.segmentation import SegmentationTrain
from lib.trainers.vcf_detection import VcfDetectionTrain
from spinemorph.levels import TRAINED_LEVELS, level_name
from spinemorph.store import remove_stale_temporaries

log = logging.getLogger(__name__)

#: Files the local datastore serves as images; previews live in a subfolder and are never listed.
IMAGE_EXTENSIONS = ["*.dcm", "*.nii.gz", "*.nii", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff"]
DEFAULT_MODEL = "spinemorph_levels"


def _is_upload(path: str) -> bool:
    """True when ``path`` is a file MONAI Label's endpoint wrote from an upload (the system temp folder, a name
    it drew); a request's own ids never reach here as paths because the guard refuses any id that is not one."""
    p = Path(path)
    return p.is_absolute() and p.parent == Path(tempfile.gettempdir()) and p.name.startswith("tmp") and p.is_file()


class SpineMorphApp(MONAILabelApp):
    """Serves the shipped per-level model and the papers' baselines as infer and train tasks."""

    def __init__(self, app_dir, studies, conf):
        root = Path(app_dir).resolve()
        model_dir = Path(conf.get("model_dir", root / "model"))
        bundles = Path(conf.get("sample_apps", root.parent / "sample-apps"))
        wanted = conf.get("models", "all")
        own = (HIERARCHICAL, VCF_DETECTION)  # models with their own config class, not a SegmentationConfig
        names = [*CONFIGS, *own] if wanted == "all" else [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = [n for n in names if n not in CONFIGS and n not in own]
        if unknown:
            raise ValueError(f"Unknown models {unknown}: choose from {', '.join([*CONFIGS, *own])}.")
        # Kim et al. 2019's two-network pipeline has its own config (two stages, two train tasks)
        self.hierarchical = HierarchicalConfig.from_conf(conf, model_dir, bundles) if HIERARCHICAL in names else None
        # Paik et al. 2024's fracture detector: an instance model, served and trained through spinemorph.detection
        self.detector = DetectionConfig.from_conf(conf, model_dir, bundles) if VCF_DETECTION in names else None
        self.configs = {}
        for name in (n for n in names if n not in own):
            network, head, bundle = CONFIGS[name]
            initial = conf.get(f"{name}_weights") or (bundles / bundle if bundle else None)
            self.configs[name] = SegmentationConfig(name, network, head, model_dir / name / "model.pt",
                                                    Path(initial) if initial else None, conf.get("runtime", "torch"))
        for config in self.configs.values():  # --conf runtime openvino: its conversions start now, not at an infer
            config.warm_up()
        self.passes = int(conf.get("epistemic_passes", 8))
        self.allow_delete = as_bool(conf.get("allow_delete", False))
        self.infer_concurrency = int(conf.get("infer_concurrency", 2))
        self.model_dir = model_dir
        self.modalities = tuple(conf.get("modalities", "CR,DX,RG,DR").split(","))
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="SpineMorph",
                         description="Vertebral bodies, heights, VCR and Genant grade on lateral spine radiographs",
                         version=spinemorph.__version__, labels={level_name(c): c for c in TRAINED_LEVELS})

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            return dicomweb_datastore(self.studies.rstrip("/"), self.modalities)
        return SpineMorphDatastore(self.studies, allow_delete=self.allow_delete, extensions=IMAGE_EXTENSIONS,
                                   auto_reload=True)

    def on_init_complete(self):
        """In the server: remove what a killed writer left half-written, then guard every route."""
        for stale in remove_stale_temporaries(self.model_dir):
            log.warning("Removed %s, left by a model write that was interrupted.", stale)
        server = sys.modules.get("monailabel.app")  # the FastAPI app uvicorn serves; absent outside a server
        if server is not None:
            install(server.app, self, self.infer_concurrency)
            use_asymmetric_algorithms()  # MONAI Label's own token check fails every token with PyJWT 2
            guard_login(server.app)
        super().on_init_complete()

    def infer(self, request, datastore=None):
        """Run an infer on a datastore id or an upload, never on a path a request names (404 for unknown ids)."""
        if request.get("model") not in self._infers:
            raise HTTPException(404, f"No model named {str(request.get('model'))[:80]!r}; this server offers: "
                                     f"{', '.join(sorted(self._infers))}.")
        image = request.get("image")
        if isinstance(image, str) and not _is_upload(image):
            check_id(image)  # then the datastore resolves it, or answers 404 / 403 with a sentence
        return super().infer(request, datastore)

    def init_infers(self):
        infers = {name: SegmentationInfer(cfg) for name, cfg in self.configs.items()}
        if self.hierarchical is not None:
            infers[HIERARCHICAL] = HierarchicalInfer(self.hierarchical)
        if self.detector is not None:
            infers[VCF_DETECTION] = VcfDetectionInfer(self.detector)
        return infers

    def init_trainers(self):
        trainers = {name: SegmentationTrain(cfg) for name, cfg in self.configs.items() if cfg.weights() is not None}
        if self.hierarchical is not None and self.hierarchical.ready():
            trainers.update({name: HierarchicalTrain(self.hierarchical, stage) for name, stage in TRAIN_TASKS.items()})
        if self.detector is not None and self.detector.weights() is not None:
            trainers[VCF_DETECTION] = VcfDetectionTrain(self.detector)
        return trainers

    def init_batch_infer(self):
        return BatchInfer()

    def info(self):
        """MONAI Label's info, plus ``annotation`` (seconds per final label, sent by the annotator's client) and
        ``progress`` (labels done and left, the last training's best validation Dice)."""
        meta = super().info()
        meta["annotation"] = annotation_times(self.datastore().json().get("objects", {}))
        meta["progress"] = progress(meta["datastore"], meta["train_stats"])
        return meta

    def init_strategies(self):
        # morphometry and diverse read what the morphometry scoring method stores (init_scoring_methods)
        return {"random": LeastRecentRandom(), "first": First(), "epistemic": Epistemic(),
                "morphometry": MorphometryUncertainty(),
                "diverse": DiverseUncertainty(scored_config(self.configs, DEFAULT_MODEL))}

    def init_scoring_methods(self):
        methods = {"dice": LevelDice()}
        scorer = scored_config(self.configs, DEFAULT_MODEL)
        if scorer is not None:
            methods["epistemic"] = EpistemicScore(scorer, self.passes)
            # conf morphometry_passes: MC-dropout passes of the morphometry uncertainty (default 4)
            passes = int(self.conf.get("morphometry_passes", DEFAULT_PASSES))
            methods["morphometry"] = MorphometryScore(scorer, passes)
        return methods
