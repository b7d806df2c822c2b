"""Stage 2 as landmarks (issue 14's second option), tried against the shipped stage 2 that segments its crop.

A six-channel U-Net reads the same crop as stage 2 (``spinemorph.refine.crops``: the body at 1.5× its extent,
192², CLAHE + Gaussian) and places the six points of six-point morphometry directly: one heatmap per point, its
soft-argmax the point (sub-pixel). Channels are in image order (upper left, middle, right; lower left, middle,
right), so a mirrored crop is the same task with left and right swapped; the film's facing says which side is
anterior. The network starts from the shipped stage 2's weights (all but the last layer).

The network, its points and the crop geometry are the product's (``spinemorph.refine.landmarks``); this bench
trains it and compares it with the heights read off stage 2's outline.

  train: full-size randomised simulations of series 1700 (never used before, no test or
      calibration seed), ``--per-body`` jittered crops of each whole body (jitter as stage 2's training), targets
      the truth six points in the crop; loss: cross-entropy against a Gaussian (sigma 1.5 px) at each point plus
      the soft-argmax distance in pixels; a time budget; the checkpoint with the least validation distance kept;
  compare: calibration simulations (series 4500 and 4600, 20 each; never the test series 4444) through
      ``spinemorph.inference.analyse`` as the server runs it (stages 1 + 2, gates on). For each vertebra it
      measures and the truth knows, Ha, Hm and Hp from the shipped morphometry and from the landmarks (the crop
      of the final outline's box, the mean of the crop and its mirror image) against the truth heights, over the
      graded vertebrae and over all measured ones.

Usage: .venv/bin/python bench/landmarks.py [--n-train 250] [--per-body 3] [--minutes 35] [--n-cal 20]
  0.4.0's weights, fine-tuned from 0.3.0's on fracture-heavy crops (a new series, 2500) with a loss on the heights:
  ... --init runs/landmarks-0.3.0/landmarks.pt --n-train 60 --per-body 1 --n-fracture 150 --minutes 25 --lr 3e-4
      --height-weight 0.2   (0.3.0's weights: git show 4a33728:sample-apps/spinemorph_levels/models/landmarks.pt)
Writes runs/landmarks/landmarks.pt (shipped as sample-apps/spinemorph_levels/models/landmarks.pt: ``spinemorph bundle
--landmarks``), bench/out/landmarks.json and bench/out/landmarks.png; ``--skip-train --model PATH`` compares PATH.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from morphometry_pred import _pair  # noqa: E402
from real_anatomy_sets import _randomised  # noqa: E402

from spinemorph.conventions import near_edge_codes  # noqa: E402
from spinemorph.data.simulate import SimConfig, simulate  # noqa: E402
from spinemorph.hierarchical.boxes import Box  # noqa: E402
from spinemorph.inference import load_model  # noqa: E402
from spinemorph.inference.analyse import analyse, load_refiner  # noqa: E402
from spinemorph.inference.model import ModelSpec  # noqa: E402
from spinemorph.measure import in_image_order  # noqa: E402
from spinemorph.refine import landmarks as marks  # noqa: E402
from spinemorph.refine.crops import body_boxes, crop_inputs, normalised  # noqa: E402
from spinemorph.transforms import Preprocessing  # noqa: E402

BUNDLE = REPO / "sample-apps" / "spinemorph_levels"
SIGMA = 1.5
HEIGHTS = {"Ha": 0, "Hm": 1, "Hp": 2}  # station index from the anterior wall


def image_order(points: dict, facing: str) -> np.ndarray:
    """Return six points named by station (the truth's, a record's) as (6, 2) (row, col) in image order
    (``marks.POINTS``: upper left, middle, right, lower ...)."""
    named = in_image_order(points, facing)
    return np.array([named[k] for k in marks.POINTS], np.float64)


def heights(pts: np.ndarray, facing: str, spacing) -> dict[str, float]:
    """Return Ha, Hm, Hp (mm) from six points in image order."""
    scale = np.asarray(spacing, np.float64)
    d = np.linalg.norm((pts[3:] - pts[:3]) * scale, axis=1)  # left, middle, right
    d = d if facing == "left" else d[::-1]
    return {name: float(d[i]) for name, i in HEIGHTS.items()}


def case(seed: int, i: int, fracture_rate: float = 0.4):
    """Return (image, labels, truth) of a full-size randomised simulation, as bench/morphometry_pred.py makes them."""
    s = simulate(seed, i, SimConfig(size="full", fracture_rate=fracture_rate, label_sacrum=True))
    return _randomised(s.image, s.labels, s.truth, seed, i)


def make_crops(seed: int, n: int, size: int, per_body: int, jitter: float = 0.08, fracture_rate: float = 0.5,
               per_fracture: int | None = None):
    """Return crops (N, 1, P, P) float16 and their six points in crop pixels (N, 6, 2), from series ``seed``
    (``fracture_rate`` of its films with fractures; ``per_fracture`` crops of each fractured body, default
    ``per_body``)."""
    rng = np.random.default_rng([seed, 17])
    xs, ys = [], []
    for i in range(n):
        image, labels, truth = case(seed, i, fracture_rate=fracture_rate)
        film = normalised(image)
        truth_by = {v["code"]: v for v in truth["vertebrae"] if v.get("points") and not v.get("truncated")}
        edge = near_edge_codes(labels)
        boxes, targets = [], []
        for code, b in body_boxes(labels):
            if code in edge or code not in truth_by:
                continue
            pts = image_order(truth_by[code]["points"], truth["facing"])
            fractured = truth_by[code].get("genant_grade") or truth_by[code].get("deformity", "none") != "none"
            for _ in range(per_fracture or per_body if fractured else per_body):
                jb = Box(b.row + rng.normal(0, jitter * b.side), b.col + rng.normal(0, jitter * b.side),
                         b.side * rng.uniform(0.85, 1.2))
                boxes.append(jb)
                targets.append(marks.to_crop(pts, jb, size))
        if boxes:
            xs.append(crop_inputs(film, boxes, Preprocessing(size=size)).half())
            ys.append(torch.as_tensor(np.stack(targets), dtype=torch.float32))
        print(f"\rtraining crops: case {i + 1}/{n}", end="", flush=True)
    print()
    return torch.cat(xs), torch.cat(ys)


def build() -> torch.nn.Module:
    """The stage-2 U-Net with six output channels, started from the shipped stage 2's weights but the last layer."""
    refiner, refiner_spec = load_refiner(BUNDLE)
    net = marks.build_landmark_net(spec_like(refiner_spec))
    shipped, own = refiner.state_dict(), net.state_dict()
    own.update({k: v for k, v in shipped.items() if k in own and own[k].shape == v.shape})
    net.load_state_dict(own)
    return net


def spec_like(refiner_spec: ModelSpec) -> ModelSpec:
    """The landmark network's spec: stage 2's network and crop preprocessing, six outputs."""
    return ModelSpec(refiner_spec.network, "landmarks", refiner_spec.kwargs, refiner_spec.preprocessing)


def loss_fn(logits: torch.Tensor, target: torch.Tensor, height_weight: float = 0.0) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """Return (loss, mean point distance in px): cross-entropy against a Gaussian at each truth point, 0.1 × the
    soft-argmax distance, and ``height_weight`` × the error of the three upper-to-lower vectors (the heights)."""
    b, c, h, w = logits.shape
    logp, pts = marks.soft_argmax(logits)
    r = torch.arange(h, dtype=torch.float32)[None, None, :, None]
    q = torch.arange(w, dtype=torch.float32)[None, None, None, :]
    g = torch.exp(-((r - target[..., 0, None, None]) ** 2 + (q - target[..., 1, None, None]) ** 2) / (2 * SIGMA**2))
    g = g.reshape(b, c, -1)
    g = g / g.sum(-1, keepdim=True).clamp_min(1e-12)
    distance = (pts - target).norm(dim=-1)
    height = ((pts[:, 3:] - pts[:, :3]) - (target[:, 3:] - target[:, :3])).norm(dim=-1).mean()
    return -(g * logp).sum(-1).mean() + 0.1 * distance.mean() + height_weight * height, distance.mean()


def flip(x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror crops left-right, with their six points (columns mirrored, left and right channels swapped)."""
    return x.flip(-1), marks.mirrored(y, size)


def train(x, y, minutes: float, out: Path, batch: int = 16, lr: float = 1e-3, init: Path | None = None,
          n_val: int | None = None, height_weight: float = 0.0) -> dict:
    """Train for ``minutes`` from stage 2's weights (or the landmark checkpoint ``init``), validating on the first
    ``n_val`` crops (a tenth); keep the checkpoint with the least validation distance at ``out``."""
    size, spec = x.shape[-1], spec_like(load_refiner(BUNDLE)[1])
    n_val = n_val or max(len(x) // 10, 1)
    xv, yv, xt, yt = x[:n_val].float(), y[:n_val], x[n_val:], y[n_val:]
    net = build() if init is None else marks.load_landmarks(init)[0]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(0)
    best, step, history, start = float("inf"), 0, [], time.time()
    if init is not None:  # the start is a candidate too
        net.eval()
        with torch.no_grad():
            best = float(np.mean([loss_fn(net(xv[i:i + 32]), yv[i:i + 32], height_weight)[1]
                                  for i in range(0, len(xv), 32)]))
        marks.save_landmarks(net, spec, out, {"step": 0, "val_px": best})
    while time.time() - start < minutes * 60:
        net.train()
        idx = torch.randint(len(xt), (batch,), generator=rng)
        xb, yb = xt[idx].float(), yt[idx]
        if torch.rand((), generator=rng) < 0.5:
            xb, yb = flip(xb, yb, size)
        xb = xb.clamp(0, 1) ** torch.empty(batch, 1, 1, 1).uniform_(0.7, 1.5, generator=rng)
        loss, _ = loss_fn(net(xb), yb, height_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 150 == 0 or time.time() - start >= minutes * 60:
            net.eval()
            with torch.no_grad():
                d = float(np.mean([loss_fn(net(xv[i:i + 32]), yv[i:i + 32], height_weight)[1]
                                   for i in range(0, len(xv), 32)]))
            history.append((step, round(time.time() - start), loss.item(), d))
            print(f"step {step} ({time.time() - start:.0f} s): loss {loss.item():.3f}, val distance {d:.2f} px",
                  flush=True)
            if d < best:
                best = d
                marks.save_landmarks(net, spec, out, {"step": step, "val_px": d})
    return {"steps": step, "best_val_px": best, "history": history}


def compare(landmarks, n: int, seeds=(4500, 4600)) -> list[dict]:
    """Return, per vertebra measured on calibration simulations, truth, shipped and landmark heights (mm);
    ``landmarks``: the landmark network and its spec."""
    net, spec = load_model(BUNDLE)
    refiner = load_refiner(BUNDLE)
    rows = []
    for seed in seeds:
        for i in range(n):
            image, labels, truth = case(seed, i)
            radiograph, truth = _pair(image, labels, truth)
            done = analyse(radiograph, net, spec, refiner=refiner)
            truth_by = {v["level"]: v for v in truth["vertebrae"] if "Ha_mm" in v and not v.get("truncated")}
            recs = [r for r in done.morphometry.vertebrae if r.level in truth_by and r.Ha_mm is not None]
            placed = marks.find_landmarks(image, done.labels, *landmarks, codes={r.code for r in recs}).points
            for rec in (r for r in recs if r.code in placed):
                film = np.stack([placed[rec.code][k] for k in marks.POINTS])
                t = truth_by[rec.level]
                rows.append({"image": f"{seed}-{i}", "level": rec.level, "graded": rec.genant_grade is not None,
                             "truth": {k: t[f"{k}_mm"] for k in HEIGHTS},
                             "shipped": {k: getattr(rec, f"{k}_mm") for k in HEIGHTS},
                             "landmarks": heights(film, truth["facing"], radiograph.spacing_mm)})
            print(f"\rcalibration: {seed} case {i + 1}/{n}", end="", flush=True)
    print()
    return rows


def mae(rows, method: str) -> float:
    return float(np.mean([abs(r[method][k] - r["truth"][k]) for r in rows for k in HEIGHTS])) if rows else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=250)
    parser.add_argument("--per-body", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=35)
    parser.add_argument("--n-cal", type=int, default=20)
    parser.add_argument("--init", help="start from this landmark checkpoint (0.4.0: 0.3.0's landmarks.pt)")
    parser.add_argument("--n-fracture", type=int, default=0,
                        help="films of --fracture-series (90 %% with fractures, 4 crops of each fractured body), "
                             "validated on and put before series 1700's")
    parser.add_argument("--fracture-series", type=int, default=2500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--height-weight", type=float, default=0.0, help="weight of the heights' vector error")
    parser.add_argument("--model", default=str(REPO / "runs" / "landmarks" / "landmarks.pt"))
    parser.add_argument("--skip-train", action="store_true", help="compare the model at --model")
    args = parser.parse_args()
    model = Path(args.model)
    model.parent.mkdir(parents=True, exist_ok=True)
    size = load_refiner(BUNDLE)[1].preprocessing.size
    summary = {}
    if not args.skip_train:
        x, y = make_crops(1700, args.n_train, size, args.per_body)
        n_val = None
        if args.n_fracture:
            xf, yf = make_crops(args.fracture_series, args.n_fracture, size, 1, fracture_rate=0.9, per_fracture=4)
            x, y, n_val = torch.cat([xf, x]), torch.cat([yf, y]), len(xf) // 10
        print(f"{len(x)} crops of {size}²")
        summary["training"] = train(x, y, args.minutes, model, lr=args.lr, init=args.init and Path(args.init),
                                    n_val=n_val, height_weight=args.height_weight)
    landmarks = marks.load_landmarks(model)
    if landmarks is None:
        raise SystemExit(f"No landmark network at {model}: train one (drop --skip-train) or pass --model.")
    rows = compare(landmarks, args.n_cal)
    graded = [r for r in rows if r["graded"]]
    table = {"graded": {"n": len(graded), "shipped": mae(graded, "shipped"), "landmarks": mae(graded, "landmarks")},
             "all measured": {"n": len(rows), "shipped": mae(rows, "shipped"), "landmarks": mae(rows, "landmarks")}}
    for k in HEIGHTS:
        table[k] = {m: float(np.mean([abs(r[m][k] - r["truth"][k]) for r in graded])) for m in ("shipped", "landmarks")}
    print(f"{'vertebrae':14s} {'n':>4s} {'shipped stage 2':>16s} {'landmarks':>10s}   height MAE, mm")
    for name in ("graded", "all measured"):
        t = table[name]
        print(f"{name:14s} {t['n']:4d} {t['shipped']:16.3f} {t['landmarks']:10.3f}")
    for k in HEIGHTS:
        print(f"{k + ' (graded)':14s} {'':4s} {table[k]['shipped']:16.3f} {table[k]['landmarks']:10.3f}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "landmarks.json").write_text(json.dumps({**summary, "table": table, "vertebrae": rows}, indent=1))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for m, colour in (("shipped", "tab:blue"), ("landmarks", "tab:orange")):
        err = [r[m][k] - r["truth"][k] for r in graded for k in HEIGHTS]
        ax.hist(np.clip(err, -2, 2), bins=60, alpha=0.5, color=colour, label=f"{m}: MAE {mae(graded, m):.3f} mm")
    ax.set(xlabel="height error, mm (graded vertebrae, clipped at ±2)", ylabel="heights",
           title="Stage 2: segmenting the crop vs six-point landmarks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "landmarks.png", dpi=110)
    print(f"Wrote {out / 'landmarks.json'} and {out / 'landmarks.png'}")


if __name__ == "__main__":
    main()
