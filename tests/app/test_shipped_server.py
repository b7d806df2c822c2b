"""The shipped default bundle in a real server: both stages in one infer call, an option that skips stage 2, the
heights option (mean, landmarks, outline), and the fracture detector's opinion beside the measured grade.
Read from the committed weights (sample-apps/)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import requests
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
    assert {v["heights_from"] for v in records if v["stage"] == 2 and v["Ha_mm"] is not None
            and "landmarks_disagree" not in v["flags"]} == {"mean"}  # the default: of landmarks and outline
    assert result["model_version"].startswith("0.5") and "stage2_network_s" in result["timings"]
    assert "landmarks_network_s" in result["timings"]
    calls = result["fracture_calls"]
    assert calls and {c["level"] for c in calls} <= {v["level"] for v in records}
    for call in calls:
        assert set(call) == {"level", "measured", "detector_score", "detector", "combined", "agree"}


def test_the_heights_option_keeps_the_labelmap_and_takes_the_heights_from_where_it_is_told(shipped_server):
    url, path = shipped_server
    client = MONAILabelClient(url)
    answers = {}
    for name, params in (("mean", {}), ("landmarks", {"landmarks": True}), ("outline", {"heights": "outline"})):
        label_file, answers[name] = client.infer("spinemorph_levels", image_id(path), {**params, "detector": False})
        answers[name]["labels"] = read_labelmap(label_file)[0]
    np.testing.assert_array_equal(answers["landmarks"]["labels"], answers["mean"]["labels"])
    np.testing.assert_array_equal(answers["outline"]["labels"], answers["mean"]["labels"])
    assert "landmarks_network_s" not in answers["outline"]["timings"]  # heights=outline: the network is not run
    by = {k: {v["level"]: v for v in a["morphometry"]["vertebrae"]} for k, a in answers.items()}
    mixed = [level for level, v in by["landmarks"].items() if v["heights_from"] == "landmarks"]
    assert mixed and all(by["mean"][level]["heights_from"] == "mean" for level in mixed)
    assert all(by["outline"][level]["heights_from"] == "outline" for level in mixed)
    for level in mixed:  # the mean's heights lie between the outline's and the landmarks'
        for h in ("Ha_mm", "Hm_mm", "Hp_mm"):
            low, high = sorted((by["outline"][level][h], by["landmarks"][level][h]))
            assert low - 0.01 <= by["mean"][level][h] <= high + 0.01, (level, h)
    assert any(by["outline"][level]["Ha_mm"] != by["landmarks"][level]["Ha_mm"] for level in mixed)
    bad = requests.post(f"{url}/infer/spinemorph_levels", params={"image": image_id(path)},
                        files={"params": (None, json.dumps({"heights": "median"}))}, timeout=60)
    assert bad.status_code == 422 and "mean, landmarks or outline" in bad.text


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


def test_a_server_told_to_run_on_openvino_answers_as_the_torch_server_does(shipped_server, tmp_path):
    """``--conf runtime openvino``: the networks converted at start, kept where the server was told; the same image,
    the same labelmap but for a few edge pixels, every height within 0.5 mm, and the reply says where they ran."""
    pytest.importorskip("openvino", reason="runtime=openvino needs spinemorph[openvino] (make setup installs it)")
    url, path = shipped_server
    label_file, want = MONAILabelClient(url).infer("spinemorph_levels", image_id(path), {"detector": False})
    studies = tmp_path / "studies"  # a folder of its own: two servers never share a datastore
    studies.mkdir()
    shutil.copy(path, studies / path.name)
    conf = {"models": "spinemorph_levels", "model_dir": tmp_path / "published", "runtime": "openvino"}
    cache = {"SPINEMORPH_CACHE": str(tmp_path / "cache")}
    with running_server(studies, conf, tmp_path / "server.log", env=cache) as fast:
        deadline = time.time() + 120  # the server converts its three networks at start, before any infer asks
        while len(list((tmp_path / "cache").rglob("*.xml"))) < 3 and time.time() < deadline:
            time.sleep(0.5)
        assert len(list((tmp_path / "cache").rglob("*.xml"))) == 3
        got_file, got = MONAILabelClient(fast).infer("spinemorph_levels", image_id(path), {"detector": False})
    assert want["runtime"] == "torch" and got["runtime"] == "openvino"
    mine, theirs = read_labelmap(got_file)[0], read_labelmap(label_file)[0]
    assert mine.shape == theirs.shape and np.sum(mine != theirs) <= 1e-3 * np.sum(theirs > 0)
    by = {v["level"]: v for v in want["morphometry"]["vertebrae"]}
    for v in got["morphometry"]["vertebrae"]:
        assert v["stage"] == by[v["level"]]["stage"], v["level"]
        for h in ("Ha_mm", "Hm_mm", "Hp_mm"):
            if v[h] is not None:
                assert abs(v[h] - by[v["level"]][h]) < 0.5, (v["level"], h)
