"""The networks on OpenVINO against torch (``spinemorph.inference.runtime``): the same answer, how much sooner.

On calibration simulations only (full size, series 4500, 4600 and 4700; never a test series), the shipped bundle's
stage 1, stage 2 and landmark networks run through ``spinemorph.inference.analyse`` as the server runs them
(heights=mean), once on torch and once compiled by OpenVINO. For every vertebra both measure: whether the grade
and the flags agree, and how far the heights differ; and each network's median seconds per film on each runtime
(the threads torch uses; OMP_NUM_THREADS=1 for one).

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/runtime.py [--n 20] [--series 4500,4600,4700]
Prints a table and writes bench/out/runtime.json and bench/out/runtime.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import landmarks as lm  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import morphometry_pred as mp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from spinemorph.inference.analyse import analyse, load_networks  # noqa: E402

#: analyse's timing of each network -> its name
NETWORKS = {"network_s": "stage 1", "stage2_network_s": "stage 2", "landmarks_network_s": "landmarks"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="full-size simulations per series")
    parser.add_argument("--series", default="4500,4600,4700")
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = parser.parse_args()
    runtimes = {r: load_networks(lm.BUNDLE, detector=False, runtime=r) for r in ("torch", "openvino")}
    diffs, graded_diffs, same_grade, same_flags, seconds = [], [], [], [], {r: [] for r in runtimes}
    for seed in (int(s) for s in args.series.split(",")):
        for i in range(args.n):
            image, _ = mp._pair(*lm.case(seed, i))
            done = {}
            for runtime, n in runtimes.items():
                done[runtime] = analyse(image, n.net, n.spec, refiner=n.refiner, landmarks=n.landmarks)
                seconds[runtime].append([done[runtime].timings.get(k, 0.0) for k in NETWORKS])
            ov = done["openvino"].morphometry.by_level()
            for level, rec in done["torch"].morphometry.by_level().items():
                other = ov.get(level)
                same_grade.append(other is not None and other.genant_grade == rec.genant_grade)
                same_flags.append(other is not None and set(other.flags) == set(rec.flags))
                if other is None or rec.Ha_mm is None or other.Ha_mm is None:
                    continue
                d = max(abs(getattr(rec, h) - getattr(other, h)) for h in ("Ha_mm", "Hm_mm", "Hp_mm"))
                diffs.append(d)
                if rec.genant_grade is not None:
                    graded_diffs.append(d)
    diffs, graded_diffs = np.asarray(diffs), np.asarray(graded_diffs)
    med = {r: np.median(np.asarray(s), axis=0) for r, s in seconds.items()}
    out = {"films": len(seconds["torch"]), "vertebrae": len(same_grade), "same_grade": int(np.sum(same_grade)),
           "same_flags": int(np.sum(same_flags)), "threads": torch.get_num_threads(),
           "height_diff_mm": {"median": float(np.median(diffs)), "p99": float(np.quantile(diffs, 0.99)),
                              "max": float(diffs.max()), "graded_max": float(graded_diffs.max())},
           "network_seconds": {r: dict(zip(NETWORKS.values(), map(float, m), strict=True)) for r, m in med.items()}}
    print(f"{out['films']} calibration films (series {args.series}), {out['vertebrae']} vertebrae, "
          f"{out['threads']} thread(s)")
    print(f"same grade {out['same_grade']}, same flags {out['same_flags']} of {out['vertebrae']}")
    h = out["height_diff_mm"]
    print(f"height difference (mm, largest of Ha/Hm/Hp): median {h['median']:.2g}, 99th percentile {h['p99']:.3f}, "
          f"max {h['max']:.3f} (graded vertebrae: max {h['graded_max']:.3f})")
    print(f"{'network':22s} {'torch s':>8s} {'openvino s':>11s} {'ratio':>6s}")
    for k, t, o in zip(NETWORKS, med["torch"], med["openvino"], strict=True):
        print(f"{NETWORKS[k]:22s} {t:8.4f} {o:11.4f} {t / o:6.2f}")
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "runtime.json").write_text(json.dumps(out, indent=1))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.hist(np.log10(np.maximum(diffs, 1e-7)), bins=40, color="grey")
    a.set_xlabel("log10 |height difference| (mm), openvino vs torch")
    a.set_ylabel("vertebrae")
    x = np.arange(len(NETWORKS))
    b.bar(x - 0.2, med["torch"], 0.4, label="torch")
    b.bar(x + 0.2, med["openvino"], 0.4, label="openvino")
    b.set_xticks(x, list(NETWORKS.values()))
    b.set_ylabel("median seconds per film")
    b.legend()
    fig.tight_layout()
    fig.savefig(folder / "runtime.png", dpi=110)
    print(f"Wrote {folder / 'runtime.json'} and {folder / 'runtime.png'}")


if __name__ == "__main__":
    main()
