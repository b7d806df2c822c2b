"""DICOM SEG and SR of a simulated DX: written with highdicom, read back with highdicom, pydicom and our reader."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from spinemorph.data.simulate import SimConfig, simulate
from spinemorph.io import read_radiograph, write_dx
from spinemorph.io.dicom_results import (
    SCHEME,
    STATIONS,
    finding_sentence,
    level_concept,
    make_seg,
    read_morphometry_sr,
    write_dicom_results,
    write_sr,
)
from spinemorph.levels import level_code, level_name
from spinemorph.measure import measure

hd = pytest.importorskip("highdicom")

WITHHELD = "L3"  # the level whose grade the gates withhold: the network was unsure of it


def _case(folder, spacing: bool):
    """Write a 128 px lumbar DX (with or without pixel spacing) and return (path, labels, morphometry JSON dict)."""
    sim = simulate(3, 0, SimConfig(size=128, fov="lumbar", fracture_rate=1.0))
    path = folder / "film.dcm"
    write_dx(path, sim.image, sim.spacing_mm, sim.truth["facing"], key="dicom-results")
    if not spacing:
        ds = pydicom.dcmread(path)
        for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
            delattr(ds, keyword)
        ds.save_as(path)
    image = read_radiograph(path)
    confidence = {int(c): 0.99 for c in np.unique(sim.labels) if c}
    confidence[level_code(WITHHELD)] = 0.2
    result = measure(sim.labels, image.spacing_mm, image.facing, confidence=confidence)
    return path, sim.labels, json.loads(json.dumps(result.to_dict()))  # what <stem>.morphometry.json holds


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("with_spacing")
    path, labels, morph = _case(folder, spacing=True)
    return path, labels, morph, write_dicom_results(folder / "out", "film", labels, morph, path)


@pytest.fixture(scope="module")
def case_px(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no_spacing")
    path, labels, morph = _case(folder, spacing=False)
    return path, labels, morph, write_dicom_results(folder / "out", "film", labels, morph, path)


def test_the_case_holds_what_the_sr_must_carry(case, case_px):
    for _, _, morph, _ in (case, case_px):
        by_level = {v["level"]: v for v in morph["vertebrae"]}
        assert by_level[WITHHELD]["genant_grade"] is None and "low_confidence" in by_level[WITHHELD]["flags"]
        assert by_level[WITHHELD]["Ha_px"] is not None
        assert any((v["genant_grade"] or 0) >= 1 for v in morph["vertebrae"])  # a graded fracture
        assert any(not v["points"] for v in morph["vertebrae"])  # a vertebra cut by the edge: no six points
    assert case[2]["units"] == "mm" and case_px[2]["units"] == "px"


@pytest.mark.parametrize("which", ["case", "case_px"])
def test_seg_has_one_segment_per_level_on_the_source_grid(request, which):
    path, labels, _, written = request.getfixturevalue(which)
    source, seg = pydicom.dcmread(path), hd.seg.segread(written["seg"])
    codes = [int(c) for c in np.unique(labels) if c]  # VerSe codes of T11..L5 rise head to tail
    names = [seg.get_segment_description(n).segment_label for n in range(1, seg.number_of_segments + 1)]
    assert names == [level_name(c) for c in codes] and len(names) >= 6
    for number, name in enumerate(names, start=1):
        desc = seg.get_segment_description(number)
        assert desc.segmented_property_category == hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
        assert desc.segmented_property_type == level_concept(name)
    assert seg.get_segment_description(names.index("L1") + 1).segmented_property_type.value == "66794005"
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID \
        == source.SOPInstanceUID
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns) == labels.shape
    masks = seg.get_pixels_by_source_instance([source.SOPInstanceUID], combine_segments=False)[0]
    for number, code in enumerate(codes, start=1):
        assert np.array_equal(masks[..., number - 1], labels == code), f"segment {number} ({names[number - 1]})"
    measures = seg.SharedFunctionalGroupsSequence[0].get("PixelMeasuresSequence")
    if which == "case":
        assert [float(v) for v in measures[0].PixelSpacing] == [float(v) for v in source.PixelSpacing]
    else:
        assert measures is None


def _expected(rec: dict, unit: str) -> dict:
    """The fields the SR carries, as the JSON holds them."""
    keys = [f"{h}_{unit}" for h in ("Ha", "Hm", "Hp")] + [
        "vcr_percent", "wedge", "biconcave", "crush", "confidence", "genant_grade", "deformity", "points", "flags"]
    return {"level": rec["level"], **{k: rec[k] for k in keys}}


@pytest.mark.parametrize("which", ["case", "case_px"])
def test_sr_values_equal_the_json_number_for_number(request, which):
    _, _, morph, written = request.getfixturevalue(which)
    back = read_morphometry_sr(written["sr"])
    unit = morph["units"]
    assert back["units"] == unit and back["flags"] == morph["flags"]
    assert [v["level"] for v in back["vertebrae"]] == [v["level"] for v in morph["vertebrae"]]
    for got, rec in zip(back["vertebrae"], morph["vertebrae"], strict=True):
        assert {k: got[k] for k in _expected(rec, unit)} == _expected(rec, unit), rec["level"]
    if unit == "px":
        assert all(v["Ha_mm"] is None for v in back["vertebrae"]) and "no_spacing" in back["flags"]
    fractured = [v["level"] for v in morph["vertebrae"] if (v["genant_grade"] or 0) >= 1]
    assert back["finding_text"] == f"Genant grade 1 or more: {', '.join(fractured)} " \
                              f"(of {morph['finding']['vertebrae_graded']} vertebrae graded)."


def test_the_finding_sentence_says_when_nothing_was_graded_also_from_an_older_json(case):
    morph = json.loads(json.dumps(case[2]))
    del morph["finding"]  # a JSON written before the finding was: counted from its rows
    assert finding_sentence(morph) == finding_sentence(case[2])
    assert finding_sentence(read_morphometry_sr(case[3]["sr"])) == finding_sentence(case[2])  # an SR read back
    for v in morph["vertebrae"]:
        v["genant_grade"] = None
    assert finding_sentence(morph) == "No vertebra could be graded (see the flags): no finding."
    for v in morph["vertebrae"]:
        v["genant_grade"] = 0
    assert finding_sentence(morph) == f"No vertebra graded 1 or more among the {len(morph['vertebrae'])} graded."


def test_the_sr_finding_names_the_other_levels_a_fracture_may_be_when_the_names_are_uncertain(case, tmp_path):
    morph = json.loads(json.dumps(case[2]))
    fractured = morph["finding"]["graded_1_or_more"]
    assert fractured and "level_uncertain" not in morph["flags"]
    morph["flags"].append("level_uncertain")  # what measure adds when no sacrum was wholly in view to count from
    back = read_morphometry_sr(write_sr(tmp_path / "unsure.dcm", morph, case[0]))
    assert "level_uncertain" in back["flags"]
    assert back["finding_text"] == finding_sentence(morph) == finding_sentence(back)  # written, and read back
    level = fractured[0]
    others = " or ".join(level_name(level_code(level) + d) for d in (-1, 1))
    assert f"{level} may be {others}" in back["finding_text"]


@pytest.mark.parametrize("which", ["case", "case_px"])
def test_sr_reads_back_with_highdicom(request, which):
    path, _, morph, written = request.getfixturevalue(which)
    source, sr = pydicom.dcmread(path), hd.sr.srread(written["sr"])
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME
    groups = sr.content.get_planar_roi_measurement_groups()
    with_points = [v for v in morph["vertebrae"] if v["points"]]
    assert [g.tracking_identifier for g in groups] == [v["level"] for v in with_points]
    assert len(sr.content.get_image_measurement_groups()) == len(morph["vertebrae"]) - len(with_points)
    unit = "mm" if which == "case" else "{pixels}"
    for group, rec in zip(groups, with_points, strict=True):
        (image,) = group.roi.ContentSequence  # the SCOORD's source image
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        xy = group.roi.value
        assert np.allclose(xy[:6], [[rec["points"][s][1] + 0.5, rec["points"][s][0] + 0.5] for s in STATIONS],
                           atol=1e-4) and np.array_equal(xy[0], xy[6])
        height = group.get_measurements(name=hd.sr.CodedConcept("HA", SCHEME, "Anterior vertebral body height"))[0]
        assert height.unit.value == unit
        assert height.value == rec["Ha_mm" if which == "case" else "Ha_px"]


def test_levels_without_a_snomed_concept_get_spinemorph_codes(case):
    path = case[0]
    labels = np.zeros((128, 102), np.uint8)
    for i, code in enumerate((19, 28, 20, 25, 26)):  # T12, T13, L1, L6, S1
        labels[10 + 22 * i:28 + 22 * i, 30:70] = code
    seg = make_seg(labels, path)
    types = [seg.get_segment_description(n).segmented_property_type for n in range(1, 6)]
    assert [(t.scheme_designator, t.value) for t in types] == [
        ("SCT", "23215003"), (SCHEME, "T13"), ("SCT", "66794005"), (SCHEME, "L6"), ("SCT", "65985001")]
    with pytest.raises(ValueError, match="not a vertebral level"):
        level_concept("V1")


def test_bad_inputs_are_refused(case, tmp_path):
    path, labels, morph, _ = case
    with pytest.raises(ValueError, match="differs from the source"):
        make_seg(labels[:-1], path)
    with pytest.raises(ValueError, match="VerSe level codes"):
        make_seg(np.zeros_like(labels), path)
    with pytest.raises(ValueError, match="VerSe level codes"):
        make_seg(np.where(labels > 0, 27, 0), path)
    with pytest.raises(ValueError, match="the DICOM radiograph"):
        write_sr(tmp_path / "r.dcm", morph, pydicom.dcmread(case[3]["sr"]))


def test_segment_with_output_dicom_writes_a_seg_and_an_sr_that_match_its_json(studies, tiny_model, tmp_path):
    """`spinemorph segment --output dicom` on a DICOM DX: SEG and SR beside the JSON, number for number."""
    from spinemorph.cli import main as cli

    image = sorted(studies.glob("*.dcm"))[0]
    assert cli(["segment", str(image), "--model", str(tiny_model), "--out", str(tmp_path), "--device", "cpu",
                "--output", "dicom"]) == 0
    stem = image.name[: -len(".dcm")]
    morph = json.loads((tmp_path / f"{stem}.morphometry.json").read_text())
    assert morph["vertebrae"], "the tiny model found no body on its own studies"
    seg = hd.seg.segread(tmp_path / f"{stem}.seg.dcm")
    assert [s.segment_label for s in seg.SegmentSequence] == [v["level"] for v in morph["vertebrae"]] or \
        {s.segment_label for s in seg.SegmentSequence} >= {v["level"] for v in morph["vertebrae"]}
    back = read_morphometry_sr(tmp_path / f"{stem}.sr.dcm")
    assert [v["level"] for v in back["vertebrae"]] == [v["level"] for v in morph["vertebrae"]]
    for ours, theirs in zip(morph["vertebrae"], back["vertebrae"], strict=True):
        for field in ("Ha_mm", "Hm_mm", "Hp_mm", "vcr_percent", "wedge", "biconcave", "crush", "genant_grade"):
            assert theirs[field] == ours[field], (ours["level"], field)
        assert theirs["flags"] == ours["flags"]


def test_segment_with_output_dicom_refuses_an_image_that_is_not_dicom(studies, tiny_model, tmp_path):
    from spinemorph.cli import main as cli

    with pytest.raises(SystemExit) as done:
        cli(["segment", str(studies / "xray-nifti.nii.gz"), "--model", str(tiny_model), "--out", str(tmp_path),
             "--device", "cpu", "--output", "dicom"])
    assert done.value.code == 2
