"""SpineMorph: fetch a lateral spine radiograph, segment it on the server, edit, measure, grade and train.

Module, ParameterNode, Widget, Logic and Test, in the order of Slicer's scripted-module template. The Logic has no
Qt: it runs in the application and on PyPI's ``slicer-core`` (MRML without Qt), where the tests drive it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import slicer
from slicer import vtkMRMLNode, vtkMRMLScalarVolumeNode
from slicer.util import VTKObservationMixin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # SpineMorphLib, also when run as a script
from SpineMorphLib.annotation import AnnotationLoop  # noqa: E402  (standard library and numpy)
from SpineMorphLib.corrections import Corrections  # noqa: E402  (standard library)
from SpineMorphLib.dependencies import ensure_dependencies, use_repository_lib  # noqa: E402  (standard library)
from SpineMorphLib.files import ResultFiles, WorkFolder  # noqa: E402  (standard library)

use_repository_lib()  # in a SpineMorph checkout, spinemorph comes from its lib/ folder

try:  # the Slicer application
    import qt
    from slicer.parameterNodeWrapper import parameterNodeWrapper
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
except ImportError:  # slicer-core: MRML without Qt; the Logic and the Test still work on real nodes
    qt = None
    from SpineMorphLib.standalone import (  # noqa: E402
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
        parameterNodeWrapper,
    )

__all__ = ["SpineMorph", "SpineMorphParameterNode", "SpineMorphWidget", "SpineMorphLogic", "SpineMorphTest"]

SETTINGS_URL = "SpineMorph/ServerUrl"


class SpineMorph(ScriptedLoadableModule):
    """Vertebral morphometry on lateral spine radiographs, with a SpineMorph MONAI Label server."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineMorph"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["SpineMorph developers"]
        self.parent.helpText = (
            "Connect to a SpineMorph MONAI Label server, fetch the next radiograph, segment the vertebral bodies, "
            "edit them, and measure Ha/Hm/Hp, wedge, biconcave and crush indices, VCR and the Genant grade. Drag the "
            "six points of a vertebra to update its grade. Submit labels, train, and export CSV, PNG and a report.")
        self.parent.acknowledgementText = "Built on 3D Slicer's scripted-module template and MONAI Label."


@parameterNodeWrapper
class SpineMorphParameterNode:
    """What the module panel shows, kept in the scene: server, image, labels and training settings."""

    serverUrl: str = "http://127.0.0.1:8000"
    inputVolume: vtkMRMLScalarVolumeNode
    labels: vtkMRMLNode
    maxEpochs: int = 10
    batchSize: int = 4
    autoNext: bool = True


class SpineMorphWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel to the Logic; every action is one Logic call."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiTag = None
        self._timer = None

    def setup(self) -> None:
        """Load the .ui file, create the Logic (installing what is missing) and connect the buttons."""
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/SpineMorph.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineMorphLogic(installer=slicer.util.pip_install)
        self.logic.measurement.onChange = self._showResults
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(
            slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "SpineMorph editor"))
        self._timer = qt.QTimer()
        self._timer.setInterval(2000)
        self._timer.connect("timeout()", self._pollTraining)
        for button, slot in ((self.ui.connectButton, self.onConnect), (self.ui.nextSampleButton, self.onNextSample),
                             (self.ui.autoSegmentButton, self.onAutoSegment), (self.ui.measureButton, self.onMeasure),
                             (self.ui.flipFacingButton, self.onFlipFacing),
                             (self.ui.levelsUpButton, lambda: self.onShiftLevels(-1)),
                             (self.ui.levelsDownButton, lambda: self.onShiftLevels(1)),
                             (self.ui.submitButton, self.onSubmit), (self.ui.trainButton, self.onTrain),
                             (self.ui.exportCsvButton, lambda: self.onExport("csv")),
                             (self.ui.exportPngButton, lambda: self.onExport("png")),
                             (self.ui.exportReportButton, lambda: self.onExport("report")),
                             (self.ui.openReportButton, self.onOpenReport)):
            button.connect("clicked(bool)", slot)
        self.ui.labelsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._editLabels)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Stop polling, drop observers and remove the Logic's work folder when the module closes."""
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()
        self.setParameterNode(None)
        if self.logic is not None:
            self.logic.close()

    def enter(self) -> None:
        """Make sure the parameter node exists when the user opens the module."""
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        """Forget the parameter node before the scene closes."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Make a new parameter node after the scene closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Bind the panel to the scene's parameter node; the server address comes from the user's settings."""
        self.setParameterNode(self.logic.getParameterNode())
        saved = qt.QSettings().value(SETTINGS_URL)
        if saved:
            self._parameterNode.serverUrl = saved

    def setParameterNode(self, parameterNode) -> None:
        """Connect widgets that carry a SlicerParameterName to ``parameterNode``."""
        if self._parameterNode is not None and self._guiTag is not None:
            self._parameterNode.disconnectGui(self._guiTag)
        self._parameterNode = parameterNode
        if parameterNode is not None:
            self._guiTag = parameterNode.connectGui(self.ui)

    def onConnect(self) -> None:
        """Read /info and fill the model and strategy selectors; remember the address."""
        with slicer.util.tryWithErrorDisplay("Could not connect to the server.", waitCursor=True):
            url = self.ui.serverUrlEdit.text.strip()
            info = self.logic.connect(url, self.ui.usernameEdit.text.strip(), self.ui.passwordEdit.text)
            self.ui.passwordEdit.text = ""  # used once for a token, never kept
            qt.QSettings().setValue(SETTINGS_URL, url)
            for selector, names in ((self.ui.modelSelector, info["models"]),
                                    (self.ui.strategySelector, info["strategies"])):
                selector.clear()
                selector.addItems(names)
            self._say(f"Connected to {info['name']}: {len(info['models'])} models.", info.get("progress"))

    def onNextSample(self) -> None:
        """Fetch and show the next image by the chosen strategy."""
        with slicer.util.tryWithErrorDisplay("Could not fetch the next sample.", waitCursor=True):
            self._showVolume(self.logic.nextSample(self.ui.strategySelector.currentText))

    def onAutoSegment(self) -> None:
        """Segment the shown image on the server and show one segment per level."""
        with slicer.util.tryWithErrorDisplay("Auto-segmentation failed.", waitCursor=True):
            volume = self._parameterNode.inputVolume
            segmentation = self.logic.autoSegment(volume, self.ui.modelSelector.currentText)
            self._parameterNode.labels = segmentation
            self.ui.statusLabel.text = f"Segmented by {segmentation.GetAttribute('SpineMorph.AnsweredBy')}."

    def onMeasure(self) -> None:
        """Measure the selected segmentation or labelmap (no server needed)."""
        with slicer.util.tryWithErrorDisplay("Measurement failed.", waitCursor=True):
            table = self.logic.measure(self._parameterNode.labels, self._parameterNode.inputVolume)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            from SpineMorphLib.report import result_summary

            self.ui.facingLabel.text = result_summary(self.logic.measurement.result)

    def onFlipFacing(self) -> None:
        """Swap the facing of the shown image and measure again."""
        with slicer.util.tryWithErrorDisplay("Could not flip the facing.", waitCursor=True):
            self.logic.flipFacing(self._parameterNode.inputVolume)
            self.onMeasure()

    def onShiftLevels(self, steps: int) -> None:
        """Rename every level one up (-1) or down (+1) the spine and measure again."""
        with slicer.util.tryWithErrorDisplay("Could not shift the levels.", waitCursor=True):
            self.logic.shiftLevels(self._parameterNode.labels, steps)
            self.onMeasure()

    def onSubmit(self) -> None:
        """Send the edited labels to the server; fetch the next image when asked to."""
        with slicer.util.tryWithErrorDisplay("Could not submit the label.", waitCursor=True):
            strategy = self.ui.strategySelector.currentText if self._parameterNode.autoNext else None
            following = self.logic.submitLabel(self._parameterNode.labels, self._parameterNode.inputVolume, strategy)
            done, seconds = self.logic.lastSubmit, self.logic.lastSubmit.get("annotation_seconds")
            took = f" after {seconds:.0f} s" if seconds is not None else ""
            self._say(f"Saved the label of {done.get('image', '')}{took}.", done.get("progress"))
            if following is not None:
                self._showVolume(following)

    def onTrain(self) -> None:
        """Start training, or stop it when it runs; a QTimer polls the progress so that nothing blocks."""
        with slicer.util.tryWithErrorDisplay("Training request failed."):
            if self._timer.isActive():
                self.logic.stopTraining()
                return
            p = self._parameterNode
            self.logic.startTraining(self.ui.modelSelector.currentText, p.maxEpochs, p.batchSize)
            self.ui.trainButton.text = "Stop"
            self.ui.trainProgressBar.value = 0
            self._timer.start()

    def _pollTraining(self) -> None:
        progress = self.logic.pollTraining()
        self.ui.trainProgressBar.value = int(round(100 * progress.fraction))
        self.ui.trainStatusLabel.text = progress.message
        if progress.finished:
            self._timer.stop()
            self.ui.trainButton.text = "Train"

    def onOpenReport(self) -> None:
        """Show a SpineMorph DICOM SR of the input image: its table and its six points as height lines."""
        path = qt.QFileDialog.getOpenFileName(None, "Open a SpineMorph SR", "", "DICOM (*.dcm);;All files (*)")
        if path:
            with slicer.util.tryWithErrorDisplay("Could not open the report.", waitCursor=True):
                self.logic.loadReport(path, self._parameterNode.inputVolume)

    def onExport(self, kind: str) -> None:
        """Save the results table as CSV, the view as PNG (image, labels, lines) or the per-patient report."""
        p, suffix = self._parameterNode, {"csv": ".csv", "png": ".png", "report": ".txt"}[kind]
        path = qt.QFileDialog.getSaveFileName(None, "Export", f"spinemorph{suffix}", f"*{suffix}")
        if path:
            with slicer.util.tryWithErrorDisplay("Export failed."):
                if kind == "csv":
                    self.logic.exportCsv(path)
                elif kind == "png":
                    self.logic.exportPng(path, p.inputVolume, p.labels)
                else:
                    self.logic.exportReport(path, p.inputVolume)

    def _say(self, text: str, progress: dict | None = None) -> None:
        from SpineMorphLib.client import progress_sentence

        self.ui.statusLabel.text = f"{text} {progress_sentence(progress)}".strip()

    def _showVolume(self, volume) -> None:
        self._parameterNode.inputVolume = volume
        layout = slicer.app.layoutManager()
        layout.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
        layout.sliceWidget("Red").mrmlSliceNode().RotateToVolumePlane(volume)  # a lateral NIfTI is sagittal
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.ui.segmentEditorWidget.setSourceVolumeNode(volume)

    def _editLabels(self, node) -> None:
        if node is not None and node.IsA("vtkMRMLSegmentationNode"):
            self.ui.segmentEditorWidget.setSegmentationNode(node)

    def _showResults(self, headers, rows, colours) -> None:
        from SpineMorphLib.records import flag_words  # the flags in words: why a row has no grade
        table = self.ui.resultsTable
        table.clear()
        table.setColumnCount(len(headers))
        table.setRowCount(len(rows))
        table.setHorizontalHeaderLabels(headers)
        for i, (row, colour) in enumerate(zip(rows, colours, strict=True)):
            for j, text in enumerate(row):
                item = qt.QTableWidgetItem(text)
                item.setBackground(qt.QColor(*colour))
                item.setToolTip(flag_words(text) if headers[j] == "Flags" else "")
                table.setItem(i, j, item)


class SpineMorphLogic(ScriptedLoadableModuleLogic, AnnotationLoop, Corrections, ResultFiles):
    """Everything the module does, on MRML nodes and without Qt: measuring here, the annotation loop with the server
    from ``SpineMorphLib.annotation``, the one-click corrections from ``SpineMorphLib.corrections``, reports read and
    results written from ``SpineMorphLib.files``.
    ``__init__`` installs ``spinemorph`` and its dependencies on first use: methods import them where they need them.

    Args:
        scene: the MRML scene; ``slicer.mrmlScene`` by default (``slicer-core`` has none: pass one).
        installer: called with missing pip requirements (``slicer.util.pip_install`` in the application).
        workdir: where downloads and labels go (``SpineMorphLib.files.WorkFolder``: by default a temporary one).
    """

    def __init__(self, scene=None, installer=None, workdir: str | Path | None = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ensure_dependencies(installer)
        from SpineMorphLib.measurement import MeasurementNodes
        from SpineMorphLib.training import TrainingMonitor

        self.scene = scene if scene is not None else slicer.mrmlScene
        self._work = WorkFolder(workdir)  # copies of what the server holds: removed with the module, or at exit
        self.workdir = self._work.path
        self.measurement = MeasurementNodes(self.scene)  # the table and height lines, kept in step
        self.training = TrainingMonitor()
        self.client, self.lastInfer, self.lastSubmit = None, {}, {}

    def close(self) -> None:
        """Remove the work folder when the Logic made it (a ``workdir`` it was given is the caller's and stays)."""
        self._work.close()

    def getParameterNode(self):
        """Return the module's parameter node in the scene, typed."""
        return SpineMorphParameterNode(super().getParameterNode())

    def measure(self, labels, reference=None):
        """Return the results table node after measuring a segmentation or labelmap node; draw the height lines.

        ``reference`` (the image) gives the grid and the measurement spacing and facing; without it, the node's own
        geometry is used and the facing is inferred. No server is needed.
        """
        from spinemorph.measure import exposed_field, measure
        from spinemorph.measure.gates import withhold
        from SpineMorphLib import nodes

        if labels is None:
            raise ValueError("Choose a segmentation or labelmap to measure.")
        if labels.IsA("vtkMRMLSegmentationNode"):
            nodes.style_segments(labels)  # segments added in the Segment Editor take their level's colour too
        array, grid = nodes.labels_of(self.scene, labels, reference)
        spacing, facing, source = nodes.measurement_geometry(reference if reference is not None else labels, grid)
        # the server's refusals of its unedited outlines, and its notes on them (split: stage 1 drew one merged)
        said, withheld, notes = nodes.server_context(labels, array)
        # the film's exposed field: a body its blank border cuts is truncated, as on the server
        pixels = nodes.pixels_of(reference) if reference is not None and not reference.IsA(
            "vtkMRMLLabelMapVolumeNode") and reference.IsA("vtkMRMLScalarVolumeNode") else None
        field = exposed_field(pixels) if pixels is not None and pixels.shape == array.shape else None
        result = measure(array, spacing, facing, facing_source=source, field=field, **said)
        withhold(result.vertebrae, withheld)
        for rec in result.vertebrae:
            rec.flags += [f for f in notes.get(rec.code, []) if f not in rec.flags]
        return self.measurement.show(result, grid)


class SpineMorphTest(ScriptedLoadableModuleTest):
    """Runs the Logic on a synthetic lumbar labelmap and checks heights, grades, lines and the live update."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        """Run every test of the module."""
        self.setUp()
        self.test_measure_labelmap_and_drag_a_point()

    def test_measure_labelmap_and_drag_a_point(self) -> None:
        """A 35 % wedge at L3 is grade 2; pulling L2's anterior point down 30 % makes L2 a grade 2 wedge."""
        self.delayDisplay("Measuring a synthetic L1-L5 labelmap")
        logic = SpineMorphLogic(workdir=self.enterContext(tempfile.TemporaryDirectory(prefix="SpineMorphTest-")))
        from spinemorph.io import Radiograph, display_affine
        from SpineMorphLib import nodes
        from SpineMorphLib.sample import box_spine

        labels = box_spine()
        image = Radiograph(labels, (0.5, 0.5), "PixelSpacing", "left", display_affine((0.5, 0.5)), {})
        labelmap = nodes.add_image_volume(slicer.mrmlScene, image, "boxes", node_class="vtkMRMLLabelMapVolumeNode")
        table = logic.measure(labelmap)
        by = logic.measurement.result.by_level()
        self.assertEqual(table.GetNumberOfRows(), 5)
        self.assertEqual([table.GetCellText(i, 0) for i in range(5)], ["L1", "L2", "L3", "L4", "L5"])
        self.assertEqual((by["L3"].genant_grade, by["L3"].deformity), (2, "wedge"))
        self.assertEqual([by[v].genant_grade for v in ("L1", "L2", "L4", "L5")], [0, 0, 0, 0])
        self.assertAlmostEqual(by["L2"].Ha_mm, 18.5, delta=0.3)
        self.assertEqual(len(logic.measurement.lines), 15)

        self.delayDisplay("Dragging L2's superior anterior point")
        before = by["L2"].vcr_percent
        line = next(n for n in logic.measurement.lines if n.GetName() == "L2 Ha")
        superior, inferior = nodes.line_points(line)
        line.SetNthControlPointPosition(0, *(superior + 0.3 * (inferior - superior)))
        self.assertAlmostEqual(by["L2"].Ha_mm, 0.7 * 18.5, delta=0.3)
        self.assertEqual((by["L2"].genant_grade, by["L2"].deformity), (2, "wedge"))
        self.assertEqual(table.GetCellText(1, 8), "2")
        neighbours = (by["L1"].Ha_mm + by["L3"].Ha_mm) / 2
        self.assertAlmostEqual(by["L2"].vcr_percent, (1 - by["L2"].Ha_mm / neighbours) * 100, places=6)
        self.assertGreater(by["L2"].vcr_percent, before + 30)

        self.delayDisplay("Segments named and coloured by level, and back to the same labelmap")
        segmentation = nodes.show_labels(slicer.mrmlScene, labels, labelmap)
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName() for i in range(5)]
        self.assertEqual(names, ["L1", "L2", "L3", "L4", "L5"])
        np.testing.assert_array_equal(nodes.labels_of(slicer.mrmlScene, segmentation, labelmap)[0], labels)
        csv = Path(logic.exportCsv(Path(logic.workdir) / "table.csv")).read_text().splitlines()
        self.assertEqual(len(csv), 6)
        self.delayDisplay("SpineMorph test passed")
