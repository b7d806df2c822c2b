"""Active learning in a real server: every strategy serves unlabelled images only, the morphometry and diversity
strategies rank a blurred copy of a film above the film, and /info reports annotation time and progress.

The server runs without MONAI Label's automatic background scoring (every next sample and save would start one),
so each test scores when it needs to, in the server, and the served-time history is the tests' own.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pydicom
import pytest
import requests
import torch
from monailabel.client import MONAILabelClient
from pydicom.uid import generate_uid
from scipy import ndimage

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.measure import Morphometry, VertebraRecord
from spinemorph.networks import build_network
from tests.app.server import REPO, serving
from tests.app.test_server import score, unlabelled

sys.path.insert(0, str(REPO / "monailabel_app"))  # the app's lib/, for its pure functions
from lib.activelearning.diversity import k_center_greedy  # noqa: E402
from lib.activelearning.features import bottleneck_features  # noqa: E402
from lib.activelearning.scoring import EpistemicScore, InfoUpdates  # noqa: E402
from lib.activelearning.spread import morphometry_spread  # noqa: E402
from lib.datastore import SpineMorphDatastore  # noqa: E402

CLEAN = "sim-lumbar-gyzimsvv"  # seed 21, image 4: a film the tiny model measures alike in every dropout pass
BLURRED = f"{CLEAN}-blurred"
STRATEGIES = ("random", "first", "epistemic", "morphometry", "diverse")


def blurred_copy(source, out, sigma: float = 3.0) -> None:
    """Write ``source`` (a DICOM radiograph) to ``out`` with its pixels blurred by a Gaussian of ``sigma`` px."""
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array
    ds.PixelData = ndimage.gaussian_filter(pixels.astype(float), sigma).round().astype(pixels.dtype).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(out)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Six lumbar films, five labelled; the sixth (CLEAN) and its blurred copy unlabelled. Returns (studies,
    CLEAN's label file, kept outside the studies)."""
    root = tmp_path_factory.mktemp("twins")
    simulate_studies(6, 21, root, SimConfig(size=128, fov="lumbar", fracture_rate=0.5), progress=False)
    label = tmp_path_factory.mktemp("kept") / f"{CLEAN}.nii.gz"
    shutil.move(root / "labels" / "final" / f"{CLEAN}.nii.gz", label)
    blurred_copy(root / f"{CLEAN}.dcm", root / f"{BLURRED}.dcm")
    return root, label


@pytest.fixture(scope="module")
def server(twins, tiny_model, tmp_path_factory):
    models = tmp_path_factory.mktemp("al-published")
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models,
            "epistemic_passes": 2, "morphometry_passes": 4}
    with serving(twins[0], conf, models / "server.log", env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}) as s:
        yield s.url, models


def image_info(url: str, image_id: str) -> dict:
    return MONAILabelClient(url).datastore()["objects"][image_id]["image"]["info"]


def test_the_new_strategies_and_scoring_are_offered(server):
    info = MONAILabelClient(server[0]).info()
    assert set(STRATEGIES) <= set(info["strategies"]) and {"epistemic", "morphometry"} <= set(info["scoring"])


def test_a_blurred_copy_of_a_film_ranks_above_the_film(server):
    url = server[0]
    score(url, "morphometry")
    clean, blurred = image_info(url, CLEAN), image_info(url, BLURRED)
    assert blurred["morphometry_score"] > clean["morphometry_score"], (clean, blurred)
    detail = blurred["morphometry_uncertainty"]
    assert detail["passes"] == 4 and detail["vertebrae"], detail
    assert {"level", "found", "Ha_sd_rel", "vcr_sd", "grades", "grade_disagreement", "uncertainty"} <= \
        set(detail["vertebrae"][0])
    assert len(blurred["encoder_features"]["vector"]) == 64  # the tiny model's bottleneck channels
    c = MONAILabelClient(url)
    # Diverse first (a film served by any strategy counts as covered): the blurred copy lies farther from the
    # five labelled films than the film does; once served, the film is the one left.
    first = c.next_sample("diverse", {"m": 1})
    assert first["id"] == BLURRED and first["candidates"][BLURRED] > first["candidates"][CLEAN], first
    second = c.next_sample("diverse", {"m": 1})
    assert second["id"] == CLEAN and BLURRED not in second["candidates"], second
    assert second["distance"] <= first["distance"]  # covering more never moves an image farther away
    assert c.next_sample("morphometry", {})["id"] == BLURRED


def test_every_strategy_serves_unlabelled_images_only(server):
    url = server[0]
    c = MONAILabelClient(url)
    todo = unlabelled(c)
    assert todo == {CLEAN, BLURRED}
    score(url, "epistemic")
    for strategy in STRATEGIES:
        served = {c.next_sample(strategy, {})["id"] for _ in range(3)}
        assert served <= todo, (strategy, served)


def test_annotation_time_survives_a_save_and_reaches_info(server, twins):
    url, models = server
    c = MONAILabelClient(url)
    before = c.info()
    assert before["progress"] == {"labelled": 5, "total": 7, "left": 2, "last_training": None}
    assert before["annotation"]["labels"] == 0 and before["annotation"]["mean_seconds"] is None
    c.save_label(CLEAN, str(twins[1]), tag="final", params={"annotation_seconds": 42.5})
    label = c.datastore()["objects"][CLEAN]["labels"]["final"]["info"]
    assert label["annotation_seconds"] == 42.5 and label["levels"]
    (models / "spinemorph_levels").mkdir(exist_ok=True)  # what a finished training leaves
    stats = {"best_val_level_dice": 0.8125, "epochs": 2, "finished": "2026-12-01 10:00:00"}
    (models / "spinemorph_levels" / "train_stats.json").write_text(json.dumps(stats))
    info = c.info()
    assert info["annotation"] == {"labels": 1, "mean_seconds": 42.5, "median_seconds": 42.5, "total_seconds": 42.5,
                                  "per_label": {CLEAN: 42.5}}
    assert info["progress"] == {"labelled": 6, "total": 7, "left": 1, "last_training": {
        "model": "spinemorph_levels", "metric": "best_val_level_dice", "score": 0.8125,
        "finished": "2026-12-01 10:00:00"}}
    assert all(c.next_sample(s, {})["id"] == BLURRED for s in STRATEGIES)  # never the image labelled now


def test_an_annotation_time_that_is_not_a_number_is_not_counted(server, twins):
    url = server[0]
    saved = requests.put(f"{url}/datastore/label", params={"image": CLEAN, "tag": "final"},
                         files={"label": (twins[1].name, twins[1].read_bytes()),
                                "params": (None, json.dumps({"annotation_seconds": "a minute"}))}, timeout=60)
    assert saved.ok, saved.text
    annotation = MONAILabelClient(url).info()["annotation"]
    assert annotation["labels"] == 0 and annotation["per_label"] == {}


def _pass(*records: tuple) -> Morphometry:
    """Return one pass's morphometry: records (level, Ha, Hm, Hp, vcr_percent, genant_grade) in mm."""
    return Morphometry([VertebraRecord(lv, None, Ha_mm=a, Hm_mm=m, Hp_mm=p, vcr_percent=v, genant_grade=g)
                        for lv, a, m, p, v, g in records], "left", "argument", (0.2, 0.2))


def test_the_spread_score_on_two_passes():
    # L1: Ha 10 then 12 (sd 1, body height 62/6 mm), VCR 10 then 20 (sd 5 points), grades 0 and 1 (one of two
    # disagrees); L2: found by one pass of two.
    score_, vertebrae = morphometry_spread([_pass(("L1", 10, 10, 10, 10, 0), ("L2", 10, 10, 10, None, 0)),
                                            _pass(("L1", 12, 10, 10, 20, 1))])
    l1 = 1 / (62 / 6) / 3 + 5 / 100 + 0.5
    assert [v["uncertainty"] for v in vertebrae] == [pytest.approx(l1, abs=1e-6), 0.5]
    assert vertebrae[0]["Ha_sd_rel"] == round(6 / 62, 4) and vertebrae[0]["Hm_sd_rel"] == 0.0
    assert vertebrae[1]["found"] == 0.5 and vertebrae[0]["grades"] == [0, 1]
    assert score_ == pytest.approx((l1 + 0.5) / 2, abs=1e-6)
    assert morphometry_spread([_pass(), _pass()]) == (1.0, [])
    with pytest.raises(ValueError, match="at least two"):
        morphometry_spread([_pass()])


def test_k_center_greedy_picks_the_farthest_and_then_the_next_farthest():
    candidates, reference = np.array([[0.0, 0], [1, 0], [5, 0]]), np.array([[0.0, 0]])
    assert k_center_greedy(candidates, reference, 2) == [(2, 5.0), (1, 1.0)]
    assert k_center_greedy(candidates, np.zeros((0, 0)), 3) == [(0, None), (2, 5.0), (1, 1.0)]
    assert k_center_greedy(candidates, reference, 0) == []


@pytest.mark.parametrize(("name", "channels"), [("mdr2unet", 64), ("posenet", 64), ("unet", 32 + 64)])
def test_bottleneck_features_are_the_deepest_widest_output(name, channels):
    net = build_network(name, "levels", features=(4, 8, 16, 32, 64)).eval()
    with bottleneck_features(net) as vectors, torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert len(vectors) == 1 and vectors[0].shape == (channels,)
    assert float(np.linalg.norm(vectors[0])) == pytest.approx(1.0, abs=1e-5)


def test_scores_reach_the_datastore_file_in_one_write_when_the_block_ends(twins, tmp_path):
    studies = tmp_path / "studies"
    shutil.copytree(twins[0], studies)
    store = SpineMorphDatastore(str(studies), extensions=("*.dcm",), auto_reload=False)
    on_disk = store._datastore_config_path
    ids = store.list_images()
    with InfoUpdates(store, every_s=3600) as updates:
        for i, image_id in enumerate(ids):
            updates.add(image_id, {"gathered": i / 10})
        assert "gathered" not in open(on_disk).read()  # not yet written
    saved = json.loads(open(on_disk).read())["objects"]
    assert {i: saved[i]["image"]["info"]["gathered"] for i in ids} == {i: n / 10 for n, i in enumerate(ids)}
    with InfoUpdates(store, every_s=0) as updates:  # every add written at once
        updates.add(ids[0], {"written": 0.5})
        assert json.loads(open(on_disk).read())["objects"][ids[0]]["image"]["info"]["written"] == 0.5


def test_the_epistemic_passes_are_seeded_and_ran_on_the_network_given(twins, tiny_model):
    """One batched forward under fixed masks: the same score every time, more for the blurred copy than the film
    (the model's own, read from a file), and the network left without dropout."""
    from types import SimpleNamespace

    from spinemorph.inference import load_model
    from spinemorph.io import read_radiograph

    net, spec = load_model(tiny_model)
    scorer = EpistemicScore(SimpleNamespace(name="tiny"), passes=4)
    film, blurred = (read_radiograph(twins[0] / f"{name}.dcm").pixels for name in (CLEAN, BLURRED))
    first = scorer.score(film, net, spec)
    assert first == scorer.score(film, net, spec) and 0 < first < 1
    assert scorer.score(blurred, net, spec) > first
    assert not any(m.training for m in net.modules())
