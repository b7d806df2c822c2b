"""A tiny detector overfitted on three small simulated radiographs: two with fractures, one normal.

The tests load the detector from ``tests/fixtures/tiny_detector.pt``, made once by

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.detection.tiny tests/fixtures/tiny_detector.pt

(see tests/fixtures/README.md): a model trained inside a test run differs between CPUs, a model read from a file
does not. ``train_tiny`` stays for the tests of the training mechanics, which never rely on its quality.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.deformity import Fracture
from spinemorph.data.simulate import SimConfig
from spinemorph.detection import load_detector
from spinemorph.detection.checkpoint import save_detector
from spinemorph.detection.training import DetectorTrainConfig, train_detector
from spinemorph.training import find_cases

#: (fractures, seed) of each training image; the last is normal.
IMAGES = (((Fracture("L1", "wedge", 3, 0.5),), 31), ((Fracture("L3", "biconcave", 3, 0.5),), 32), ((), 33))
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_detector.pt"


def make_studies(root: Path) -> Path:
    """Write the three radiographs (160 px lumbar NIfTI) into one studies folder and return it."""
    for fractures, seed in IMAGES:
        config = SimConfig(size=160, fov="lumbar", fracture_rate=0.0, fractures=fractures, facing="left")
        simulate_studies(1, seed, root, config, fmt="nifti", progress=False)
    return root


def train_tiny(root: Path, steps: int = 200, val_every: int | None = None) -> Path:
    """Train the tiny detector on ``root``'s three images for ``steps`` steps (a log row every ``val_every``);
    return its last.pt."""
    torch.manual_seed(0)
    config = DetectorTrainConfig(out=str(root / "run"), size=160, channels=(8, 16, 32, 64), blocks=(1, 1, 1, 1),
                                 fpn_channels=32, box_hidden=32, batch_size=3, lr=0.02, warmup_steps=20,
                                 max_steps=steps, val_every=val_every or steps, val_fraction=0.0, augment=False)
    train_detector(config, find_cases(root))
    return root / "run" / "last.pt"


def main(out: str) -> None:
    """Train the fixture detector (300 steps) and save its weights and spec alone (no optimiser state) to ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        last = train_tiny(make_studies(Path(tmp)), steps=300)
        net, spec = load_detector(last)
        save_detector(net, spec, out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(FIXTURE))
