"""Cases from studies folders, split reproducibly, preprocessed once and cached in memory."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from spinemorph.io import image_id, read_labelmap, read_radiograph
from spinemorph.networks import code_to_class
from spinemorph.transforms import Preprocessing, train_augmentation

__all__ = ["Case", "find_cases", "split_cases", "RadiographDataset"]

log = logging.getLogger(__name__)
_IMAGE_SUFFIXES = (".dcm", ".nii.gz", ".nii", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Case:
    """One labelled radiograph in a studies folder; ``truth`` is the simulator's JSON when there is one."""

    id: str
    image: Path
    label: Path
    truth: Path | None = None


def find_cases(*studies: str | Path, tag: str = "final") -> list[Case]:
    """Return every image of the studies folders that has a label in labels/<tag>/, sorted by id."""
    cases = []
    for folder in map(Path, studies):
        if not folder.is_dir():
            raise FileNotFoundError(f"No studies folder at {folder}.")
        labels = folder / "labels" / tag
        for image in sorted(p for p in folder.iterdir() if p.name.lower().endswith(_IMAGE_SUFFIXES)):
            cid = image_id(image)
            found = [labels / f"{cid}{s}" for s in (".nii.gz", ".nii", ".png")]
            label = next((p for p in found if p.is_file()), None)
            if label is None:
                continue
            truth = labels / f"{cid}.truth.json"
            cases.append(Case(cid, image, label, truth if truth.is_file() else None))
    return sorted(cases, key=lambda c: c.id)


def split_cases(cases: list[Case], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Case], list[Case]]:
    """Return (train, validation): a stable split by hashed id, so adding cases never moves old ones."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"The validation fraction must lie in [0, 1), not {val_fraction}.")

    def score(c: Case) -> float:
        return int(hashlib.sha1(f"{seed}:{c.id}".encode()).hexdigest()[:8], 16) / 2**32

    val = [c for c in cases if score(c) < val_fraction]
    if cases and not val and val_fraction > 0:
        val = [min(cases, key=score)]
    train = [c for c in cases if c not in val]
    return train, val


class RadiographDataset(Dataset):
    """Preprocessed (image, target) pairs; augmented on the fly when ``augment`` is True.

    Images and labels are read, normalised, padded to ``settings.size`` and equalised once, then kept in
    memory as float16/uint8: a thousand 256² cases take about 200 MB.
    """

    def __init__(self, cases: list[Case], settings: Preprocessing, head: str, augment: bool = False,
                 progress: bool = True, seed: int = 0) -> None:
        self.head, self.settings = head, settings
        # MONAI's random transforms draw from OS entropy unless seeded: seeded, a run can be repeated exactly.
        self.augment = train_augmentation().set_random_state(seed) if augment else None
        pre = settings.transforms(("image", "label"))
        self.images, self.targets = [], []
        for case in tqdm(cases, desc="preprocessing", unit="case", disable=not progress):
            pixels = read_radiograph(case.image).pixels
            labels, _ = read_labelmap(case.label)
            target = torch.as_tensor(code_to_class(labels, head).astype(np.float32))[None]
            d = pre({"image": torch.as_tensor(np.asarray(pixels, np.float32))[None], "label": target})
            self.images.append(d["image"].half())
            self.targets.append(d["label"].round().to(torch.uint8))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.images[i].float(), self.targets[i].float()
        if self.augment is not None:
            d = self.augment({"image": image, "label": target})
            image, target = torch.as_tensor(d["image"]), torch.as_tensor(d["label"])
        return image, target.round().long()
