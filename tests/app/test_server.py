"""The SpineMorph app in a real MONAI Label server, driven through monailabel's own client."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
import zipfile

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from spinemorph.io import read_labelmap, read_radiograph, write_labelmap
from tests.app.server import assert_training_mechanics, finished_training, watching


def client(server) -> MONAILabelClient:
    return MONAILabelClient(server[0])


def idle(url: str, task: str, timeout: float = 180.0) -> None:
    """Wait until no background ``task`` (scoring, train, batch_infer) runs on the server."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if requests.get(f"{url}/{task}/", params={"check_if_running": "true"}, timeout=10).status_code == 404:
            return
        time.sleep(1)
    raise TimeoutError(f"{task} still running after {timeout} s")


def score(url: str, method: str, timeout: float = 180.0) -> None:
    """Run a scoring method to completion, after any background scoring the server started by itself.

    Saving a label makes MONAI Label start a scoring run of its own, which may begin just after ``idle`` has
    returned: the server then answers 429, and we wait and ask again.
    """
    deadline = time.time() + timeout
    while True:
        idle(url, "scoring")
        done = requests.post(f"{url}/scoring/{method}", params={"run_sync": "true"}, timeout=180)
        if done.status_code != 429 or time.time() > deadline:
            break
        time.sleep(1)
    assert done.ok, done.text


def unlabelled(c: MONAILabelClient) -> set[str]:
    return {k for k, v in c.datastore()["objects"].items() if "final" not in v.get("labels", {})}


def test_info_lists_the_tasks(server):
    info = client(server).info()
    model = info["models"]["spinemorph_levels"]
    assert model["type"] == "segmentation" and model["dimension"] == 2
    assert model["labels"]["L1"] == 20 and model["labels"]["T12"] == 19 and len(model["labels"]) == 17
    assert "spinemorph_levels" in info["trainers"]
    assert {"random", "first", "epistemic"} <= set(info["strategies"])
    assert {"dice", "epistemic"} <= set(info["scoring"])


def test_next_sample_returns_an_unlabelled_image(server):
    c = client(server)
    todo = unlabelled(c)
    assert len(todo) == 5  # three DICOMs, the PNG and the NIfTI
    assert c.next_sample("random", {})["id"] in todo
    score(server[0], "epistemic")
    sample = c.next_sample("epistemic", {})
    assert sample["id"] in todo and 0.0 <= sample["epistemic_entropy"] <= 1.0
    info = c.datastore()["objects"][sample["id"]]["image"]["info"]
    assert info["epistemic_entropy"] == pytest.approx(sample["epistemic_entropy"])


@pytest.mark.parametrize("image_id", ["sim-lumbar-*", "xray-sixteen-bit", "xray-nifti"])
def test_infer_returns_a_labelmap_in_the_image_geometry_and_the_vcr_table(server, studies, image_id):
    c = client(server)
    if image_id.endswith("*"):
        image_id = sorted(unlabelled(c) - {"xray-sixteen-bit", "xray-nifti"})[0]
    path = next(p for p in studies.iterdir() if p.name.startswith(image_id + "."))
    label_file, result = c.infer("spinemorph_levels", image_id, {})
    labels, geometry = read_labelmap(label_file)
    image = read_radiograph(path)
    assert label_file.endswith(".nii.gz") and nib.load(label_file).shape == (*image.shape, 1)
    assert labels.shape == image.shape
    np.testing.assert_allclose(geometry.affine, image.affine, atol=1e-6)
    morph = result["morphometry"]
    assert morph["units"] == ("mm" if image.spacing_mm else "px")
    assert morph["vertebrae"], "the model found no body"
    for rec in morph["vertebrae"]:
        assert {"level", "Ha_mm", "vcr_percent", "genant_grade", "deformity", "points", "flags"} <= set(rec)
    assert any(rec["Ha_px"] for rec in morph["vertebrae"])
    assert set(result["label_names"].values()) <= set(range(8, 25))
    stages = {"load_s", "preprocess_s", "network_s", "postprocess_s", "morphometry_s", "write_s"}
    assert stages <= set(result["timings"])


def test_saved_labels_make_an_image_labelled_and_dice_scores_them(server, studies):
    c = client(server)
    image_id = sorted(unlabelled(c) - {"xray-sixteen-bit", "xray-nifti"})[0]
    label_file, _ = c.infer("spinemorph_levels", image_id, {"save_label": True})  # stored as "original"
    labels, geometry = read_labelmap(label_file)
    edited = labels.copy()
    edited[labels == labels.max()] = 0  # the annotator removes one level
    write_labelmap(studies / "edited.nii.gz", edited, geometry)
    c.save_label(image_id, str(studies / "edited.nii.gz"), tag="final")
    objects = c.datastore()["objects"]
    assert "final" in objects[image_id]["labels"] and image_id not in unlabelled(c)
    assert objects[image_id]["labels"]["final"]["info"]["levels"]
    score(server[0], "dice")
    dice = c.datastore()["objects"][image_id]["image"]["info"]["dice"]
    assert 0.0 < dice < 1.0


def test_batch_infer_labels_the_unlabelled_images(server):
    c = client(server)
    todo = unlabelled(c)
    idle(server[0], "batch_infer")
    done = requests.post(f"{server[0]}/batch/infer/spinemorph_levels",
                         params={"images": "unlabeled", "run_sync": "true"}, timeout=300)
    assert done.ok, done.text
    objects = c.datastore()["objects"]
    assert all("original" in objects[i]["labels"] for i in todo)


def test_infer_names_the_weights_that_answered(server, tiny_model):
    _, result = client(server).infer("spinemorph_levels", next(iter(client(server).datastore()["objects"])), {})
    assert result["weights"] == str(tiny_model)
    assert result["weights_sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()[:12]
    assert result["model_version"] == "fixture-1"


def test_training_publishes_a_model_that_the_next_infer_uses(server):
    """The mechanics of a train task, never the quality of what it learned (that differs between CPUs)."""
    c = client(server)
    some = next(iter(c.datastore()["objects"]))
    before = c.infer("spinemorph_levels", some, {})[1]
    published = server[1] / "spinemorph_levels" / "model.pt"
    with watching(published) as seen:
        # From random weights, so that the loss has somewhere to fall in four short epochs.
        c.train_start("spinemorph_levels", {"max_epochs": 4, "batch_size": 2, "lr": 3e-3, "pretrained": False})
        status = finished_training(c)
    progress = [line for line in status["details"] if "SPINEMORPH_TRAIN" in line]
    assert progress and "val_level_dice" in progress[0]
    stats = c.info()["train_stats"]["spinemorph_levels"]
    assert_training_mechanics(published, server[1] / "spinemorph_levels" / "run" / "log.csv", stats, seen)
    assert stats["train_cases"] >= 1 and stats["epochs"] == 4 and stats["started_from"].startswith("random weights")
    after = c.infer("spinemorph_levels", some, {})[1]
    assert after["weights"] == str(published) != before["weights"]
    assert after["weights_sha256"] == stats["sha256"] != before["weights_sha256"]
    assert after["model_version"] == stats["version"] and stats["version"].startswith("fixture-1+trained.")


def test_a_step_budget_ends_training_after_that_many_steps_whatever_the_epochs(server):
    """max_steps: a fixed budget per training, however many labels there are (the active-learning bench's rounds)."""
    c = client(server)
    c.train_start("spinemorph_levels", {"max_epochs": 100, "max_steps": 3, "batch_size": 2, "lr": 3e-3})
    finished_training(c)
    stats = c.info()["train_stats"]["spinemorph_levels"]
    assert stats["steps"] == 3 and stats["epochs"] <= 3, stats


def test_infer_with_output_dicom_answers_the_labelmap_seg_and_sr_in_one_zip(server, studies, tmp_path):
    import zipfile

    from spinemorph.io.dicom_results import read_morphometry_sr

    c = client(server)
    image_id = next(p.stem for p in sorted(studies.glob("*.dcm")))  # a DICOM film (other tests add NIfTI files)
    answer, result = c.infer("spinemorph_levels", image_id, {"output": "dicom"})
    assert zipfile.is_zipfile(answer), answer
    with zipfile.ZipFile(answer) as zf:
        assert sorted(zf.namelist()) == sorted(result["dicom"]["zip"]) and "sr.dcm" in zf.namelist()
        zf.extractall(tmp_path)
    sr = read_morphometry_sr(tmp_path / "sr.dcm")
    assert [v["level"] for v in sr["vertebrae"]] == [v["level"] for v in result["morphometry"]["vertebrae"]]
    assert [v["Ha_mm"] for v in sr["vertebrae"]] == [v["Ha_mm"] for v in result["morphometry"]["vertebrae"]]
    refused = requests.post(f"{server[0]}/infer/spinemorph_levels", params={"image": "xray-nifti"},
                            files={"params": (None, '{"output": "dicom"}')}, timeout=60)
    assert refused.status_code == 422 and "DICOM" in refused.json()["detail"]



def test_answers_survive_a_client_on_the_same_machine_that_saves_them_in_the_servers_temp_folder(
        studies, tiny_model, tmp_path):
    from tests.app.server import serving

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": tmp_path / "models"}
    image = next(p for p in sorted(studies.glob("*.dcm")))
    ended = subprocess.Popen(["true"])
    ended.wait()
    (tmp / f"spinemorph-results-{ended.pid}-old").mkdir()  # left by a server stopped with SIGTERM
    (tmp / f"spinemorph-results-{os.getpid()}-live").mkdir()  # a running process's
    with serving(studies, conf, tmp_path / "server.log", env={"TMPDIR": str(tmp)}) as server:
        c = MONAILabelClient(server.url, tmpdir=str(tmp))  # MONAI Label's client saves under the server's name
        answers = [c.infer("spinemorph_levels", image.stem, {})[0],
                   c.infer("spinemorph_levels", "", {}, file=str(image))[0],  # an upload
                   c.infer("spinemorph_levels", image.stem, {"output": "dicom"})[0]]
        time.sleep(1)  # the server deletes its own copy of each answer just after sending it
        for path in answers[:2]:
            assert read_labelmap(path)[0].shape[:2] == read_radiograph(image).shape, path
        assert not [p for p in tmp.glob("spinemorph-results-*/*")]  # the server's own copies, deleted after sending
        assert not (tmp / f"spinemorph-results-{ended.pid}-old").exists()
        assert (tmp / f"spinemorph-results-{os.getpid()}-live").is_dir()
        (first,) = tmp.glob(f"spinemorph-results-{server.proc.pid}-*")
        for _ in range(2):  # the dataset's zip: kept in the server's answers folder, not loose in the temp folder
            dataset = requests.get(f"{server.url}/datastore/dataset", timeout=60)
            names = zipfile.ZipFile(io.BytesIO(dataset.content)).namelist()  # the labelled images
            assert dataset.ok and "metadata.json" in names and any(n.startswith("label/") for n in names)
        assert len(list(first.glob("spinemorph-dataset-*.zip"))) == 2
        assert not [p for p in tmp.glob("tmp*") if zipfile.is_zipfile(p)]  # MONAI Label's NamedTemporaryFile
    # SIGTERM ends the server before its exit hooks run: its folder stays until the next server answers.
    assert first.is_dir()
    with serving(studies, conf, tmp_path / "server2.log", env={"TMPDIR": str(tmp)}) as server:
        MONAILabelClient(server.url, tmpdir=str(tmp_path)).infer("spinemorph_levels", image.stem, {})
        assert not first.exists() and (tmp / f"spinemorph-results-{os.getpid()}-live").is_dir()
