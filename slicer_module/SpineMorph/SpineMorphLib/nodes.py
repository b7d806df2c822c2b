"""MRML nodes to arrays and back: volumes, segmentations, labelmaps, the results table and the height lines.

The one helper file that imports ``slicer``: it uses only MRML classes and ``slicer.util`` array functions that work
without Qt, so it runs both in the Slicer application and with PyPI's ``slicer-core``. Every function takes the
scene explicitly: ``slicer-core`` has no ``slicer.mrmlScene``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import slicer
import vtk

from SpineMorphLib.grid import PlaneGrid
from SpineMorphLib.levels import shifted_codes
from SpineMorphLib.markups import HeightLine
from SpineMorphLib.records import labels_from_export, segment_code, segment_style

__all__ = [
    "ATTR", "grid_of", "pixels_of", "add_image_volume", "measurement_geometry", "labels_of", "show_labels",
    "style_segments", "flip_facing", "shift_levels", "fill_table", "add_height_line", "line_points", "set_line_color",
    "remove_nodes", "mask_digest", "keep_outlines", "server_outlines", "server_context", "SERVER_ONLY",
    "SERVER_NOTES",
]

#: Node attributes the module writes on the volumes it loads (values are text).
ATTR = {"image_id": "SpineMorph.ImageId", "spacing": "SpineMorph.SpacingMm", "facing": "SpineMorph.Facing",
        "facing_source": "SpineMorph.FacingSource", "patient_id": "SpineMorph.PatientId",
        "study_uid": "SpineMorph.StudyUID", "level": "SpineMorph.Level", "station": "SpineMorph.Station",
        "naming": "SpineMorph.LevelNaming", "confidence": "SpineMorph.Confidence", "outlines": "SpineMorph.Outlines",
        "started": "SpineMorph.AnnotationStarted"}  # started: Next sample's time (epoch seconds), for Submit
_BY_CODE = ("confidence", "outlines")  # attributes keyed by level code, renamed with the levels
#: The server's refusals that re-measuring the same outline cannot repeat: it measured each of stage 2's views alone,
#: and it read the landmarks that disagreed with the outline.
SERVER_ONLY = ("views_disagree", "landmarks_disagree")
#: The server's notes on an outline that a re-measurement keeps while the outline is unedited: ``split``, stage 1
#: drew the body merged with a neighbour and stage 2 drew it alone.
SERVER_NOTES = ("split",)


def mask_digest(labels: np.ndarray, code: int) -> str:
    """Return a short digest of one level's mask: whether a segment is still the outline the server drew."""
    return hashlib.sha1(np.packbits(labels == code).tobytes()).hexdigest()[:16]


def keep_outlines(node, labels: np.ndarray, vertebrae: list[dict], facing: str | None = None) -> None:
    """Record on ``node``, for each level of the server's ``labels`` and its morphometry ``vertebrae`` (measured
    with anterior on the ``facing`` side): the stage that drew it, the overlap of its two stages' outlines, the
    server's refusals a re-measurement cannot repeat (``SERVER_ONLY``) and its notes (``SERVER_NOTES``), the six
    points of its landmark network and how they gave the heights (``heights_from``: mean or landmarks), and a
    digest of its mask."""
    from spinemorph.measure import LANDMARK_HEIGHTS, in_image_order

    kept = {}
    for v in vertebrae:
        if v.get("code") is not None:
            heights = v.get("heights_from")
            # The network's own points (a 0.3.0 server reported them only as the record's points).
            points = v.get("landmarks") or (v.get("points") if heights == "landmarks" else None)
            placed = heights in LANDMARK_HEIGHTS and facing in ("left", "right") and points
            kept[str(v["code"])] = {"stage": v.get("stage"), "agreement": v.get("agreement"),
                                    "withheld": [f for f in v.get("flags", []) if f in SERVER_ONLY],
                                    "notes": [f for f in v.get("flags", []) if f in SERVER_NOTES],
                                    "landmarks": in_image_order(points, facing) if placed else None,
                                    "heights": heights if placed else None,
                                    "digest": mask_digest(labels, v["code"])}
    node.SetAttribute(ATTR["outlines"], json.dumps(kept))


def server_outlines(node, labels: np.ndarray) -> dict[int, dict]:
    """Return what the server said of each level whose mask in ``labels`` is still the one it drew (an edited
    segment is the annotator's: measured as drawn)."""
    kept = json.loads(node.GetAttribute(ATTR["outlines"]) or "{}")
    return {int(c): v for c, v in kept.items() if mask_digest(labels, int(c)) == v["digest"]}


def server_context(node, labels: np.ndarray) -> tuple[dict, dict[int, list[str]], dict[int, list[str]]]:
    """Return what the server said of a labels node's levels: the ``spinemorph.measure`` keywords (how the levels
    were named, the network's confidence, and for each unedited outline its stage and stages' overlap, so that
    ``coarse_outline`` and ``stages_disagree`` refuse as on the server, and its landmarks, so that its heights are
    the server's), the server-only refusals by level code (for ``spinemorph.measure.gates.withhold``) and its notes
    by level code (``SERVER_NOTES``), all of the outlines still its own (their masks read once)."""
    confidence = {int(k): v for k, v in json.loads(node.GetAttribute(ATTR["confidence"]) or "{}").items()}
    outlines = server_outlines(node, labels)
    keywords = {"level_naming": json.loads(node.GetAttribute(ATTR["naming"]) or "null"),
                "confidence": confidence or None,
                "stages": {c: v["stage"] for c, v in outlines.items() if v["stage"]} or None,
                "agreement": {c: v["agreement"] for c, v in outlines.items() if v["agreement"] is not None} or None,
                "landmarks": {c: v["landmarks"] for c, v in outlines.items() if v.get("landmarks")} or None}
    # One film's landmark heights are of one kind; an outline kept before 0.4.0 had the landmarks' own.
    kinds = {v.get("heights") or "landmarks" for v in outlines.values() if v.get("landmarks")}
    if kinds:
        keywords["heights"] = "mean" if "mean" in kinds else "landmarks"
    return (keywords, {c: v["withheld"] for c, v in outlines.items() if v["withheld"]},
            {c: v["notes"] for c, v in outlines.items() if v.get("notes")})


def _rename_codes(node, mapping: dict[int, int]) -> None:
    """Move the attributes keyed by level code (confidence, outlines) to the levels' new codes."""
    for key in _BY_CODE:
        if node.GetAttribute(ATTR[key]):
            values = json.loads(node.GetAttribute(ATTR[key]))
            node.SetAttribute(ATTR[key], json.dumps({str(mapping.get(int(c), int(c))): v for c, v in values.items()}))


def _matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def grid_of(node) -> PlaneGrid:
    """Return the (row, column) grid of a 2D volume or labelmap node."""
    return PlaneGrid.from_matrix(_matrix(node), slicer.util.arrayFromVolume(node).shape)


def pixels_of(node) -> np.ndarray:
    """Return a 2D volume's pixels as (row, column), top to bottom as the film is read."""
    return grid_of(node).to_rc(slicer.util.arrayFromVolume(node))


def _fill_volume(node, grid: PlaneGrid, image: np.ndarray) -> None:
    slicer.util.updateVolumeFromArray(node, grid.to_kji(image))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(grid.ijk_to_ras))


def add_image_volume(scene, image, name: str, image_id: str = "", node_class: str = "vtkMRMLScalarVolumeNode"):
    """Return a new volume node (scalar, or labelmap by ``node_class``) holding a ``spinemorph.io.Radiograph``.

    The node has the image's own geometry. The measurement spacing and facing ride along as node attributes (a
    DICOM's display geometry uses ImagerPixelSpacing, while measurements use PixelSpacing when the file has it).
    """
    grid = PlaneGrid.from_affine(image.affine, image.shape)
    node = scene.AddNewNodeByClass(node_class, name)
    pixels = np.asarray(image.pixels)
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        pixels = pixels.astype(np.int16)
    elif pixels.dtype not in (np.uint8, np.uint16, np.int16):
        pixels = pixels.astype(np.float32)
    _fill_volume(node, grid, pixels)
    node.CreateDefaultDisplayNodes()
    if node.GetDisplayNode() is not None and not node.IsA("vtkMRMLLabelMapVolumeNode"):
        node.GetDisplayNode().SetAutoWindowLevel(True)
    values = {"image_id": image_id, "facing": image.facing or "", "facing_source": _facing_source(image),
              "spacing": ",".join(repr(float(v)) for v in image.spacing_mm) if image.spacing_mm else "",
              "patient_id": image.meta.get("patient_id", ""), "study_uid": image.meta.get("study_uid", "")}
    for key, value in values.items():
        node.SetAttribute(ATTR[key], str(value))
    return node


def _facing_source(image) -> str:
    if not image.facing:
        return "none"
    return "PatientOrientation" if image.meta.get("format") == "dicom" else "file"


def measurement_geometry(node, grid: PlaneGrid) -> tuple[tuple[float, float] | None, str | None, str]:
    """Return the (spacing, facing, facing source) to measure a node with: from its attributes, else its geometry.

    A node the module loaded carries the file's measurement spacing (none for a PNG); any other node is measured
    at its voxel spacing, with the facing inferred.
    """
    spacing_text = node.GetAttribute(ATTR["spacing"]) if node is not None else None
    if spacing_text is None:
        return grid.spacing, None, "argument"
    spacing = tuple(float(v) for v in spacing_text.split(",")) if spacing_text else None
    facing = node.GetAttribute(ATTR["facing"]) or None
    return spacing, facing, node.GetAttribute(ATTR["facing_source"]) or "argument"


def labels_of(scene, node, reference=None, require_levels: bool = False) -> tuple[np.ndarray, PlaneGrid]:
    """Return the (H, W) VerSe-code labelmap of a segmentation or labelmap node, and its grid.

    A segmentation is exported on ``reference``'s grid when given, else on its own reference geometry (whole
    image, so no body seems cut by a cropped extent). Its segments are coded by level name; with
    ``require_levels``, a segment without a level is a ValueError.
    """
    if not node.IsA("vtkMRMLSegmentationNode"):
        grid = grid_of(node)
        return np.rint(grid.to_rc(slicer.util.arrayFromVolume(node))).astype(np.int32), grid
    segmentation = node.GetSegmentation()
    geometry = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if reference is None and not segmentation.GetConversionParameter(geometry):
        raise ValueError(f"Segmentation {node.GetName()!r} has no reference geometry: choose the image it belongs to.")
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    codes = [segment_code(s.GetName(), s.GetLabelValue()) for s in map(segmentation.GetSegment, ids)]
    unnamed = [segmentation.GetSegment(i).GetName() for i, c in zip(ids, codes, strict=True) if c is None]
    if require_levels and unnamed:
        raise ValueError(f"Name every segment by its level (T12, L1, ...): {', '.join(unnamed)} has no level.")
    names = vtk.vtkStringArray()
    for segment_id in ids:
        names.InsertNextValue(segment_id)
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SpineMorph export")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            node, names, temp, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not ok:
            raise ValueError(f"Segmentation {node.GetName()!r} could not be exported to a labelmap.")
        grid = grid_of(temp)
        return labels_from_export(grid.to_rc(slicer.util.arrayFromVolume(temp)), codes).astype(np.int32), grid
    finally:
        remove_nodes(scene, [temp])


def show_labels(scene, labels: np.ndarray, volume, segmentation=None, name: str = "SpineMorph segmentation"):
    """Return a segmentation node (new, or ``segmentation`` emptied) with one segment per level in ``labels``."""
    grid = grid_of(volume)
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SpineMorph import")
    try:
        _fill_volume(temp, grid, np.asarray(labels).astype(np.int16))
        if segmentation is None:
            segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
            segmentation.CreateDefaultDisplayNodes()
        segmentation.GetSegmentation().RemoveAllSegments()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(temp, segmentation):
            raise ValueError("The labelmap could not be imported into a segmentation.")
    finally:
        remove_nodes(scene, [temp])
    style_segments(segmentation)
    return segmentation


def style_segments(segmentation) -> None:
    """Name every level segment by its level and give it the level's fixed colour."""
    segs = segmentation.GetSegmentation()
    for i in range(segs.GetNumberOfSegments()):
        segment = segs.GetNthSegment(i)
        code = segment_code(segment.GetName(), segment.GetLabelValue())
        if code is not None:
            name, colour = segment_style(code)
            segment.SetName(name)
            segment.SetColor(*colour)


def flip_facing(volume, measured: str | None = None) -> str:
    """Set ``volume``'s facing to the other side, recorded as the annotator's call; return the new facing.

    ``measured`` is the facing the last measurement used, for a volume that carries none of its own.
    """
    if volume is None:
        raise ValueError("Choose the image whose facing to flip.")
    current = volume.GetAttribute(ATTR["facing"]) or measured
    if current not in ("left", "right"):
        raise ValueError("The facing is not known yet: measure first.")
    facing = "right" if current == "left" else "left"
    volume.SetAttribute(ATTR["facing"], facing)
    volume.SetAttribute(ATTR["facing_source"], "annotator")
    return facing


def shift_levels(scene, node, steps: int) -> dict[int, int]:
    """Move every level of a segmentation or labelmap node ``steps`` down the spine (negative: up): segment names and
    colours, or labelmap values; return old code -> new code (``SpineMorphLib.levels.shifted_codes``: S1 stays)."""
    if node.IsA("vtkMRMLSegmentationNode"):
        segs = node.GetSegmentation()
        segments = [segs.GetNthSegment(i) for i in range(segs.GetNumberOfSegments())]
        codes = {id(s): segment_code(s.GetName(), s.GetLabelValue()) for s in segments}
        mapping = shifted_codes([c for c in codes.values() if c is not None], steps)
        for segment in segments:  # a segment's level is its name (its label value is the export's business)
            if codes[id(segment)] is not None:
                segment.SetName(segment_style(mapping[codes[id(segment)]])[0])
        style_segments(node)
        _rename_codes(node, mapping)
        return mapping
    array = slicer.util.arrayFromVolume(node)
    mapping = shifted_codes([int(c) for c in np.unique(array) if c], steps)
    lookup = np.arange(max(256, int(array.max()) + 1), dtype=array.dtype)
    for old, new in mapping.items():
        lookup[old] = new
    slicer.util.updateVolumeFromArray(node, lookup[array])
    _rename_codes(node, mapping)
    return mapping


def fill_table(table, headers: list[str], rows: list[list[str]]) -> None:
    """Replace a table node's content with text columns ``headers`` and ``rows``."""
    was = table.StartModify()
    table.RemoveAllColumns()
    for j, header in enumerate(headers):
        column = vtk.vtkStringArray()
        column.SetName(header)
        for row in rows:
            column.InsertNextValue(row[j])
        table.AddColumn(column)
    table.SetUseColumnTitleAsColumnHeader(True)
    table.EndModify(was)


def add_height_line(scene, line: HeightLine, colour) -> object:
    """Return a new markups line node for one height, its two control points draggable, coloured ``colour``."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", line.name)
    node.CreateDefaultDisplayNodes()
    node.AddControlPoint(vtk.vtkVector3d(*line.superior), "superior")
    node.AddControlPoint(vtk.vtkVector3d(*line.inferior), "inferior")
    node.SetFixedNumberOfControlPoints(True)
    node.SetAttribute(ATTR["level"], line.level)
    node.SetAttribute(ATTR["station"], line.station)
    display = node.GetDisplayNode()
    display.SetPropertiesLabelVisibility(False)
    display.SetPointLabelsVisibility(False)
    set_line_color(node, colour)
    return node


def set_line_color(node, colour) -> None:
    """Colour a line node (RGB 0-255), selected or not."""
    rgb = [c / 255.0 for c in colour]
    display = node.GetDisplayNode()
    display.SetSelectedColor(*rgb)
    display.SetColor(*rgb)


def line_points(node) -> tuple[np.ndarray, np.ndarray]:
    """Return a line node's (superior, inferior) control points in RAS."""
    return tuple(np.asarray(node.GetNthControlPointPosition(i), float) for i in (0, 1))


def remove_nodes(scene, nodes) -> None:
    """Remove nodes and their display and storage nodes from the scene."""
    for node in nodes:
        if node is None or node.GetScene() is None:
            continue
        extra = []
        if hasattr(node, "GetNumberOfDisplayNodes"):
            extra += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if hasattr(node, "GetStorageNode"):
            extra.append(node.GetStorageNode())
        scene.RemoveNode(node)
        for other in extra:
            if other is not None and other.GetScene() is not None:
                scene.RemoveNode(other)
