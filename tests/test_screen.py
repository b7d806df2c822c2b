"""`spinemorph screen`: every lateral film of a folder, a cohort CSV, verdicts, report pages, and a resumable run."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pydicom
import pytest
from PIL import Image

from spinemorph.cli import main as cli
from spinemorph.io.dicom_results import read_morphometry_sr
from spinemorph.screen import find_films, screen, write_cohort


@pytest.fixture(scope="module")
def folder(studies, tmp_path_factory):
    """The tests' studies (6 DX, a PNG, two NIfTI, labels/) plus a frontal DX and a CT slice, not to be screened."""
    root = tmp_path_factory.mktemp("screen") / "films"
    shutil.copytree(studies, root, ignore=shutil.ignore_patterns(".spinemorph", "datastore_v2.json", ".lock"))
    ds = pydicom.dcmread(sorted(root.glob("*.dcm"))[0])
    frontal = copy.deepcopy(ds)
    frontal.ViewPosition = "AP"
    frontal.save_as(root / "frontal.dcm")
    ct = copy.deepcopy(ds)
    ct.Modality = "CT"
    ct.save_as(root / "ct.dcm")
    return root


def test_find_films_takes_lateral_radiographs_only(folder):
    films, skipped = find_films(folder)
    assert len(films) == 9 and not [f for f in films if "labels" in f.path.parts]
    assert "not lateral" in skipped["frontal.dcm"] and "not a radiograph" in skipped["ct.dcm"]
    dicom = [f for f in films if f.path.suffix == ".dcm"]
    assert all(f.patient_id and f.study_uid for f in dicom)


def test_screen_writes_the_cohort_verdicts_and_reports_and_resumes(folder, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["screen", str(folder), "--out", str(out), "--model", str(tiny_model), "--device", "cpu",
                "--dicom"]) == 0
    said = capsys.readouterr().out
    assert "Screened 9 films" in said and "films a minute" in said
    records = [json.loads(p.read_text()) for p in sorted((out / "films").glob("*/result.json"))]
    assert len(records) == 9
    rows = list(csv.DictReader(open(out / "cohort.csv")))
    assert len(rows) == sum(len(r["morphometry"]["vertebrae"]) for r in records) > 0
    unsure = {r["film"]: str("level_uncertain" in r["morphometry"]["flags"]) for r in records}
    assert all(row["level_uncertain"] == unsure[row["film"]] for row in rows)  # the film's naming, on every row
    verdicts = {v["patient_id"]: v for v in csv.DictReader(open(out / "verdicts.csv"))}
    assert set(verdicts) == {r["patient_id"] for r in records}
    for patient, verdict in verdicts.items():
        graded = [row for row in rows if row["patient_id"] == patient and row["genant_grade"] not in ("", "0")]
        if graded:
            assert verdict["fracture"] == "True" and graded[0]["level"] in verdict["vertebrae_graded_1_or_more"]
        counted = sum(row["genant_grade"] != "" for row in rows if row["patient_id"] == patient)
        assert int(verdict["vertebrae_graded"]) == counted
        assert verdict["verdict"].startswith("fracture" if verdict["fracture"] == "True" else
                                             "no vertebra graded 1 or more" if counted else "not gradable")
        page = Image.open(next((out / "reports").glob(f"{patient.replace(' ', '_')}*.png")))
        assert page.width == 1400 and page.height > 700
    dicom = [r for r in records if r["source"].endswith(".dcm")]
    assert dicom and all(r.get("dicom", {}).get("sr") for r in dicom)
    sr = read_morphometry_sr(out / "films" / dicom[0]["film"] / "result.sr.dcm")
    assert [v["level"] for v in sr["vertebrae"]] == [v["level"] for v in dicom[0]["morphometry"]["vertebrae"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["films_screened"] == 9 and summary["films_per_minute"] > 0 and len(summary["skipped"]) == 2

    # An interrupted run: one film never finished. The next run screens that one alone.
    stamps = {r["film"]: (out / "films" / r["film"] / "result.json").stat().st_mtime_ns for r in records}
    (out / "films" / records[0]["film"] / "result.json").unlink()
    again = screen(folder, out, tiny_model, "cpu", progress=False)
    assert again.films == [records[0]["film"]] and len(again.resumed) == 8
    for film, stamp in stamps.items():
        if film != records[0]["film"]:
            assert (out / "films" / film / "result.json").stat().st_mtime_ns == stamp  # never run again
    assert len(list(csv.DictReader(open(out / "cohort.csv")))) == len(rows)


def test_a_patient_with_every_grade_withheld_is_not_gradable_not_normal(tmp_path):
    # Real files as screen writes them: one patient whose every vertebra was refused, one graded normal.
    for film, patient, grade, flags in (("a", "P1", None, ["low_confidence", "not_solid"]), ("b", "P2", 0, [])):
        folder = tmp_path / "films" / film
        folder.mkdir(parents=True)
        Image.new("RGB", (40, 80), "gray").save(folder / "overlay.png")
        vertebrae = [{"level": level, "genant_grade": grade, "deformity": None, "flags": flags, "Ha_mm": 25.0}
                     for level in ("L1", "L2", "L3")]
        (folder / "result.json").write_text(json.dumps({
            "patient_id": patient, "study_uid": "1.2", "film": film, "source": f"{film}.png",
            "morphometry": {"units": "mm", "facing": "left", "flags": [], "vertebrae": vertebrae}}))
    verdicts = {v["patient_id"]: v for v in write_cohort(tmp_path)}
    assert verdicts["P1"]["fracture"] is False and verdicts["P1"]["vertebrae_graded"] == 0
    assert verdicts["P1"]["verdict"].startswith("not gradable") and verdicts["P1"]["grades_withheld"] == 3
    assert verdicts["P2"]["verdict"] == "no vertebra graded 1 or more (3 graded)"
    on_disk = {v["patient_id"]: v["verdict"] for v in csv.DictReader(open(tmp_path / "verdicts.csv"))}
    assert on_disk == {p: v["verdict"] for p, v in verdicts.items()}
    with Image.open(tmp_path / "reports" / "P1.png") as page:
        assert (200, 120, 0) in {page.getpixel((x, y)) for x in range(20, 400) for y in range(50, 70)}  # amber


def test_screen_measures_each_film_as_the_served_default_does(tmp_path):
    """The shipped bundle: both stages, the mean of the landmarks' and the outline's heights, as the infer task's
    default (before 2026-12-04 the screen left the landmark network out and measured the outline alone)."""
    from spinemorph.data.simulate import SimConfig, simulate
    from spinemorph.inference.analyse import analyse, load_networks
    from spinemorph.io import read_radiograph, write_dx
    from tests.inference.test_shipped_bundle import BUNDLE

    sim = simulate(4_343, 1, SimConfig(size=1024, fov="lumbar", facing="left"))
    (tmp_path / "films").mkdir()
    write_dx(tmp_path / "films" / "dx.dcm", sim.image, sim.spacing_mm, "left")
    done = screen(tmp_path / "films", tmp_path / "out", BUNDLE, "cpu", detector=False, progress=False)
    (record,) = [json.loads((tmp_path / "out" / "films" / f / "result.json").read_text()) for f in done.films]
    n = load_networks(BUNDLE, detector=False)
    want = analyse(read_radiograph(tmp_path / "films" / "dx.dcm"), n.net, n.spec, "cpu", n.facing, refiner=n.refiner,
                   landmarks=n.landmarks).morphometry.by_level()
    got = {v["level"]: v for v in record["morphometry"]["vertebrae"]}
    assert got.keys() == want.keys()
    assert any(v["heights_from"] == "mean" for v in got.values())
    for level, rec in want.items():
        assert got[level]["heights_from"] == rec.heights_from and got[level]["Ha_mm"] == pytest.approx(rec.Ha_mm)
