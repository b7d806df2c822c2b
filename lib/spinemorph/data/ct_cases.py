"""Random training cases of a labelled CT: pose, exposure, anatomy and fractures drawn, then the domain
randomisation every source shares (``spinemorph.data.randomise``), written as a studies folder.

Image ``i`` of series ``seed`` draws its case from ``default_rng([seed, i])`` and its randomisation from
``default_rng([seed, i, 2])``, as ``spinemorph.data.dataset`` does for the phantom.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spinemorph.data.ct import CtVolume, load_ct
from spinemorph.data.ct_anatomy import AnatomyConfig, deform_ct, in_order, sample_anatomy
from spinemorph.data.ct_fracture import CtLesion, Match, lesion_records, match_lesions
from spinemorph.data.dataset import RANDOMISATION_STREAM
from spinemorph.data.deformity import sample_fractures
from spinemorph.data.detector import sample_detector
from spinemorph.data.drr import DrrConfig, pose, render_drr, render_labels
from spinemorph.data.randomise import Randomisation, randomise
from spinemorph.data.studies import FORMATS, case_id, write_case
from spinemorph.data.xray import Exposure, sample_exposure
from spinemorph.levels import level_code, level_name

__all__ = ["sample_lesions", "CaseConfig", "ct_drr_case", "ct_drr_cases", "render_random_drrs"]

log = logging.getLogger(__name__)


def sample_lesions(ct: CtVolume, rng: np.random.Generator, rate: float, endplate_rate: float = 0.0) -> list[CtLesion]:
    """Return random lesions for one image: fractures at realistic levels and grades with probability ``rate``
    (``spinemorph.data.deformity.sample_fractures``), and an endplate depression with probability ``endplate_rate``.

    Only whole bodies with both neighbours in the CT are candidates, so that every index can be measured.
    """
    codes = [p.code for p in ct.parts]
    whole = [p for i, p in enumerate(ct.parts) if not p.truncated and 0 < i < len(codes) - 1]
    levels = [level_name(p.code) for p in whole if level_code("T1") <= p.code <= level_code("L5")]
    out = [CtLesion(f.level, f.kind, f.reduction, None if f.kind == "biconcave" else float(rng.uniform(0.6, 1.0)))
           for f in sample_fractures(rng, levels, rate)]
    rest = [n for n in levels if n not in {les.level for les in out}]
    if rest and rng.random() < endplate_rate:
        out.append(CtLesion(str(rng.choice(rest)), "endplate", float(rng.uniform(0.08, 0.22)),
                            float(rng.random() < 0.7), float(rng.uniform(0.35, 0.65))))
    return out


@dataclass(frozen=True)
class CaseConfig:
    """What ``ct_drr_cases`` draws for each training image of a CT.

    Args:
        drr: spacing, source-detector distance, ray step and bits (its rotations, tilts, source and exposure are
            drawn).
        rotation_deg: largest axial rotation either way.
        tilt_deg: largest tilt either way.
        fracture_rate: probability that an image holds fractures (one to three).
        endplate_rate: probability that an image holds an endplate depression.
        anatomy: how much the anatomy varies.
        lesions: lesions forced into every image, in place of random ones.
        exposure: a fixed exposure; None draws one per image.
    """

    drr: DrrConfig = DrrConfig()
    rotation_deg: float = 15.0
    tilt_deg: float = 8.0
    fracture_rate: float = 0.3
    endplate_rate: float = 0.1
    anatomy: AnatomyConfig = AnatomyConfig()
    lesions: tuple[CtLesion, ...] = ()
    exposure: Exposure | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.fracture_rate <= 1 and 0 <= self.endplate_rate <= 1):
            raise ValueError("fracture_rate and endplate_rate are probabilities between 0 and 1.")
        if not (0 <= self.rotation_deg <= 45 and 0 <= self.tilt_deg <= 30):
            raise ValueError("Keep rotation_deg within 0-45° and tilt_deg within 0-30°.")


def ct_drr_case(ct: CtVolume, rng: np.random.Generator, config: CaseConfig = CaseConfig()
                ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return one random DRR of ``ct``: the image (uint16), its body labels (uint8 VerSe codes) and its truth."""
    rotation, tilt = (float(rng.uniform(-1, 1) * m) for m in (config.rotation_deg, config.tilt_deg))
    exposure = config.exposure or sample_exposure(rng)
    drr_config = replace(config.drr, source=str(rng.choice(["right", "left"])), exposure=exposure)
    anatomy = sample_anatomy(ct, rng, config.anatomy)
    lesions = list(config.lesions) or sample_lesions(ct, rng, config.fracture_rate, config.endplate_rate)

    def labels_of(parts, patient_ras):
        posed = replace(ct, parts=parts, patient_ras=patient_ras)
        to_world, proj = pose(posed, rotation, tilt, drr_config)
        return render_labels(posed, to_world, proj), proj.pitch_mm, proj.facing

    match = match_lesions(ct, anatomy, lesions, labels_of) if lesions else Match(in_order(anatomy), None, {})
    detector = replace(sample_detector(rng, config.drr.bits), photons=exposure.photons(config.drr.sdd_mm))
    drr = render_drr(deform_ct(ct, match.warps, match.parts), rotation, tilt, drr_config, detector, rng)
    lesion_records(drr.truth, drr.labels, lesions, match.levels)
    drr.truth["anatomy"] = [w.describe() for w in match.warps]
    return drr.image, drr.labels, drr.truth


def ct_drr_cases(ct: CtVolume, rng: np.random.Generator, n: int, config: CaseConfig = CaseConfig()):
    """Yield ``n`` random DRRs of ``ct`` as (image, labels, truth), drawing everything from ``rng``."""
    for _ in range(n):
        yield ct_drr_case(ct, rng, config)


def render_random_drrs(ct_path: str | Path, mask_path: str | Path, out: str | Path, n: int, config=None,
                       seed: int = 0, labels: str = "auto", fmt: str = "dicom", preview: bool = False,
                       progress: bool = True, randomisation: Randomisation | None = None,
                       start: int = 0) -> list[Path]:
    """Write ``n`` random DRRs of the CT (``ct_drr_case``: pose, exposure, anatomy and fractures drawn) to the
    studies folder ``out``, each passed through ``randomisation`` when given; return the image paths.

    DRR ``i`` of a seed is drawn from ``[seed, i]``: ``start`` renders numbers start .. start + n - 1, so that
    processes can share one set (rendering 0-9 and 10-19 gives the DRRs of rendering 0-19).

    ``config`` is a ``CaseConfig`` (its defaults if None).
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    config = config or CaseConfig()
    ct = load_ct(ct_path, mask_path, labels, config.drr.step_mm, config.drr.margin_mm)
    paths = []
    for i in tqdm(range(start, start + n), desc="rendering random DRRs", unit="DRR", disable=not progress):
        image, label_map, truth = ct_drr_case(ct, np.random.default_rng([seed, i]), config)
        truth.update({"seed": seed, "index": i})
        if randomisation is not None:
            rng = np.random.default_rng([seed, i, RANDOMISATION_STREAM])
            image, label_map, truth = randomise(image, label_map, truth, rng, randomisation)
        cid = case_id("drr-random", ct.names[0], seed, i, config.drr.spacing_mm, config.drr.sdd_mm)
        paths.append(write_case(Path(out), cid, image, label_map, truth, fmt, preview))
    log.info("Wrote %d random DRRs of %s to %s", len(paths), ct.names[0], out)
    return paths
