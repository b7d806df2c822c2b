"""Batch infer that also works without a GPU, and can store each answer as a DICOM SEG and SR.

monailabel 0.8.5's BatchInferTask defaults to multi-GPU and, on a machine without CUDA, spreads the images over
an empty device list (ZeroDivisionError). This picks the GPUs only when there are some.

With ``{"dicom": true}`` each DICOM radiograph's labelmap and morphometry are also written as a DICOM SEG and a
TID 1500 SR and stored by the datastore: in the PACS by STOW-RS for a DICOMweb server, under
``STUDIES/.spinemorph/dicom/<id>/`` for a folder.
"""

from __future__ import annotations

import logging

import torch
from monailabel.interfaces.tasks.batch_infer import BatchInferTask

from lib.options import as_bool
from spinemorph.io import read_labelmap, read_radiograph

__all__ = ["BatchInfer"]

log = logging.getLogger(__name__)


class BatchInfer(BatchInferTask):
    """Infers every (or every unlabelled) image, on all GPUs when present, else on the CPU."""

    def __call__(self, request, datastore, infer):
        gpus = torch.cuda.device_count()
        request = {"multi_gpu": gpus > 1, "device": "cuda" if gpus else "cpu", **request}
        if not gpus:
            request["multi_gpu"] = False
        result = super().__call__(request, datastore, infer)
        if as_bool(request.get("dicom", False)):
            tag = request.get("label_tag", "original")
            for image_id, answer in result.items():
                if answer and answer.get("params", {}).get("morphometry") is not None:
                    answer["dicom"] = _store_dicom(datastore, image_id, tag, answer["params"]["morphometry"])
        return result


def _store_dicom(datastore, image_id: str, tag: str, morphometry: dict) -> dict:
    """Write an answer as a SEG and an SR of its radiograph and hand them to the datastore; say what happened."""
    from spinemorph.io.dicom_results import make_seg, make_sr

    source = datastore.get_image_uri(image_id)
    if read_radiograph(source).meta.get("format") != "dicom":
        return {"stored": False, "why": "not a DICOM radiograph"}
    labels, _ = read_labelmap(datastore.get_label_uri(image_id, tag))
    datasets = ([make_seg(labels, source)] if labels.any() else []) + [make_sr(morphometry, source)]
    try:
        where = datastore.store_results(image_id, datasets)
    except Exception as err:  # noqa: BLE001 - one image's failure is reported in its answer, the batch goes on
        log.warning("%s: SEG and SR not stored: %s", image_id, err)
        return {"stored": False, "why": str(err)[:300]}
    return {"stored": True, "where": where, "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in datasets]}
