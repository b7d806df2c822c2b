"""The module's files: the .ui has every widget the code uses, the code compiles, CMake lists it, the Test asserts."""

from __future__ import annotations

import ast
import json
import py_compile
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from spinemorph.measure.core import LANDMARK_WEIGHT
from tests.slicer.conftest import MODULE, REPO, run_in_slicer_python

SOURCE = MODULE / "SpineMorph.py"
UI = MODULE / "Resources" / "UI" / "SpineMorph.ui"


def _classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse(SOURCE.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def test_every_widget_the_code_uses_is_in_the_ui_file():
    root = ET.parse(UI).getroot()
    names = {w.get("name") for w in root.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", SOURCE.read_text()))
    assert used and used <= names, f"missing from the .ui: {sorted(used - names)}"
    assert root.find("widget").get("class") == "qMRMLWidget" and root.find("widget").get("name") == "SpineMorph"


def test_parameter_bindings_name_fields_of_the_parameter_node():
    root = ET.parse(UI).getroot()
    bound = {p.findtext("string") for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    fields = {node.target.id for node in _classes()["SpineMorphParameterNode"].body if isinstance(node, ast.AnnAssign)}
    assert bound == {"serverUrl", "inputVolume", "labels", "maxEpochs", "batchSize", "autoNext"}
    assert bound <= fields


def test_the_module_keeps_the_template_order_and_compiles():
    assert list(_classes()) == ["SpineMorph", "SpineMorphParameterNode", "SpineMorphWidget", "SpineMorphLogic",
                                "SpineMorphTest"]
    for path in MODULE.rglob("*.py"):
        py_compile.compile(str(path), doraise=True)


def test_the_logic_has_no_qt():
    logic = ast.get_source_segment(SOURCE.read_text(), _classes()["SpineMorphLogic"])
    assert not re.search(r"\b(qt|ctk|slicer\.app)\b", logic)
    for path in (MODULE / "SpineMorphLib").glob("*.py"):
        assert not re.search(r"^\s*(import|from) (qt|ctk)\b", path.read_text(), re.M), path.name


def test_cmake_registers_every_file_and_the_test():
    cmake = (MODULE / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "SpineMorph")
    for path in [*MODULE.rglob("*.py"), *(MODULE / "Resources").rglob("*.*")]:
        assert str(path.relative_to(MODULE)) in cmake, f"{path.name} is not in CMakeLists.txt"
    assert "slicer_add_python_unittest(SCRIPT SpineMorph.py)" in cmake
    assert "add_subdirectory(SpineMorph)" in (REPO / "slicer_module" / "CMakeLists.txt").read_text()


def test_the_in_module_test_asserts_on_the_logic_output():
    test = _classes()["SpineMorphTest"]
    calls = [n for n in ast.walk(test) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    asserts = [c for c in calls if c.func.attr.startswith("assert")]
    assert len(asserts) >= 8
    uses_logic = [c for c in asserts if "logic" in ast.dump(c) or "by[" in ast.unparse(c) or "table" in ast.unparse(c)]
    assert len(uses_logic) >= 6
    done = run_in_slicer_python(MODULE.parents[1] / "tests" / "slicer" / "run_selftest.py", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "Ran 1 test" in done.stderr and "OK" in done.stderr
    assert not list(Path(tempfile.gettempdir()).glob("SpineMorphTest-*"))  # its work folder is removed


def test_the_logic_removes_the_work_folder_it_made_and_keeps_a_given_one():
    done = run_in_slicer_python(MODULE.parents[1] / "tests" / "slicer" / "workdir_in_slicer_python.py", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    folders = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        assert folders["made"] and Path(folders["closed"]).name.startswith("SpineMorph-")
        assert not folders["closed_exists"]  # close(): with the files in it
        assert folders["given_exists"]  # the caller's folder
        assert not Path(folders["left"]).exists()  # never closed: removed at the interpreter's exit
    finally:
        shutil.rmtree(folders["given"], ignore_errors=True)


def test_measure_keeps_the_servers_refusals_of_its_unedited_outlines():
    done = run_in_slicer_python(MODULE.parents[1] / "tests" / "slicer" / "refusals_in_slicer_python.py", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    sent, edited = seen["sent"], seen["edited"]
    assert sent["L2"][0] is None and "stages_disagree" in sent["L2"][1]  # its overlap, as the server measured it
    assert sent["L3"][0] is None and sent["L3"][1][-2:] == ["low_confidence", "views_disagree"]  # the server's call
    assert [sent[v][0] for v in ("L4", "L5")] == [0, 0]
    for seen_ in (sent, edited):  # L1 unedited, its landmarks far from its outline: their mean, and no grade at all
        assert seen_["L1"][0] is None and {"low_confidence", "landmarks_disagree"} <= set(seen_["L1"][1])
        assert seen_["L1"][3] == "mean"
        assert abs(seen_["L1"][2] - (seen["outline_l1_ha"] + 20.0 * LANDMARK_WEIGHT)) < 0.01
    assert edited["L3"][0] == 2 and "views_disagree" not in edited["L3"][1]  # edited: the annotator's, graded
    assert edited["L2"][0] is None and "stages_disagree" in edited["L2"][1]  # still the server's outline
    for seen_ in (sent, edited):  # L4 unedited: the mean of the server's landmarks (Ha 2 px short) and the outline
        assert seen_["L4"][3] == "mean" and abs(seen_["L4"][2] - (seen_["L5"][2] - 2.0 * LANDMARK_WEIGHT)) < 0.01
    assert edited["L3"][3] == "outline"  # edited: measured as drawn
    assert "split" in sent["L5"][1] and "split" in edited["L5"][1]  # the server's note on an unedited outline
    assert not any("split" in seen_[v][1] for seen_ in (sent, edited) for v in ("L1", "L2", "L3", "L4"))
    padded = seen["padded"]  # the film's blank border may have cut L1: not measured, and no reference for L2
    assert padded["L1"][2] is None and "truncated" in padded["L1"][1] and "no_upper_neighbour" in padded["L2"][1]
    assert padded["L3"][0] == 2
