"""Where the gates of spinemorph.measure.gates should sit: what they measure on segments that are real bodies and on
segments that are not, on held-out simulated and CT-DRR images (never a test set: series seeds 1_200 and 8_000,
apart from the training series and from bench/real_anatomy.py's).

Every predicted segment is measured with the gates wide open; a segment is a true body when at least half of it lies
in one truth body and it covers at least half of that body. The suggested thresholds keep 99 % of true bodies on
each side of each gate; the table shows how many false segments each would stop. For the ``implausible_shape``
gate, which judges a segment's heights rather than whether it is a body, it also counts the fracture grades given
(gates open) beyond and within its bound, false (no fracture under the segment) and true.

Usage: .venv/bin/python bench/calibrate_gates.py [--model PATH] [--n-sim 100] [--n-drr 24]
Writes bench/out/calibrate_gates.json and bench/out/calibrate_gates.png.
"""

from __future__ import annotations

import argparse
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

from spinemorph.inference import load_model  # noqa: E402
from spinemorph.inference.analyse import analyse, load_facing, load_refiner  # noqa: E402
from spinemorph.levels import level_code  # noqa: E402
from spinemorph.measure.bodies import find_bodies  # noqa: E402
from spinemorph.measure.gates import Gates, segment_statistics  # noqa: E402

OPEN = Gates.open()
STATS = ("solidity", "area", "depth", "height", "outside_px", "confidence", "tallest_mm", "depth_mm", "agreement",
         "front_back")
HIGH = ("outside_px", "front_back")  # gates with an upper bound alone


def collect(model: Path, cases) -> list[dict]:
    """Return one row per measured segment: its gate statistics and whether it is a true body."""
    net, spec = load_model(model)
    facing, refiner = load_facing(model), load_refiner(model)
    rows = []
    for case in cases:
        done = analyse(case.image, net, spec, facing_model=facing, gates=OPEN, refiner=refiner)
        labels = np.where(done.labels == level_code("S1"), 0, done.labels)
        bodies, _ = find_bodies(labels)
        agreement = {r.code: r_agree for r in done.morphometry.vertebrae
                     if (r_agree := done.agreement.get(r.code)) is not None} if done.agreement else None
        stats = segment_statistics(done.morphometry.vertebrae, bodies, done.segmentation.confidence, agreement)
        for i, s in stats.items():
            mine = labels == done.morphometry.vertebrae[i].code
            best = max(((float((mine & m).sum()), m, lvl) for lvl, m in case.masks.items()), key=lambda t: t[0]) \
                if case.masks else (0.0, None, None)
            true = best[1] is not None and best[0] >= 0.5 * mine.sum() and best[0] >= 0.5 * best[1].sum()
            grade = done.morphometry.vertebrae[i].genant_grade  # with the gates open: what the geometry says
            rows.append({**s, "true": bool(true), "case": case.name, "grade": grade,
                         "truth_grade": case.grades.get(best[2], 0) if best[0] >= 0.5 * mine.sum() else 0})
    return rows


def suggest(rows: list[dict]) -> dict:
    """Return thresholds keeping 99 % of true bodies, and the share of false segments each stops."""
    true = [r for r in rows if r["true"]]
    false = [r for r in rows if not r["true"]]

    def values(rs, key):
        return np.array([r[key] for r in rs if r[key] is not None and np.isfinite(r[key])], float)

    out = {"true_segments": len(true), "false_segments": len(false)}
    for key in STATS:
        t = values(true, key)
        if not t.size:
            continue
        lo, hi = np.percentile(t, [1, 99])
        f = values(false, key)
        two_sided = key in ("area", "depth", "height", "tallest_mm", "depth_mm")
        stops = float(np.mean((f < lo) | (f > hi))) if two_sided else \
            float(np.mean(f > hi)) if key in HIGH else float(np.mean(f < lo))
        out[key] = {"true_p1": round(float(lo), 3), "true_p99": round(float(hi), 3), "false_stopped": round(stops, 3)
                    if f.size else None}
    return out


def false_grades_by_front_back(rows: list[dict], bound: float) -> dict:
    """Return the fracture grades (>= 1, gates open) given to segments beyond and within the front/back bound, split
    by the truth under them: the grades the ``implausible_shape`` gate withholds, and those it leaves."""
    out = {}
    for side, test in (("beyond", lambda v: v > bound), ("within", lambda v: v <= bound)):
        graded = [r for r in rows if r["grade"] and r["front_back"] is not None and test(r["front_back"])]
        out[side] = {"false": sum(not r["truth_grade"] for r in graded), "true": sum(bool(r["truth_grade"])
                                                                                     for r in graded)}
    return out


def main() -> None:
    """Collect, suggest, print and plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "sample-apps" / "spinemorph_levels"))
    parser.add_argument("--n-sim", type=int, default=100)
    parser.add_argument("--n-drr", type=int, default=24)
    args = parser.parse_args()
    cases = sim(args.n_sim, seed=1_200) + (drr(args.n_drr, seed=8_000) if args.n_drr else [])
    rows = collect(Path(args.model), cases)
    result = suggest(rows)
    print(f"{result['true_segments']} true body segments, {result['false_segments']} false ones")
    print("statistic | true 1 % | true 99 % | false segments stopped at those bounds")
    for key in STATS:
        if key in result:
            r = result[key]
            print(f"{key} | {r['true_p1']} | {r['true_p99']} | {r['false_stopped']}")
    bound = Gates().front_back
    shape = result["fracture_grades_by_front_back"] = false_grades_by_front_back(rows, bound)
    print(f"grades >= 1 (gates open) where max(Ha, Hm) / Hp > {bound}: {shape['beyond']['false']} false, "
          f"{shape['beyond']['true']} true; at or under it: {shape['within']['false']} false, "
          f"{shape['within']['true']} true")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibrate_gates.json").write_text(json.dumps({"suggested": result, "rows": rows}, indent=1, default=float))
    fig, axes = plt.subplots(1, len(STATS), figsize=(3.2 * len(STATS), 3))
    for ax, key in zip(axes, STATS, strict=True):
        for flag, colour in ((True, "tab:green"), (False, "tab:red")):
            v = [r[key] for r in rows if r["true"] == flag and r[key] is not None and np.isfinite(r[key])]
            ax.hist(v, bins=30, alpha=0.6, color=colour, label="true body" if flag else "not a body")
        ax.set_title(key)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "calibrate_gates.png", dpi=90)
    print(f"Wrote {out / 'calibrate_gates.json'} and {out / 'calibrate_gates.png'}")


if __name__ == "__main__":
    main()
