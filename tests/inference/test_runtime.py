"""The networks on OpenVINO (``runtime="openvino"``): the same outputs as torch's, any batch, from several threads,
converted once per weights; and the shipped bundle's answer on a fractured film, measured alike."""

from __future__ import annotations

import gc
import json
import os
import threading

import numpy as np
import pytest
import torch

from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.inference.analyse import analyse, load_networks
from spinemorph.inference.runtime import CompiledNetwork, compiled
from spinemorph.networks import build_network
from tests.inference.test_shipped_bundle import BUNDLE, wedge_film

ov = pytest.importorskip("openvino", reason="runtime=openvino needs spinemorph[openvino] (make setup installs it)")


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """Conversions kept in a folder of the run's, not the user's cache: one conversion per network per module."""
    before = os.environ.get("SPINEMORPH_CACHE")
    os.environ["SPINEMORPH_CACHE"] = str(tmp_path_factory.mktemp("openvino_cache"))
    yield
    if before is None:
        del os.environ["SPINEMORPH_CACHE"]
    else:
        os.environ["SPINEMORPH_CACHE"] = before


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own."""
    monkeypatch.setenv("SPINEMORPH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _net(seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng():  # the run's own random state stays as it was
        torch.manual_seed(seed)
        return build_network("unet", head="binary", features=(4, 8, 8, 16, 16)).eval()


def test_torch_or_another_device_keeps_the_network_and_a_bad_runtime_is_refused():
    net = _net()
    assert compiled(net, 32, "torch") is net
    assert compiled(net, 32, "openvino", "cuda") is net  # the same code path on a GPU: torch's
    with pytest.raises(ValueError, match="runtime must be one of torch, openvino, not 'onnx'"):
        compiled(net, 32, "onnx")


def test_compiled_network_gives_torchs_outputs_for_any_batch_and_from_several_threads():
    net = _net()
    fast = compiled(net, 32, "openvino")
    assert isinstance(fast, CompiledNetwork)
    x = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(x)
    for batch in (x[:1], x):
        np.testing.assert_allclose(fast(batch).numpy(), want[:len(batch)].numpy(), atol=1e-4)
    answers = [None] * 4

    def run(i):
        answers[i] = fast(x[i:i + 1])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer.numpy(), want[i:i + 1].numpy(), atol=1e-4)


def test_a_conversion_is_kept_per_weights_and_read_back(cache):
    compiled(_net(), 32, "openvino")  # nothing in this process holds it afterwards
    gc.collect()
    kept = sorted(cache.rglob("*.xml"))
    assert len(kept) == 1 and kept[0].with_suffix(".bin").is_file()
    net = _net()
    again = compiled(net, 32, "openvino")  # read from the cache, no second file
    assert sorted(cache.rglob("*.xml")) == kept
    twin = _net()  # the same weights loaded again (two served models, one bundle): one compiled network for both
    assert compiled(twin, 32, "openvino") is again and compiled(net, 32, "openvino") is again
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(again(x).numpy(), net(x).numpy(), atol=1e-4)
    other = _net(seed=1)  # other weights: another conversion, never the first one's answer
    with torch.no_grad():
        np.testing.assert_allclose(compiled(other, 32, "openvino")(x).numpy(), other(x).numpy(), atol=1e-4)
    assert len(list(cache.rglob("*.xml"))) == 2


def test_stage_2_on_openvino_measures_a_simulated_fracture_within_1_5_points_as_torch_does():
    """The full-size L2 wedge of 30 % of test_shipped_bundle, through the three networks on OpenVINO: the fracture
    within 1.5 points of its truth, every height within 0.5 mm of torch's, the labelmap alike but for a few edge
    pixels."""
    image, truth = wedge_film()
    on = {}
    for runtime in ("torch", "openvino"):
        n = load_networks(BUNDLE, detector=False, runtime=runtime)
        assert isinstance(n.landmarks[0], CompiledNetwork) == (runtime == "openvino")
        on[runtime] = analyse(image, n.net, n.spec, refiner=n.refiner, landmarks=n.landmarks)
    labels = {k: a.labels for k, a in on.items()}
    assert labels["openvino"].shape == image.shape
    assert np.sum(labels["openvino"] != labels["torch"]) <= 1e-3 * np.sum(labels["torch"] > 0)
    records = {k: a.morphometry.by_level() for k, a in on.items()}
    rec = records["openvino"]["L2"]
    assert rec.stage == 2 and rec.heights_from == "mean"
    assert abs((1 - rec.wedge) - truth["reduction_shown"]) <= 0.015, (rec.wedge, truth["reduction_shown"])
    assert records["torch"].keys() == records["openvino"].keys()
    for level, theirs in records["torch"].items():
        mine = records["openvino"][level]
        for h in ("Ha_mm", "Hm_mm", "Hp_mm"):
            if getattr(theirs, h) is not None:
                assert abs(getattr(mine, h) - getattr(theirs, h)) < 0.5, (level, h)


def test_spinemorph_segment_runs_on_openvino_when_told(tmp_path, capsys):
    from spinemorph.cli import main as cli
    from spinemorph.io import read_labelmap, write_dx

    sim = simulate(4_343, 1, SimConfig(size=1024, fov="lumbar", facing="left"))
    write_dx(tmp_path / "dx.dcm", sim.image, sim.spacing_mm, "left")
    assert cli(["segment", str(tmp_path / "dx.dcm"), "--out", str(tmp_path / "out"), "--device", "cpu",
                "--runtime", "openvino", "--no-detector"]) == 0
    assert "on cpu (openvino)" in capsys.readouterr().out
    assert read_labelmap(tmp_path / "out" / "dx.labels.nii.gz")[0].shape == sim.image.shape
    said = json.loads((tmp_path / "out" / "dx.morphometry.json").read_text())["vertebrae"]
    assert any(v["stage"] == 2 and v["heights_from"] == "mean" for v in said)
