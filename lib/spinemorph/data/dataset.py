"""Simulate a whole studies folder: N seeded radiographs with labels, truth and optional previews."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spinemorph.data.randomise import Randomisation, randomise
from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.data.studies import FORMATS, case_id, write_case

__all__ = ["simulate_studies"]

log = logging.getLogger(__name__)

#: Image ``index`` of series ``seed`` is randomised from ``default_rng([seed, index, RANDOMISATION_STREAM])``,
#: a stream of its own, so the simulated record underneath is the same with randomisation on or off.
RANDOMISATION_STREAM = 2


def simulate_studies(n: int, seed: int, out: str | Path, config: SimConfig | None = None, fmt: str = "dicom",
                     preview: bool = False, progress: bool = True, labelled_fraction: float = 1.0,
                     randomisation: Randomisation | None = None) -> list[Path]:
    """Write ``n`` simulated cases to ``out`` and return their image paths; the same seed gives the same files.

    Only the first ``labelled_fraction`` of the cases get a label in labels/final (every case keeps its truth
    JSON), so that an annotation loop has unlabelled images to serve. ``randomisation`` passes every case
    through the domain-randomisation chain (``spinemorph.data.randomise``) before it is written.
    """
    if not 0.0 <= labelled_fraction <= 1.0:
        raise ValueError(f"The labelled fraction must lie between 0 and 1, not {labelled_fraction}.")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"The number of images must be a positive integer, not {n}.")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"The seed must be a non-negative integer, not {seed}.")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    config = config or SimConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in tqdm(range(n), desc="simulating", unit="image", disable=not progress):
        sim = simulate(seed, index, config)
        image, labels, truth = sim.image, sim.labels, sim.truth
        if randomisation is not None:
            rng = np.random.default_rng([seed, index, RANDOMISATION_STREAM])
            image, labels, truth = randomise(image, labels, truth, rng, randomisation)
        cid = case_id(f"sim-{truth['fov']}", seed, index)
        paths.append(write_case(out, cid, image, labels, truth, fmt, preview))
        if index >= round(labelled_fraction * n):
            (out / "labels" / "final" / f"{cid}.nii.gz").unlink()
    log.info("Wrote %d simulated radiographs to %s", n, out)
    return paths
