"""`spinemorph web` end to end: a real server, a real `spinemorph web` process and headless Chromium.

The browser (tests/web/browser_loop.py, in .venv-web's Python) connects, meets two errors, takes the next sample,
auto-segments, paints on one level, undoes, measures, exports and downloads the CSV, and submits; here the page's
table is checked against ``spinemorph.measure`` on the label the server saved. Screenshots of each step stay in the
test's tmp folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spinemorph.io import read_labelmap, read_radiograph
from spinemorph.levels import level_code, level_name
from spinemorph.measure import measure
from spinemorph.measure.flags import explain
from spinemorph.overlay import GRADE_COLORS
from tests.app.server import free_port, running_server, wait_until_answering

REPO = Path(__file__).resolve().parents[2]
WEB_PYTHON = REPO / ".venv-web" / "bin" / "python"
LOOP = Path(__file__).with_name("browser_loop.py")
sys.path.insert(0, str(REPO / "slicer_module" / "SpineMorph"))  # SpineMorphLib's table formatting, Slicer-free
from SpineMorphLib.records import table_rows  # noqa: E402


def _missing() -> str:
    if not WEB_PYTHON.exists():
        return "needs .venv-web with trame-slicer and selenium: run `make web-venv` (make test does)"
    for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(tool).exists():
            return f"needs {tool}: apt-get install chromium chromium-driver (make web-venv does)"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "ready")


@pytest.fixture(scope="module")
def loop(studies, tiny_model, tmp_path_factory):
    """Run the browser through the loop against a fresh server and `spinemorph web`; return what it saw."""
    out = tmp_path_factory.mktemp("web-loop")
    models, work = out / "published", out / "web-work"
    models.mkdir()
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models,
            "epistemic_passes": 2}
    port = free_port()
    cli = shutil.which("spinemorph", path=str(Path(sys.executable).parent)) or "spinemorph"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with running_server(studies, conf, models / "server.log") as url:
        with open(out / "web.log", "w") as log:
            web = subprocess.Popen([cli, "web", "--server", url, "--port", str(port), "--workdir", str(work)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            wait_until_answering(web, f"http://127.0.0.1:{port}/", out / "web.log", "spinemorph web", 90)
            done = subprocess.run([str(WEB_PYTHON), str(LOOP), f"http://127.0.0.1:{port}/", url, str(out)],
                                  capture_output=True, text=True, timeout=180, env=env)
        finally:
            web.terminate()
            web.wait(20)
    assert done.returncode == 0, f"{done.stderr[-4000:]}\n--- web.log\n{(out / 'web.log').read_text()[-4000:]}"
    return json.loads((out / "loop.json").read_text()), out, work


def test_the_page_says_what_went_wrong_and_what_to_do(loop):
    seen = loop[0]
    assert seen["unreachable"].startswith("No SpineMorph server answers at http://127.0.0.1:9")
    assert "make demo" in seen["unreachable"]
    assert "has no image 'no-such-image'" in seen["unknown_image"] and "Next sample" in seen["unknown_image"]
    assert seen["connected"].startswith("Connected to")


def test_segments_are_named_by_level(loop):
    seen = loop[0]
    assert seen["image"].startswith("sim-lumbar-")
    names = seen["segmented"].split(": ", 1)[1].split(", ")
    assert names and all(level_code(n) for n in names)


def test_brush_paints_the_active_level_and_undo_restores_the_count(loop):
    paint = loop[0]["paint"]
    assert paint["start"] < paint["first"] < paint["second"]
    assert paint["undone"] == paint["first"]


def test_the_table_is_spinemorph_measure_on_the_saved_label(loop, studies):
    seen, _, work = loop
    image = seen["image"]
    labels, _ = read_labelmap(studies / "labels" / "final" / f"{image}.nii.gz")
    film = read_radiograph(studies / f"{image}.dcm")
    result = measure(labels, film.spacing_mm, film.facing)
    expected = table_rows(result)
    columns = [seen["headers"].index(h) for h in ("Level", "Ha (mm)", "Hm (mm)", "Hp (mm)", "VCR %")]
    assert [[row[j] for j in columns] for row in seen["rows"]] == [[row[j] for j in columns] for row in expected]
    assert any(row[1] for row in seen["rows"])  # some vertebra measured, not a table of blanks
    grade = seen["headers"].index("Genant grade")
    for row, colour in zip(seen["rows"], seen["row_colours"], strict=True):
        if row[grade]:
            assert colour == "rgba({}, {}, {}, 1)".format(*GRADE_COLORS[int(row[grade])])
    flags = seen["headers"].index("Flags")  # the flags in words, as a tooltip on their cell, as in Slicer
    assert [titles[flags] for titles in seen["cell_titles"]] == [explain(row[flags].split(";")) if row[flags] else ""
                                                                for row in seen["rows"]]
    assert any(titles[flags] for titles in seen["cell_titles"])  # the film's end bodies at least have no neighbour
    # under the table, the line Slicer shows: the facing and its source, and whether anything was graded
    said = seen["measured_message"]
    assert said.startswith(f"Facing: anterior on the {film.facing} (")
    assert ("No vertebra graded" in said) == (not any(row[grade] for row in seen["rows"]))


def test_export_csv_gives_a_link_the_browser_downloads_with_the_table(loop):
    seen, _, work = loop
    download = seen["download"]
    assert download["href"].startswith("http://127.0.0.1:") and "/exports/" in download["href"]
    assert download["name"] == f"{seen['image']}-morphometry.csv" and download["name"] in download["text"]
    rows = list(csv.reader(io.StringIO(download["csv"])))
    assert [r[0] for r in rows[1:]] == [r[seen["headers"].index("Level")] for r in seen["rows"]]
    assert download["csv"] == (work / "exports" / download["name"]).read_bytes().decode()  # the file it wrote


def test_the_submitted_label_is_the_edited_one(loop, studies):
    seen, _, work = loop
    image, paint = seen["image"], seen["paint"]
    assert seen["submitted"] == f"Label of {image} saved on the server."
    saved, _ = read_labelmap(studies / "labels" / "final" / f"{image}.nii.gz")
    inferred, _ = read_labelmap(work / f"{image}-spinemorph_levels.nii.gz")
    code = level_code(paint["level"])
    assert int(np.count_nonzero(saved == code)) == paint["undone"]  # what the page counted after undo
    assert int(np.count_nonzero(inferred == code)) == paint["start"]


def test_the_levels_shift_and_the_facing_flips_in_one_click(loop):
    seen = loop[0]
    names = seen["segmented"].split(": ", 1)[1].split(", ")
    shifted = seen["shifted"].removeprefix("Levels now ").rstrip(".").split(", ")
    back = seen["shifted_back"].removeprefix("Levels now ").rstrip(".").split(", ")
    movable = [n for n in names if n != "S1"]  # S1, the anchor, stays
    assert [n for n in shifted if n != "S1"] == [level_name(level_code(n) - 1) for n in movable]  # one up
    assert back == names
    assert {seen["flipped"], seen["flipped_back"]} == {"Facing set to left.", "Facing set to right."}


def test_a_click_acts_on_the_values_it_carries_not_on_the_fields_last_sync():
    """A click can reach the app before the field's last keystrokes do (CI once connected to ''): the buttons send
    their fields' values with the click, and the app acts on those."""
    script = ("import sys; sys.path[:0] = [sys.argv[1] + '/web', sys.argv[1] + '/slicer_module/SpineMorph']\n"
              "from spinemorph_web.app import SpineMorphWebApp\n"
              "app = SpineMorphWebApp('')\n"  # the state still holds an empty address
              "app.on_connect('http://127.0.0.1:9', '', '')\n"
              "print(app.state.server_url); print(app.state.error)")
    done = subprocess.run([str(WEB_PYTHON), "-c", script, str(REPO)], capture_output=True, text=True, timeout=120)
    url, error = done.stdout.splitlines()[-2:]
    assert url == "http://127.0.0.1:9"
    assert error.startswith("No SpineMorph server answers at http://127.0.0.1:9.")
