"""One simulated lateral radiograph with its exact ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinemorph.conventions import WALL_INSET, genant_grade, near_edge_codes
from spinemorph.data.anatomy import SIMULATED_LEVELS, Irregularity, sample_irregularity, sample_patient
from spinemorph.data.deformity import GENANT_BANDS, Fracture, sample_fractures
from spinemorph.data.detector import expose, sample_detector
from spinemorph.data.geometry import Projection
from spinemorph.data.phantom import build_phantom
from spinemorph.data.primitives import rotation
from spinemorph.data.render import render
from spinemorph.data.truth import six_points
from spinemorph.levels import level_code

__all__ = ["FIELDS_OF_VIEW", "SIZES", "SimConfig", "Simulation", "simulate"]

_MATCH_ITERATIONS = 4  # rebuilds allowed to bring a fracture's projected reduction to the request
_MATCH_TOLERANCE = 0.002
_MAX_CORRECTION = 0.2  # keeps the 3D collapse plausible where oblique rays hide a deformity

#: Field of view: (top level, bottom level, width/height ratio, source-detector distance in mm).
FIELDS_OF_VIEW: dict[str, tuple[str, str, float, float]] = {
    "lumbar": ("T12", "S1", 0.8, 1100.0),
    "thoracolumbar": ("T8", "L3", 0.65, 1150.0),
    "chest": ("T1", "L1", 1.0, 1800.0),
    "spine": ("T1", "S1", 0.45, 1800.0),  # long-length whole-spine view: all 17 levels T1-L5
}
#: Named image heights in pixels; "full" draws 2000-3000 px, which puts the pitch near 0.1-0.2 mm.
SIZES: dict[str, tuple[int, int] | int] = {"small": 256, "full": (2000, 3000)}


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. ``None`` fields are drawn at random per image.

    Args:
        fov: "lumbar", "thoracolumbar" or "chest".
        size: "small", "full", an image height in pixels, or an exact (height, width).
        projection: "perspective" or "parallel".
        fracture_rate: probability that an image holds one to three deformed vertebrae.
        fractures: deformities forced into every image (in view or not), in place of random ones.
        facing: "left" or "right": the image side the patient's anterior is on.
        bits: 12 or 16.
        irregularity: how far the spine departs from the smooth phantom (0 none, 1 moderate, the default):
            degenerative disc narrowing, osteophytes, Schmorl nodes, endplate undulation, trabecular texture
            and density, ribs and iliac crests over the bodies. Drawn from its own generator, so the same
            (seed, index) gives the same patient, field of view and detector at any strength.
        label_sacrum: keep S1 (code 26) in the labelmap: not a body to measure, but the anchor an "anchored"
            network learns to find, to name the levels from.
    """

    fov: str | None = None
    size: str | int | tuple[int, int] = "small"
    projection: str = "perspective"
    fracture_rate: float = 0.25
    fractures: tuple[Fracture, ...] = ()
    facing: str | None = None
    bits: int | None = None
    irregularity: float = 1.0
    label_sacrum: bool = False

    def __post_init__(self) -> None:
        if self.fov is not None and self.fov not in FIELDS_OF_VIEW:
            raise ValueError(f"Unknown field of view {self.fov!r}: use one of {', '.join(FIELDS_OF_VIEW)}.")
        if self.projection not in ("perspective", "parallel"):
            raise ValueError(f"projection must be 'perspective' or 'parallel', not {self.projection!r}.")
        if isinstance(self.size, str) and self.size not in SIZES:
            raise ValueError(f"Unknown size {self.size!r}: use 'small', 'full', a height or (height, width).")
        if not isinstance(self.size, str) and min(np.atleast_1d(self.size)) < 32:
            raise ValueError(f"An image must be at least 32 pixels a side, not {self.size}.")
        if not 0.0 <= self.fracture_rate <= 1.0:
            raise ValueError(f"The fracture rate is a probability between 0 and 1, not {self.fracture_rate}.")
        if self.facing not in (None, "left", "right"):
            raise ValueError(f"facing must be 'left' or 'right', not {self.facing!r}.")
        if not 0.0 <= self.irregularity <= 2.0:
            raise ValueError(f"The irregularity is a strength from 0 (smooth) to 2, not {self.irregularity}.")


@dataclass
class Simulation:
    """A simulated radiograph (uint16, H×W), its body labelmap (uint8, VerSe codes) and its ground truth."""

    image: np.ndarray
    labels: np.ndarray
    truth: dict
    extra: dict = field(default_factory=dict)

    @property
    def spacing_mm(self) -> tuple[float, float]:
        """Return the (row, column) pixel spacing in detector mm."""
        return tuple(self.truth["pixel_spacing_mm"])


def _image_shape(size, rng: np.random.Generator, aspect: float) -> tuple[int, int]:
    if isinstance(size, str):
        size = SIZES[size]
        if isinstance(size, tuple):
            size = int(rng.integers(size[0], size[1] + 1))
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), max(int(round(size * aspect)), 32)


def simulate(seed: int, index: int = 0, config: SimConfig = SimConfig()) -> Simulation:
    """Return image ``index`` of the seeded series ``seed``; the same arguments always give the same image."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative integers.")
    rng = np.random.default_rng([seed, index])
    fov = config.fov or str(rng.choice(["lumbar", "thoracolumbar", "chest"], p=[0.5, 0.25, 0.25]))
    top, bottom, aspect, sdd = FIELDS_OF_VIEW[fov]
    facing = config.facing or str(rng.choice(["left", "right"]))
    patient = sample_patient(rng)
    names = list(SIMULATED_LEVELS)
    in_view = names[names.index(top): names.index(bottom) + 1]
    fractures = list(config.fractures) or sample_fractures(rng, in_view, config.fracture_rate)
    irregular = sample_irregularity(np.random.default_rng([seed, index, 1]), config.irregularity)
    state = rng.bit_generator.state
    phantom = build_phantom(patient, fractures, rng, irregularity=irregular)

    # Field of view around the chosen levels, in the patient's midplane.
    first, last = phantom.body(top), phantom.body(bottom)
    z0 = first.outer.frame.center[2] - first.baseline.hp * rng.uniform(0.3, 0.9)
    z1 = last.outer.frame.center[2] + last.baseline.hp * rng.uniform(0.3, 0.9)
    ys = [phantom.body(n).outer.frame.center[1] for n in in_view]
    y_mid = float(np.mean(ys)) - (60.0 if fov == "chest" else 15.0) * patient.scale
    centre = np.array([0.0, y_mid + rng.normal(0.0, 8.0), (z0 + z1) / 2])
    pose = rotation("z", np.deg2rad(patient.axial_rotation_deg)) @ rotation("y", np.deg2rad(patient.tilt_deg))

    shape = _image_shape(config.size, rng, aspect)
    if config.projection == "parallel":
        sdd_mm, sod_mm = None, 1.0
    else:
        sdd_mm = sdd * rng.uniform(0.95, 1.05)
        sod_mm = sdd_mm - (160.0 * patient.scale * patient.habitus + rng.uniform(20.0, 60.0))
    magnification = 1.0 if sdd_mm is None else sdd_mm / sod_mm
    pitch = (z1 - z0) * magnification / shape[0]
    proj = Projection(shape, pitch, (float(centre[1]), float(centre[2])), sdd_mm, sod_mm, facing)
    after = rng.bit_generator.state
    phantom, reductions, found = _match_on_detector(patient, fractures, state, phantom.posed(pose, centre), pose,
                                                    centre, proj, irregular)
    rng.bit_generator.state = after

    line, labels = render(phantom, proj, context_step=max(1, shape[0] // 256), rib_step=max(1, shape[0] // 512))
    detector = sample_detector(rng, config.bits)
    image = expose(line, pitch, detector, rng)
    truth = _truth(phantom, found, proj, labels, fov, facing, detector.bits, seed, index, patient, reductions)
    if irregular is not None:
        truth["irregularity"] = _irregularity_record(irregular, config.irregularity)
    if not config.label_sacrum:
        labels[labels == level_code("S1")] = 0  # S1 is drawn, and owns its pixels, but is not a labelled body
    return Simulation(image, labels, truth, {"line_integral": line, "projection": proj, "phantom": phantom})


def _match_on_detector(patient, fractures, state, phantom, pose, centre, proj, irregular) -> tuple:
    """Return the phantom, rebuilt so that each fracture shows its requested reduction on the detector.

    Projection changes what a reader sees: a coronal tilt of a few degrees makes each endplate's silhouette
    an ellipse and pulls every height ratio toward 1. The 3D reduction is corrected until the index measured
    on the projected six points matches the request; the 3D reductions used are returned per level.
    """
    reductions = {f.level: f.reduction for f in fractures}
    for attempt in range(_MATCH_ITERATIONS + 1):
        found = six_points(phantom.bodies, proj)
        shown = _projected_reductions(phantom, found, proj, fractures)
        off = [abs(shown[f.level] - f.reduction) for f in fractures if f.level in shown]
        if attempt == _MATCH_ITERATIONS or not shown or max(off) < _MATCH_TOLERANCE:
            break
        for f in fractures:
            if f.level in shown:
                step = reductions[f.level] + f.reduction - shown[f.level]
                reductions[f.level] = float(np.clip(step, 0.0, min(0.85, f.reduction + _MAX_CORRECTION)))
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        phantom = build_phantom(patient, fractures, rng, reductions, irregular).posed(pose, centre)
    return phantom, reductions, found


def _irregularity_record(irr: Irregularity, strength: float) -> dict:
    """Return what the truth JSON says of an irregular phantom: the strength, wear and where the marks are."""
    marks = {"osteophytes": [n for n, v in irr.spurs.items() if max(v) > 0],
             "schmorl_nodes": [n for n, v in irr.node.items() if v[0]],
             "endplate_bumps": [n for n, v in irr.bump.items() if v[0]]}
    return {"strength": strength, "degeneration": round(irr.degeneration, 4), "density": round(irr.density, 4),
            "disc_height": {n: round(v, 4) for n, v in irr.disc.items() if n != "S1"}, **marks}


def _projected_reductions(phantom, found: list, proj: Projection, fractures) -> dict[str, float]:
    """Return, per fractured level fully on the detector, the height reduction its projected six points show."""
    names = [b.level for b in phantom.bodies]
    if not {f.level for f in fractures} & set(names):
        return {}
    h, w = proj.shape
    heights = {}
    for name, geo in zip(names, found, strict=True):
        if geo is None:
            continue
        pts = np.array(list(geo["points"].values()))
        if pts[:, 0].min() < 0 or pts[:, 0].max() > h - 1 or pts[:, 1].min() < 0 or pts[:, 1].max() > w - 1:
            continue
        p = geo["points"]
        heights[name] = {s: float(np.linalg.norm(p[f"superior_{s}"] - p[f"inferior_{s}"]))
                         for s in ("anterior", "middle", "posterior")}
    shown = {}
    for f in fractures:
        if f.level not in heights:
            continue
        hh = heights[f.level]
        if f.kind == "wedge":
            shown[f.level] = 1 - hh["anterior"] / hh["posterior"]
        elif f.kind == "biconcave":
            shown[f.level] = 1 - hh["middle"] / hh["posterior"]
        else:
            i = names.index(f.level)
            nb = [heights[n]["posterior"] for n in (names[i - 1] if i else None, names[i + 1])
                  if n in heights and n != "S1"]
            if nb:
                shown[f.level] = 1 - hh["posterior"] / float(np.mean(nb))
    return shown


def _truth(phantom, found: list, proj: Projection, labels: np.ndarray, fov, facing, bits, seed, index, patient,
           reductions: dict[str, float]) -> dict:
    h, w = proj.shape
    border = near_edge_codes(labels)
    present = set(np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist())
    shown = _projected_reductions(phantom, found, proj, [b.fracture for b in phantom.bodies if b.fracture])
    vertebrae = []
    for body, geo in zip(phantom.bodies, found, strict=True):
        if body.level == "S1" or body.code not in present:
            continue
        record = _record(body, geo, proj, truncated=body.code in border or geo is None)
        if body.fracture:
            record["reduction_3d"] = reductions[body.level]
            if body.level in shown:
                record["reduction_shown"] = round(shown[body.level], 6)
                record["genant_grade_shown"] = genant_grade(shown[body.level])
        vertebrae.append(record)
    s1 = phantom.body("S1")
    return {
        "seed": seed, "index": index, "fov": fov, "facing": facing,
        "patient_orientation": ["P", "F"] if facing == "left" else ["A", "F"],
        "shape": [h, w], "pixel_spacing_mm": [proj.pitch_mm, proj.pitch_mm],
        "spacing_note": "detector mm: heights as they appear on the detector; divide by magnification for the midplane",
        "projection": "parallel" if proj.parallel else "perspective",
        "sdd_mm": proj.sdd_mm, "sod_mm": proj.sod_mm if not proj.parallel else None,
        "magnification": proj.magnification, "bits_stored": bits, "wall_inset": WALL_INSET,
        "patient": {"scale": patient.scale, "habitus": patient.habitus, "kyphosis_deg": patient.kyphosis_deg,
                    "lordosis_deg": patient.lordosis_deg, "axial_rotation_deg": patient.axial_rotation_deg,
                    "tilt_deg": patient.tilt_deg},
        "genant_bands": {str(k): list(v) for k, v in GENANT_BANDS.items()},
        "vertebrae": vertebrae,
        "landmarks": {"S1_center_px": proj.project(s1.outer.frame.center[:, None])[:, 0].round(3).tolist()},
    }


def _record(body, geo, proj: Projection, truncated: bool) -> dict:
    f = body.fracture
    rec = {
        "level": body.level, "code": body.code, "truncated": bool(truncated),
        "deformity": f.kind if f else "none", "genant_grade": f.grade if f else 0,
        "reduction": round(f.reduction, 6) if f else 0.0,
        "heights_3d_mm": {"Ha": body.heights.ha, "Hm": body.heights.hm, "Hp": body.heights.hp},
        "baseline_3d_mm": {"Ha": body.baseline.ha, "Hm": body.baseline.hm, "Hp": body.baseline.hp},
    }
    if geo is None:
        return rec
    rec["center_px"] = geo["center"].round(4).tolist()
    rec["axis"] = geo["axis"].round(6).tolist()
    if truncated:
        return rec
    p = geo["points"]
    heights = {k: float(np.linalg.norm(p[f"superior_{s}"] - p[f"inferior_{s}"])) for k, s in
               (("Ha", "anterior"), ("Hm", "middle"), ("Hp", "posterior"))}
    for k, v in heights.items():
        rec[f"{k}_px"] = round(v, 5)
        rec[f"{k}_mm"] = round(v * proj.pitch_mm, 5)
    rec["points"] = {k: v.round(5).tolist() for k, v in p.items()}
    rec["points_mm"] = {k: (v * proj.pitch_mm).round(5).tolist() for k, v in p.items()}
    return rec
