"""Real faults, real processes: the server SIGKILLed while it trains or saves labels, and a studies disk that is full.

Nothing here is mocked: each test starts ``monailabel start_server`` in its own process group, kills the whole
group with SIGKILL (as a service manager stops a unit), or starves it of disk space on a small tmpfs in a user
and mount namespace, then restarts it and checks what it left on disk and what it serves.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import torch
from monailabel.client import MONAILabelClient

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.io import read_labelmap, write_labelmap
from spinemorph.levels import TRAINED_LEVELS
from tests.app.server import kill_group, serving

MODEL = "spinemorph_levels"
QUIET = {"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}  # no scoring subprocess at each start: 2 cores to share
PAGE = 4096


def _conf(tiny_model: Path, models: Path) -> dict:
    return {"models": MODEL, f"{MODEL}_weights": tiny_model, "model_dir": models, "epistemic_passes": 1}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _temporaries(*folders: Path) -> list[str]:
    return [str(p) for folder in folders for p in folder.rglob("*.tmp")]


@pytest.fixture(scope="module")
def large_studies(tmp_path_factory):
    """Two labelled lumbar radiographs 1024 px tall (about 1.7 MB each), so that a label save takes a while."""
    root = tmp_path_factory.mktemp("large_studies")
    simulate_studies(2, 41, root, SimConfig(size=1024, fov="lumbar"), progress=False)
    return root


def _versions(studies: Path, tmp_path: Path) -> tuple[str, Path, list[np.ndarray], dict[str, Path]]:
    """Return an image id, its label file, the label arrays a save may leave (the original, A and B) and the
    files of A and B: A lacks the topmost level of the original, B the lowest."""
    label = sorted((studies / "labels" / "final").glob("*.nii.gz"))[0]
    original, geometry = read_labelmap(label)
    levels = [int(v) for v in np.unique(original) if v]
    files = {}
    arrays = [original]
    for name, dropped in (("A", levels[0]), ("B", levels[-1])):
        array = np.where(original == dropped, 0, original)
        files[name] = tmp_path / f"{name}.nii.gz"
        write_labelmap(files[name], array, geometry)
        arrays.append(array)
    return label.name[: -len(".nii.gz")], label, arrays, files


def _put_label(url: str, image_id: str, file: Path, params: str = "{}") -> requests.Response:
    with open(file, "rb") as fh:
        return requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                            data={"params": params}, files={"label": (file.name, fh)}, timeout=60)


def _which(path: Path, arrays: list[np.ndarray]) -> int | None:
    """Return the index of the array that the labelmap at ``path`` equals, None if it equals none of them."""
    labels, _ = read_labelmap(path)
    return next((i for i, a in enumerate(arrays) if labels.shape == a.shape and np.array_equal(labels, a)), None)


# -- 1. killed while training ----------------------------------------------------------------------------------------
def _first_progress(c: MONAILabelClient, timeout: float = 150.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = c.train_status()
        if any("SPINEMORPH_TRAIN" in line for line in status.get("details", [])):
            return status
        assert status.get("status") in ("SUBMITTED", "RUNNING"), status
        time.sleep(0.25)
    raise TimeoutError(f"No training progress within {timeout} s: {status}")


def test_a_server_killed_while_training_serves_its_previous_model_after_a_restart(studies, tiny_model, tmp_path):
    models = tmp_path / "models"
    published = models / MODEL / "model.pt"
    published.parent.mkdir(parents=True)
    shutil.copy(tiny_model, published)  # what an earlier training published
    image_id = sorted(p.stem for p in studies.glob("*.dcm"))[0]
    with serving(studies, _conf(tiny_model, models), tmp_path / "first.log", env=QUIET) as server:
        c = MONAILabelClient(server.url)
        before = c.infer(MODEL, image_id, {})[1]["weights_sha256"]
        # From random weights for many epochs: it cannot finish (and publish) before the kill lands.
        c.train_start(MODEL, {"max_epochs": 1000, "batch_size": 2, "lr": 3e-3, "pretrained": False})
        _first_progress(c)
        time.sleep(random.uniform(0.0, 1.0))  # somewhere in the next epoch, its checkpoint writes included
        trainers = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                    if "train" in p.cmdline()]
        survivors = kill_group(server.proc)
    print("half-written files the kill left:", _temporaries(models))  # the restart must remove them
    assert trainers, "no training subprocess was running when the server was killed"
    assert survivors == [], f"processes of the killed server still run: {survivors}"
    assert _sha(published) == _sha(tiny_model), "the kill changed the published model"
    for pt in models.rglob("*.pt"):  # the run's checkpoints too; a *.tmp beside them is what the restart removes
        torch.load(pt, map_location="cpu", weights_only=False)

    with serving(studies, _conf(tiny_model, models), tmp_path / "restart.log", env=QUIET) as server:
        after = MONAILabelClient(server.url).infer(MODEL, image_id, {})[1]
        left = _temporaries(models, studies)
    assert after["weights_sha256"] == before == _sha(tiny_model), after
    assert left == [], f"half-written files left after the restart: {left}"


# -- 2. killed while saving labels -----------------------------------------------------------------------------------
class Saver(threading.Thread):
    """Saves A, B, A, B, ... as the final label of one image until the server stops answering."""

    def __init__(self, url: str, image_id: str, files: dict[str, Path]) -> None:
        super().__init__(daemon=True)
        self.url, self.image_id, self.files = url, image_id, files
        self.saved: list[str] = []  # the versions the server acknowledged, in order
        self.seconds: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while True:
            name = "AB"[len(self.saved) % 2]
            start = time.monotonic()
            try:
                response = _put_label(self.url, self.image_id, self.files[name])
            except requests.RequestException:
                return  # the server is gone
            if not response.ok:
                self.errors.append(f"{response.status_code} {response.text[:200]}")
                return
            self.saved.append(name)
            self.seconds.append(time.monotonic() - start)


def test_a_server_killed_while_saving_a_label_leaves_a_whole_label(large_studies, tiny_model, tmp_path):
    studies = shutil.copytree(large_studies, tmp_path / "studies")
    image_id, label, arrays, files = _versions(studies, tmp_path)
    models, rng = tmp_path / "models", random.Random()
    seen = []  # per kill: delay after the 2nd acknowledged save, saves acknowledged, label left (1 A, 2 B), temporaries
    for kill in range(4):  # three kills; each restart checks what the previous kill left
        with serving(studies, _conf(tiny_model, models), tmp_path / f"server{kill}.log", env=QUIET) as server:
            c = MONAILabelClient(server.url)
            objects = c.datastore()["objects"]
            assert "final" in objects[image_id]["labels"], f"after kill {kill}: {objects[image_id]}"
            assert _temporaries(studies) == [], f"after kill {kill}: half-written files left"
            served = requests.get(f"{server.url}/datastore/label", params={"label": image_id, "tag": "final"},
                                  timeout=30)
            assert served.ok and served.content == label.read_bytes()
            if kill == 3:
                break
            saver = Saver(server.url, image_id, files)
            saver.start()
            while len(saver.saved) < 2 and saver.is_alive():
                time.sleep(0.01)
            assert not saver.errors and len(saver.saved) >= 2, saver.errors
            delay = rng.uniform(0.0, 1.5 * max(saver.seconds))  # anywhere in the next save or the one after
            time.sleep(delay)
            count = len(saver.saved)
            assert kill_group(server.proc) == []
        saver.join(30)
        left = _which(label, arrays)
        seen.append((round(delay, 3), count, left, len(_temporaries(studies))))
        assert left is not None, f"kill {kill} ({seen}): {label.name} is none of the saved versions"
        assert left != 0, f"kill {kill}: the original label came back after saves were acknowledged ({seen})"
        kept = sorted((studies / ".spinemorph" / "label-versions" / "final" / image_id).iterdir())
        assert all(_which(v, arrays) is not None for v in kept if not v.name.startswith(".")), seen
    print(f"a save took {np.mean(saver.seconds):.2f} s; kills (delay s, saves acknowledged, label left, "
          f"half-written files): {seen}")


# -- 3. a full disk --------------------------------------------------------------------------------------------------
def _on_tmpfs(size_kb: int, source: Path, mount: Path):
    """Return a ``serving`` wrap that runs the server in a user and mount namespace on a tmpfs of ``size_kb`` at
    ``mount``, filled with a copy of ``source``."""
    script = 'mount -t tmpfs -o size="$1"k tmpfs "$2" && cp -a "$3"/. "$2"/ && shift 3 && exec "$@"'
    return lambda cmd: ["unshare", "-rm", "sh", "-c", script, "sh", str(size_kb), str(mount), str(source), *cmd]


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` with one file until ``leave`` bytes are free."""
    free = shutil.disk_usage(disk).free
    assert free > leave, f"the disk has {free} bytes free, less than the {leave} the test leaves"
    with open(disk / ".filler", "wb") as fh:
        fh.write(b"\0" * (free - leave))
    assert shutil.disk_usage(disk).free == leave


def _pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


@pytest.fixture(scope="module")
def unshare_works():
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("`unshare -rm` (a user and mount namespace) is not allowed here, so no tmpfs can be mounted "
                    "without root: the full-disk test needs it")


@pytest.mark.parametrize("full", ["the label does not fit", "the label fits, the datastore JSON does not"])
def test_a_full_disk_refuses_a_label_with_507_and_keeps_the_old_ones(unshare_works, large_studies, tiny_model,
                                                                      tmp_path, full):
    image_id, _, arrays, files = _versions(large_studies, tmp_path)
    old = {p.name: p.read_bytes() for p in (large_studies / "labels" / "final").glob("*.nii.gz")}
    used = sum(_pages(p.stat().st_size) for p in large_studies.rglob("*") if p.is_file()) // 1024
    mount = tmp_path / "studies"
    mount.mkdir()
    wrap = _on_tmpfs(used + 1024, large_studies, mount)
    with serving(mount, _conf(tiny_model, tmp_path / "models"), tmp_path / "server.log", wrap=wrap,
                 env=QUIET) as server:
        disk = Path(f"/proc/{server.proc.pid}/root") / str(mount).lstrip("/")  # the tmpfs, as the server sees it
        if full == "the label does not fit":
            noisy = np.random.default_rng(0).choice(TRAINED_LEVELS, size=arrays[0].shape).astype(np.uint8)
            upload, params = tmp_path / "noisy.nii.gz", "{}"
            write_labelmap(upload, noisy, read_labelmap(files["A"])[1])
            leave = 128 * 1024
            assert upload.stat().st_size > 2 * leave, "the noisy label is too small to overflow the disk"
        else:  # room for the kept version and the new label, not for the datastore JSON's larger rewrite
            upload, params = files["A"], '{"note": "%s"}' % ("x" * 40_000)
            leave = _pages(len(old[f"{image_id}.nii.gz"])) + _pages(upload.stat().st_size) + 2 * PAGE
        _fill(disk, leave)
        refused = _put_label(server.url, image_id, upload, params)
        assert refused.status_code == 507, f"{refused.status_code} {refused.text[:300]}"
        assert "free space" in refused.json()["detail"] and image_id in refused.json()["detail"], refused.text
        for name, content in old.items():
            served = requests.get(f"{server.url}/datastore/label", params={"label": name[: -len(".nii.gz")],
                                                                           "tag": "final"}, timeout=30)
            assert served.ok and served.content == content, f"{name} changed although the save was refused"
        assert _temporaries(disk) == []
        (disk / ".filler").unlink()  # space freed: the same server saves again
        saved = _put_label(server.url, image_id, files["A"])
        assert saved.ok, saved.text
        assert _which(disk / "labels" / "final" / f"{image_id}.nii.gz", arrays) == 1
