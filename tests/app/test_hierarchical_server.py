"""The hierarchical model (Kim et al. 2019) in a real MONAI Label server, driven through monailabel's client."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from spinemorph.hierarchical.model import STAGES
from spinemorph.io import read_labelmap, read_radiograph
from tests.app.server import REPO, assert_training_mechanics, finished_training, running_server, watching

BUNDLE = Path(os.environ.get("SPINEMORPH_HIERARCHICAL_BUNDLE", REPO / "sample-apps" / "spinemorph_hierarchical"))


@pytest.fixture(scope="module")
def hier_server(studies, tmp_path_factory):
    if not (BUNDLE / "configs" / "inference.json").is_file():
        pytest.fail(f"No hierarchical bundle at {BUNDLE}: it ships in sample-apps/.")
    models = tmp_path_factory.mktemp("published-hierarchical")
    conf = {"models": "hierarchical", "hierarchical_weights": BUNDLE, "model_dir": models}
    with running_server(studies, conf, models / "server.log") as url:
        yield url, models


def _lumbar_image(studies: Path) -> tuple[str, Path]:
    path = sorted(studies.glob("sim-lumbar-*.dcm"))[0]
    return path.name[:-4], path


def test_info_lists_the_infer_and_both_train_tasks(hier_server):
    info = MONAILabelClient(hier_server[0]).info()
    model = info["models"]["hierarchical"]
    assert model["type"] == "segmentation" and model["dimension"] == 2 and model["labels"]["L5"] == 24
    assert {"hierarchical_posenet", "hierarchical_mnet"} <= set(info["trainers"])


def test_the_pipeline_on_a_tiny_simulated_image_returns_centres_boxes_and_morphometry(hier_server, studies):
    image_id, path = _lumbar_image(studies)
    label_file, result = MONAILabelClient(hier_server[0]).infer("hierarchical", image_id, {"view": "lumbar"})
    labels, geometry = read_labelmap(label_file)
    image = read_radiograph(path)
    assert labels.shape == image.shape and np.allclose(geometry.affine, image.affine, atol=1e-6)
    centres = result["centres"]
    assert 2 <= len(centres) <= 5, result["flags"]
    assert [c["level"] for c in centres] == ["L1", "L2", "L3", "L4", "L5"][-len(centres):]
    assert len(result["boxes"]) == len(centres) and all(b["side_px"] > 0 for b in result["boxes"])
    for c in centres:
        assert {"center_px", "center_mm", "center_ras", "score", "code"} <= set(c)
    assert set(np.unique(labels)) - {0} <= {c["code"] for c in centres}
    assert result["morphometry"]["vertebrae"] and {"posenet_s", "patches_s", "level_set_s"} <= set(result["timings"])


def test_centre_points_for_display(hier_server, studies):
    image_id, _ = _lumbar_image(studies)
    label_file, result = MONAILabelClient(hier_server[0]).infer("hierarchical", image_id,
                                                                 {"output": "centres", "level_set": False})
    labels, _ = read_labelmap(label_file)
    assert result["output"] == "centres" and "level_set_s" not in result["timings"]
    for c in result["centres"]:
        r, col = (int(round(v)) for v in c["center_px"])
        assert labels[r, col] == c["code"]


def test_a_bad_option_gets_a_422(hier_server, studies):
    image_id, _ = _lumbar_image(studies)
    response = requests.post(f"{hier_server[0]}/infer/hierarchical", params={"image": image_id},
                             data={"params": json.dumps({"view": "coronal"})}, timeout=60)
    assert response.status_code == 422 and "view" in response.json()["detail"]


def test_infer_names_each_stages_weights(hier_server, studies):
    _, result = MONAILabelClient(hier_server[0]).infer("hierarchical", _lumbar_image(studies)[0], {"level_set": False})
    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    for stage, file in STAGES.items():
        assert result["weights"][stage] == str(BUNDLE) and result["model_version"][stage] == version
        digest = hashlib.sha256((BUNDLE / "models" / file).read_bytes()).hexdigest()[:12]
        assert result["weights_sha256"][stage] == digest


@pytest.mark.parametrize("task,stage", [("hierarchical_mnet", "patches"), ("hierarchical_posenet", "posenet")])
def test_each_stage_trains_from_the_final_labels_and_the_next_infer_uses_it(hier_server, studies, task, stage):
    """The mechanics of each stage's train task, never the quality of what two steps learned."""
    c = MONAILabelClient(hier_server[0])
    image_id = _lumbar_image(studies)[0]
    before = c.infer("hierarchical", image_id, {"level_set": False})[1]
    published = hier_server[1] / "hierarchical" / f"{stage}.pt"
    with watching(published) as seen:
        c.train_start(task, {"max_steps": 2, "eval_every": 2, "batch_size": 2})
        finished_training(c)
    stats = c.info()["train_stats"][task]
    assert_training_mechanics(published, published.with_name(f"{stage}-run") / "log.csv", stats, seen, falls=False)
    _, result = c.infer("hierarchical", image_id, {"level_set": False})
    assert result["weights"][stage] == str(published)
    assert result["weights_sha256"][stage] == stats["sha256"] != before["weights_sha256"][stage]
    assert result["model_version"][stage] == stats["version"]
    other = next(s for s in STAGES if s != stage)
    assert result["weights_sha256"][other] == before["weights_sha256"][other]  # the other stage is untouched
