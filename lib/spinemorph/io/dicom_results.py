"""Results as DICOM: the labelmap as a SEG, the morphometry as a TID 1500 measurement report (SR), and the SR read back.

The writers need highdicom (the ``ml`` extra); ``read_morphometry_sr`` needs pydicom alone, so 3D Slicer's Python
can read a report without it.

Codes: a level is the SNOMED CT concept of DICOM CID 7603 "Vertebra" (C1-L5), S1 is SCT 65985001 "First sacral
vertebra", and the transitional T13 and L6, which SNOMED CT has no concept for, are codes of SpineMorph's own
scheme ``99SPMORPH`` (a "99" scheme is a private one, PS3.16 section 8.2), as are the quantities (heights, indices,
VCR, Genant grade and type, flags). Both files declare the scheme in their Coding Scheme Identification Sequence.

Points: an SCOORD is in DICOM image coordinates (column, row) with (0, 0) the top left corner of the top left
pixel, so the centre of pixel (row r, column c) is (c + 0.5, r + 0.5). DICOM keeps them as 32-bit floats: they
come back to the JSON's four decimals on films under 1024 pixels, to about 1e-4 pixel on larger ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from spinemorph.io.dicom_codes import SCHEME, STATIONS, level_concept, read_source
from spinemorph.io.dicom_seg import make_seg, seg_labelmap, segment_level, write_seg
from spinemorph.io.dicom_sr import finding_sentence, make_sr, morphometry_from_sr, read_morphometry_sr, write_sr

__all__ = [
    "make_seg", "make_sr", "write_seg", "write_sr", "write_dicom_results", "read_morphometry_sr",
    "morphometry_from_sr", "finding_sentence", "seg_labelmap", "segment_level", "level_concept", "SCHEME", "STATIONS",
]

log = logging.getLogger(__name__)


def write_dicom_results(out_dir: str | Path, stem: str, labels, morphometry, source: str | Path | Dataset
                        ) -> dict[str, Path]:
    """Write ``stem``.seg.dcm (when the labelmap holds a level) and ``stem``.sr.dcm; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = read_source(source)
    paths = {}
    if np.any(np.asarray(labels)):
        paths["seg"] = write_seg(out / f"{stem}.seg.dcm", labels, ds)
    else:
        log.warning("%s: the labelmap is empty, so there is no SEG to write.", stem)
    paths["sr"] = write_sr(out / f"{stem}.sr.dcm", morphometry, ds)
    return paths
