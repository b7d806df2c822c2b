"""SpineMorphLib's Slicer-free helpers: grids, records, lines, the client's parsing, reports and dependencies."""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import pytest
from PIL import Image

from spinemorph.io import display_affine, sagittal_affine
from spinemorph.measure import measure
from spinemorph.overlay import NOTE_COLOR
from SpineMorphLib.client import ServerError, SpineMorphClient, parse_multipart
from SpineMorphLib.dependencies import missing_requirements, repository_lib
from SpineMorphLib.grid import PlaneGrid
from SpineMorphLib.levels import shifted_codes
from SpineMorphLib.markups import height_lines, move_line, records_with_points
from SpineMorphLib.records import (
    flag_words,
    labels_from_export,
    regrade,
    row_colors,
    set_station,
    table_headers,
    table_rows,
)
from SpineMorphLib.report import answered_by, patient_report, render_overlay, result_summary, write_table_csv
from SpineMorphLib.sample import box_spine
from SpineMorphLib.training import TrainingMonitor, train_progress
from tests.measure.test_gates import merged_spine
from tests.slicer.conftest import REPO


@pytest.fixture
def boxes():
    return measure(box_spine(), (0.5, 0.5), "left")


def test_a_grid_from_an_image_affine_maps_pixels_both_ways():
    grid = PlaneGrid.from_affine(display_affine((0.2, 0.3)), (5, 4))
    image = np.arange(20).reshape(5, 4)
    assert grid.shape == (5, 4) and grid.spacing == pytest.approx((0.2, 0.3))
    assert grid.to_kji(image).shape == (1, 5, 4)
    np.testing.assert_array_equal(grid.to_rc(grid.to_kji(image)), image)
    np.testing.assert_allclose(grid.affine, display_affine((0.2, 0.3)))
    np.testing.assert_allclose(grid.rc_to_ras([[2, 1]]), [[-0.3, -0.4, 0.0]])
    np.testing.assert_allclose(grid.ras_to_rc(grid.rc_to_ras([[2.5, 1.25], [0, 3]])), [[2.5, 1.25], [0, 3]])


@pytest.mark.parametrize("affine", [sagittal_affine((0.2, 0.3), "left"), display_affine((0.2, 0.3))])
def test_a_nifti_loaded_as_is_has_its_rows_along_i(affine):
    """Slicer loads an H×W×1 NIfTI with I along the file's first axis (rows): the grid transposes it back."""
    data = np.arange(20).reshape(5, 4)
    grid = PlaneGrid.from_matrix(affine, data.T[None].shape)
    assert (grid.row_axis, grid.col_axis, grid.shape) == (0, 1, (5, 4))
    np.testing.assert_array_equal(grid.to_rc(data.T[None]), data)
    np.testing.assert_allclose(grid.affine, affine)


def test_a_3d_volume_is_refused():
    with pytest.raises(ValueError, match="3D"):
        PlaneGrid.from_matrix(np.eye(4), (3, 4, 5))
    with pytest.raises(ValueError, match="does not match"):
        PlaneGrid.from_affine(np.eye(4), (5, 4)).to_rc(np.zeros((1, 4, 5)))


def test_regrading_unchanged_records_reproduces_measure(boxes):
    again = copy.deepcopy(boxes)
    regrade(again)
    assert again.to_dict() == boxes.to_dict()


def _same(result) -> list[dict]:
    return [{**v, "flags": sorted(v["flags"])} for v in result.to_dict()["vertebrae"]]


def _place(result, level: str, station: str):
    """Place one station of ``level`` where it is, as an annotator dropping its line in place; re-grade; return it."""
    rec = result.by_level()[level]
    set_station(rec, station, rec.points[f"superior_{station}"], rec.points[f"inferior_{station}"], result.spacing_mm)
    regrade(result)
    return rec


def test_regrading_keeps_a_body_refused_on_its_own_out_of_its_neighbours_vcr_until_it_is_placed():
    """``measure`` measures L3 against its other neighbour alone, and L5 against none, when L4 fails gates on its
    own (here its stages disagree and the network doubts it); a re-grade in Slicer, after any point moved, must do
    the same, not take L4 back as their reference, and take it back once the annotator has placed L4's points."""
    labels = box_spine()
    measured = measure(labels, (0.5, 0.5), "left", agreement={23: 0.3}, confidence={c: 0.5 if c == 23 else 0.99
                                                                                    for c in range(20, 25)})
    by = measured.by_level()
    assert {"stages_disagree", "low_model_confidence"} <= set(by["L4"].flags)
    assert "one_neighbour" in by["L3"].flags and by["L5"].vcr_percent is None
    again = copy.deepcopy(measured)
    regrade(again)
    assert _same(again) == _same(measured)
    _place(again, "L4", "anterior")
    by = again.by_level()
    assert "one_neighbour" not in by["L3"].flags and by["L5"].vcr_percent == pytest.approx(0.0, abs=1e-6)
    in_proportion = measure(labels, (0.5, 0.5), "left", agreement={23: 0.3})  # stages_disagree alone: a reference
    again = copy.deepcopy(in_proportion)
    regrade(again)
    assert _same(again) == _same(in_proportion) and "one_neighbour" not in again.by_level()["L3"].flags
    merged = merged_spine()  # L2 and L3 as one segment: nobody's reference
    measured = measure(merged, (0.4, 0.4), "left")
    assert "implausible_size" in measured.by_level()["L2"].flags and "one_neighbour" in measured.by_level()["L1"].flags
    again = copy.deepcopy(measured)
    regrade(again)
    assert _same(again) == _same(measured)


def test_a_segment_whose_heights_were_withheld_regrades_as_measured_and_placing_a_point_brings_them_back():
    """L2 and L3 drawn as one segment by a network: no body, so no heights (``heights_withheld``). A re-grade keeps it
    so; moving one of its points makes the six points the annotator's, and all three heights come back."""
    merged = merged_spine()
    measured = measure(merged, (0.4, 0.4), "left", stages={19: 2, 20: 2, 21: 2, 23: 2})
    assert "heights_withheld" in measured.by_level()["L2"].flags
    again = copy.deepcopy(measured)
    regrade(again)
    assert _same(again) == _same(measured)
    l2 = _place(again, "L2", "middle")
    assert l2.flags[0] == "placed_by_annotator" and not {"low_confidence", "heights_withheld"} & set(l2.flags)
    assert l2.Hm_mm == pytest.approx(32.0, abs=0.5)
    assert l2.Ha_mm == pytest.approx(32.0, abs=0.5) and l2.Hp_mm == pytest.approx(32.0, abs=0.5)
    assert l2.genant_grade is not None  # the annotator's measurement, graded


def test_moving_one_station_regrades_it_and_its_neighbours(boxes):
    l2 = boxes.by_level()["L2"]
    top, bottom = np.array(l2.points["superior_anterior"]), np.array(l2.points["inferior_anterior"])
    set_station(l2, "anterior", top + 0.3 * (bottom - top), bottom, boxes.spacing_mm)
    regrade(boxes)
    by = boxes.by_level()
    assert l2.Ha_mm == pytest.approx(0.7 * 18.5, abs=1e-3) and (l2.genant_grade, l2.deformity) == (2, "wedge")
    assert l2.vcr_percent == pytest.approx((1 - l2.Ha_mm / ((by["L1"].Ha_mm + by["L3"].Ha_mm) / 2)) * 100)
    assert by["L1"].vcr_percent == pytest.approx((1 - by["L1"].Ha_mm / l2.Ha_mm) * 100)
    assert by["L1"].flags.count("one_neighbour") == 1
    with pytest.raises(ValueError, match="station"):
        set_station(l2, "lateral", top, bottom, None)


def test_lines_in_ras_move_records_as_set_station_does(boxes):
    grid = PlaneGrid.from_affine(display_affine((0.5, 0.5)), (260, 160))
    lines = height_lines(boxes, grid)
    assert len(lines) == 15 and lines[0].name == "L1 Ha"
    line = lines[3]  # L2 Ha
    moved = line.superior + 0.3 * (line.inferior - line.superior)
    record = move_line(boxes, grid, line.level, line.station, moved, line.inferior)
    assert record.level == "L2" and record.genant_grade == 2
    shown = records_with_points(boxes, [dataclasses.replace(line, superior=moved)], grid)
    np.testing.assert_allclose(shown[1]["points"]["superior_anterior"], record.points["superior_anterior"], atol=1e-3)
    with pytest.raises(KeyError):
        move_line(boxes, grid, "T1", "anterior", moved, line.inferior)


def test_segments_become_verse_codes():
    exported = np.array([[0, 1, 2], [2, 1, 0]])
    np.testing.assert_array_equal(labels_from_export(exported, [20, 21]), [[0, 20, 21], [21, 20, 0]])
    np.testing.assert_array_equal(labels_from_export(exported, [None, None]), [[0, 1, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match="name every segment"):
        labels_from_export(exported, [20, None])
    with pytest.raises(ValueError, match="only 1 segments"):
        labels_from_export(exported, [20])


def test_table_rows_and_colours(boxes):
    assert table_headers("mm")[:4] == ["Level", "Ha (mm)", "Hm (mm)", "Hp (mm)"]
    rows = table_rows(boxes)
    assert [r[0] for r in rows] == ["L1", "L2", "L3", "L4", "L5"]
    assert rows[2][1:4] == ["12.50", "15.00", "17.50"] and rows[2][7:10] == ["32.4", "2", "wedge"]
    assert row_colors(boxes)[2] == (255, 150, 40) and row_colors(boxes)[0] == (60, 220, 90)


def test_train_progress_reads_the_last_epoch_line():
    assert train_progress(None).finished and train_progress(None).status == "NONE"
    epoch = 'SPINEMORPH_TRAIN {"epoch": 2, "epochs": 5, "train_loss": 0.5, "val_level_dice": 0.75}'
    running = train_progress({"status": "RUNNING", "details": ["noise", epoch, "more noise"]})
    assert (running.epoch, running.epochs, running.fraction, running.finished) == (2, 5, 0.4, False)
    assert running.message == "epoch 2/5, train loss 0.500, val level dice 0.750"
    done = 'SPINEMORPH_TRAIN {"done": true, "epochs": 5, "best_val_level_dice": 0.8, "last": {"train_loss": 0.4}}'
    finished = train_progress({"status": "DONE", "details": [epoch, done]})
    assert finished.fraction == 1.0 and finished.finished and "best val level dice 0.800" in finished.message
    assert train_progress({"status": "SUBMITTED", "details": []}).finished is False


class SlowServer:
    """Answers the training calls like the server, each status taking 0.2 s."""

    def __init__(self):
        self.calls = 0

    def train_start(self, model, params):
        return {"model": model, **params}

    def train_status(self):
        time.sleep(0.2)
        self.calls += 1
        line = f'SPINEMORPH_TRAIN {{"epoch": {min(self.calls, 2)}, "epochs": 2}}'
        return {"status": "DONE" if self.calls >= 3 else "RUNNING", "details": [line]}

    def train_stop(self):
        return {"stopped": True}


def test_the_training_monitor_never_blocks():
    monitor = TrainingMonitor()
    with pytest.raises(RuntimeError, match="No training"):
        monitor.stop()
    server = SlowServer()
    assert monitor.start(server, "m", 2, 4) == {"model": "m", "max_epochs": 2, "batch_size": 4}
    seen, slowest, deadline = [], 0.0, time.time() + 10
    while not monitor.progress.finished and time.time() < deadline:
        start = time.perf_counter()
        seen.append(monitor.poll().fraction)
        slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.05)
    assert monitor.progress.status == "DONE" and seen[0] == 0.0 and 0.5 in seen and seen[-1] == 1.0
    assert slowest < 0.05 and server.calls == 3
    assert monitor.stop() == {"stopped": True}


def test_multipart_answers_are_parsed():
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="params"\r\nContent-Type: application/json\r\n\r\n'
            b'{"model": "m"}\r\n--XyZ\r\nContent-Disposition: form-data; name="image"; filename="tmp1.nii.gz"\r\n'
            b'Content-Type: application/gzip\r\n\r\n\x1f\x8b\x00\r\n\x01\r\n--XyZ--\r\n')
    fields, files = parse_multipart("multipart/form-data; boundary=XyZ", body)
    assert fields == {"params": '{"model": "m"}'} and files == {"tmp1.nii.gz": b"\x1f\x8b\x00\r\n\x01"}
    with pytest.raises(ValueError, match="multipart"):
        parse_multipart("application/json", b"{}")


def test_the_client_says_what_is_wrong():
    with pytest.raises(ValueError, match="http"):
        SpineMorphClient("127.0.0.1:8000")
    with pytest.raises(ServerError, match="no server answers") as err:
        SpineMorphClient("http://127.0.0.1:9", timeout=2).info()
    assert err.value.status == 0


def test_exports(boxes, tmp_path):
    report = patient_report(boxes, {"patient_id": "P1", "image_id": "img"})
    assert "Patient: P1" in report and "- L3: Genant grade 2 (wedge), VCR 32 %, Ha 12.5 mm" in report
    lines = write_table_csv(tmp_path / "t.csv", boxes).read_text().splitlines()
    assert lines[0].startswith("Level,Ha (mm)") and len(lines) == 6
    image = np.random.default_rng(0).integers(0, 4000, (260, 160)).astype(np.uint16)
    records = records_with_points(boxes, [], PlaneGrid.from_affine(np.eye(4), (260, 160)))
    with Image.open(render_overlay(tmp_path / "o.png", image, box_spine(), records, height=520)) as pic:
        assert pic.size == (320, 520)
        plain = np.asarray(pic.convert("RGB"))
    note = "The level names are uncertain (not counted up from a sacrum wholly in view): L3 may be L2 or L4."
    with Image.open(render_overlay(tmp_path / "n.png", image, box_spine(), records, height=520, note=note)) as pic:
        noted = np.asarray(pic.convert("RGB"))
    assert (np.abs(noted.astype(int) - NOTE_COLOR).sum(axis=-1) < 30).sum() > 50  # the note, in amber
    assert (noted[130:] == plain[130:]).all()  # written across the top, the rest untouched


def test_the_report_says_which_levels_a_fracture_may_be_when_the_names_are_uncertain(boxes):
    unsure = measure(box_spine(), (0.5, 0.5), "left", level_naming={"anchor": None, "level_uncertain": True})
    assert "- L3: Genant grade 2 (wedge)" in patient_report(unsure)
    assert "The level names are uncertain (not counted up from a sacrum wholly in view): L3 may be L2 or L4." in \
        patient_report(unsure)
    assert "uncertain" not in patient_report(boxes)


def test_dependencies_come_from_the_repository():
    assert repository_lib() == REPO / "lib"
    assert missing_requirements() == []


def test_an_infer_reply_names_the_model_that_answered():
    reply = {"model": "spinemorph_levels", "model_version": "1.1.0", "weights_sha256": "3f2a9c0d81be"}
    assert answered_by(reply) == "spinemorph_levels 1.1.0 (weights 3f2a9c0d81be)"
    stages = {"model": "hierarchical", "model_version": {"posenet": "1.0", "patches": "1.0+trained.x"},
              "weights_sha256": {"posenet": "aa", "patches": "bb"}}
    assert answered_by(stages) == "hierarchical posenet 1.0, patches 1.0+trained.x (weights posenet aa, patches bb)"
    assert answered_by({}) == "" and answered_by({"model": "m"}) == "m unversioned (weights unknown)"


def test_level_names_shift_by_one_and_the_sacrum_stays():
    assert shifted_codes([19, 20, 26], 1) == {19: 20, 20: 21, 26: 26}  # T12, L1 -> L1, L2; S1 stays
    assert shifted_codes([8, 20], -1) == {8: 7, 20: 19}  # T1 -> C7, L1 -> T12
    with pytest.raises(ValueError, match="L5 by \\+1"):
        shifted_codes([23, 24], 1)
    with pytest.raises(ValueError, match="above C1"):
        shifted_codes([1, 2], -1)


def test_a_report_with_nothing_graded_is_no_finding(boxes):
    refused = dataclasses.replace(boxes, vertebrae=[dataclasses.replace(r, genant_grade=None, deformity=None,
                                                                        flags=["low_confidence", "not_solid"])
                                                    for r in boxes.vertebrae])
    report = patient_report(refused)
    assert "No vertebra could be graded, so this is no finding" in report and "No vertebral deformity" not in report
    assert "Vertebrae measured: 0 of 5" in report
    assert "Not graded: L1 (its outline is in pieces or far from solid)" in report  # the flags in words
    cell = table_rows(refused)[0][-1]  # the Flags cell, and its tooltip in Slicer and the browser
    assert cell == "low_confidence;not_solid" and flag_words(cell) == "its outline is in pieces or far from solid"
    assert flag_words("") == ""
    assert "No vertebra graded (see the flags): no finding" in result_summary(refused)
    assert "No vertebra graded" not in result_summary(boxes)
    cut = dataclasses.replace(boxes, level_naming={"anchor": "S1", "level_uncertain": True, "network_shift": 1})
    assert "cut by the film's edge" in result_summary(cut) and "may be off" in result_summary(cut)
    sure = dataclasses.replace(boxes, level_naming={"anchor": "S1", "level_uncertain": False})
    assert result_summary(sure).endswith("Levels counted from S1")
    normal = dataclasses.replace(boxes, vertebrae=[dataclasses.replace(r, genant_grade=0 if i < 3 else None,
                                                                       deformity=None)
                                                   for i, r in enumerate(boxes.vertebrae)])
    assert "No vertebral deformity of Genant grade 1 or more among the 3 graded." in patient_report(normal)
