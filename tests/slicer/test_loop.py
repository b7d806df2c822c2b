"""The annotate-measure-train loop, with the module's Logic on real MRML nodes, against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spinemorph.levels import TRAINED_LEVELS, level_code
from tests.app.server import running_server
from tests.slicer.conftest import run_in_slicer_python

LOOP = Path(__file__).with_name("loop_in_slicer_python.py")


@pytest.fixture(scope="module")
def loop(studies, tiny_model, tmp_path_factory):
    """Run loop_in_slicer_python.py against a fresh server; return its summary and output folder."""
    models = tmp_path_factory.mktemp("slicer-published")
    out = tmp_path_factory.mktemp("slicer-loop")
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models,
            "epistemic_passes": 2}
    with running_server(studies, conf, models / "server.log") as url:
        done = run_in_slicer_python(LOOP, url, studies, out)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads((out / "loop.json").read_text()), out


def test_connect_lists_models_and_strategies(loop):
    info = loop[0]["connect"]
    assert "spinemorph_levels" in info["models"] and {"first", "random", "epistemic"} <= set(info["strategies"])


def test_1_next_sample_gives_a_volume_and_every_format_loads(loop):
    step = loop[0]["1_next_sample"]
    assert step["image"].startswith("sim-lumbar-")
    names = set(step["formats"])
    assert {"xray-sixteen-bit.png", "xray-nifti.nii.gz", f"{step['image']}.dcm"} == names
    assert step["formats"]["xray-sixteen-bit.png"]["spacing"] == ""  # a PNG has no spacing: heights in px
    assert all(v["segments"] >= 1 for k, v in step["formats"].items() if "segments" in v)


def test_2_infer_gives_segments_named_by_level(loop):
    step = loop[0]["2_infer"]
    assert step["answered_by"] == f"spinemorph_levels fixture-1 (weights {step['sha']})"
    names = step["segments"]
    assert names and all(level_code(n) in TRAINED_LEVELS for n in names)  # T1-L5, named as the server named them


def test_3_measure_gives_a_row_per_vertebra_and_three_lines_each(loop):
    step = loop[0]["3_measure"]
    assert [row[0] for row in step["rows"]] == loop[0]["2_infer"]["segments"]
    assert step["lines"] == 3 * sum(1 for row in step["rows"] if row[1])


def test_3b_one_click_shifts_the_levels_and_flips_the_facing(loop):
    step = loop[0]["3b_correct"]
    assert step["shifted"] != step["before"] and len(step["shifted"]) == len(step["before"])
    assert {step["facing"], step["flipped"]} == {"left", "right"} and step["swapped"] >= 1


def test_4_an_edited_segment_is_measured_again(loop):
    step = loop[0]["4_edit"]
    assert step["erased_px"] > 0 and step["row_after"] != step["row_before"]


def test_5_dragging_a_point_updates_that_vertebra(loop):
    step = loop[0]["5_drag"]
    assert step["after"]["Ha_mm"] == pytest.approx(0.7 * step["before"]["Ha_mm"], rel=1e-4)
    assert step["after"]["vcr_percent"] > step["before"]["vcr_percent"] + 10
    assert step["after"]["genant_grade"] >= max(1, step["before"]["genant_grade"])
    assert step["row"][8] == str(step["after"]["genant_grade"])


def test_6_submitted_label_is_on_the_server_and_the_next_sample_follows(loop):
    step = loop[0]["6_submit"]
    assert step["levels"] and step["next"] != step["image"]


def test_7_training_polls_without_blocking_and_the_next_infer_uses_it(loop):
    step = loop[0]["7_train"]
    assert step["status"] == "DONE" and step["slowest_poll_s"] < 0.1
    assert step["fractions"][-1] == 1.0 and "epoch 1/1" in step["message"]
    assert step["weights"].endswith("spinemorph_levels/model.pt") and step["version"].startswith("fixture-1+trained.")
    assert step["sha"] != loop[0]["2_infer"]["sha"]
    assert loop[0]["stop"]["status"] == "STOPPED"


def test_exports_and_a_labelmap_from_disk(loop):
    summary, out = loop
    assert summary["exports"]["csv"][0].startswith("Level,Ha (mm),Hm (mm),Hp (mm)")
    assert "SpineMorph vertebral morphometry report" in summary["exports"]["report"]
    for name in ("overlay.png", "disk.png", "dragged.png", "spinemorph.csv", "report.txt"):
        assert (out / name).stat().st_size > 100
    assert summary["from_disk"]["rows"] >= 4 and summary["from_disk"]["facing"] in ("left", "right")


def test_a_spinemorph_sr_opens_with_its_table_and_six_points(studies, tmp_path):
    """A film and its DICOM SR (as a PACS holds them) open in the module ready to review: one row per vertebra,
    three height lines per vertebra with points, the SR's heights, grades and points."""
    pytest.importorskip("highdicom")
    from spinemorph.io import read_labelmap, read_radiograph
    from spinemorph.io.dicom_results import read_morphometry_sr, write_sr
    from spinemorph.measure import measure

    label = next(p for p in sorted((studies / "labels" / "final").glob("*.nii.gz"))
                 if (studies / p.name.replace(".nii.gz", ".dcm")).exists())
    film = studies / label.name.replace(".nii.gz", ".dcm")
    image = read_radiograph(film)
    write_sr(tmp_path / "report.sr.dcm", measure(read_labelmap(label)[0], image.spacing_mm, image.facing), film)
    sr = read_morphometry_sr(tmp_path / "report.sr.dcm")
    done = run_in_slicer_python(LOOP, "--report", film, tmp_path / "report.sr.dcm", tmp_path / "shown.json")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    shown = json.loads((tmp_path / "shown.json").read_text())
    assert shown["units"] == "mm" and [row[0] for row in shown["rows"]] == [v["level"] for v in sr["vertebrae"]]
    assert shown["lines"] == 3 * sum(1 for v in sr["vertebrae"] if v["points"])
    for got, want in zip(shown["vertebrae"], sr["vertebrae"], strict=True):
        assert got["Ha"] == pytest.approx(want["Ha_mm"], abs=0.05) if want["Ha_mm"] is not None else got["Ha"] is None
        assert got["grade"] == want["genant_grade"] and got["points"] == want["points"]
