"""The app's ``--conf runtime``: a runtime it does not know is refused with a sentence before anything is served."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "monailabel_app"


@pytest.fixture
def app_lib(monkeypatch):
    """The app's own ``lib`` package importable, as monailabel imports it; forgotten afterwards."""
    monkeypatch.syspath_prepend(str(APP))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name == "lib" or name.startswith("lib."):
            del sys.modules[name]


def test_an_unknown_runtime_is_refused_with_the_choices(tmp_path, app_lib):
    from lib.configs.segmentation import SegmentationConfig

    with pytest.raises(ValueError, match="runtime must be one of torch, openvino, not 'onnx'"):
        SegmentationConfig("spinemorph_levels", "r2unet", "levels", tmp_path / "model.pt", None, "onnx")
    assert SegmentationConfig("spinemorph_levels", "r2unet", "levels", tmp_path / "model.pt", None).runtime == "torch"
