"""bench/active_learning.py's arithmetic: labels to reach 95 % of the full pool, curves over seeds, fracture hits."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from spinemorph.measure import Morphometry, VertebraRecord
from tests.app.server import REPO

_spec = importlib.util.spec_from_file_location("bench_active_learning", REPO / "bench" / "active_learning.py")
al = sys.modules["bench_active_learning"] = importlib.util.module_from_spec(_spec)  # bench/ is no package
_spec.loader.exec_module(al)
import active_learning_report as ar  # noqa: E402  (bench/ put on the path by the module above)


def _run(strategy: str, seed: int, dice: list[float], whole: bool = True) -> dict:
    points = [{"labels": 4 * (i + 1), "body_dice": d, "vcr_mae": 10 - 10 * d} for i, d in enumerate(dice)]
    return {"strategy": strategy, "seed": seed, "points": points, "whole_pool": whole, "seconds": 1.0}


def test_labels_to_reach_95_percent_of_the_full_pool():
    labels = np.array([4, 8, 12])
    assert ar.labels_to_reach(labels, np.array([0.5, 0.95, 1.0]), 1.0, higher=True) == 8
    assert ar.labels_to_reach(labels, np.array([0.5, 0.94, 0.949]), 1.0, higher=True) is None
    assert ar.labels_to_reach(labels, np.array([9.0, 2.2, 2.1]), 2.0, higher=False) == 12  # MAE <= 2 / 0.95
    assert ar.labels_to_reach(labels, np.array([np.nan, 2.0, 2.0]), 2.0, higher=False) == 8  # nothing found yet


def test_curves_average_the_seeds_and_the_full_pool_is_the_end_of_whole_runs():
    runs = [_run("random", 0, [0.2, 0.6, 0.8]), _run("random", 1, [0.4, 0.8, 1.0]),
            _run("diverse", 0, [0.5, 0.9, 0.7], whole=False)]
    x, mean, sd = ar.curves(runs, "body_dice")["random"]
    assert x.tolist() == [4, 8, 12] and mean == pytest.approx([0.3, 0.7, 0.9]) and sd == pytest.approx([0.1] * 3)
    assert ar.full_pool(runs, "body_dice") == (pytest.approx(0.9), True)
    assert ar.full_pool(runs[2:], "body_dice") == (pytest.approx(0.7), False)  # capped: the last points


def test_a_fracture_counts_as_found_only_when_graded():
    def truth_vertebra(level, code, grade, x):
        return {"level": level, "code": code, "truncated": False, "Ha_mm": 20.0, "Hm_mm": 25.0, "Hp_mm": 26.0,
                "genant_grade": grade, "deformity": "wedge" if grade else None, "center_px": [x, 50.0]}

    truth = {"vertebrae": [truth_vertebra("L1", 20, 2, 10.0), truth_vertebra("L2", 21, 1, 40.0),
                           truth_vertebra("L3", 22, 0, 70.0), truth_vertebra("L4", 23, 1, 100.0)]}
    measured = Morphometry([VertebraRecord("L1", 20, genant_grade=3), VertebraRecord("L2", 21, genant_grade=None),
                            VertebraRecord("L3", 22, genant_grade=1)], "left", "argument", (0.2, 0.2))
    # L1 graded (a hit), L2 measured but not graded and L4 missed (misses), L3 not fractured (not counted)
    assert al.fracture_hits(measured, truth) == [True, False, False]


def test_merge_adds_a_later_seed_replaces_a_rerun_and_refuses_other_sets():
    args = ar.argparse.Namespace(**{k: 1 for k in ar.SAME_SETS})
    saved = {"args": vars(args), "runs": [_run("random", 0, [0.2]), _run("random", 1, [0.3])]}
    runs = ar.merged(saved, [_run("random", 1, [0.9]), _run("random", 2, [0.4])], args)
    assert [(r["seed"], r["points"][0]["body_dice"]) for r in runs] == [(0, 0.2), (1, 0.9), (2, 0.4)]
    with pytest.raises(SystemExit, match="pool"):
        ar.merged(saved, [], ar.argparse.Namespace(**{**vars(args), "pool": 2}))
