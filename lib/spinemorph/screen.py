"""Batch screening: every lateral spine film in a folder or on a DICOMweb server, segmented, measured and graded.

    spinemorph screen SOURCE --out DIR [--model BUNDLE] [--dicom] [--store URL]

For each film: the labelmap, the morphometry JSON (with the detector's opinion when the model ships one), and
with ``--dicom`` a DICOM SEG and SR (stored back to a DICOMweb server with ``--store``). For the cohort:

    DIR/cohort.csv       one row per vertebra (patient, study, film, level and whether the film's level names are
                         uncertain, heights, VCR, grade, type, flags, calls)
    DIR/verdicts.csv     one row per patient: any vertebra graded >= 1, and which; how many were graded; the
                         verdict ("not gradable" when no vertebra could be graded: no finding)
    DIR/reports/*.png    one page per patient: each film's overlay beside its table, the verdict and the flags
    DIR/summary.json     films screened, skipped (with the reason), seconds and films per minute

A run is resumable: a film's ``result.json`` is written last (atomically), and a film that has one is never run
again, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinemorph.io import image_id, read_header, read_radiograph, write_labelmap
from spinemorph.measure.flags import levels_beside
from spinemorph.store import atomic_write_text

__all__ = ["find_films", "fetch_dicomweb", "screen", "write_cohort", "COHORT_FIELDS"]

log = logging.getLogger(__name__)
PROJECTION = ("CR", "DR", "DX", "RG")
NOT_LATERAL = {"AP", "PA", "APL", "PAL"}  # DICOM ViewPosition of frontal films
SKIP_FOLDERS = {"labels", "previews"}  # a studies folder's labels and pictures are not films
_NOT_DICOM = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
COHORT_FIELDS = ["patient_id", "study_uid", "film", "level", "level_uncertain", "Ha_mm", "Hm_mm", "Hp_mm", "Ha_px",
                 "Hm_px", "Hp_px", "vcr_percent", "genant_grade", "deformity", "confidence", "stage", "detector_score",
                 "combined", "flags"]


@dataclass
class Film:
    path: Path
    film: str  # a name unique in the run, used for its output folder
    patient_id: str
    study_uid: str = ""


@dataclass
class Screening:
    films: list[str] = field(default_factory=list)  # screened in this run
    resumed: list[str] = field(default_factory=list)  # finished by an earlier run
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "film"


def _dicom_fields(path: Path) -> dict | None:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # not DICOM after all: read_header said so already for a .dcm
        return None
    return {"modality": str(ds.get("Modality", "")), "view": str(ds.get("ViewPosition", "")).upper(),
            "patient_id": str(ds.get("PatientID", "")), "study_uid": str(ds.get("StudyInstanceUID", "")),
            "sop_uid": str(ds.get("SOPInstanceUID", ""))}


def find_films(source: str | Path) -> tuple[list[Film], dict[str, str]]:
    """Return the lateral spine films under ``source`` (recursively) and, for every other file, why it was left.

    DICOM must be a projection (CR, DX, RG, DR) and not a frontal view; other formats carry no view and are taken.
    """
    source = Path(source)
    films, skipped, names = [], {}, set()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        if any(part.startswith(".") or part in SKIP_FOLDERS for part in rel.parts[:-1]) or path.name.startswith("."):
            continue
        try:
            header = read_header(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file is a skip with its reason
            skipped[str(rel)] = f"not an image SpineMorph reads ({err})"
            continue
        if header.planes > 1:
            skipped[str(rel)] = f"{header.planes} planes: not a radiograph"
            continue
        meta = None if path.name.lower().endswith(_NOT_DICOM) else _dicom_fields(path)
        if meta is not None:
            if meta["modality"] not in PROJECTION:
                skipped[str(rel)] = f"modality {meta['modality'] or 'unknown'}, not a radiograph"
                continue
            if meta["view"] in NOT_LATERAL:
                skipped[str(rel)] = f"view {meta['view']}, not lateral"
                continue
        name = _safe(image_id(path))
        while name in names:
            name += "_"
        names.add(name)
        patient = (meta or {}).get("patient_id") or name
        films.append(Film(path, name, patient, (meta or {}).get("study_uid", "")))
    return films, skipped


def fetch_dicomweb(url: str, cache: Path, modalities=PROJECTION) -> Path:
    """Download every series of a projection modality from a DICOMweb server into ``cache`` (one file per
    instance, already-downloaded instances kept); return ``cache``."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=url.rstrip("/"))
    cache.mkdir(parents=True, exist_ok=True)
    for modality in modalities:
        for found in client.search_for_series(search_filters={"Modality": modality}):
            study, series = found["0020000D"]["Value"][0], found["0020000E"]["Value"][0]
            folder = cache / _safe(series)
            if (folder / ".complete").exists():
                continue
            folder.mkdir(exist_ok=True)
            for ds in client.retrieve_series(study, series):
                ds.save_as(folder / f"{_safe(ds.SOPInstanceUID)}.dcm", write_like_original=False)
            (folder / ".complete").touch()
    return cache


def _result_record(film: Film, analysis, model: dict) -> dict:
    calls = {c["level"]: c for c in analysis.fracture_calls or []}
    morph = analysis.morphometry.to_dict()
    return {"film": film.film, "source": str(film.path), "patient_id": film.patient_id, "study_uid": film.study_uid,
            "model": model, "morphometry": morph, "fracture_calls": list(calls.values()),
            "timings": {k: round(v, 3) for k, v in analysis.timings.items()}}


def _screen_one(film: Film, out: Path, models, device: str, dicom: bool, store: str | None) -> dict:
    from spinemorph.inference.analyse import analyse

    n, identity = models
    image = read_radiograph(film.path)
    analysis = analyse(image, n.net, n.spec, device, n.facing, refiner=n.refiner, detector=n.detector,
                       landmarks=n.landmarks)
    folder = out / "films" / film.film
    folder.mkdir(parents=True, exist_ok=True)
    write_labelmap(folder / "labels.nii.gz", analysis.labels, image)
    from spinemorph.measure.report import overlay_picture
    from spinemorph.overlay import PNG_OPTIONS

    overlay_picture(analysis.morphometry, analysis.labels, image.pixels).save(folder / "overlay.png", **PNG_OPTIONS)
    record = _result_record(film, analysis, identity)
    if dicom and image.meta.get("format") == "dicom":
        from spinemorph.io.dicom_results import write_dicom_results

        written = write_dicom_results(folder, "result", analysis.labels, analysis.morphometry, film.path)
        record["dicom"] = {k: p.name for k, p in written.items()}
        if store:
            import pydicom
            from dicomweb_client.api import DICOMwebClient

            DICOMwebClient(url=store.rstrip("/")).store_instances([pydicom.dcmread(p) for p in written.values()])
            record["stored_to"] = store
    atomic_write_text(folder / "result.json", json.dumps(record, indent=1, default=str))  # last: marks it done
    return record


def _models(model: str | Path, device: str, detector: bool, runtime: str):
    """Return the networks as the served default runs them (both stages, the landmarks' mean heights) and the
    weights' identity."""
    from spinemorph.inference.analyse import load_networks
    from spinemorph.inference.identity import weights_identity

    return load_networks(model, device, detector=detector, runtime=runtime), weights_identity(model)


def screen(source: str | Path, out: str | Path, model: str | Path, device: str = "cpu", detector: bool = True,
           dicom: bool = False, store: str | None = None, progress: bool = True, runtime: str = "torch") -> Screening:
    """Screen every lateral film of ``source`` (a folder, or a DICOMweb URL) into ``out``; see the module doc;
    ``runtime``: where the networks run on a CPU (``spinemorph.inference.runtime``)."""
    from tqdm import tqdm

    from spinemorph.inference.runtime import runtime_on

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    folder = source
    if str(source).startswith(("http://", "https://")):
        folder = fetch_dicomweb(str(source), out / ".dicomweb")
    films, skipped = find_films(folder)
    done = Screening(skipped=skipped)
    done.resumed = [f.film for f in films if (out / "films" / f.film / "result.json").exists()]
    todo = [f for f in films if f.film not in done.resumed]
    models = _models(model, device, detector, runtime) if todo else None
    for film in tqdm(todo, desc="screening", unit="film", disable=not progress):
        try:
            _screen_one(film, out, models, device, dicom, store)
            done.films.append(film.film)
        except Exception as err:  # noqa: BLE001 - one bad film must not stop a cohort; it is reported
            log.warning("%s: %s", film.path, err)
            done.failed[str(film.path)] = str(err)
    done.seconds = time.perf_counter() - start
    write_cohort(out)
    rate = len(done.films) / done.seconds * 60 if done.films and done.seconds else 0.0
    atomic_write_text(out / "summary.json", json.dumps({
        "source": str(source), "films_screened": len(done.films), "films_resumed": len(done.resumed),
        "skipped": done.skipped, "failed": done.failed, "seconds": round(done.seconds, 1),
        "films_per_minute": round(rate, 2), "device": device, "runtime": runtime_on(runtime, device)},
        indent=1))
    return done


def _rows(record: dict) -> list[dict]:
    calls = {c["level"]: c for c in record.get("fracture_calls") or []}
    unsure = "level_uncertain" in record["morphometry"].get("flags", [])  # the film's: its names may be a level off
    rows = []
    for v in record["morphometry"]["vertebrae"]:
        call = calls.get(v["level"], {})
        rows.append({"patient_id": record["patient_id"], "study_uid": record["study_uid"], "film": record["film"],
                     **{k: v.get(k) for k in COHORT_FIELDS if k in v}, "level_uncertain": unsure,
                     "detector_score": call.get("detector_score"), "combined": call.get("combined"),
                     "flags": ";".join(v.get("flags", []))})
    return rows


def _graded(record: dict) -> list[str]:
    """Return the film's vertebrae graded >= 1 ("L1 G2 wedge"), by measurement or by the combined call; on a film
    whose level names are uncertain, with the levels each may be instead ("L2 G3 crush (level uncertain: L1 or
    L3)")."""
    calls = {c["level"]: c for c in record.get("fracture_calls") or []}
    unsure = "level_uncertain" in record["morphometry"].get("flags", [])
    found = []
    for v in record["morphometry"]["vertebrae"]:
        grade = v.get("genant_grade")
        if (grade or 0) >= 1:
            what = f"{v['level']} G{grade} {v.get('deformity') or ''}".strip()
        elif calls.get(v["level"], {}).get("combined"):
            what = f"{v['level']} detector"
        else:
            continue
        beside = levels_beside(v["level"]) if unsure else []
        found.append(f"{what} (level uncertain: {' or '.join(beside)})" if beside else what)
    return found


def write_cohort(out: str | Path) -> list[dict]:
    """(Re)write cohort.csv, verdicts.csv and one report page per patient from every finished film in ``out``;
    return the verdicts."""
    out = Path(out)
    records = [json.loads(p.read_text()) for p in sorted((out / "films").glob("*/result.json"))]
    with open(out / "cohort.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COHORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerows(_rows(record))
    patients: dict[str, list[dict]] = {}
    for record in records:
        patients.setdefault(record["patient_id"], []).append(record)
    verdicts = []
    for patient, films in sorted(patients.items()):
        found = [f"{r['film']}: {g}" for r in films for g in _graded(r)]
        withheld = sum("low_confidence" in v.get("flags", []) for r in films for v in r["morphometry"]["vertebrae"])
        graded = sum(v.get("genant_grade") is not None for r in films for v in r["morphometry"]["vertebrae"])
        verdicts.append({"patient_id": patient, "films": len(films), "fracture": bool(found),
                         "vertebrae_graded_1_or_more": "; ".join(found), "grades_withheld": withheld,
                         "vertebrae_graded": graded, "verdict": _verdict(found, graded)})
        _report_page(out / "reports" / f"{_safe(patient)}.png", patient, films, verdicts[-1]["verdict"], out)
    with open(out / "verdicts.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["patient_id", "films", "fracture", "vertebrae_graded_1_or_more",
                                                "grades_withheld", "vertebrae_graded", "verdict"])
        writer.writeheader()
        writer.writerows(verdicts)
    return verdicts


def _verdict(found: list[str], graded: int) -> str:
    """Return a patient's verdict: the fractures found; else no fracture among the vertebrae graded; else, when no
    vertebra could be graded (every grade withheld, or none found), "not gradable": no finding, for a reader."""
    if found:
        return f"fracture: {', '.join(found)}"
    if graded:
        return f"no vertebra graded 1 or more ({graded} graded)"
    return "not gradable: no vertebra could be graded, read the film"


def _report_page(path: Path, patient: str, films: list[dict], verdict: str, out: Path) -> None:
    """One PNG page: the verdict, then per film its overlay beside its table (level, heights, VCR, grade, flags)."""
    from PIL import Image, ImageDraw

    from spinemorph.overlay import GRADE_COLORS, _font

    width, thumb_h, line = 1400, 700, 18
    font, big = _font(14), _font(22)
    blocks = []
    for record in films:
        overlay = Image.open(out / "films" / record["film"] / "overlay.png").convert("RGB")
        overlay = overlay.resize((max(1, round(overlay.width * thumb_h / overlay.height)), thumb_h))
        blocks.append((record, overlay))
    height = 90 + sum(max(thumb_h, 40 + line * (len(r["morphometry"]["vertebrae"]) + 3)) + 20 for r, _ in blocks)
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    colour = {"fracture": (190, 30, 30), "not gradable": (200, 120, 0)}.get(verdict.split(":")[0], (20, 120, 40))
    draw.text((20, 15), f"Patient {patient}", fill="black", font=big)
    draw.text((20, 50), f"SpineMorph screening - {verdict}", fill=colour, font=font)
    y = 90
    for record, overlay in blocks:
        page.paste(overlay, (20, y))
        x = 40 + overlay.width
        morph = record["morphometry"]
        unit = morph.get("units", "mm")
        draw.text((x, y), f"{record['film']}  ({unit}; facing {morph.get('facing')}; flags: "
                          f"{', '.join(morph.get('flags', [])) or 'none'})", fill="black", font=font)
        draw.text((x, y + line + 4), f"{'level':<6}{'Ha':>7}{'Hm':>7}{'Hp':>7}{'VCR%':>7}  grade  type      flags",
                  fill="black", font=font)
        for i, v in enumerate(morph["vertebrae"]):
            h = [v.get(f"{k}_{unit}") for k in ("Ha", "Hm", "Hp")]
            cells = "".join(f"{x_:>7.1f}" if isinstance(x_, (int, float)) else f"{'-':>7}" for x_ in
                            (*h, v.get("vcr_percent")))
            grade = v.get("genant_grade")
            text = (f"{v['level']:<6}{cells}  {('G' + str(grade)) if grade is not None else 'n/a':<6} "
                    f"{(v.get('deformity') or '-'):<9} {', '.join(v.get('flags', []))}")
            colour = GRADE_COLORS.get(grade, (120, 120, 120)) if grade else (0, 0, 0)
            draw.text((x, y + (i + 2) * line + 8), text, fill=tuple(int(c * 0.8) for c in colour), font=font)
        y += max(thumb_h, 40 + line * (len(morph["vertebrae"]) + 3)) + 20
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)


def grades_table(out: str | Path) -> np.ndarray:
    """Return the count of vertebrae per Genant grade (0-3) in a screening's cohort.csv (for a summary line)."""
    counts = np.zeros(4, int)
    with open(Path(out) / "cohort.csv") as fh:
        for row in csv.DictReader(fh):
            if row["genant_grade"] not in ("", "None"):
                counts[int(row["genant_grade"])] += 1
    return counts
