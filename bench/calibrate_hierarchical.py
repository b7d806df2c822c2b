"""Which gates the hierarchical pipeline's fracture grades need: every fracture grade it gives on held-out
calibration images (never a test set: simulations of series seed 1_200, CT-DRRs of seed 8_000, as
bench/calibrate_gates.py), true or false, with and without the ``views_disagree`` gate (the mirror view of each
patch must grade the level a fracture too), and with the facing inferred from the bodies' shapes (what the task
does) or taken from the default model's facing classifier (under its 0.9 confidence bar nothing is graded).

A grade is true when its segment is a found body (at least half of it in one truth body, covering at least half of
that body) whose truth grade is 1 or more; every other fracture grade is false. A grade the views gate withdrew is
counted, by its flag, in the rows without the gate.

Usage: .venv/bin/python bench/calibrate_hierarchical.py [--model PATH] [--n-sim 60] [--n-drr 24]
Writes bench/out/calibrate_hierarchical.json and bench/out/calibrate_hierarchical.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from real_anatomy_sets import drr, sim  # noqa: E402

from spinemorph.hierarchical.model import load_hierarchical  # noqa: E402
from spinemorph.hierarchical.pipeline import run_hierarchical  # noqa: E402
from spinemorph.inference.analyse import load_facing  # noqa: E402
from spinemorph.levels import level_code  # noqa: E402
from spinemorph.measure.gates import DEFAULT_GATES  # noqa: E402

FACINGS = ("inferred", "classifier")


def _verdict(case, labels: np.ndarray, level: str) -> bool:
    """Return whether a fracture grade of ``level`` is true: a found body with a truth grade of 1 or more."""
    seg = labels == level_code(level)
    for name, mask in case.masks.items():
        both = float((seg & mask).sum())
        if both >= 0.5 * seg.sum() and both >= 0.5 * mask.sum():
            return (case.grades.get(name) or 0) >= 1
    return False


def collect(model, facing_model, cases) -> list[dict]:
    """Return one row per fracture grade given (or withdrawn by the views gate only), per facing source."""
    rows = []
    for case in cases:
        facing, confidence = facing_model(case.image.pixels)
        for source in FACINGS:
            image = case.image
            if source == "classifier":
                if confidence < DEFAULT_GATES.facing:
                    continue  # facing_uncertain: nothing graded
                image = dataclasses.replace(image, facing=facing)
            result = run_hierarchical(image, model)
            for r in result.morphometry.vertebrae:
                views_only = "views_disagree" in r.flags  # a fracture grade this gate alone withdrew
                if r.genant_grade or views_only:
                    rows.append({"case": case.name, "facing": source, "level": r.level, "grade": r.genant_grade,
                                 "withdrawn_by_views": views_only, "true": _verdict(case, result.labels, r.level)})
        print(case.name, flush=True)
    return rows


def table(rows: list[dict]) -> list[dict]:
    """Return the counts per facing source, image set and gate."""
    out = []
    for source in FACINGS:
        for kind in ("sim", "drr"):
            mine = [r for r in rows if r["facing"] == source and r["case"].startswith(kind)]
            for views in (False, True):
                kept = [r for r in mine if not (views and r["withdrawn_by_views"])]
                out.append({"facing": source, "set": kind, "views_gate": views, "graded": len(kept),
                            "true": sum(r["true"] for r in kept), "false": sum(not r["true"] for r in kept)})
    return out


def main() -> None:
    """Collect, count, print and plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "sample-apps" / "spinemorph_hierarchical"))
    parser.add_argument("--facing-model", default=str(REPO / "sample-apps" / "spinemorph_levels"))
    parser.add_argument("--n-sim", type=int, default=60)
    parser.add_argument("--n-drr", type=int, default=24)
    args = parser.parse_args()
    cases = sim(args.n_sim, seed=1_200) + (drr(args.n_drr, seed=8_000) if args.n_drr else [])
    rows = collect(load_hierarchical(args.model), load_facing(args.facing_model), cases)
    counts = table(rows)
    print("facing | set | views gate | fracture grades | true | false")
    for c in counts:
        print(f"{c['facing']} | {c['set']} | {'on' if c['views_gate'] else 'off'} | {c['graded']} | {c['true']} | "
              f"{c['false']}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibrate_hierarchical.json").write_text(json.dumps({"counts": counts, "rows": rows}, indent=1))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, kind in zip(axes, ("sim", "drr"), strict=True):
        mine = [c for c in counts if c["set"] == kind]
        names = [f"{c['facing']}\nviews {'on' if c['views_gate'] else 'off'}" for c in mine]
        x = np.arange(len(mine))
        ax.bar(x, [c["true"] for c in mine], color="tab:green", label="true")
        ax.bar(x, [c["false"] for c in mine], bottom=[c["true"] for c in mine], color="tab:red", label="false")
        ax.set_xticks(x, names, fontsize=7)
        ax.set_title(f"{kind}: fracture grades")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "calibrate_hierarchical.png", dpi=90)
    print(f"Wrote {out / 'calibrate_hierarchical.json'} and {out / 'calibrate_hierarchical.png'}")


if __name__ == "__main__":
    main()
