"""The SpineMorph server on a real PACS: Orthanc over DICOMweb, driven through monailabel's own client.

The PACS holds three DX and two CR lateral films (two of them labelled by an earlier DICOM SEG) and one CT series
that must never be listed. The loop: list, next sample, infer, save a label (stored back as a DICOM SEG), train,
infer with the new model. Nothing here reaches the internet: MONAI Label's dcmqi download is never needed.
"""

from __future__ import annotations

import hashlib

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from monailabel.client import MONAILabelClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spinemorph.data.dataset import simulate_studies
from spinemorph.data.simulate import SimConfig
from spinemorph.io import read_labelmap, read_radiograph, write_labelmap, write_nifti
from spinemorph.io.dicom_results import make_seg
from spinemorph.levels import level_code
from tests.app.orthanc import running_orthanc, store
from tests.app.server import assert_training_mechanics, finished_training, serving, watching

CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage


def as_cr(ds: Dataset) -> Dataset:
    """Return a copy of a DX film as a CR of its own study: Modality CR, the CR SOP class, new UIDs."""
    cr = ds.copy()
    cr.Modality, cr.SOPClassUID = "CR", CR_SOP_CLASS
    cr.StudyInstanceUID, cr.SeriesInstanceUID, cr.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    cr.file_meta = ds.file_meta.copy()
    cr.file_meta.MediaStorageSOPClassUID, cr.file_meta.MediaStorageSOPInstanceUID = CR_SOP_CLASS, cr.SOPInstanceUID
    del cr.PresentationIntentType  # DX only
    return cr


def ct_series(slices: int = 2, size: int = 32) -> list[Dataset]:
    """Return a small CT series of its own study (a PACS holds CT beside the films; it must never be listed)."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = []
    for i in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.TransferSyntaxUID = CT_SOP_CLASS, ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CT_SOP_CLASS, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.Modality, ds.InstanceNumber, ds.SeriesNumber = "CT1", "Sim^CT", "CT", i + 1, 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.0 * i], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness, ds.RescaleIntercept, ds.RescaleSlope = [1, 1], 2, -1024, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", size, size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.full((size, size), 1000 + i, "<u2").tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        out.append(ds)
    return out


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A running Orthanc holding DX films 0-2, CR films 3-4, a SEG for films 0 and 3, and a CT series.

    Yields (orthanc, films: {series uid: (dataset, truth labels)}, ct series uid).
    """
    folder = tmp_path_factory.mktemp("pacs_films")
    paths = simulate_studies(5, 61, folder, SimConfig(size=160, fov="lumbar"), progress=False)
    films = {}
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds = as_cr(ds) if i >= 3 else ds
        labels, _ = read_labelmap(folder / "labels" / "final" / f"{path.stem}.nii.gz")
        films[str(ds.SeriesInstanceUID)] = (ds, labels)
    ct = ct_series()
    with running_orthanc() as orthanc:
        film_list = list(films.values())
        store(orthanc, [ds for ds, _ in film_list] + ct)
        store(orthanc, [make_seg(film_list[i][1], film_list[i][0], algorithm_type="MANUAL")  # an annotator's
                        for i in (0, 3)])
        yield orthanc, films, str(ct[0].SeriesInstanceUID)


@pytest.fixture(scope="module")
def server(pacs, tiny_model, tmp_path_factory):
    models = tmp_path_factory.mktemp("pacs_published")
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models,
            "epistemic_passes": 2}
    cache = tmp_path_factory.mktemp("pacs_cache")
    with serving(pacs[0].dicomweb, conf, models / "server.log",
                 env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(cache)}) as running:
        yield running.url, models


def seg_labels(seg: Dataset, source: Dataset) -> np.ndarray:
    """Return the labelmap a SEG draws on ``source``, in VerSe codes named by its segments' labels (highdicom)."""
    seg = hd.seg.Segmentation.from_dataset(seg, copy=False)
    numbers = seg.get_pixels_by_source_instance([str(source.SOPInstanceUID)], combine_segments=True)[0]
    labels = np.zeros(numbers.shape, np.int32)
    for item in seg.SegmentSequence:
        labels[numbers == item.SegmentNumber] = level_code(item.SegmentLabel)
    return labels


def segs_in(orthanc) -> list[Dataset]:
    """Return every SEG instance in the PACS."""
    client = DICOMwebClient(orthanc.dicomweb)
    return [client.retrieve_instance(str(m.StudyInstanceUID), str(m.SeriesInstanceUID), str(m.SOPInstanceUID))
            for m in map(Dataset.from_json, client.search_for_instances(search_filters={"Modality": "SEG"}))]


def test_lists_exactly_the_dx_and_cr_series(server, pacs):
    orthanc, films, ct = pacs
    in_pacs = DICOMwebClient(orthanc.dicomweb).search_for_series(search_filters={"Modality": "CT"})
    assert [Dataset.from_json(s).SeriesInstanceUID for s in in_pacs] == [ct]  # the PACS holds it; the server hides it
    c = MONAILabelClient(server[0])
    objects = c.datastore()["objects"]
    assert set(objects) == set(films) and ct not in objects
    labelled = {uid for uid, obj in objects.items() if "final" in obj["labels"]}
    assert labelled == {list(films)[0], list(films)[3]}  # the SEGs an earlier annotator stored
    assert c.info()["datastore"]["total"] == 5 and c.info()["datastore"]["completed"] == 2


def test_a_series_downloads_into_a_file_spinemorph_reads(server, pacs, tmp_path):
    _, films, ct = pacs
    for uid in (list(films)[1], list(films)[4]):  # a DX and a CR
        got = requests.get(f"{server[0]}/datastore/image", params={"image": uid}, timeout=60)
        assert got.ok, got.text
        (tmp_path / "film.dcm").write_bytes(got.content)
        film, source = read_radiograph(tmp_path / "film.dcm"), films[uid][0]
        assert film.meta["series_uid"] == uid and film.meta["modality"] == source.Modality
        np.testing.assert_array_equal(film.pixels, source.pixel_array)
        assert film.spacing_mm == pytest.approx(tuple(map(float, source.PixelSpacing)))
    answer = requests.post(f"{server[0]}/infer/spinemorph_levels", params={"image": ct}, timeout=60)
    assert answer.status_code == 404 and "CR/DX/RG/DR" in answer.json()["detail"]


def test_next_sample_is_an_unlabelled_film(server, pacs):
    films = list(pacs[1])
    sample = MONAILabelClient(server[0]).next_sample("random", {})
    assert sample["id"] in {films[1], films[2], films[4]}


@pytest.mark.parametrize("index", [1, 4], ids=["DX", "CR"])
def test_infer_answers_in_the_film_geometry(server, pacs, tiny_model, tmp_path, index):
    uid, (source, _) = list(pacs[1].items())[index]
    source.save_as(str(tmp_path / "source.dcm"))
    image = read_radiograph(tmp_path / "source.dcm")
    label_file, result = MONAILabelClient(server[0]).infer("spinemorph_levels", uid, {})
    labels, geometry = read_labelmap(label_file)
    assert labels.shape == image.shape and set(np.unique(labels)) <= {0, *range(8, 27)}
    np.testing.assert_allclose(geometry.affine, image.affine, atol=1e-6)
    assert result["spacing_mm"] == pytest.approx(list(image.spacing_mm))
    assert {"units", "vertebrae"} <= set(result["morphometry"])
    assert result["weights_sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()[:12]


def test_a_saved_label_goes_to_the_pacs_as_a_seg_and_the_newest_one_counts(server, pacs, tmp_path):
    orthanc, films, _ = pacs
    c = MONAILabelClient(server[0])
    uid = c.next_sample("random", {})["id"]
    source, truth = films[uid]
    before = len(segs_in(orthanc))
    image = requests.get(f"{server[0]}/datastore/image", params={"image": uid}, timeout=60)
    (tmp_path / "film.dcm").write_bytes(image.content)
    geometry = read_radiograph(tmp_path / "film.dcm")
    for bad, why in ((np.zeros_like(truth), "marks no vertebra"), (truth[:-8], "pixel for pixel")):
        write_nifti(tmp_path / "bad.nii.gz", bad.astype(np.uint8), geometry.affine, geometry.facing, "a bad label")
        answer = requests.put(f"{server[0]}/datastore/label", params={"image": uid, "tag": "final"},
                              files={"label": ("bad.nii.gz", (tmp_path / "bad.nii.gz").read_bytes())}, timeout=60)
        assert answer.status_code == 422 and why in answer.json()["detail"], answer.text
    assert len(segs_in(orthanc)) == before  # a refused label stores nothing
    first = truth.copy()
    first[truth == truth.max()] = 0  # the annotator misses a level, then corrects the label
    for n, labels in enumerate((first, truth), start=1):
        write_labelmap(tmp_path / "label.nii.gz", labels, geometry)
        c.save_label(uid, str(tmp_path / "label.nii.gz"), tag="final")
        mine = [s for s in segs_in(orthanc) if s.ReferencedSeriesSequence[0].SeriesInstanceUID == uid]
        assert len(mine) == n and len(segs_in(orthanc)) == before + n
        newest = max(mine, key=lambda s: f"{s.ContentDate}{s.ContentTime}")
        np.testing.assert_array_equal(seg_labels(newest, source), labels)
        assert "final" in c.datastore()["objects"][uid]["labels"]
        back, _ = read_labelmap(c.download_label(uid, "final"))
        np.testing.assert_array_equal(back, labels)


def test_training_on_the_pacs_labels_publishes_the_model_the_next_infer_uses(server, pacs):
    """The mechanics of a train task, never the quality of what it learned (that differs between CPUs)."""
    c = MONAILabelClient(server[0])
    some = list(pacs[1])[2]
    before = c.infer("spinemorph_levels", some, {})[1]
    published = server[1] / "spinemorph_levels" / "model.pt"
    with watching(published) as seen:
        c.train_start("spinemorph_levels", {"max_epochs": 2, "batch_size": 2, "lr": 3e-3, "pretrained": False})
        status = finished_training(c)
    assert any("SPINEMORPH_TRAIN" in line for line in status["details"])
    stats = c.info()["train_stats"]["spinemorph_levels"]
    assert_training_mechanics(published, server[1] / "spinemorph_levels" / "run" / "log.csv", stats, seen,
                              falls=False)
    assert stats["train_cases"] + stats["val_cases"] == 3 and stats["epochs"] == 2  # two SEGs before, one saved
    after = c.infer("spinemorph_levels", some, {})[1]
    assert after["weights"] == str(published) != before["weights"]
    assert after["weights_sha256"] == stats["sha256"] != before["weights_sha256"]


def test_screening_the_pacs_stores_a_seg_and_an_sr_per_film_that_read_back_as_the_json(pacs, tiny_model, tmp_path):
    """`spinemorph screen URL --store URL`: every DX and CR film (not the CT) screened, and its SEG and SR stored
    back to Orthanc by STOW-RS; read back from Orthanc, the SR's values are the JSON's, number for number."""
    import json

    import highdicom as hd
    from dicomweb_client.api import DICOMwebClient

    from spinemorph.io.dicom_results import read_morphometry_sr
    from spinemorph.screen import screen

    orthanc, films, ct = pacs
    done = screen(orthanc.dicomweb, tmp_path / "out", tiny_model, "cpu", dicom=True, store=orthanc.dicomweb,
                  progress=False)
    assert len(done.films) == len(films) and not done.failed, (done.films, done.failed)
    client = DICOMwebClient(orthanc.dicomweb)
    for record in (json.loads(p.read_text()) for p in (tmp_path / "out" / "films").glob("*/result.json")):
        source = pydicom.dcmread(record["source"])
        assert str(source.SeriesInstanceUID) in films and record["stored_to"] == orthanc.dicomweb
        found = {}
        for modality in ("SR", "SEG"):
            for series in client.search_for_series(search_filters={"Modality": modality}):
                for ds in client.retrieve_series(series["0020000D"]["Value"][0], series["0020000E"]["Value"][0]):
                    if source.SOPInstanceUID in _referenced(ds) and ds.get("Manufacturer") == "SpineMorph":
                        found[modality] = ds
        assert set(found) == {"SR", "SEG"}, (record["film"], set(found))
        sr_file = _saved(found["SR"], tmp_path)
        back = read_morphometry_sr(hd.sr.srread(sr_file))
        assert [v["level"] for v in back["vertebrae"]] == [v["level"] for v in record["morphometry"]["vertebrae"]]
        for ours, theirs in zip(record["morphometry"]["vertebrae"], back["vertebrae"], strict=True):
            for field in ("Ha_mm", "Hm_mm", "Hp_mm", "vcr_percent", "wedge", "biconcave", "crush", "genant_grade",
                          "deformity", "flags"):
                assert theirs[field] == ours[field], (record["film"], ours["level"], field)
    assert ct not in {json.loads(p.read_text())["source"] for p in (tmp_path / "out" / "films").glob("*/result.json")}

    # The last film's SR, as Orthanc sent it back, opens in the Slicer module with its table and its six points.
    from tests.slicer.conftest import run_in_slicer_python
    from tests.slicer.test_loop import LOOP

    done = run_in_slicer_python(LOOP, "--report", record["source"], sr_file, tmp_path / "shown.json")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    shown = json.loads((tmp_path / "shown.json").read_text())
    assert [row[0] for row in shown["rows"]] == [v["level"] for v in back["vertebrae"]]
    assert shown["lines"] == 3 * sum(1 for v in back["vertebrae"] if v["points"])


def _saved(ds: Dataset, folder) -> str:
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, write_like_original=False)
    return str(path)


def _referenced(ds: Dataset) -> set[str]:
    """Every ReferencedSOPInstanceUID anywhere in ``ds`` (SR evidence, SEG references), however nested."""
    found = set()
    for elem in ds.iterall():
        if elem.keyword == "ReferencedSOPInstanceUID":
            found.add(str(elem.value))
    return found


def test_batch_infer_with_dicom_stores_a_seg_and_an_sr_per_film_and_leaves_them_unlabelled(server, pacs):
    """MONAI Label's batch infer with {"dicom": true}: each unlabelled film's answer goes to the PACS as a SEG and an
    SR; a machine's answer is a result, not a label, so the films stay unlabelled."""
    url = server[0]
    c = MONAILabelClient(url)
    todo = set(c.datastore()["objects"]) - {k for k, v in c.datastore()["objects"].items() if "final" in v["labels"]}
    done = requests.post(f"{url}/batch/infer/spinemorph_levels", params={"run_sync": "true"},
                         json={"images": "unlabeled", "dicom": True}, timeout=600)
    assert done.ok, done.text
    answers = done.json()
    assert todo and set(answers) == todo
    for image_id in todo:
        assert answers[image_id]["dicom"]["stored"] is True, answers[image_id]["dicom"]
        uids = set(answers[image_id]["dicom"]["sop_instance_uids"])
        source = pacs[1][image_id][0]
        stored = {str(ds.SOPInstanceUID) for modality in ("SEG", "SR")
                  for ds in _spinemorph_results(pacs[0], modality) if source.SOPInstanceUID in _referenced(ds)}
        assert uids <= stored
    objects = c.datastore()["objects"]
    assert all("final" not in objects[i]["labels"] for i in todo)


def _spinemorph_results(orthanc, modality: str) -> list[Dataset]:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb)
    return [ds for series in client.search_for_series(search_filters={"Modality": modality})
            for ds in client.retrieve_series(series["0020000D"]["Value"][0], series["0020000E"]["Value"][0])
            if ds.get("Manufacturer") == "SpineMorph"]
