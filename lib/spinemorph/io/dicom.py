"""DICOM DX/CR radiographs: read with explicit spacing rules, and write valid 16-bit DX files."""

from __future__ import annotations

import datetime
import hashlib
import logging
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DSfloat

from spinemorph.io.radiograph import (
    InvalidImageError,
    Radiograph,
    UnreadableImageError,
    checked_spacing,
    display_affine,
    facing_from_orientation,
)

__all__ = ["read_dicom", "write_dx", "ds_number", "DX_SOP_CLASS"]

log = logging.getLogger(__name__)

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
_NAMESPACE = uuid.UUID("6f1c2a8e-5d7b-4c1e-9a3f-2b8d4e6f0a17")  # SpineMorph's own UUID namespace
_PROJECTION_MODALITIES = {"DX", "CR", "RG", "DR", "OT", "MG", "XA", "RF"}


def read_dicom(path: str | Path) -> Radiograph:
    """Return the radiograph in a single-frame grayscale DICOM file.

    Spacing: PixelSpacing, else ImagerPixelSpacing, else none (measurements then stay in pixels).
    Facing: from PatientOrientation when present.
    """
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as err:  # pydicom raises many types for non-DICOM input
        raise UnreadableImageError(f"{Path(path).name} is not a readable DICOM file: {err}") from None
    if "PixelData" not in ds:
        raise InvalidImageError(f"{Path(path).name} holds no pixel data.")
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise InvalidImageError(f"{Path(path).name} is a colour image ({ds.SamplesPerPixel} samples per pixel); "
                                "SpineMorph needs a grayscale radiograph.")
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise InvalidImageError(f"{Path(path).name} has {ds.NumberOfFrames} frames; "
                                "SpineMorph needs one 2D radiograph.")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # a damaged file, or a compression no installed decoder reads
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            raise UnreadableImageError(
                f"{Path(path).name} is compressed as {syntax.name}, which SpineMorph cannot decode here: send it "
                "uncompressed (for example `gdcmconv --raw in.dcm out.dcm` or `dcmdjpeg in.dcm out.dcm`).") from None
        raise InvalidImageError(f"{Path(path).name} has damaged or truncated pixel data ({err}); send the whole "
                                "file again.") from None
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise InvalidImageError(f"{Path(path).name} has pixel shape {pixels.shape}; expected one 2D plane.")
    slope, intercept = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        pixels = pixels.astype(np.float32) * slope + intercept
    if getattr(ds, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        pixels = pixels.max() - pixels  # bone bright, as everywhere else in SpineMorph

    warnings: list[str] = []
    pixel = checked_spacing(getattr(ds, "PixelSpacing", None), "PixelSpacing", warnings)
    imager = checked_spacing(getattr(ds, "ImagerPixelSpacing", None), "ImagerPixelSpacing", warnings)
    spacing, source = (pixel, "PixelSpacing") if pixel else (imager, "ImagerPixelSpacing") if imager else (None, "none")
    if spacing is None:
        warnings.append("No pixel spacing in the file: measurements stay in pixels.")
    facing = facing_from_orientation(getattr(ds, "PatientOrientation", None))
    modality = str(getattr(ds, "Modality", ""))
    if modality and modality not in _PROJECTION_MODALITIES:
        warnings.append(f"Modality {modality} is not a projection radiograph.")
    # ITK (and so Slicer and MONAI) give DX files the ImagerPixelSpacing; labels must share that geometry.
    display = imager or pixel or (1.0, 1.0)
    for w in warnings:
        log.warning("%s: %s", Path(path).name, w)
    meta = {
        "format": "dicom", "modality": modality, "bits_stored": int(getattr(ds, "BitsStored", 16)),
        "patient_id": str(getattr(ds, "PatientID", "")), "study_uid": str(getattr(ds, "StudyInstanceUID", "")),
        "series_uid": str(getattr(ds, "SeriesInstanceUID", "")), "sop_uid": str(getattr(ds, "SOPInstanceUID", "")),
        "view_position": str(getattr(ds, "ViewPosition", "")), "body_part": str(getattr(ds, "BodyPartExamined", "")),
        "patient_orientation": list(getattr(ds, "PatientOrientation", []) or []), "warnings": warnings,
    }
    return Radiograph(pixels, spacing, source, facing, display_affine(display), meta)


def ds_number(value: float) -> DSfloat:
    """Return ``value`` as the closest decimal string DICOM can hold (16 characters); float() of it is exact."""
    return DSfloat(float(value), auto_format=True)


def _uid(*parts) -> str:
    """Return a DICOM UID (2.25 form) derived deterministically from ``parts``."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, ':'.join(map(str, parts))).int}"


def write_dx(path: str | Path, pixels: np.ndarray, spacing_mm: tuple[float, float], facing: str | None, *,
             bits_stored: int = 16, body_part: str = "SPINE", patient_id: str = "ANON", key: str = "",
             magnification: float | None = None, sdd_mm: float | None = None, sod_mm: float | None = None) -> None:
    """Write a DX "for presentation" DICOM file with ImagerPixelSpacing, PixelSpacing and PatientOrientation.

    ``key`` seeds the UIDs, so the same key always gives the same file. PixelSpacing equals
    ImagerPixelSpacing (detector mm); the magnification, when known, goes in its own attribute.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"A radiograph is 2D; got shape {pixels.shape}.")
    if bits_stored not in (12, 16):
        raise ValueError(f"bits_stored must be 12 or 16, not {bits_stored}.")
    if pixels.min() < 0 or pixels.max() >= 2**bits_stored:
        raise ValueError(f"Pixel values must fit in {bits_stored} unsigned bits.")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = _uid(key, "sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("spinemorph")
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    offset = int(hashlib.sha1(key.encode()).hexdigest()[:6], 16)
    stamp = datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=offset)
    ds.SOPClassUID, ds.SOPInstanceUID = DX_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(key, "study"), _uid(key, "series")
    ds.FrameOfReferenceUID = _uid(key, "frame")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = stamp.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = stamp.strftime("%H%M%S")
    ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "", "1", 1, 1
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"Sim^{patient_id}", patient_id, "", "O"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.Manufacturer = "DX", "SpineMorph simulator"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType, ds.ViewPosition, ds.BodyPartExamined = "FOR PRESENTATION", "LL", body_part
    ds.ImageLaterality, ds.BurnedInAnnotation = "U", "NO"
    ds.PatientOrientation = ["P", "F"] if facing == "left" else ["A", "F"] if facing == "right" else ""
    ds.ImagerPixelSpacing = [ds_number(v) for v in spacing_mm]
    ds.PixelSpacing = list(ds.ImagerPixelSpacing)
    if magnification is not None:
        ds.EstimatedRadiographicMagnificationFactor = ds_number(magnification)
    if sdd_mm is not None:
        ds.DistanceSourceToDetector = ds_number(sdd_mm)
    if sod_mm is not None:
        ds.DistanceSourceToPatient = ds_number(sod_mm)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.WindowCenter, ds.WindowWidth = f"{2 ** (bits_stored - 1)}", f"{2 ** bits_stored}"
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", 1
    ds.LossyImageCompression = "00"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(str(path), write_like_original=False)
