"""The shipped default bundle in a real server: both stages in one infer call, an option that skips stage 2, one
that takes the heights from the landmark network, and the fracture detector's opinion beside the measured grade.
Read from the committed weights (sample-apps/)."""

from __future__ import annotations

import numpy as np
import pytest
from monailabel.client import MONAILabelClient

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.inference import load_model, segment
from spinemorph.inference.analyse import analyse
from spinemorph.io import image_id, read_labelmap, read_radiograph
from tests.app.server import running_server
from tests.inference.test_shipped_bundle import BUNDLE


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    studies = tmp_path_factory.mktemp("shipped_studies")
    (path,) = simulate_studies(1, 4_343, studies, SimConfig(size=1024, fov="lumbar"), fmt="dicom", progress=False)
    published = tmp_path_factory.mktemp("shipped_published")
    conf = {"models": "spinemorph_levels", "model_dir": published}
    with running_server(studies, conf, published / "server.log") as url:
        yield url, path


def test_one_call_runs_both_stages_and_reports_both_opinions(shipped_server):
    url, path = shipped_server
    label_file, result = MONAILabelClient(url).infer("spinemorph_levels", image_id(path), {})
    labels, geometry = read_labelmap(label_file)
    image = read_radiograph(path)
    assert labels.shape == image.shape
    np.testing.assert_allclose(geometry.affine, image.affine, atol=1e-6)
    records = [v for v in result["morphometry"]["vertebrae"] if v["level"] != "S1"]
    assert any(v["stage"] == 2 for v in records) and all(v["stage"] in (1, 2) for v in records)
    assert {v["heights_from"] for v in records if v["Ha_mm"] is not None} == {"outline"}  # the default
    assert result["model_version"].startswith("0.3") and "stage2_network_s" in result["timings"]
    assert "landmarks_network_s" not in result["timings"]
    calls = result["fracture_calls"]
    assert calls and {c["level"] for c in calls} <= {v["level"] for v in records}
    for call in calls:
        assert set(call) == {"level", "measured", "detector_score", "detector", "combined", "agree"}


def test_the_landmarks_option_keeps_the_labelmap_and_takes_the_heights_from_the_landmarks(shipped_server):
    url, path = shipped_server
    client = MONAILabelClient(url)
    served_file, served = client.infer("spinemorph_levels", image_id(path), {"detector": False})
    label_file, result = client.infer("spinemorph_levels", image_id(path), {"landmarks": True, "detector": False})
    np.testing.assert_array_equal(read_labelmap(label_file)[0], read_labelmap(served_file)[0])
    records = result["morphometry"]["vertebrae"]
    assert {v["heights_from"] for v in records if v["stage"] == 2 and v["Ha_mm"] is not None
            and "landmarks_disagree" not in v["flags"]} == {"landmarks"}
    assert "landmarks_network_s" in result["timings"]
    by_level = {v["level"]: v for v in served["morphometry"]["vertebrae"]}
    moved = [v["level"] for v in records if v["Ha_mm"] is not None and by_level[v["level"]]["Ha_mm"] != v["Ha_mm"]]
    assert moved  # the heights are the landmarks', not the outlines' of the default


def test_the_option_that_skips_stage_2_gives_stage_1s_answer(shipped_server):
    url, path = shipped_server
    label_file, result = MONAILabelClient(url).infer("spinemorph_levels", image_id(path),
                                                     {"stage2": False, "detector": False})
    assert all(v["stage"] == 1 for v in result["morphometry"]["vertebrae"])
    assert not any(v["genant_grade"] for v in result["morphometry"]["vertebrae"])  # stage 1's: no fracture grade
    assert "fracture_calls" not in result and "stage2_network_s" not in result["timings"]
    assert read_labelmap(label_file)[0].shape == read_radiograph(path).shape
    # in one process, where the sums run in one order: the skipped stage 2 leaves stage 1's labelmap exactly
    image = read_radiograph(path)
    net, spec = load_model(BUNDLE)
    np.testing.assert_array_equal(analyse(image, net, spec).labels, segment(image.pixels, net, spec).labels)
