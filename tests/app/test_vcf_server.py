"""The ``vcf_detection`` infer task in a real MONAI Label server, driven through monailabel's own client."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from spinemorph.io import image_id, read_labelmap, read_radiograph
from spinemorph.training import find_cases
from tests.app.server import assert_training_mechanics, finished_training, running_server, watching
from tests.detection.tiny import FIXTURE


@pytest.fixture(scope="module")
def vcf_server(tiny_detector, tmp_path_factory):
    studies, model = tiny_detector
    published = tmp_path_factory.mktemp("vcf_published")
    conf = {"models": "vcf_detection", "vcf_detection_weights": model, "model_dir": published}
    with running_server(studies, conf, published / "server.log") as url:
        yield url, studies, published


def truth_of(studies, case_id: str) -> list[dict]:
    case = next(c for c in find_cases(studies) if c.id == case_id)
    return [v for v in json.loads(case.truth.read_text())["vertebrae"] if v["genant_grade"] >= 1]


def test_info_lists_the_detector_and_its_trainer(vcf_server):
    info = MONAILabelClient(vcf_server[0]).info()
    model = info["models"]["vcf_detection"]
    assert model["type"] == "detection" and model["dimension"] == 2
    assert model["labels"]["T4"] == 11 and model["labels"]["L5"] == 24 and len(model["labels"]) == 14
    assert "vcf_detection" in info["trainers"]


def test_infer_returns_the_fracture_labelmap_in_the_image_geometry_and_the_detections(vcf_server):
    url, studies, _ = vcf_server
    client = MONAILabelClient(url)
    for case in find_cases(studies):
        label_file, result = client.infer("vcf_detection", case.id, {})
        labels, geometry = read_labelmap(label_file)
        image = read_radiograph(case.image)
        assert labels.shape == image.shape
        np.testing.assert_allclose(geometry.affine, image.affine, atol=1e-6)
        truth = truth_of(studies, case.id)
        assert result["verdict"]["fracture"] == bool(truth)
        if not truth:
            assert result["detections"] == [] and not labels.any()
            continue
        (detection,) = result["detections"]
        assert detection["level"] == truth[0]["level"] and detection["score"] >= 0.5
        assert len(detection["box"]) == 4
        assert isinstance(detection["genant_grade"], int) or "low_confidence" in detection["flags"]
        assert set(np.unique(labels)) == {0, truth[0]["code"]}
        assert result["label_names"] == {truth[0]["level"]: truth[0]["code"]}
        assert {"load_s", "preprocess_s", "network_s", "morphometry_s", "write_s"} <= set(result["timings"])


def test_infer_refuses_a_threshold_outside_zero_to_one(vcf_server):
    url, studies, _ = vcf_server
    some = image_id(find_cases(studies)[0].image)
    reply = requests.post(f"{url}/infer/vcf_detection", params={"image": some, "output": "json"},
                          data={"params": json.dumps({"threshold": 2})}, timeout=60)
    assert reply.status_code == 422 and "between 0 and 1" in reply.text


def test_training_publishes_a_detector_that_the_next_infer_uses(vcf_server):
    """The mechanics of the train task; the loss falling is tests/detection's (one logged row here)."""
    url, studies, models = vcf_server
    client = MONAILabelClient(url)
    some = find_cases(studies)[0].id
    before = client.infer("vcf_detection", some, {})[1]
    assert before["weights_sha256"] == hashlib.sha256(FIXTURE.read_bytes()).hexdigest()[:12]
    published = models / "vcf_detection" / "model.pt"
    with watching(published) as seen:
        client.train_start("vcf_detection", {"max_epochs": 1, "batch_size": 2, "val_split": 0.0})
        finished_training(client)
    stats = client.info()["train_stats"]["vcf_detection"]
    assert_training_mechanics(published, published.with_name("run") / "log.csv", stats, seen, loss="train_",
                              falls=False)
    assert stats["started_from"] == before["weights"]
    after = client.infer("vcf_detection", some, {})[1]
    assert after["weights"] == stats["published"] != before["weights"]
    assert after["weights_sha256"] == stats["sha256"] != before["weights_sha256"]
    assert after["model_version"] == stats["version"]
