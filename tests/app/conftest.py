from __future__ import annotations

import pytest

from tests.app.server import running_server

# tiny_model and studies live in tests/conftest.py: the Slicer tests use them too.


@pytest.fixture(scope="module")
def server(studies, tiny_model, tmp_path_factory):
    models = tmp_path_factory.mktemp("published")
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models,
            "epistemic_passes": 3}
    with running_server(studies, conf, models / "server.log") as url:
        yield url, models
