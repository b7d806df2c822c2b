"""The annotation loop in the module: time per image sent with the label, progress after Connect and Submit, and
the results table with each vertebra's confidence, the least sure first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spinemorph.measure import Morphometry, VertebraRecord
from SpineMorphLib.client import progress_sentence
from SpineMorphLib.records import TABLE_FIELDS, review_order, table_headers, table_rows
from tests.app.server import serving
from tests.slicer.conftest import run_in_slicer_python

SCRIPT = Path(__file__).with_name("annotation_in_slicer_python.py")
CONFIDENCE = TABLE_FIELDS.index("confidence")


@pytest.fixture(scope="module")
def annotated(studies, tiny_model, tmp_path_factory):
    """Run annotation_in_slicer_python.py against a fresh server (no background scoring); return its summary."""
    models = tmp_path_factory.mktemp("annotation-published")
    out = tmp_path_factory.mktemp("annotation") / "annotation.json"
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models}
    with serving(studies, conf, models / "server.log", env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}) as server:
        done = run_in_slicer_python(SCRIPT, server.url, out)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(out.read_text())


def test_connect_reports_the_progress(annotated):
    assert annotated["connected"]["progress"] == {"labelled": 3, "total": 8, "left": 5, "last_training": None}


def test_submit_sends_the_seconds_since_next_sample_and_info_reports_them(annotated):
    seconds = annotated["submit"]["annotation_seconds"]
    assert 1.5 <= seconds < 60
    assert annotated["label_info"]["annotation_seconds"] == round(seconds, 1)
    assert annotated["annotation"]["per_label"] == {annotated["image"]: round(seconds, 1)}
    assert annotated["submit"]["progress"] == annotated["progress"] == {"labelled": 4, "total": 8, "left": 4,
                                                                        "last_training": None}


def test_the_panel_shows_confidence_and_the_least_sure_vertebra_first(annotated):
    panel, records = annotated["panel"], annotated["records"]
    assert panel["headers"][CONFIDENCE] == "Confidence"
    shown = [float(row[CONFIDENCE]) for row in panel["rows"]]
    assert len(shown) == len(records) >= 2 and shown == sorted(shown)
    by_level = {r["level"]: r["confidence"] for r in records}
    assert all(float(row[CONFIDENCE]) == pytest.approx(by_level[row[0]], abs=0.005) for row in panel["rows"])
    assert [row[0] for row in annotated["table_node"]] == [r["level"] for r in records]  # the node: spine order


def _record(level: str, confidence: float | None) -> VertebraRecord:
    return VertebraRecord(level, None, Ha_mm=20.0, confidence=confidence)


def test_review_order_puts_the_least_sure_first_and_the_unknown_last():
    result = Morphometry([_record("L1", 0.9), _record("L2", None), _record("L3", 0.6), _record("L4", 0.9)],
                         "left", "argument", (0.2, 0.2))
    assert review_order(result) == [2, 0, 3, 1]
    rows = table_rows(result)
    assert table_headers("mm")[CONFIDENCE] == "Confidence" and [r[CONFIDENCE] for r in rows] == ["0.90", "", "0.60",
                                                                                                 "0.90"]


def test_the_progress_sentence():
    assert progress_sentence(None) == ""
    assert progress_sentence({"labelled": 3, "total": 8, "left": 5, "last_training": None}) == \
        "3 of 8 images labelled, 5 left; no training yet."
    last = {"model": "spinemorph_levels", "metric": "best_val_level_dice", "score": 0.8125, "finished": "x"}
    assert progress_sentence({"labelled": 4, "total": 8, "left": 4, "last_training": last}) == \
        "4 of 8 images labelled, 4 left; last training (spinemorph_levels): best validation Dice 0.81."
