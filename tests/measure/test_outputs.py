"""Writers, the command line, and the promise that measurement needs no Slicer, Qt, torch or MONAI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.io import write_nifti
from spinemorph.measure import TABLE_COLUMNS, measure


def test_json_and_csv_hold_the_records(tmp_path):
    labels = np.zeros((120, 90), np.uint8)
    for i, code in enumerate((19, 20, 21)):
        labels[10 + i * 36:40 + i * 36, 20:70] = code
    result = measure(labels, spacing=(0.2, 0.2), facing="right")
    result.write_json(tmp_path / "m.json")
    result.write_csv(tmp_path / "m.csv")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["units"] == "mm" and data["facing"] == "right" and data["facing_source"] == "argument"
    rec = data["vertebrae"][1]
    for key in ("level", "Ha_mm", "Hm_mm", "Hp_mm", "wedge", "biconcave", "crush", "vcr_percent", "genant_grade",
                "deformity", "points", "points_mm", "flags"):
        assert key in rec
    assert set(rec["points"]) == {f"{e}_{s}" for e in ("superior", "inferior")
                                  for s in ("anterior", "middle", "posterior")}
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [r["level"] for r in rows] == ["T12", "L1", "L2"]
    assert len(rows[0]) == len(TABLE_COLUMNS) and float(rows[1]["Ha_mm"]) == pytest.approx(6.0, abs=0.01)


def _spine(wedge: bool = False) -> np.ndarray:
    """T12, L1 and L2 as 30-row boxes 50 columns deep; ``wedge``: L1's front a third lower (a grade-2 wedge)."""
    labels = np.zeros((140, 90), np.uint8)
    for i, code in enumerate((19, 20, 21)):
        labels[10 + i * 42:40 + i * 42, 20:70] = code
    if wedge:
        labels[52:62, 45:70] = 0
    return labels


def test_the_table_and_the_json_say_when_nothing_could_be_graded():
    labels = _spine()
    graded = measure(labels, spacing=(1.0, 1.0), facing="right")  # 30 mm tall, 50 mm deep: plausible bodies
    assert all(r.genant_grade == 0 for r in graded.vertebrae) and "no finding" not in graded.table()
    assert graded.to_dict()["finding"] == {"vertebrae_graded": 3, "graded_1_or_more": [],
                                           "verdict": "no fracture among the graded", "level_uncertain": False}
    refused = measure(labels, spacing=(0.1, 0.1), facing="right")  # 3 mm tall: fragments, not bodies
    assert all(r.genant_grade is None for r in refused.vertebrae)
    assert refused.table().endswith("No vertebra could be graded (see the flags): this is no finding.")
    assert "L1 not graded: its size is out of proportion to the bodies beside it, or to any adult body" in \
        refused.table()  # why, in words
    assert refused.to_dict()["finding"] == {"vertebrae_graded": 0, "graded_1_or_more": [], "verdict": "not gradable",
                                            "level_uncertain": False}
    labels = _spine(wedge=True)
    wedge = measure(labels, spacing=(1.0, 1.0), facing="right")
    assert wedge.to_dict()["finding"] == {"vertebrae_graded": 3, "graded_1_or_more": ["L1"], "verdict": "fracture",
                                          "level_uncertain": False}
    unsure = measure(labels, spacing=(1.0, 1.0), facing="right", facing_confidence=0.5)
    assert unsure.to_dict()["finding"]["verdict"] == "not gradable"
    assert unsure.table().endswith("The facing is unsure, so nothing was graded: this is no finding.")


def test_every_reading_of_a_finding_says_when_its_level_names_are_uncertain(tmp_path):
    from PIL import Image

    from spinemorph.io.dicom_results import finding_sentence
    from spinemorph.measure.report import write_outputs
    from spinemorph.overlay import NOTE_COLOR
    from spinemorph.screen import _graded

    labels = _spine(wedge=True)
    uncounted = {"anchor": None, "level_uncertain": True, "alternatives": [["T11", "T12", "L1"], ["L1", "L2", "L3"]]}
    unsure = measure(labels, spacing=(1.0, 1.0), facing="right", level_naming=uncounted)
    sure = measure(labels, spacing=(1.0, 1.0), facing="right", level_naming={"anchor": "S1", "level_uncertain": False})
    caveat = "The level names are uncertain (not counted up from a sacrum wholly in view): L1 may be T12 or L2."
    assert unsure.finding["graded_1_or_more"] == ["L1"] and unsure.finding["level_uncertain"] is True
    assert caveat in unsure.table() and "uncertain" not in sure.table()
    assert finding_sentence(unsure.to_dict()) == f"Genant grade 1 or more: L1 (of 3 vertebrae graded). {caveat}"
    assert finding_sentence(sure.to_dict()) == "Genant grade 1 or more: L1 (of 3 vertebrae graded)."
    assert _graded({"morphometry": unsure.to_dict()}) == ["L1 G2 wedge (level uncertain: T12 or L2)"]
    assert _graded({"morphometry": sure.to_dict()}) == ["L1 G2 wedge"]
    for result, stem in ((unsure, "unsure"), (sure, "sure")):
        write_outputs(result, tmp_path, stem, labels)
    pictures = [np.asarray(Image.open(tmp_path / f"{s}.morphometry.png").convert("RGB")).astype(int)
                for s in ("unsure", "sure")]
    amber = [int((np.abs(p - NOTE_COLOR).sum(axis=-1) < 30).sum()) for p in pictures]
    assert amber[0] > 50 and amber[1] == 0  # the note is written on the picture, and only when the names are unsure


def test_measure_command_end_to_end(tmp_path):
    studies = tmp_path / "s"
    (image,) = simulate_studies(1, 5, studies, SimConfig(fov="lumbar", size=256), progress=False)
    cid = image.name[:-4]
    done = subprocess.run([sys.executable, "-m", "spinemorph.cli", "measure",
                           str(studies / "labels" / "final" / f"{cid}.nii.gz"), "--image", str(image),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "facing" in done.stdout and "L3" in done.stdout
    data = json.loads((tmp_path / "out" / f"{cid}.morphometry.json").read_text())
    assert data["facing_source"] == "PatientOrientation" and data["units"] == "mm"
    assert (tmp_path / "out" / f"{cid}.morphometry.png").stat().st_size > 20_000


def test_measure_command_rejects_a_mismatched_image(tmp_path):
    studies = tmp_path / "s"
    (image,) = simulate_studies(1, 6, studies, SimConfig(size=256), progress=False)
    labels = np.zeros((100, 80), np.uint8)
    labels[20:50, 10:60] = 20
    write_nifti(tmp_path / "small.nii.gz", labels, np.eye(4))
    done = subprocess.run([sys.executable, "-m", "spinemorph.cli", "measure", str(tmp_path / "small.nii.gz"),
                           "--image", str(image), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2 and "pixel grid" in done.stderr


def test_measurement_imports_no_slicer_qt_torch_or_monai():
    code = ("import sys, spinemorph.measure, spinemorph.io, spinemorph.overlay; "
            "bad = [m for m in ('torch', 'monai', 'slicer', 'qt', 'PyQt5', 'PySide2', 'vtk', 'itk', 'skimage') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_picture_draws_a_refused_body_grey_and_a_graded_one_in_its_grade_colour():
    """A body with no grade (refused, or heights withheld) is drawn grey, never in grade 0's green as if normal."""
    from PIL import Image

    from spinemorph.overlay import GRADE_COLORS, UNGRADED_COLOR, draw_measurements

    points = {f"{end}_{station}": [20.0 + 40 * (end == "inferior"), 20.0 + 30 * i]
              for i, station in enumerate(("anterior", "middle", "posterior")) for end in ("superior", "inferior")}
    for grade, colour in ((None, UNGRADED_COLOR), (0, GRADE_COLORS[0]), (2, GRADE_COLORS[2])):
        pic = draw_measurements(Image.new("RGB", (100, 100)), [{"level": "", "genant_grade": grade,
                                                                 "points": points}], (100, 100))
        assert pic.getpixel((50, 40)) == colour  # on the middle height line, between its two points
