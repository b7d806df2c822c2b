"""bench/load.py in small: concurrent infers, concurrent label saves and a save during training lose nothing."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from tests.app.server import REPO, running_server

_spec = importlib.util.spec_from_file_location("bench_load", REPO / "bench" / "load.py")
load = sys.modules["bench_load"] = importlib.util.module_from_spec(_spec)  # bench/ is no package
_spec.loader.exec_module(load)


def test_the_label_checks_see_a_lost_or_torn_label(tmp_path):
    """The bench's checks are not vacuous: a label written over without keeping the original, or cut short, fails."""
    studies = tmp_path / "studies"
    (image_id,) = load.make_studies(studies, 1, 128)
    final = studies / "labels" / "final" / f"{image_id}.nii.gz"
    original = load.read_labelmap(final)[0]
    files, sent = load.label_versions(studies, image_id, 2, tmp_path)
    assert not np.array_equal(sent[0], sent[1])
    final.write_bytes(files[1].read_bytes())  # saved without keeping the label it replaced
    assert load.check_saved(studies, image_id, original, sent) == [
        f"{image_id}: the original label is there 0 times, not once",
        f"{image_id}: version 0 is there 0 times, not once"]
    assert "not the last one saved" in load.check_saved(studies, image_id, original, sent, last=sent[0])[0]
    final.write_bytes(files[1].read_bytes()[:100])  # torn
    assert "does not read" in load.check_saved(studies, image_id, original, sent)[0]


def test_concurrent_infers_and_saves_lose_nothing(tiny_model, tmp_path):
    studies = tmp_path / "studies"
    ids = load.make_studies(studies, 7, 128)
    conf = {"models": load.MODEL, f"{load.MODEL}_weights": tiny_model, "model_dir": tmp_path / "models",
            "infer_concurrency": 2}
    with running_server(studies, conf, tmp_path / "server.log") as url:
        outcomes = load.run_scenarios(url, studies, ids, n_infers=10, n_saves=5, epochs=2, train_saves=2)
    assert [(o.name, len(o.latencies)) for o in outcomes] == [
        ("infers", 10), ("saves, one image", 5), ("saves, many images", 5), ("save while training", 2)]
    for o in outcomes:
        assert not o.errors and not o.problems, (o.name, o.errors, o.problems)
