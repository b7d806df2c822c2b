"""The studies folder as MONAI Label sees it, guarded: bad uploads and labels get a 4xx and a sentence.

Nothing is written until a file has been read and checked, so a refused request changes no existing label.
Labels are re-written in their image's exact geometry, with their level names recorded in the label info.
Nothing is lost: a label save is atomic and keeps the label it replaces as a version (spinemorph.store), the
datastore's own JSON is written atomically, images and labels leave only through the trash and only when the
server was started with ``--conf allow_delete true``, and a link that leads out of the studies folder is never read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import DataModel, LocalDatastore
from monailabel.interfaces.exception import ImageNotFoundException

from spinemorph.io import (
    InvalidImageError,
    Radiograph,
    UnreadableImageError,
    read_header,
    read_labelmap,
    read_radiograph,
    write_labelmap,
)
from spinemorph.levels import codes_in, is_level_code, level_name
from spinemorph.store import HIDDEN, LabelVersions, Staged, atomic_write_text, remove_stale_temporaries, to_trash

__all__ = ["SpineMorphDatastore", "checked_radiograph", "checked_label", "MAX_SIDE", "MIN_SIDE"]

log = logging.getLogger(__name__)
MAX_SIDE = 12_000  # pixels; a radiograph is at most about 4300 px tall
MAX_PIXELS = 64_000_000
MIN_SIDE = 32  # pixels; smaller than a vertebral body on any radiograph


def _shown(err: Exception, path: str, shown: str) -> str:
    return str(err).replace(os.path.basename(path), shown)


@contextmanager
def _as_http(path: str, shown: str):
    """Turn a reader's errors into 404 (no file), 415 (not an image) or 422 (not a radiograph), naming ``shown``."""
    try:
        yield
    except FileNotFoundError:
        raise HTTPException(404, f"No image file for {shown}.") from None
    except UnreadableImageError as err:
        raise HTTPException(415, _shown(err, path, shown)) from None
    except InvalidImageError as err:
        raise HTTPException(422, _shown(err, path, shown)) from None


def checked_radiograph(path: str, name: str | None = None):
    """Return the radiograph at ``path``, or raise a 4xx HTTPException that says what is wrong with it.

    The header is checked before any pixel is decoded: size (413 above MAX_SIDE a side or MAX_PIXELS in all, even
    when a compressed file is small), at least MIN_SIDE a side, one plane, a positive spacing where one is given.
    ``name`` is how the user knows the file (an image id, "the uploaded image"); it replaces the server's
    temporary file name in messages.
    """
    shown = name or os.path.basename(path)
    with _as_http(path, shown):
        header = read_header(path)
    h, w = header.rows, header.cols
    if max(h, w) > MAX_SIDE or h * w > MAX_PIXELS or header.bytes > 8 * MAX_PIXELS:
        raise HTTPException(413, f"{shown} declares {h}×{w} pixels"
                                 f"{f' in {header.planes} planes' if header.planes > 1 else ''}; SpineMorph accepts up "
                                 f"to {MAX_SIDE} pixels a side and {MAX_PIXELS // 1_000_000} million pixels: send the "
                                 "radiograph at its acquired size.")
    if h == 0 or w == 0:
        raise HTTPException(422, f"{shown} is empty ({h}×{w} pixels).")
    if header.planes > 1:
        raise HTTPException(422, f"{shown} holds {header.planes} planes or frames; send one 2D radiograph "
                                 "(one frame per file).")
    if min(h, w) < MIN_SIDE:
        raise HTTPException(422, f"{shown} is {h}×{w} pixels; a radiograph SpineMorph can read is at least "
                                 f"{MIN_SIDE} pixels a side.")
    if header.bad_spacing:
        raise HTTPException(422, f"In {shown}, {header.bad_spacing}: correct it in the file, or remove it to have "
                                 "measurements in pixels.")
    with _as_http(path, shown):
        image = read_radiograph(path)
    if np.issubdtype(image.pixels.dtype, np.floating) and not np.isfinite(image.pixels).all():
        bad = int((~np.isfinite(image.pixels)).sum())
        raise HTTPException(422, f"{shown} has {bad} pixels that are NaN or infinite; export it again with finite "
                                 "values.")
    return image


def checked_label(label_filename: str, image: Radiograph, image_id: str) -> tuple[np.ndarray, list[int]]:
    """Return a label's array (H, W) and the level codes it holds, or raise a 422 HTTPException that says what is
    wrong: unreadable, not pixel for pixel the shape of ``image``, values that are not VerSe codes, or no level."""
    shown = f"the label for {image_id!r}"
    try:
        labels, _ = read_labelmap(label_filename)
    except (InvalidImageError, ValueError) as err:
        raise HTTPException(422, f"The label cannot be read: {_shown(err, label_filename, shown)}") from None
    if labels.shape != image.shape:
        raise HTTPException(422, f"The label is {labels.shape[0]}×{labels.shape[1]} but image {image_id} is "
                                 f"{image.shape[0]}×{image.shape[1]}: a label must cover its image pixel for pixel.")
    values = codes_in(labels)
    bad = [v for v in values if not is_level_code(v)]
    if bad:
        raise HTTPException(422, f"Label values {bad} are not VerSe level codes (T1-T12 = 8-19, L1-L5 = 20-24, "
                                 "S1 = 26; see docs/ARCHITECTURE.md).")
    if not values:
        raise HTTPException(422, f"The label for {image_id!r} marks no vertebra (all zeros): draw at least one "
                                 "level before saving, or skip the image.")
    return labels, values


def _inside(path: str, root: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, root]) == root


class SpineMorphDatastore(LocalDatastore):
    """A local datastore that refuses what SpineMorph cannot use, with an HTTP status and a sentence, and loses
    nothing: see the module docstring."""

    def __init__(self, studies: str, *, allow_delete: bool = False, **kwargs) -> None:
        self.allow_delete = allow_delete
        self.outside: dict[str, str] = {}  # image id -> where its link leads, outside the studies folder
        self.versions = LabelVersions(studies)
        for stale in remove_stale_temporaries(studies):  # a save or a JSON update killed half way
            log.warning("Removed %s, left by a write that was interrupted.", stale)
        super().__init__(studies, **kwargs)

    # -- what the folder holds ---------------------------------------------------------------------------------
    def _list_files(self, path, patterns):
        files = super()._list_files(path, patterns)
        kept = {}
        for name, file in files.items():
            full = os.path.join(path, file)
            if _inside(full, self._datastore_path):
                kept[name] = file
            elif name not in self.outside.values():
                log.warning("Not serving %s: it links to %s, outside the studies folder.", full, os.path.realpath(full))
                self.outside[self._to_id(name)[0]] = os.path.realpath(full)
        return kept

    def get_image_uri(self, image_id: str) -> str:
        """Return an image's path; 404 if the datastore has no such image, 403 if it leads out of the studies."""
        if image_id in self.outside and image_id not in self._datastore.objects:
            raise HTTPException(403, f"Image {image_id!r} is a link to a file outside the studies folder, which "
                                     "SpineMorph never reads: copy the file into the studies folder instead.")
        if image_id not in self._datastore.objects:
            raise HTTPException(404, f"No image with id {image_id!r} in the datastore.")
        uri = super().get_image_uri(image_id)
        if not _inside(uri, self._datastore_path):  # a link made after the listing
            raise HTTPException(403, f"Image {image_id!r} leads to a file outside the studies folder, which "
                                     "SpineMorph never reads: copy the file into the studies folder instead.")
        return uri

    def datalist(self, full_path=True):
        return [d for d in super().datalist(full_path) if all(_inside(d[k], self._datastore_path) for k in d)]

    def get_dataset_archive(self, limit_cases):
        """Return MONAI Label's zip of the dataset, moved into this server process's answers folder
        (``lib.infers.results``): there it is removed when the server exits, or by the next server when a signal
        ended this one, where MONAI Label leaves every download's zip in the system temp folder for good."""
        from lib.infers.results import result_file

        path = result_file("spinemorph-dataset-", ".zip")
        shutil.move(super().get_dataset_archive(limit_cases), path)
        return path

    def _update_datastore_file(self, lock=True):
        """Write the datastore's JSON atomically: a kill mid-write leaves the previous JSON, never half of one."""
        def write():
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            atomic_write_text(self._datastore_config_path, text)
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()

    # -- adding ------------------------------------------------------------------------------------------------
    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        """Add an uploaded radiograph after checking that it is one (2D, grayscale, sane size)."""
        if image_id in self._datastore.objects:
            raise HTTPException(409, f"The datastore already has an image {image_id!r}; upload under another id "
                                     "(images are never replaced).")
        checked_radiograph(image_filename, f"the upload for {image_id!r}")
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        """Save a label after checking it against its image: same shape, integer VerSe codes, at least one level.

        The label file is replaced atomically and the one it replaces is kept as a version.
        """
        if image_id not in self._datastore.objects:
            raise HTTPException(404, f"Cannot save a label for {image_id!r}: the datastore has no such image.")
        image = checked_radiograph(self.get_image_uri(image_id), image_id)
        labels, values = checked_label(label_filename, image, image_id)
        with tempfile.TemporaryDirectory() as tmp:
            clean = os.path.join(tmp, f"{image_id}.nii.gz")
            write_labelmap(clean, labels, image)  # the image's exact geometry, whatever the upload carried
            info = {**(label_info or {}), "levels": {level_name(v): v for v in values}}
            try:
                return self._store_label(image_id, clean, label_tag, info)
            except OSError as err:
                raise HTTPException(507, f"The label for {image_id!r} was not saved: the studies folder cannot be "
                                         f"written ({err.strerror}). The previous label is unchanged; free space "
                                         "and save again.") from None

    def _store_label(self, image_id: str, clean: str, tag: str, info: dict) -> str:
        """Put ``clean`` in place as the ``tag`` label of ``image_id``, with its info in the datastore's JSON.

        Everything that needs disk space (the new label, the new JSON) is written beside its destination first;
        only then are they renamed into place, so a full disk fails the save with nothing changed. The label it
        replaces is kept as a version (a hard link: no space needed).
        """
        label_dir = Path(self._datastore.label_path(tag))
        dest = label_dir / f"{image_id}.nii.gz"
        with FileLock(self._lock_file):
            obj = self._datastore.objects.get(image_id)
            if obj is None:
                raise ImageNotFoundException(f"Image {image_id} not found")
            label_dir.mkdir(parents=True, exist_ok=True)
            label = Staged.copy(clean, dest)
            before, version = obj.labels.get(tag), None
            try:
                if dest.exists():
                    version = self.versions.keep(dest, image_id, tag)
                    info["previous_version"] = version.name
                obj.labels[tag] = DataModel(info={**info, "ts": int(time.time()), "name": dest.name}, ext=".nii.gz")
                text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
                datastore_json = Staged(self._datastore_config_path, lambda fh: fh.write(text.encode()))
            except BaseException:
                label.discard()
                if version is not None:
                    version.unlink(missing_ok=True)
                if before is None:
                    obj.labels.pop(tag, None)
                else:
                    obj.labels[tag] = before
                raise
            label.commit()
            datastore_json.commit()
            self._config_ts = os.stat(self._datastore_config_path).st_mtime
        return image_id

    def store_results(self, image_id: str, datasets) -> str:
        """Keep an image's DICOM results (SEG, SR) under .spinemorph/dicom/<id>/ of the studies; return that folder."""
        folder = Path(self._datastore_path) / HIDDEN / "dicom" / image_id
        folder.mkdir(parents=True, exist_ok=True)
        for ds in datasets:
            name = {"SEG": "seg.dcm", "SR": "sr.dcm"}.get(str(ds.Modality), f"{ds.SOPInstanceUID}.dcm")
            ds.save_as(str(folder / name))
        return str(folder)

    # -- removing ----------------------------------------------------------------------------------------------
    def _refuse_delete(self, what: str) -> None:
        if not self.allow_delete:
            raise HTTPException(403, f"This server never deletes {what}: start it with `--conf allow_delete true` "
                                     f"(an admin's choice) to let {what} move to {HIDDEN}/trash in the studies "
                                     "folder.")

    def remove_image(self, image_id: str) -> None:
        """Move an image and its labels to the trash (only when the server allows deleting)."""
        self._refuse_delete("radiographs")
        obj = self._datastore.objects.get(image_id)
        if not obj:
            raise HTTPException(404, f"No image with id {image_id!r} in the datastore.")
        files = [self.get_image_uri(image_id)] + [
            os.path.join(self._datastore.label_path(tag), self._filename(image_id, label.ext))
            for tag, label in obj.labels.items()]
        with FileLock(self._lock_file):
            folder = to_trash(self._datastore_path, [f for f in files if os.path.exists(f)])
        log.warning("Image %s and its labels moved to %s", image_id, folder)
        self.refresh()

    def remove_label(self, label_id: str, label_tag: str) -> None:
        """Move a label to the trash (only when the server allows deleting)."""
        self._refuse_delete("labels")
        path = self.get_label_uri(label_id, label_tag)
        if not path or not os.path.exists(path):
            raise HTTPException(404, f"No {label_tag!r} label for image {label_id!r}.")
        with FileLock(self._lock_file):
            folder = to_trash(self._datastore_path, [path])
        log.warning("Label %s (%s) moved to %s", label_id, label_tag, folder)
        self.refresh()

    def update_image_info(self, image_id: str, info: dict) -> None:
        """Update an image's info; 404 if there is no such image."""
        try:
            super().update_image_info(image_id, info)
        except ImageNotFoundException:
            raise HTTPException(404, f"No image with id {image_id!r} in the datastore.") from None

    def update_image_infos(self, updates: dict[str, dict]) -> None:
        """Update many images' info with one write of the datastore's JSON (one write per image makes scoring a
        datastore of n images write n times its whole JSON); images no longer in the datastore are skipped."""
        objects = self._datastore.objects
        for image_id, info in updates.items():
            if image_id in objects:
                objects[image_id].image.info.update(info)
        self._update_datastore_file()
