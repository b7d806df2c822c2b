"""Write a morphometry result next to its picture: JSON, CSV and a PNG of the six points and heights."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from spinemorph.measure.flags import finding_caveat
from spinemorph.measure.records import Morphometry
from spinemorph.overlay import PNG_OPTIONS, draw_labels, draw_measurements, draw_note, fit_height, to_rgb

__all__ = ["write_outputs", "overlay_picture"]


def overlay_picture(result: Morphometry, labels: np.ndarray, image: np.ndarray | None = None):
    """Return a PIL picture: the image (or the labelmap) with labels, six points and height lines by grade, and,
    when the level names are uncertain, a note saying so and what each fracture's level may be instead."""
    labels = np.asarray(labels)
    base = image if image is not None else (labels > 0).astype(np.float32)
    pic = to_rgb(base, fit_height(labels.shape))
    pic = draw_labels(pic, labels, alpha=0.25)
    pic = draw_measurements(pic, [asdict(r) for r in result.vertebrae], labels.shape)
    caveat = finding_caveat(result)
    return draw_note(pic, caveat) if caveat else pic


def write_outputs(result: Morphometry, out_dir: str | Path, stem: str, labels: np.ndarray,
                  image: np.ndarray | None = None, extra: dict | None = None) -> dict[str, Path]:
    """Write ``stem``.morphometry.json / .csv / .png into ``out_dir`` and return their paths.

    ``extra`` adds top-level keys to the JSON (for example the model that made the labelmap).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.morphometry.{k}" for k in ("json", "csv", "png")}
    paths["json"].write_text(json.dumps({**result.to_dict(), **(extra or {})}, indent=1))
    result.write_csv(paths["csv"])
    overlay_picture(result, labels, image).save(paths["png"], **PNG_OPTIONS)
    return paths
