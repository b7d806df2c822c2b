"""The whole SpineMorph loop, run by the module's Logic on real MRML nodes (slicer-core) against a real server.

    .venv-slicer/bin/python tests/slicer/loop_in_slicer_python.py SERVER_URL STUDIES OUTDIR
    .venv-slicer/bin/python tests/slicer/loop_in_slicer_python.py --figure IMAGE LABEL PNG

Every step checks what it must produce and raises AssertionError otherwise; OUTDIR/loop.json sums them up for the
pytest side. ``--figure`` measures a labelmap loaded from disk and renders the overlay PNG (the README's picture).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import requests
import slicer
import vtk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "slicer_module" / "SpineMorph"))
import SpineMorph  # noqa: E402

from spinemorph.conventions import genant_grade  # noqa: E402
from spinemorph.io import image_id, read_labelmap, read_radiograph  # noqa: E402
from spinemorph.levels import level_below, level_code, level_color, level_name  # noqa: E402
from spinemorph.measure import measure  # noqa: E402
from spinemorph.overlay import GRADE_COLORS  # noqa: E402
from SpineMorphLib import nodes  # noqa: E402
from SpineMorphLib.nodes import ATTR  # noqa: E402

MODEL = "spinemorph_levels"
L = slicer.vtkSlicerSegmentationsModuleLogic


def check(condition, message: str) -> None:
    """Raise AssertionError with ``message`` unless ``condition`` holds (also under python -O)."""
    if not condition:
        raise AssertionError(message)


def cells(table) -> list[list[str]]:
    """Return a table node's cells, row by row."""
    columns = range(table.GetNumberOfColumns())
    return [[table.GetCellText(i, j) for j in columns] for i in range(table.GetNumberOfRows())]


def segments(segmentation) -> list:
    """Return a segmentation node's segments in order."""
    seg = segmentation.GetSegmentation()
    return [seg.GetNthSegment(i) for i in range(seg.GetNumberOfSegments())]


def check_volume(volume, path: Path) -> None:
    """Check that a volume node holds the file's pixels in the file's geometry, with its measurement spacing."""
    image = read_radiograph(path)
    grid = nodes.grid_of(volume)
    check(volume.IsA("vtkMRMLScalarVolumeNode"), "not a scalar volume")
    np.testing.assert_array_equal(grid.to_rc(slicer.util.arrayFromVolume(volume)), image.pixels)
    np.testing.assert_allclose(grid.affine, image.affine, atol=1e-9)
    spacing = volume.GetAttribute(ATTR["spacing"])
    check((tuple(map(float, spacing.split(","))) if spacing else None) == image.spacing_mm, f"spacing {spacing}")


def step_next_sample(logic, studies: Path) -> tuple:
    """1. Next sample gives a volume node; DICOM, PNG and NIfTI all load with their geometry and segment."""
    volume = logic.nextSample("first")
    files = {image_id(p): p for p in studies.iterdir() if p.is_file()}
    check_volume(volume, files[volume.GetAttribute(ATTR["image_id"])])
    formats = {}
    for other in ("xray-sixteen-bit", "xray-nifti"):
        node = logic.loadSample(other)
        check_volume(node, files[other])
        seg = logic.autoSegment(node, MODEL)
        formats[files[other].name] = {"shape": list(nodes.grid_of(node).shape), "segments": len(segments(seg)),
                                      "spacing": node.GetAttribute(ATTR["spacing"])}
        nodes.remove_nodes(logic.scene, [seg, node])
    formats[files[volume.GetAttribute(ATTR["image_id"])].name] = {"shape": list(nodes.grid_of(volume).shape)}
    return volume, {"image": volume.GetAttribute(ATTR["image_id"]), "formats": formats}


def step_infer(logic, volume) -> tuple:
    """2. Infer gives a segmentation node, one segment per level, named and coloured by level."""
    seg = logic.autoSegment(volume, MODEL)
    names = [s.GetName() for s in segments(seg)]
    check(names and set(names) == set(logic.lastInfer["label_names"]), f"segments {names}")
    for s in segments(seg):
        np.testing.assert_allclose(s.GetColor(), np.array(level_color(level_code(s.GetName()))) / 255, atol=1e-6)
    labels, _ = read_labelmap(next(Path(logic.workdir).glob(f"{volume.GetAttribute(ATTR['image_id'])}-*.nii.gz")))
    np.testing.assert_array_equal(nodes.labels_of(logic.scene, seg, volume)[0], labels)
    return seg, {"segments": names, "weights": logic.lastInfer["weights"], "sha": logic.lastInfer["weights_sha256"],
                  "answered_by": seg.GetAttribute("SpineMorph.AnsweredBy")}


def step_measure(logic, seg, volume) -> dict:
    """3. Measure gives a table row per vertebra and three line markups per measured one, as the server measured."""
    table = logic.measure(seg, volume)
    server = logic.lastInfer["morphometry"]["vertebrae"]
    rows, records = cells(table), logic.measurement.result.vertebrae
    check([r[0] for r in rows] == [v["level"] for v in server], f"levels {[r[0] for r in rows]}")
    for rec, ref in zip(records, server, strict=True):
        check(rec.genant_grade == ref["genant_grade"], f"{rec.level} grade")
        for key in ("Ha_mm", "vcr_percent"):
            mine, theirs = getattr(rec, key), ref[key]
            check(mine == theirs or abs(mine - theirs) < 1e-6, f"{rec.level} {key}: {mine} vs {theirs}")
    measured = [r for r in records if r.points]
    check(len(logic.measurement.lines) == 3 * len(measured) and measured, f"{len(logic.measurement.lines)} lines")
    by = logic.measurement.result.by_level()
    for line in logic.measurement.lines:
        rec, station = by[line.GetAttribute(ATTR["level"])], line.GetAttribute(ATTR["station"])
        expected = [rec.points[f"superior_{station}"], rec.points[f"inferior_{station}"]]
        np.testing.assert_allclose(logic.measurement.grid.ras_to_rc(nodes.line_points(line)), expected, atol=1e-6)
    return {"rows": rows, "lines": len(logic.measurement.lines)}


def step_correct(logic, seg, volume) -> dict:
    """3b. One click shifts every level name up (S1 stays) and back; one click flips the facing, swapping Ha and Hp.

    (A lumbar view holds L5: shifting it down is refused, as spinemorph names no level below L5.)
    """
    before = [r.level for r in logic.measurement.result.vertebrae]
    labels_before = nodes.labels_of(logic.scene, seg, volume)[0]
    outlines = nodes.server_outlines(seg, labels_before)
    check(outlines and {v["stage"] for v in outlines.values()} == {1}, f"outlines {outlines}")  # no stage 2 here
    mapping = logic.shiftLevels(seg, -1)
    check(nodes.server_outlines(seg, nodes.labels_of(logic.scene, seg, volume)[0])
          == {mapping[c]: v for c, v in outlines.items()}, "what the server said follows the renamed levels")
    logic.measure(seg, volume)
    shifted = [r.level for r in logic.measurement.result.vertebrae]
    check(shifted == [level_name(level_below(level_code(n), -1)) for n in before], f"{before} shifted {shifted}")
    check(logic.measurement.result.level_naming == {"anchor": "annotator", "level_uncertain": False}, "naming")
    logic.shiftLevels(seg, 1)
    np.testing.assert_array_equal(nodes.labels_of(logic.scene, seg, volume)[0], labels_before)
    logic.measure(seg, volume)
    measured = {r.level: (r.Ha_mm, r.Hp_mm) for r in logic.measurement.result.vertebrae if r.points}
    facing = logic.measurement.result.facing
    flipped = logic.flipFacing(volume)
    logic.measure(seg, volume)
    result = logic.measurement.result
    check(flipped != facing and result.facing == flipped and result.facing_source == "annotator", "facing")
    for r in result.vertebrae:
        if r.level in measured:
            ha, hp = measured[r.level]
            check(abs(r.Ha_mm - hp) < 1e-6 and abs(r.Hp_mm - ha) < 1e-6, f"{r.level}: Ha/Hp not swapped")
    logic.flipFacing(volume)
    logic.measure(seg, volume)
    check(logic.measurement.result.facing == facing, "flipped back")
    return {"before": before, "shifted": shifted, "mapping": {str(k): v for k, v in mapping.items()},
            "facing": facing, "flipped": flipped, "swapped": len(measured)}


def _target(result):
    """Return a well-sized graded vertebra, with both neighbours graded when one is (a tiny model finds odd bodies)."""
    graded = [r for r in result.vertebrae if r.genant_grade is not None]
    check(graded, "the model found no measurable vertebra")
    inner = [r for r in graded if not {"no_upper_neighbour", "no_lower_neighbour"} & set(r.flags)]
    return max(inner or graded, key=lambda r: min(r.Ha_px, r.Hp_px))


def _wedge_cut(mask: np.ndarray, facing: str, loss: float = 0.4) -> np.ndarray:
    """Return the body with its upper anterior part erased: ``loss`` of its height at the front, none at the back."""
    out = mask.copy()
    cols = np.nonzero(mask.any(axis=0))[0]
    for c in cols:
        rows = np.nonzero(mask[:, c])[0]
        depth = (c - cols.min()) / max(cols.max() - cols.min(), 1)
        depth = depth if facing == "left" else 1 - depth  # 0 at the anterior wall
        out[rows.min():rows.min() + int(round(loss * (1 - depth) * (rows.max() - rows.min() + 1))), c] = False
    return out


def step_edit(logic, seg, volume) -> dict:
    """4. Erasing part of one segment (as the Segment Editor's eraser would) changes its row on re-measure.

    The tiny test model draws odd bodies, so the check is against spinemorph.measure on the edited labels.
    """
    result, target = logic.measurement.result, _target(logic.measurement.result)
    rows_before = cells(logic.measurement.table)
    labels, grid = nodes.labels_of(logic.scene, seg, volume)
    mask = _wedge_cut(labels == target.code, result.facing)
    temp = logic.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    slicer.util.updateVolumeFromArray(temp, grid.to_kji(mask.astype(np.uint8)))
    temp.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(grid.ijk_to_ras))
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(seg.GetSegmentation().GetSegmentIdBySegmentName(target.level))
    check(L.ImportLabelmapToSegmentationNode(temp, seg, ids), "segment update failed")
    nodes.remove_nodes(logic.scene, [temp])
    edited = np.where(labels == target.code, 0, labels)
    edited[mask] = target.code
    np.testing.assert_array_equal(nodes.labels_of(logic.scene, seg, volume)[0], edited)
    logic.measure(seg, volume)
    confidence = {int(k): v for k, v in json.loads(seg.GetAttribute(ATTR["confidence"])).items()}
    # the server's stage-1 outlines get no fracture grade; the edited one is the annotator's, graded as measured
    stages = {v["code"]: v["stage"] for v in logic.lastInfer["morphometry"]["vertebrae"] if v["code"] != target.code}
    expected = measure(edited, result.spacing_mm, result.facing, confidence=confidence or None,
                       stages=stages).vertebrae
    got = logic.measurement.result.vertebrae
    check([(r.level, r.Ha_mm, r.genant_grade) for r in got] == [(r.level, r.Ha_mm, r.genant_grade) for r in expected],
          "re-measuring does not match spinemorph.measure on the edited labels")
    row = next(i for i, r in enumerate(rows_before) if r[0] == target.level)
    check(cells(logic.measurement.table)[row] != rows_before[row], f"{target.level}'s row did not change")
    return {"level": target.level, "erased_px": int((labels == target.code).sum() - mask.sum()),
            "row_before": rows_before[row], "row_after": cells(logic.measurement.table)[row]}


def step_drag(logic) -> dict:
    """5. Pulling one superior anterior point 30 % down the Ha line updates that vertebra's Ha, VCR and grade live."""
    rec = _target(logic.measurement.result)
    old = {k: getattr(rec, k) for k in ("Ha_mm", "wedge", "biconcave", "crush", "vcr_percent", "genant_grade")}
    line = next(n for n in logic.measurement.lines if n.GetName() == f"{rec.level} Ha")
    superior, inferior = nodes.line_points(line)
    line.SetNthControlPointPosition(0, *(superior + 0.3 * (inferior - superior)))
    losses = [1 - 0.7 * old["wedge"], 1 - old["biconcave"]] + ([1 - old["crush"]] if old["crush"] else [])
    expected = {"Ha_mm": 0.7 * old["Ha_mm"], "genant_grade": genant_grade(max(max(losses), 0.0)),
                "vcr_percent": None if old["vcr_percent"] is None else 100 - 0.7 * (100 - old["vcr_percent"])}
    check(abs(rec.Ha_mm - expected["Ha_mm"]) < 1e-3, f"Ha {rec.Ha_mm} vs {expected['Ha_mm']}")
    check(rec.genant_grade == expected["genant_grade"], f"grade {rec.genant_grade} vs {expected['genant_grade']}")
    if expected["vcr_percent"] is not None:
        check(abs(rec.vcr_percent - expected["vcr_percent"]) < 1e-2, f"VCR {rec.vcr_percent}")
    row = next(r for r in cells(logic.measurement.table) if r[0] == rec.level)
    check(row[8] == str(expected["genant_grade"]), f"table grade {row[8]}")
    colour = line.GetDisplayNode().GetColor()
    np.testing.assert_allclose(colour, np.array(GRADE_COLORS[rec.genant_grade]) / 255, atol=1e-6)
    return {"level": rec.level, "before": old, "after": {k: getattr(rec, k) for k in old}, "row": row}


def step_submit(logic, seg, volume, url: str, studies: Path) -> tuple:
    """6. Submit stores the edited labels as the image's final label; the next sample comes automatically."""
    done = volume.GetAttribute(ATTR["image_id"])
    following = logic.submitLabel(seg, volume, nextStrategy="first")
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    label = objects[done]["labels"].get("final")
    check(label is not None, f"{done} has no final label on the server")
    names = sorted(s.GetName() for s in segments(seg))
    check(sorted(label["info"]["levels"]) == names, f"server levels {label['info']['levels']}")
    stored, _ = read_labelmap(studies / "labels" / "final" / f"{done}.nii.gz")
    np.testing.assert_array_equal(stored, nodes.labels_of(logic.scene, seg, volume)[0])
    nxt = following.GetAttribute(ATTR["image_id"])
    check(nxt != done and "final" not in objects[nxt]["labels"], f"next sample {nxt}")
    return following, {"image": done, "levels": names, "next": nxt}


def step_train(logic, volume, sha_before: str) -> dict:
    """7. Train runs on the server while polling never blocks; the next infer uses the published model."""
    logic.startTraining(MODEL, maxEpochs=1, batchSize=2)
    seen, slowest, deadline = [], 0.0, time.time() + 300
    progress = logic.pollTraining()
    while not progress.finished and time.time() < deadline:
        time.sleep(0.5)
        start = time.perf_counter()
        progress = logic.pollTraining()
        slowest = max(slowest, time.perf_counter() - start)
        seen.append(round(progress.fraction, 3))
    check(progress.status == "DONE", f"training ended {progress.status}: {progress.message}")
    check(progress.fraction == 1.0 and slowest < 0.1, f"progress {progress}, slowest poll {slowest:.3f} s")
    logic.autoSegment(volume, MODEL)
    check(logic.lastInfer["weights_sha256"] != sha_before, "the next infer did not use the trained model")
    return {"status": progress.status, "message": progress.message, "fractions": seen, "slowest_poll_s": slowest,
            "weights": logic.lastInfer["weights"], "sha": logic.lastInfer["weights_sha256"],
            "version": logic.lastInfer["model_version"]}


def step_stop(logic) -> dict:
    """Stop: a long training job stops on request and the monitor reports it finished."""
    logic.startTraining(MODEL, maxEpochs=200, batchSize=2)
    deadline = time.time() + 60
    while logic.pollTraining().status == "SUBMITTED" and time.time() < deadline:  # a job not yet started
        time.sleep(0.2)  # cannot be stopped: the server kills only a running process
    check(logic.pollTraining().status == "RUNNING", f"training is {logic.pollTraining().status}")
    logic.stopTraining()
    while not logic.pollTraining().finished and time.time() < deadline:
        time.sleep(0.2)
    progress = logic.pollTraining()
    check(progress.status == "STOPPED", f"training ended {progress.status}: {progress.message}")
    return {"status": progress.status}


def measure_from_disk(logic, image_path: Path, label_path: Path, png: Path, height: int = 768) -> tuple:
    """Measure a labelmap and a segmentation loaded from disk (NIfTI index order), as spinemorph measures the file.

    Returns the image volume and the labelmap node (measured, with its height lines), and a summary.
    """
    import nibabel as nib

    nii = nib.load(str(label_path))
    labelmap = logic.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", label_path.name)
    slicer.util.updateVolumeFromArray(labelmap, np.asarray(nii.dataobj).astype(np.int16).transpose(2, 1, 0))
    labelmap.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(nii.affine))  # as Slicer loads it: I = NIfTI axis 0
    labels, _ = read_labelmap(label_path)
    image = read_radiograph(image_path)
    reference = measure(labels, image.spacing_mm, image.facing).to_dict()["vertebrae"]
    from_disk = logic.measure(labelmap)
    seg = logic.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "from disk")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)  # a .seg.nrrd file carries its geometry
    check(L.ImportLabelmapToSegmentationNode(labelmap, seg), "import failed")
    for node in (labelmap, seg):
        logic.measure(node)
        got = logic.measurement.result.vertebrae
        check([(r.level, r.genant_grade) for r in got] == [(r["level"], r["genant_grade"]) for r in reference],
              f"{node.GetName()}: {[(r.level, r.genant_grade) for r in got]}")
        # The file's spacing is the affine's float32 copy: heights agree to far below a pixel, not to the last digit.
        np.testing.assert_allclose([r.Ha_mm or 0 for r in got], [r["Ha_mm"] or 0 for r in reference], atol=0.02)
        facing = logic.measurement.result.facing
        check(facing == image.facing, f"facing {facing} inferred, {image.facing} in the file")
    logic.measure(labelmap)
    volume = logic.loadImage(image_path)
    logic.exportPng(png, volume, labelmap, height)
    return volume, labelmap, {"rows": from_disk.GetNumberOfRows(), "facing": facing, "png": str(png)}


def exports(logic, volume, seg, out: Path) -> dict:
    """Export the CSV, the overlay PNG and the report, and check what they hold."""
    csv = logic.exportCsv(out / "spinemorph.csv").read_text().splitlines()
    check(len(csv) == logic.measurement.table.GetNumberOfRows() + 1, "CSV rows")
    report = logic.exportReport(out / "report.txt", volume).read_text()
    first = logic.measurement.result.vertebrae[0].level
    check(volume.GetAttribute(ATTR["image_id"]) in report and first in report, "report")
    png = logic.exportPng(out / "overlay.png", volume, seg)
    from PIL import Image

    with Image.open(png) as pic:
        check(pic.height == 768, f"PNG height {pic.height}")
    return {"csv": csv, "report": report, "png": str(png)}


def main(argv: list[str]) -> int:
    """Run the loop (or --figure) and write the summary; return 0."""
    logging.basicConfig(level=logging.WARNING)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
    scene = slicer.vtkMRMLScene()  # no slicer.mrmlScene here: the Logic takes its scene explicitly
    if argv[0] == "--report":  # a film and its SpineMorph SR, opened for review: the table and the lines
        logic = SpineMorph.SpineMorphLogic(scene=scene, workdir=Path(argv[3]).parent)
        volume = logic.loadImage(Path(argv[1]))
        table = logic.loadReport(Path(argv[2]), volume)
        result = logic.measurement.result
        Path(argv[3]).write_text(json.dumps({
            "rows": cells(table), "lines": len(logic.measurement.lines), "units": result.unit,
            "vertebrae": [{"level": r.level, "Ha": r.height("Ha", result.unit), "grade": r.genant_grade,
                           "points": r.points} for r in result.vertebrae]}))
        return 0
    if argv[0] == "--figure":
        logic = SpineMorph.SpineMorphLogic(scene=scene, workdir=Path(argv[3]).parent)
        print(json.dumps(measure_from_disk(logic, Path(argv[1]), Path(argv[2]), Path(argv[3]), height=600)[2]))
        return 0
    url, studies, out = argv[0], Path(argv[1]), Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    logic = SpineMorph.SpineMorphLogic(scene=scene, workdir=out / "work")
    summary, times = {"connect": logic.connect(url)}, {}
    start = time.perf_counter()
    volume, summary["1_next_sample"] = step_next_sample(logic, studies)
    seg, summary["2_infer"] = step_infer(logic, volume)
    summary["3_measure"] = step_measure(logic, seg, volume)
    summary["3b_correct"] = step_correct(logic, seg, volume)
    summary["4_edit"] = step_edit(logic, seg, volume)
    summary["exports"] = exports(logic, volume, seg, out)
    # A labelled image's label from disk: whole, well-drawn bodies with neighbours, whatever the tiny model finds.
    label = next(p for p in sorted((studies / "labels" / "final").glob("*.nii.gz"))
                 if (studies / p.name.replace(".nii.gz", ".dcm")).exists())
    disk_volume, labelmap, summary["from_disk"] = measure_from_disk(
        logic, studies / label.name.replace(".nii.gz", ".dcm"), label, out / "disk.png")
    summary["5_drag"] = step_drag(logic)
    logic.exportPng(out / "dragged.png", disk_volume, labelmap)
    following, summary["6_submit"] = step_submit(logic, seg, volume, url, studies)
    summary["7_train"] = step_train(logic, following, summary["2_infer"]["sha"])
    summary["stop"] = step_stop(logic)
    times["loop_s"] = round(time.perf_counter() - start, 2)
    summary["times"] = times
    (out / "loop.json").write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
