"""The server side of the annotation loop, as the Logic's methods: connect, next sample, auto-segment, submit, train.

``AnnotationLoop`` is a part of ``SpineMorphLogic`` (the module file keeps the template's five parts; this is the
Logic's work with the server). It uses the Logic's ``scene``, ``workdir``, ``client``, ``lastInfer``,
``lastSubmit`` and ``training``. MRML, no Qt; ``spinemorph`` and the helpers that need it are imported where they
are used, after the Logic has installed what was missing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

__all__ = ["AnnotationLoop"]

log = logging.getLogger(__name__)


class AnnotationLoop:
    """Connect, fetch the next sample (its annotation clock starts), auto-segment, submit the label, train."""

    def _server(self):
        if self.client is None:
            raise RuntimeError("Connect to a SpineMorph server first.")
        return self.client

    def connect(self, url: str, username: str = "", password: str = "") -> dict:
        """Return the server's name, models and strategies, and keep the connection; with a user name, log in
        first (the server's /auth/token) and send the token with every call."""
        from SpineMorphLib.client import SpineMorphClient

        client = SpineMorphClient(url)
        if username:
            client.login(username, password)
        info = client.info()
        self.client = client
        return {"name": info.get("name", url), "models": list(info.get("models", {})),
                "strategies": list(info.get("strategies", {})), "trainers": list(info.get("trainers", {})),
                "progress": info.get("progress")}

    def nextSample(self, strategy: str):
        """Return a new volume node with the next image the server picks by ``strategy``; the annotation clock of
        that image starts now (Submit sends the seconds)."""
        started = time.time()
        sample = self._server().next_sample(strategy)
        return self.loadSample(sample["id"], Path(sample["path"]).name if sample.get("path") else None, started)

    def loadSample(self, imageId: str, fileName: str | None = None, started: float | None = None):
        """Return a new volume node with the server's image ``imageId`` (DICOM, NIfTI or PNG), its annotation
        clock started at ``started`` (epoch seconds; now by default)."""
        from SpineMorphLib.nodes import ATTR

        started = time.time() if started is None else started
        folder = self.workdir / "images"
        folder.mkdir(parents=True, exist_ok=True)
        volume = self.loadImage(self._server().download_image(imageId, folder, fileName), imageId)
        volume.SetAttribute(ATTR["started"], repr(started))
        return volume

    def loadImage(self, path: str | Path, imageId: str | None = None):
        """Return a new volume node with the radiograph in ``path``, in its own geometry and spacing."""
        from spinemorph.io import image_id, read_radiograph
        from SpineMorphLib import nodes

        imageId = imageId or image_id(path)
        return nodes.add_image_volume(self.scene, read_radiograph(path), imageId, imageId)

    def _imageId(self, volume, what: str) -> str:
        from SpineMorphLib.nodes import ATTR

        imageId = volume.GetAttribute(ATTR["image_id"]) if volume is not None else None
        if not imageId:
            raise ValueError(f"This image did not come from the server: {what}.")
        return imageId

    def autoSegment(self, volume, model: str, segmentation=None):
        """Return a segmentation node (one segment per level) from the server's ``model`` run on ``volume``."""
        from spinemorph.io import read_labelmap
        from SpineMorphLib import nodes
        from SpineMorphLib.report import answered_by

        imageId = self._imageId(volume, "fetch one with Next sample")
        labelFile, self.lastInfer = self._server().infer(model, imageId, self.workdir)
        labels, geometry = read_labelmap(labelFile)
        grid = nodes.grid_of(volume)
        if labels.shape != grid.shape:
            raise ValueError(f"The server's label is {labels.shape}, the image {grid.shape}.")
        if not np.allclose(geometry.affine, grid.affine, atol=1e-3):
            log.warning("The label's geometry differs from the image's; it is shown on the image's grid.")
        segmentation = nodes.show_labels(self.scene, labels, volume, segmentation, f"{volume.GetName()} labels")
        segmentation.SetAttribute("SpineMorph.Model", model)
        segmentation.SetAttribute("SpineMorph.AnsweredBy", answered_by(self.lastInfer))
        morphometry = self.lastInfer.get("morphometry", {})
        naming = morphometry.get("level_naming")
        segmentation.SetAttribute(nodes.ATTR["naming"], json.dumps(naming) if naming else "")
        confidence = {v["code"]: v["confidence"] for v in morphometry.get("vertebrae", []) if v.get("confidence")}
        segmentation.SetAttribute(nodes.ATTR["confidence"], json.dumps(confidence))
        nodes.keep_outlines(segmentation, labels, morphometry.get("vertebrae", []), morphometry.get("facing"))
        return segmentation

    def submitLabel(self, labels, volume, nextStrategy: str | None = None):
        """Send ``labels`` as the image's final label (VerSe codes, the image's geometry), with the seconds since
        its Next sample (``annotation_seconds``); keep the server's answer, those seconds and the server's progress
        (labels done and left, last training) in ``lastSubmit``.

        Returns the next sample's volume node when ``nextStrategy`` is given, else None.
        """
        from spinemorph.io import write_nifti
        from SpineMorphLib import nodes

        imageId = self._imageId(volume, "there is nowhere to submit its label")
        array, grid = nodes.labels_of(self.scene, labels, volume, require_levels=True)
        path = self.workdir / f"{imageId}-final.nii.gz"
        write_nifti(path, array.astype(np.uint8), grid.affine, volume.GetAttribute(nodes.ATTR["facing"]) or None,
                    "spinemorph labels (VerSe codes)")
        started = volume.GetAttribute(nodes.ATTR["started"])
        seconds = max(time.time() - float(started), 0.0) if started else None  # None: not opened through the server
        server = self._server()
        answer = server.save_label(imageId, path, "final", seconds=seconds)
        self.lastSubmit = {**answer, "annotation_seconds": seconds, "progress": server.info().get("progress")}
        return self.nextSample(nextStrategy) if nextStrategy else None

    def startTraining(self, model: str, maxEpochs: int = 10, batchSize: int = 4) -> dict:
        """Start training ``model`` on the server; return its answer. Follow it with pollTraining."""
        return self.training.start(self._server(), model, maxEpochs, batchSize)

    def pollTraining(self):
        """Return the latest known TrainProgress at once; a worker thread asks the server for the next one."""
        return self.training.poll()

    def stopTraining(self) -> dict:
        """Ask the server to stop training; return its answer."""
        return self.training.stop()
