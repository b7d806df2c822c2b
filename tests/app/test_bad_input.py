"""Bad input to a real server: each kind gets a 4xx with a sentence that says what to do, and nothing changes.

Also what "nothing is lost" means for label saves (the replaced label is kept and can be restored) and deletes
(refused unless the server allows them, and then to a trash).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import shutil
import zlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from spinemorph.cli import main as cli
from spinemorph.io import read_labelmap, read_radiograph, write_labelmap
from tests.app.server import running_server

HIDDEN = (".spinemorph", "datastore_v2.json", ".lock")


def _snapshot(studies) -> dict[str, str]:
    """SHA-1 of every file of the studies a request could change (not the datastore's own bookkeeping)."""
    return {str(p.relative_to(studies)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in studies.rglob("*") if p.is_file() and not any(part in HIDDEN for part in p.parts)}


@pytest.fixture(scope="module")
def guarded(studies, tiny_model, tmp_path_factory):
    """A server on a copy of the studies holding a link to a radiograph outside it: (url, studies, outside)."""
    root = tmp_path_factory.mktemp("guarded")
    copy, outside = root / "studies", root / "outside"
    shutil.copytree(studies, copy, ignore=shutil.ignore_patterns(".spinemorph", "datastore_v2.json", ".lock"))
    outside.mkdir()
    dicom = sorted(copy.glob("*.dcm"))[0]
    shutil.copy(dicom, outside / "secret.dcm")
    (copy / "linked-outside.dcm").symlink_to(outside / "secret.dcm")
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": root / "models",
            "epistemic_passes": 2}
    with running_server(copy, conf, root / "server.log") as url:
        yield url, copy, outside


def _files(tmp_path, studies):
    """Write every bad file once; return a dict name -> path."""
    dx = sorted(studies.glob("*.dcm"))[0]
    out = {}
    data = dx.read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) // 3])
    out["truncated"] = tmp_path / "truncated.dcm"

    ds = pydicom.dcmread(dx)
    no_pixels = copy.deepcopy(ds)
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "no-pixels.dcm")
    out["no pixels"] = tmp_path / "no-pixels.dcm"

    jp2 = copy.deepcopy(ds)
    jp2.file_meta.TransferSyntaxUID = JPEG2000Lossless
    jp2.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])  # a JPEG 2000 start, then nothing decodable
    jp2["PixelData"].VR = "OB"
    jp2.save_as(tmp_path / "jp2.dcm", write_like_original=False)
    out["compressed"] = tmp_path / "jp2.dcm"

    frames = copy.deepcopy(ds)
    frames.NumberOfFrames = 3
    frames.PixelData = ds.PixelData * 3
    frames.save_as(tmp_path / "frames.dcm")
    out["multi-frame"] = tmp_path / "frames.dcm"

    huge = copy.deepcopy(ds)
    huge.Rows = huge.Columns = 20_000  # declared; the pixel data is the small original
    huge.save_as(tmp_path / "huge.dcm")
    out["20000x20000"] = tmp_path / "huge.dcm"

    for name, spacing in (("negative spacing", ["-0.15", "0.15"]), ("zero spacing", ["0", "0"])):
        bad = copy.deepcopy(ds)
        bad.PixelSpacing = spacing
        bad.save_as(tmp_path / f"{name.replace(' ', '-')}.dcm")
        out[name] = tmp_path / f"{name.replace(' ', '-')}.dcm"

    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "one.png")
    out["1x1"] = tmp_path / "one.png"
    for name, value in (("NaN", np.nan), ("Inf", np.inf)):
        pixels = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
        pixels[10:12, 10:12] = value
        nib.save(nib.Nifti1Image(pixels, np.diag([0.2, 0.2, 1, 1])), tmp_path / f"{name}.nii.gz")
        out[name] = tmp_path / f"{name}.nii.gz"

    # A zip bomb: 1 MB on disk that inflates to 968 MB (11000×11000 float64 of zeros, as repeated gzip members).
    header = nib.Nifti1Image(np.zeros((1, 1, 1), np.float64), np.eye(4)).header.copy()
    header.set_data_shape((11_000, 11_000, 1))
    head = header.binaryblock + b"\x00" * 4  # 348-byte header + 4-byte extension flag: data starts at 352
    member = gzip.compress(b"\x00" * (1 << 20), compresslevel=9)
    with open(tmp_path / "bomb.nii.gz", "wb") as fh:
        fh.write(gzip.compress(head))
        for _ in range(11_000 * 11_000 * 8 >> 20):
            fh.write(member)
    out["zip bomb"] = tmp_path / "bomb.nii.gz"
    (tmp_path / "text.png").write_text("not an image at all")
    out["not an image"] = tmp_path / "text.png"
    (tmp_path / "empty.png").write_bytes(b"")
    out["empty file"] = tmp_path / "empty.png"
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out["colour"] = tmp_path / "rgb.png"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 8), np.int16), np.eye(4)), tmp_path / "volume.nii.gz")
    out["3D volume"] = tmp_path / "volume.nii.gz"
    return out


def _labels(tmp_path, image):
    """Labels that cannot be saved for ``image``: name -> path."""
    out = {}
    small = np.zeros((10, 10), np.uint8)
    nib.save(nib.Nifti1Image(small[..., None], np.eye(4)), tmp_path / "small.nii.gz")
    out["wrong shape"] = tmp_path / "small.nii.gz"
    codes = np.zeros(image.shape, np.uint8)
    codes[5:10, 5:10] = 27
    write_labelmap(tmp_path / "codes.nii.gz", codes, image)
    out["wrong values"] = tmp_path / "codes.nii.gz"
    fractional = np.zeros((*image.shape, 1), np.float32)
    fractional[5:10, 5:10] = 20.5
    nib.save(nib.Nifti1Image(fractional, image.affine), tmp_path / "float.nii.gz")
    out["wrong dtype"] = tmp_path / "float.nii.gz"
    write_labelmap(tmp_path / "zeros.nii.gz", np.zeros(image.shape, np.uint8), image)
    out["all zeros"] = tmp_path / "zeros.nii.gz"
    return out


def test_bad_input_gets_a_4xx_with_a_sentence_and_changes_nothing(guarded, tmp_path):
    url, studies, outside = guarded
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    labelled = sorted(k for k, v in objects.items() if "final" in v["labels"])[0]
    image = read_radiograph(next(studies.glob(f"{labelled}.*")))
    files, labels = _files(tmp_path, studies), _labels(tmp_path, image)
    before, secret = _snapshot(studies), hashlib.sha1((outside / "secret.dcm").read_bytes()).hexdigest()

    def upload(kind):
        path = files[kind]
        with open(path, "rb") as fh:
            return requests.put(f"{url}/datastore/image", params={"image": f"up-{kind.replace(' ', '-')}"},
                                files={"file": (path.name, fh)}, timeout=60)

    def save(kind, image_id=labelled, tag="final"):
        with open(labels[kind], "rb") as fh:
            return requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": tag},
                                files={"label": (labels[kind].name, fh)}, timeout=60)

    def infer(image_id, params="{}", model="spinemorph_levels", **query):
        return requests.post(f"{url}/infer/{model}", params={"image": image_id, **query},
                             files={"params": (None, params)}, timeout=60)

    cases = {  # kind: (response, status, words the sentence must hold)
        "truncated DICOM": (upload("truncated"), 422, "truncated"),
        "DICOM without pixel data": (upload("no pixels"), 422, "no pixel data"),
        "compressed transfer syntax": (upload("compressed"), 415, "uncompressed"),
        "multi-frame DICOM": (upload("multi-frame"), 422, "one 2D radiograph"),
        "1x1 image": (upload("1x1"), 422, "at least 32 pixels"),
        "20000x20000 image, refused from its header": (upload("20000x20000"), 413, "20000×20000"),
        "NaN pixels": (upload("NaN"), 422, "NaN or infinite"),
        "Inf pixels": (upload("Inf"), 422, "NaN or infinite"),
        "negative spacing": (upload("negative spacing"), 422, "not a positive spacing"),
        "zero spacing": (upload("zero spacing"), 422, "not a positive spacing"),
        "zip bomb .nii.gz": (upload("zip bomb"), 413, "11000×11000"),
        "not an image": (upload("not an image"), 415, "not an image file"),
        "empty file": (upload("empty file"), 415, "up-empty-file"),
        "colour image": (upload("colour"), 422, "colour"),
        "3D volume": (upload("3D volume"), 422, "planes"),
        "an upload over an existing image": (requests.put(f"{url}/datastore/image", params={"image": labelled},
                                                          files={"file": ("x.dcm", b"")}, timeout=30), 409,
                                             "never replaced"),
        "label of the wrong shape": (save("wrong shape"), 422, "pixel for pixel"),
        "label of the wrong values": (save("wrong values"), 422, "[27]"),
        "label of the wrong dtype": (save("wrong dtype"), 422, "non-integer"),
        "label all zeros": (save("all zeros"), 422, "marks no vertebra"),
        "label for a missing image": (save("wrong values", "no-such-image"), 404, "no-such-image"),
        "label tag that is a path": (save("wrong values", tag="../../etc"), 400, "not a tag"),
        "image id that climbs out": (infer("../../etc/passwd"), 400, "not an id"),
        "image id that is an absolute path": (infer("/etc/passwd"), 400, "not an id"),
        "params naming a server path": (infer(labelled, '{"image": "/etc/passwd"}'), 400, "cannot set"),
        "non-UTF-8 id": (requests.post(f"{url}/infer/spinemorph_levels?image=%FF%FEabc", timeout=30), 400,
                         "not an id"),
        "overlong id": (infer("a" * 300), 400, "at most 200"),
        "oversized params": (infer(labelled, '{"x": "' + "y" * 70_000 + '"}'), 413, "64 KiB"),
        "malformed JSON params": (infer(labelled, '{"stage2": fal'), 400, "not valid JSON"),
        "params not an object": (infer(labelled, "[1, 2]"), 400, "JSON object"),
        "unknown model": (infer(labelled, model="no_such_model"), 404, "spinemorph_levels"),
        "unknown output": (infer(labelled, output="pdf"), 422, "output"),
        "unknown strategy": (requests.post(f"{url}/activelearning/nope", json={}, timeout=30), 404, "random"),
        "unknown scoring method": (requests.post(f"{url}/scoring/nope", timeout=30), 404, "dice"),
        "unknown train task": (requests.post(f"{url}/train/nope", json={}, timeout=30), 404, "spinemorph_levels"),
        "link out of the studies folder": (infer("linked-outside"), 403, "copy the file"),
        "delete a radiograph": (requests.delete(f"{url}/datastore/image", params={"id": labelled}, timeout=30), 403,
                                "allow_delete"),
        "delete a label": (requests.delete(f"{url}/datastore/label", params={"id": labelled, "tag": "final"},
                                           timeout=30), 403, "allow_delete"),
        "delete a model": (requests.delete(f"{url}/model/spinemorph_levels", timeout=30), 403, "allow_delete"),
    }
    assert len(cases) >= 25
    for what, (response, code, words) in cases.items():
        assert response.status_code == code, f"{what}: {response.status_code} {response.text[:300]}"
        detail = response.json()["detail"]
        detail = detail if isinstance(detail, str) else str(detail)
        assert words in detail, f"{what}: {detail}"
    assert requests.get(f"{url}/info/", timeout=10).ok  # still up
    assert _snapshot(studies) == before  # nothing changed
    assert hashlib.sha1((outside / "secret.dcm").read_bytes()).hexdigest() == secret
    after = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert set(after) == set(objects) and "linked-outside" not in after


def test_routes_for_what_the_app_does_not_serve_are_gone(guarded):
    url = guarded[0]
    paths = set(requests.get(f"{url}/openapi.json", timeout=30).json()["paths"])
    assert "/infer/{model}" in paths and "/datastore/label" in paths
    assert not [p for p in paths if p.startswith(("/infer/wsi", "/ohif", "/proxy"))]
    assert requests.post(f"{url}/reload", timeout=30).status_code in (404, 405)


def test_a_save_keeps_the_label_it_replaces_and_the_cli_restores_it(guarded, tmp_path, capsys):
    url, studies, _ = guarded
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    image_id = sorted(k for k, v in objects.items() if "final" in v["labels"])[-1]
    final = studies / "labels" / "final" / f"{image_id}.nii.gz"
    original = final.read_bytes()
    labels, geometry = read_labelmap(final)
    edited = labels.copy()
    edited[labels == labels.max()] = 0
    write_labelmap(tmp_path / "edited.nii.gz", edited, geometry)
    with open(tmp_path / "edited.nii.gz", "rb") as fh:
        done = requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                            files={"label": ("edited.nii.gz", fh)}, timeout=60)
    assert done.ok, done.text
    np.testing.assert_array_equal(read_labelmap(final)[0], edited)
    kept = sorted((studies / ".spinemorph" / "label-versions" / "final" / image_id).iterdir())
    assert [p.read_bytes() for p in kept] == [original]
    info = requests.get(f"{url}/datastore/label/info", params={"label": image_id, "tag": "final"}, timeout=30).json()
    assert info["previous_version"] == kept[0].name
    assert not list(studies.rglob("*.tmp"))

    assert cli(["labels", str(studies), "--image", image_id]) == 0
    assert kept[0].name.split(".nii")[0] in capsys.readouterr().out
    assert cli(["labels", str(studies), "--image", image_id, "--restore"]) == 0
    assert final.read_bytes() == original  # restored, and the edited label is now a kept version too
    versions = sorted((studies / ".spinemorph" / "label-versions" / "final" / image_id).iterdir())
    assert len(versions) == 2
    np.testing.assert_array_equal(read_labelmap(versions[-1])[0], edited)


def test_with_allow_delete_a_deleted_radiograph_goes_to_the_trash(studies, tiny_model, tmp_path):
    copy = tmp_path / "studies"
    shutil.copytree(studies, copy, ignore=shutil.ignore_patterns(".spinemorph", "datastore_v2.json", ".lock"))
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": tmp_path / "models",
            "allow_delete": "true"}
    with running_server(copy, conf, tmp_path / "server.log") as url:
        objects = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
        image_id = sorted(k for k, v in objects.items() if "final" in v["labels"])[0]
        files = [next(copy.glob(f"{image_id}.*")), copy / "labels" / "final" / f"{image_id}.nii.gz"]
        digests = {f.name: hashlib.sha1(f.read_bytes()).hexdigest() for f in files}
        r = requests.delete(f"{url}/datastore/image", params={"id": image_id}, timeout=30)
        assert r.ok, r.text
        assert image_id not in requests.get(f"{url}/datastore/", params={"output": "all"},
                                            timeout=30).json()["objects"]
    assert not any(f.exists() for f in files)
    trashed = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in (copy / ".spinemorph" / "trash").rglob("*")
               if p.is_file()}
    assert trashed == digests  # every byte kept, to be moved back by hand


def test_the_zip_bomb_is_what_it_claims(tmp_path, studies):
    """The bomb in the test above is small on disk and inflates to gigabytes' worth of declared pixels."""
    bomb = _files(tmp_path, studies)["zip bomb"]
    assert bomb.stat().st_size < 2_000_000
    with open(bomb, "rb") as fh:
        first = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(fh.read(4096))
    assert nib.Nifti1Header.from_fileobj(io.BytesIO(first[:348])).get_data_shape() == (11000, 11000, 1)
