"""What the product would grade with bench/landmarks.py's six-point landmarks, before it serves them (issue 14).

The product is not changed on disk: this run patches, in its own process, ``spinemorph.inference.analyse``'s
``refine`` (after stage 2, the landmark network reads the crops of the bodies stage 2 drew) and
``spinemorph.measure.core._record`` for the film's own measurement (the two views of a fracture call keep their
outlines). Variants:

  points: the landmarks' six points in place of the outline's (the gates judge them);
  heights: the heights, and so the VCR and the grade, from the landmarks; the gates judge the outline's points.

Calibration images only, the shipped pipeline in the same run: 40 full-size simulations (series 4500 and 4600,
bench/morphometry_pred.py's scoring), 60 simulations at 512 px (1200) and 24 CT-DRRs (8000), bench/real_anatomy.py's
scoring. Never the test series.

Usage: .venv/bin/python bench/landmarks_graded.py [--variant heights] [--model runs/landmarks/model.pt]
Writes bench/out/landmarks_graded.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import landmarks as lm  # noqa: E402
import morphometry_pred as mp  # noqa: E402
import real_anatomy as ra  # noqa: E402
from real_anatomy_sets import drr, sim  # noqa: E402

import spinemorph.inference.analyse as an  # noqa: E402
import spinemorph.measure.core as core  # noqa: E402
from spinemorph.evaluation.morphometry import summarise  # noqa: E402
from spinemorph.inference import load_model  # noqa: E402
from spinemorph.inference.analyse import load_refiner  # noqa: E402
from spinemorph.refine.crops import body_boxes, crop_inputs, normalised  # noqa: E402

NAMES = [f"{r}_{s}" for r in ("superior", "inferior") for s in ("left", "middle", "right")]
STATE: dict = {"variant": None, "points": None, "net": None}
_record, _refine, _measure = core._record, an.refine, an.measure


def record(body, geo, usable, truncated, facing, scale, spacing):
    pts = STATE["points"]
    mine = pts is not None and body.code in pts
    if mine and geo is not None and STATE["variant"] == "points":
        geo = dataclasses.replace(geo, points=pts[body.code])
    rec = _record(body, geo, usable, truncated, facing, scale, spacing)
    if mine and rec.Ha_px is not None and STATE["variant"] == "heights":
        six = np.stack([pts[body.code][name] for name in NAMES])  # image order, as lm.heights reads them
        for h, v in lm.heights(six, facing, (1.0, 1.0)).items():
            setattr(rec, f"{h}_px", v)
        if spacing is not None:
            for h, v in lm.heights(six, facing, scale).items():
                setattr(rec, f"{h}_mm", v)
    return rec


def refine(pixels, labels, net, spec, device="cpu", prepared=None):
    done = _refine(pixels, labels, net, spec, device, prepared=prepared)
    STATE["points"] = None
    if not STATE["variant"]:  # the shipped pipeline, untouched
        return done
    boxes = [(c, b) for c, b in body_boxes(done.labels) if done.stages.get(c) == 2]
    if boxes:
        x = crop_inputs(normalised(pixels) if prepared is None else prepared, [b for _, b in boxes], spec.preprocessing)
        pts = lm.predict(STATE["net"], x)
        STATE["points"] = {c: dict(zip(NAMES, lm.to_film(p, b, x.shape[-1]), strict=True))
                           for (c, b), p in zip(boxes, pts, strict=True)}
    return done


def measure(*args, **kwargs):
    """The film's own measurement only: the views measured after it keep their outlines."""
    try:
        return _measure(*args, **kwargs)
    finally:
        STATE["points"] = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("points", "heights"), default="heights")
    parser.add_argument("--model", default=str(REPO / "runs" / "landmarks" / "model.pt"))
    parser.add_argument("--n-full", type=int, default=20, help="full-size simulations per series (4500, 4600)")
    parser.add_argument("--n-sim", type=int, default=60)
    parser.add_argument("--n-drr", type=int, default=24)
    args = parser.parse_args()
    net = lm.build()
    net.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=False)["state_dict"])
    STATE["net"] = net.eval()
    core._record, an.refine, an.measure = record, refine, measure
    seg, spec = load_model(lm.BUNDLE)
    refiner = load_refiner(lm.BUNDLE)
    full = [mp._pair(*lm.case(seed, i)) for seed in (4500, 4600) for i in range(args.n_full)]
    sets = {"sim": sim(args.n_sim, 1200), "drr": drr(args.n_drr, 8000)}
    out = {}
    for name, variant in (("shipped", None), (f"landmark {args.variant}", args.variant)):
        STATE["variant"] = variant
        r = mp.run(full, seg, spec, refiner, None)["stage 1 + 2"]
        s = summarise(r["pairs"])
        s["g1_sens_spec98"] = mp.sensitivity_at(r["scores"])[0]
        out[name] = {"full": s, **ra.run_model(lm.BUNDLE, sets, [])}
    keys = ("height_mae_graded_mm", "height_mae_mm", "vcr_mae_graded_points", "vcr_r_graded", "vcr_mae_points",
            "vcr_r", "genant_kappa", "refused", "g1_sens_spec98")
    print(f"{'figure':34s} " + " ".join(f"{m:>18s}" for m in out))
    for k in keys:
        print(f"{'full-size ' + k:34s} " + " ".join(f"{out[m]['full'].get(k, float('nan')):18.3f}" for m in out))
    for s in ("sim", "drr"):
        print(f"{s + ' false G>=1 per image':34s} " + " ".join(f"{out[m][s]['false_grades_per_image']:18.3f}"
                                                             for m in out))
        print(f"{s + ' G1/G2/G3 found':34s} " + " ".join(
            f"{'/'.join(f'{v[0]:.2f}' for v in out[m][s]['sensitivity_by_grade'].values()):>18s}" for m in out))
    path = REPO / "bench" / "out" / "landmarks_graded.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
