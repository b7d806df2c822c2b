from __future__ import annotations

import numpy as np
import pytest

from spinemorph.evaluation.segmentation import binary_metrics, level_metrics, roc_pr_auc
from spinemorph.evaluation.stats import bland_altman, cohen_kappa, pearson_r


def test_binary_metrics_on_hand_made_masks():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[2:6, 4:8] = True  # 16 px, 8 overlap
    m = binary_metrics(pred, truth)
    assert m["dsc"] == pytest.approx(0.5) and m["iou"] == pytest.approx(8 / 24)
    assert m["sensitivity"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(76 / 84)
    assert m["accuracy"] == pytest.approx(84 / 100)


def test_auc_of_perfect_random_and_reversed_scores():
    rng = np.random.default_rng(0)
    truth = rng.random(5000) > 0.7
    assert roc_pr_auc(truth.astype(float), truth) == (1.0, 1.0)
    roc, ap = roc_pr_auc(rng.random(5000), truth)
    assert roc == pytest.approx(0.5, abs=0.03) and ap == pytest.approx(truth.mean(), abs=0.03)
    assert roc_pr_auc(1.0 - truth, truth)[0] == pytest.approx(0.0)


def test_level_identification_counts_the_majority_label_over_each_true_body():
    truth = np.zeros((10, 10), np.uint8)
    truth[0:3] = 20
    truth[5:8] = 21
    pred = truth.copy()
    pred[5:8] = 22  # right place, wrong name
    m = level_metrics(pred, truth)
    assert m["identified"] == 0.5 and m["dice"][20] == 1.0 and m["dice"][21] == 0.0


def test_agreement_statistics():
    assert cohen_kappa([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    assert cohen_kappa([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.5)
    assert pearson_r([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    ba = bland_altman([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert ba["mean"] == 1.0 and ba["lower"] == ba["upper"] == 1.0


def test_morphometry_errors_are_also_summarised_over_the_graded_vertebrae_alone():
    from spinemorph.evaluation.morphometry import compare, summarise
    from spinemorph.measure import measure
    from tests.measure.test_gates import spine

    def vertebra(level, code, ha):
        return {"level": level, "code": code, "truncated": False, "Ha_mm": ha, "Hm_mm": 40.0, "Hp_mm": 40.0,
                "genant_grade": 0, "deformity": "none"}

    truth = {"vertebrae": [vertebra(n, c, 40.0) for n, c in (("T12", 19), ("L1", 20), ("L2", 21), ("L3", 22),
                                                               ("L4", 23))]}
    labels = spine(L2=(112, 168, 30, 90))  # L2 drawn 16 rows too tall, and refused: its stages disagree
    result = measure(labels, (1.0, 1.0), "left", agreement={19: 0.9, 20: 0.9, 21: 0.3, 22: 0.9, 23: 0.9})
    out = summarise(compare(result, truth))
    assert out["refused"] == 1 and out["vertebrae"] == 4
    assert out["height_mae_graded_mm"] < 0.5 < 3.0 < out["height_mae_mm"]  # L2's 16 mm errors count only in all
    # where a VCR error may come from: the refused L2 is no reference, so L1 and L3 are graded against one neighbour
    # each, as the ends T12 and L4 are; no graded vertebra had both
    assert out["graded_one_neighbour"] == 4 and np.isnan(out["vcr_mae_graded_both_neighbours"])
    # a whole spine: the ends are graded against one neighbour, the three between against both
    truth["vertebrae"][2]["Ha_mm"] = 36.0  # the truth's L2 10 % wedged, drawn whole: its VCR error is 10 points
    whole = summarise(compare(measure(spine(), (1.0, 1.0), "left"), truth))
    assert whole["graded_one_neighbour"] == 2
    assert whole["vcr_mae_graded_both_neighbours"] > whole["vcr_mae_graded_points"] > 0


def test_pairing_by_body_scores_the_morphometry_apart_from_the_naming():
    """Bodies measured right but each named one level down: by name every pair is a neighbour's, by body none is."""
    from spinemorph.evaluation.morphometry import compare, summarise
    from spinemorph.measure import measure
    from tests.measure.test_gates import ROWS, spine

    heights = {19: 40.0, 20: 40.0, 21: 30.0, 22: 40.0, 23: 40.0}
    names = {19: "T12", 20: "L1", 21: "L2", 22: "L3", 23: "L4"}
    truth = {"vertebrae": [{"level": names[c], "code": c, "truncated": False, "Ha_mm": h, "Hm_mm": h, "Hp_mm": h,
                            "genant_grade": 0, "deformity": "none", "center_px": [(ROWS[c][0] + ROWS[c][1]) / 2, 60.0]}
                           for c, h in heights.items()]}
    labels = spine(L2=(125, 155, 30, 90))  # L2 30 rows tall about its truth centre
    shifted = np.where(labels > 0, labels + 1, 0).astype(np.uint8)  # T12 called L1, ..., L4 called L5
    result = measure(shifted, (1.0, 1.0), "left")
    by_name, by_body = summarise(compare(result, truth)), summarise(compare(result, truth, by="body"))
    assert by_name["missed"] == 1 and by_name["misnamed"] == 0 and by_name["height_mae_mm"] > 2.0
    assert by_body["missed"] == 0 and by_body["misnamed"] == 5 and by_body["height_mae_mm"] < 0.5
    with pytest.raises(ValueError, match="by must be"):
        compare(result, truth, by="name")


def test_readable_truth_leaves_out_the_bodies_a_ct_drr_truth_mask_misreads():
    """A CT-DRR's truth heights are the measure of its own truth mask: a body with no lesion made in it that the
    measure reads as a fracture, or cannot read at all, is no truth to score against; the scoring can leave it out."""
    from spinemorph.evaluation.morphometry import compare, readable_truth
    from spinemorph.measure import measure
    from tests.measure.test_gates import spine

    def vertebra(level, code, measured, made=0):
        v = {"level": level, "code": code, "truncated": False, "genant_grade": made, "deformity": "none"}
        if measured is not None:
            v.update({"Ha_mm": 40.0, "Hm_mm": 40.0, "Hp_mm": 40.0, "genant_grade_measured": measured})
        return v

    truth = {"vertebrae": [vertebra("T12", 19, 0), vertebra("L1", 20, 2), vertebra("L2", 21, None),
                           vertebra("L3", 22, 1, made=1), vertebra("L4", 23, 0),
                           {"level": "L5", "code": 24, "truncated": True, "genant_grade": 0, "deformity": "none"}]}
    levels, counts = readable_truth(truth)
    assert levels == {"T12", "L3", "L4"}  # L1 read as a grade 2 with no lesion made; L2 not read; L5 cut
    assert counts == {"in_view": 5, "measured": 4, "unreadable": 1, "no_lesion": 3, "fractured_unmade": 1}
    result = measure(spine(), (1.0, 1.0), "left")
    assert len(compare(result, truth).heights["Ha"]) == 4
    assert len(compare(result, truth, levels=levels).heights["Ha"]) == 3
    assert readable_truth({"vertebrae": [vertebra("L1", 20, None) | {"Ha_mm": 30.0}]})[0] == {"L1"}  # a simulation
