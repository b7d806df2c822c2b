"""Simulator speed on one CPU core: image+label pairs per second at 1024² and at full size.

Usage: .venv/bin/python bench/simulate.py [--n 40] [--n-full 4] [--out bench/out]

Prints one table and writes bench/out/simulate.png (throughput bars and example images). All figures come
from this one run; the stage split is a ratio within the run, robust to a noisy shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spinemorph.data import simulate as simulate_module  # noqa: E402
from spinemorph.data.simulate import SimConfig, simulate  # noqa: E402
from spinemorph.data.studies import case_id, write_case  # noqa: E402
from spinemorph.overlay import draw_labels, to_rgb  # noqa: E402


class _Stages:
    """Wraps the simulator's stage functions to time them inside real calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        for name in ("render", "expose", "six_points", "build_phantom"):
            original = getattr(simulate_module, name)
            setattr(simulate_module, name, self._timed(name, original))

    def _timed(self, name, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return run


def _run(config: SimConfig, n: int, seed: int, write: str | None, folder: Path) -> tuple[float, list]:
    start, sims = time.perf_counter(), []
    for i in range(n):
        sim = simulate(seed, i, config)
        if write:
            write_case(folder, case_id("bench", seed, i), sim.image, sim.labels, sim.truth, write)
        if len(sims) < 3:
            sims.append(sim)
    return (time.perf_counter() - start) / n, sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="images at 1024²")
    parser.add_argument("--n-full", type=int, default=4, help="images at full size")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulate(0, 0, SimConfig(size=(1024, 1024)))  # warm-up: imports and first allocations
    stages = _Stages()
    rows, examples = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, config, n, write in [
            ("1024x1024", SimConfig(size=(1024, 1024)), args.n, None),
            ("1024x1024 + DICOM/label write", SimConfig(size=(1024, 1024)), args.n, "dicom"),
            ("1024x1024 + NIfTI/label write", SimConfig(size=(1024, 1024)), args.n, "nifti"),
            ("full (2000-3000 px tall)", SimConfig(size="full"), args.n_full, None),
        ]:
            stages.seconds.clear()
            seconds, sims = _run(config, n, 1, write, Path(tmp))
            total = sum(stages.seconds.values())
            split = {k: v / total for k, v in stages.seconds.items()} if total else {}
            shape = sims[0].image.shape
            rows.append((label, n, f"{shape[0]}x{shape[1]}", seconds, 1.0 / seconds, split))
            if write is None and not examples:
                examples = sims
    print(f"{'case':32s} {'n':>4s} {'shape (first)':>14s} {'s/image':>8s} {'pairs/s':>8s}   stage split "
          "(phantom / render / truth / detector)")
    for label, n, shape, sec, rate, split in rows:
        parts = " / ".join(f"{split.get(k, 0):.0%}" for k in ("build_phantom", "render", "six_points", "expose"))
        print(f"{label:32s} {n:4d} {shape:>14s} {sec:8.3f} {rate:8.2f}   {parts}")
    target = rows[0][4] >= 5.0
    print(f"Target: >= 5 pairs/s at 1024² on one core: {'met' if target else 'NOT met'} ({rows[0][4]:.2f}/s)")

    fig, axes = plt.subplots(1, 1 + len(examples), figsize=(4 + 3 * len(examples), 4.2),
                             gridspec_kw={"width_ratios": [1.6] + [1] * len(examples)})
    axes[0].barh([r[0] for r in rows][::-1], [r[4] for r in rows][::-1], color="#4c78a8")
    axes[0].axvline(5.0, color="red", ls="--", label="target 5/s at 1024²")
    axes[0].set_xlabel("image+label pairs per second, one core")
    axes[0].legend(loc="lower right", fontsize=8)
    for ax, sim in zip(axes[1:], examples, strict=True):
        ax.imshow(np.asarray(draw_labels(to_rgb(sim.image, 0.5), sim.labels, names=False)))
        ax.set_title(f"{sim.truth['fov']}, facing {sim.truth['facing']}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "simulate.png", dpi=110)
    print(f"Wrote {out / 'simulate.png'}")


if __name__ == "__main__":
    main()
