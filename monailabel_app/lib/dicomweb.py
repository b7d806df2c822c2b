"""A DICOMweb datastore for radiographs: the PACS's CR, DX, RG and DR series, labels stored back as DICOM SEG.

MONAI Label's own DICOMweb datastore lists CT by default, converts images to NIfTI with SimpleITK and labels to DICOM
SEG with dcmqi, which it downloads from GitHub at run time (hospital networks and these machines cannot reach it).
This one needs neither:

- an image id is a SeriesInstanceUID of a listed modality; its first instance is downloaded once into the cache as
  ``<id>.dcm`` and checked, and SpineMorph reads it as DICOM (spacing, facing, MONOCHROME1 by its own rules);
- a final label is checked like the local datastore's (lib.datastore.checked_label), written as a DICOM SEG with
  ``spinemorph.io.dicom_results.make_seg`` and stored with STOW-RS; other tags ("original") stay in the cache;
- an image is labelled when a SEG in the PACS refers to its series (the newest one wins); that SEG is read back with
  highdicom into a NIfTI labelmap in the image's geometry, for training and for ``get_label_uri``.

The PACS is the truth: the cache only saves downloads. Nothing here deletes from the PACS or uploads images to it.
MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI and MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME have no effect here.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import pydicom
import requests
from dicomweb_client.session_utils import create_session_from_user_pass
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from lib.datastore import checked_label, checked_radiograph
from spinemorph.io import read_radiograph, write_labelmap
from spinemorph.io.dicom_results import make_seg, seg_labelmap
from spinemorph.levels import level_name

__all__ = ["PROJECTION_MODALITIES", "RadiographDICOMWebDatastore", "dicomweb_datastore"]

log = logging.getLogger(__name__)
PROJECTION_MODALITIES = ("CR", "DX", "RG", "DR")
FINAL = DefaultLabelTag.FINAL.value
RECENT_S = 5.0  # how long a listing of the PACS is reused; a label saved here is seen at once


class Seg(NamedTuple):
    """A SEG instance in the PACS and the image series it labels."""

    study: str
    series: str
    sop: str
    image_series: str
    written: str  # ContentDate + ContentTime: the newest SEG of an image is its label


class _Recent:
    """A value recomputed when it is older than ``ttl`` seconds or cleared."""

    def __init__(self, make: Callable[[], Any], ttl: float = RECENT_S) -> None:
        self.make, self.ttl, self.at, self.value = make, ttl, None, None

    def __call__(self):
        if self.at is None or time.monotonic() - self.at > self.ttl:
            self.value, self.at = self.make(), time.monotonic()
        return self.value

    def clear(self) -> None:
        self.at = None


def _pacs_error(what: str, err: Exception) -> HTTPException:
    return HTTPException(502, f"The PACS did not answer when {what} ({type(err).__name__}: {str(err)[:200]}): "
                              "try again, or check the DICOMweb server.")


class RadiographDICOMWebDatastore(DICOMWebDatastore):
    """Lists every series of a projection modality and keeps final labels as DICOM SEG in the PACS (module doc)."""

    def __init__(self, *args, modalities=PROJECTION_MODALITIES, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.modalities = tuple(modalities)
        self._seg_refs: dict[str, list[Seg]] = {}  # SEG series -> its instances, read once (a SEG is stored whole)
        self._listed = _Recent(self._list_series)
        self._segs = _Recent(self._newest_segs)

    # -- what the PACS holds --------------------------------------------------------------------------------------
    def list_images(self) -> List[str]:
        """Return the SeriesInstanceUIDs of every series of a listed modality, one QIDO query per modality."""
        return list(self._listed())

    def _search(self, what: str, **filters) -> list[Dataset]:
        """Return every series the PACS finds for ``filters`` (all pages); 502 with a sentence when it fails."""
        try:
            return [Dataset.from_json(ds) for ds in self._client.search_for_series(search_filters=filters,
                                                                                     get_remaining=True)]
        except requests.RequestException as err:
            raise _pacs_error(f"asked for {what}", err) from None

    def _list_series(self) -> list[str]:
        series: list[str] = []
        for modality in self.modalities:
            for ds in self._search(f"the {modality} series", **self._search_filter, Modality=modality):
                uid = str(ds.SeriesInstanceUID)
                if uid not in series:
                    series.append(uid)
        log.info("DICOMweb: %d radiograph series (%s)", len(series), "/".join(self.modalities))
        return series

    def _newest_segs(self) -> dict[str, Seg]:
        """Return the newest SEG instance that refers to each listed series, by image series."""
        listed, newest = set(self._listed()), {}
        for ds in self._search("the SEG series", Modality="SEG"):
            study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
            if series not in self._seg_refs:
                try:
                    metadata = self._client.retrieve_series_metadata(study, series)
                except requests.RequestException as err:
                    raise _pacs_error(f"sending the metadata of SEG series {series}", err) from None
                segs = (_seg_of(study, series, Dataset.from_json(m)) for m in metadata)
                self._seg_refs[series] = [seg for seg in segs if seg is not None]
            for seg in self._seg_refs[series]:
                if seg.image_series in listed and seg.written >= getattr(newest.get(seg.image_series), "written", ""):
                    newest[seg.image_series] = seg
        return newest

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        return [uid for uid in self.list_images() if uid in self._segs()]

    def get_unlabeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        return [uid for uid in self.list_images() if uid not in self._segs()]

    def get_labels_by_image_id(self, image_id: str) -> Dict[str, str]:
        tags = {tag: label for tag, label in super().get_labels_by_image_id(image_id).items() if tag != FINAL}
        return {**tags, FINAL: image_id} if image_id in self._segs() else tags

    def json(self):
        """Return the datastore as GET /datastore/?output=all shows it: every listed series, with the info this
        server keeps about it and a final label where the PACS holds a SEG for it."""
        cache, segs = super().json(), self._segs()
        objects = {}
        for uid in self.list_images():
            obj = copy.deepcopy(cache["objects"].get(uid)) or {"image": {"ext": ".dcm", "info": {}}, "labels": {}}
            kept = obj["labels"].pop(FINAL, None)
            if uid in segs:
                same = kept is not None and kept["info"].get("SOPInstanceUID") == segs[uid].sop
                obj["labels"][FINAL] = kept if same else {"ext": ".nii.gz", "info": {
                    "SeriesInstanceUID": segs[uid].series, "SOPInstanceUID": segs[uid].sop}}
            objects[uid] = obj
        return {**cache, "objects": objects}

    # -- images ---------------------------------------------------------------------------------------------------
    def _to_id(self, file: str):
        for ext in (".nii.gz", ".nii", ".dcm"):  # ids are UIDs, full of dots: only these are extensions here
            if file.endswith(ext):
                return file[: -len(ext)], ext
        return super()._to_id(file)

    def get_image_uri(self, image_id: str) -> str:
        """Return the cached DICOM file of a listed series, downloading it first; 404 for a series not listed."""
        path = LocalDatastore.get_image_uri(self, image_id)
        if path and os.path.isfile(path):
            return path
        found = self._search(f"series {image_id}", **self._search_filter, SeriesInstanceUID=image_id)
        meta = [ds for ds in found if str(ds.SeriesInstanceUID) == image_id and ds.get("Modality") in self.modalities]
        if not meta:
            raise HTTPException(404, f"No image with id {image_id!r}: the PACS has no {'/'.join(self.modalities)} "
                                     "series with that SeriesInstanceUID.")
        return self._download(image_id, meta[0])

    def _download(self, image_id: str, meta: Dataset) -> str:
        """Download the first instance of a series into the cache after checking that it is a radiograph."""
        try:
            instances = self._client.retrieve_series(str(meta.StudyInstanceUID), image_id)
        except requests.RequestException as err:
            raise _pacs_error(f"sending series {image_id}", err) from None
        if not instances:
            raise HTTPException(404, f"The PACS lists series {image_id} but sent no image of it.")
        instances.sort(key=lambda ds: int(ds.get("InstanceNumber") or 0))
        if len(instances) > 1:
            log.warning("Series %s holds %d images; SpineMorph serves the first (instance number %s).", image_id,
                        len(instances), instances[0].get("InstanceNumber"))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{image_id}.dcm")
            instances[0].save_as(path)
            checked_radiograph(path, image_id)
            info = {k: str(meta.get(k)) for k in ("StudyInstanceUID", "Modality", "PatientID") if meta.get(k)}
            info.update(SeriesInstanceUID=image_id, SOPInstanceUID=str(instances[0].SOPInstanceUID))
            LocalDatastore.add_image(self, image_id, path, info)
        return LocalDatastore.get_image_uri(self, image_id)

    # -- labels ---------------------------------------------------------------------------------------------------
    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """Return a label's NIfTI path ("" when there is none); a final label is read from its SEG in the PACS."""
        if label_tag != FINAL:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        seg = self._segs().get(image_id or label_id)
        return self._final_label(image_id or label_id, seg) if seg else ""

    def _final_label(self, image_id: str, seg: Seg) -> str:
        """Return the cached labelmap of ``seg``, reading it from the PACS when the cache holds another or none."""
        kept = self._datastore.label(image_id, FINAL)
        path = LocalDatastore.get_label_uri(self, image_id, FINAL)
        if kept is not None and kept.info.get("SOPInstanceUID") == seg.sop and os.path.isfile(path):
            return path
        image_path = self.get_image_uri(image_id)
        image = read_radiograph(image_path)
        try:
            ds = self._client.retrieve_instance(seg.study, seg.series, seg.sop)
        except requests.RequestException as err:
            raise _pacs_error(f"sending the SEG of {image_id}", err) from None
        try:
            labels = seg_labelmap(ds, image.meta["sop_uid"])
        except ValueError as err:
            raise HTTPException(422, f"The SEG {seg.sop} of image {image_id} is not a label SpineMorph reads: "
                                     f"{err}") from None
        if labels.shape != image.shape:
            raise HTTPException(422, f"The SEG {seg.sop} of image {image_id} is {labels.shape[0]}×{labels.shape[1]}, "
                                     f"the image {image.shape[0]}×{image.shape[1]}.")
        info = {"SeriesInstanceUID": seg.series, "SOPInstanceUID": seg.sop,
                "levels": {level_name(int(v)): int(v) for v in set(labels.flat) if v}}
        self._cache_label(image_id, labels, image, FINAL, info)
        return LocalDatastore.get_label_uri(self, image_id, FINAL)

    def _cache_label(self, image_id: str, labels, image, tag: str, info: dict) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            clean = os.path.join(tmp, f"{image_id}.nii.gz")
            write_labelmap(clean, labels, image)  # the image's exact geometry, whatever the upload carried
            return LocalDatastore.save_label(self, image_id, clean, tag, info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any],
                   label_id: str = "") -> str:
        """Check a label against its image; store a final one in the PACS as a DICOM SEG, keep others in the cache."""
        image_path = self.get_image_uri(image_id)
        image = checked_radiograph(image_path, image_id)
        labels, values = checked_label(label_filename, image, image_id)
        info = {**(label_info or {}), "levels": {level_name(v): v for v in values}}
        if label_tag == FINAL:
            info.update(self._store_seg(image_id, image_path, labels))
        return self._cache_label(image_id, labels, image, label_tag, info)

    def _store_seg(self, image_id: str, image_path: str, labels) -> dict:
        """Store ``labels`` in the PACS as a SEG on the image's instance; return the SEG's UIDs."""
        source = pydicom.dcmread(image_path)
        seg = make_seg(labels, source, algorithm_type="MANUAL")
        try:
            answer = self._client.store_instances([seg])
        except requests.RequestException as err:
            raise _pacs_error(f"storing the label of {image_id} as a DICOM SEG", err) from None
        failed = answer.get("FailedSOPSequence")
        if failed:
            reason = failed[0].get("FailureReason", "no reason given")
            raise HTTPException(502, f"The PACS refused the label of {image_id} as a DICOM SEG (failure reason "
                                     f"{reason}); nothing was saved.")
        stored = Seg(str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID), image_id,
                     f"{seg.ContentDate}{seg.ContentTime}")
        self._seg_refs[stored.series] = [stored]
        self._segs.clear()
        log.info("Stored the label of %s in the PACS as SEG %s", image_id, stored.sop)
        return {"SeriesInstanceUID": stored.series, "SOPInstanceUID": stored.sop, "StudyInstanceUID": stored.study}

    def store_results(self, image_id: str, datasets) -> str:
        """Store an image's DICOM results (SEG, SR) in the PACS by STOW-RS; return where."""
        try:
            answer = self._client.store_instances(list(datasets))
        except requests.RequestException as err:
            raise _pacs_error(f"storing the results of {image_id}", err) from None
        if answer.get("FailedSOPSequence"):
            raise HTTPException(502, f"The PACS refused the results of {image_id}.")
        self._segs.clear()
        return "PACS (STOW-RS)"

    def datalist(self, full_path=True) -> List[Dict[str, Any]]:
        """Return the (image, label) pairs of every series the PACS holds a readable SEG for, both cached as files."""
        pairs = []
        for image_id, seg in self._segs().items():
            try:
                pairs.append({"image": self.get_image_uri(image_id), "label": self._final_label(image_id, seg)})
            except HTTPException as err:
                log.warning("Not training on %s: %s", image_id, err.detail)
        return pairs

    # -- what this datastore does not do --------------------------------------------------------------------------
    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        raise HTTPException(405, "This server reads its images from a PACS: store radiographs there (STOW-RS or "
                                 "C-STORE) and they are listed here.")

    def remove_image(self, image_id: str) -> None:
        raise HTTPException(405, "This server never deletes images from the PACS: remove them in the PACS itself.")

    def remove_label(self, label_id: str, label_tag: str) -> None:
        raise HTTPException(405, "This server never deletes labels: a newer saved label replaces the one in use, "
                                 "and the PACS keeps every DICOM SEG.")


def _seg_of(study: str, series: str, meta: Dataset) -> Seg | None:
    """Return what a SEG instance's metadata says it labels (no image series when it refers to none); None for
    SpineMorph's own automatic answers (batch infer with dicom=true), which are results, not labels."""
    automatic = all(str(s.get("SegmentAlgorithmType", "")) == "AUTOMATIC" for s in meta.get("SegmentSequence", []))
    if automatic and str(meta.get("Manufacturer", "")) == "SpineMorph" and meta.get("SegmentSequence"):
        return None
    refs = meta.get("ReferencedSeriesSequence") or [Dataset()]
    image_series = str(refs[0].get("SeriesInstanceUID", ""))
    return Seg(study, series, str(meta.SOPInstanceUID), image_series,
               f"{meta.get('ContentDate', '')}{meta.get('ContentTime', '')}")


def dicomweb_datastore(url: str, modalities=PROJECTION_MODALITIES) -> RadiographDICOMWebDatastore:
    """Return the datastore for a DICOMweb server. Unlike MONAI Label's, it fetches no dcmqi tools from GitHub."""
    filters = {k: v for k, v in settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER.items() if k != "Modality"}
    user, password = settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
    session = create_session_from_user_pass(user, password) if user and password else None
    client = DICOMwebClientX(url=url, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                             wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                             stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
    cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
    return RadiographDICOMWebDatastore(client=client, search_filter=filters, cache_path=cache,
                                       fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                       convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI,
                                       modalities=modalities)
