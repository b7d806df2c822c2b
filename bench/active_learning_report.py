"""What the runs of bench/active_learning.py show: learning curves over seeds, labels to reach 95 % of the full pool,
the table with the goal's verdict, the plot, and runs of separate sittings put together (``--merge``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = ["METRICS", "GOALS", "TARGET", "GOAL_RATIO", "SAME_SETS", "curves", "full_pool", "labels_to_reach",
           "report", "plot", "merged"]

METRICS = {"body_dice": "body Dice", "level_accuracy": "level accuracy", "vcr_mae": "VCR MAE (points)",
           "grade1_sensitivity": "grade-1 sensitivity"}
GOALS = {"body_dice": True, "vcr_mae": False}  # the goal's metrics: higher is better?
TARGET, GOAL_RATIO = 0.95, 0.60


def curves(runs: list[dict], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return per strategy (labels, mean, sd) of ``metric`` over its seeds, at the label counts all seeds reach."""
    out = {}
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r["points"] for r in runs if r["strategy"] == strategy]
        n = min(len(p) for p in mine)
        values = np.array([[pt[metric] for pt in p[:n]] for p in mine], float)
        out[strategy] = (np.array([pt["labels"] for pt in mine[0][:n]]), np.nanmean(values, 0), np.nanstd(values, 0))
    return out


def full_pool(runs: list[dict], metric: str) -> tuple[float, bool]:
    """Return the full pool's performance on ``metric`` and whether any run used the whole pool."""
    whole = [r for r in runs if r["whole_pool"]]
    values = [r["points"][-1][metric] for r in (whole or runs)]
    return float(np.nanmean(values)), bool(whole)


def labels_to_reach(labels: np.ndarray, mean: np.ndarray, full: float, higher: bool) -> int | None:
    """Return the first label count whose mean reaches 95 % of ``full`` (None: never)."""
    reached = mean >= TARGET * full if higher else mean <= full / TARGET
    hits = np.flatnonzero(reached)
    return int(labels[hits[0]]) if hits.size else None


def report(runs: list[dict], args, minutes: float, png: Path) -> None:
    """Print the table and the goal's verdict; plot the learning curves."""
    budget = f"{args.steps} steps" if getattr(args, "steps", 0) else f"{args.epochs} epoch(s)"
    print(f"\nLabel efficiency: {args.pool}-image pool ({'+'.join(args.fov)}, {args.size} px"
          f"{f', +{args.drr} DRRs' if args.drr else ''}), {args.test} test images, {args.seeds} seed(s), k={args.k}, "
          f"m={args.m}, {budget}/round, init {args.init}; {minutes:.1f} min, CPU "
          f"({getattr(args, 'jobs', 1)} job(s) x {args.threads} thread(s))")
    reach = {}
    for metric, higher in GOALS.items():
        full, whole = full_pool(runs, metric)
        print(f"full pool {METRICS[metric]}: {full:.3f}" + ("" if whole else
              "  (no run used the whole pool: the mean of every run's last point)"))
        reach[metric] = {s: labels_to_reach(x, mean, full, higher) for s, (x, mean, _) in curves(runs, metric).items()}
    print("labels to 95 %: the first label count where the mean curve reaches 95 % of the full pool (n/r: never); "
          "x random: that count over random's")
    print(f"{'strategy':12s} {'runs':>4s} {'Dice, end':>9s} {'VCR, end':>8s} {'labels to 95 % Dice':>19s} "
          f"{'x random':>8s} {'labels to 95 % VCR':>18s} {'x random':>8s} {'min/run':>7s}")
    ratios = {}
    for strategy in reach["body_dice"]:
        mine, n = [r for r in runs if r["strategy"] == strategy], reach_of(strategy, reach)
        x = ratios[strategy] = [a / b if a is not None and b else None
                                for a, b in zip(n, reach_of("random", reach), strict=True)]
        print(f"{strategy:12s} {len(mine):4d} {np.mean([r['points'][-1]['body_dice'] for r in mine]):9.3f} "
              f"{np.nanmean([r['points'][-1]['vcr_mae'] for r in mine]):8.2f} {_text(n[0], 'd'):>19s} "
              f"{_text(x[0], '.2f'):>8s} {_text(n[1], 'd'):>18s} {_text(x[1], '.2f'):>8s} "
              f"{np.mean([r['seconds'] for r in mine]) / 60:7.1f}")
    met = [s for s, r in ratios.items() if s != "random" and None not in r and max(r) <= GOAL_RATIO]
    verdict = ("not judged: random was not run (or never reached 95 %)" if None in reach_of("random", reach) else
               f"met by {', '.join(met)}" if met else "NOT met by any strategy")
    print(f"goal (95 % of the full pool on body Dice and VCR MAE with <= {GOAL_RATIO:.0%} of random's labels): "
          f"{verdict}")
    plot(runs, png)


def reach_of(strategy: str, reach: dict) -> list[int | None]:
    """Return the labels ``strategy`` needs on each of the goal's metrics (None: not run, or never reached)."""
    return [reach[m].get(strategy) for m in GOALS]


def _text(value, fmt: str) -> str:
    return "n/r" if value is None and fmt == "d" else "-" if value is None else format(value, fmt)


def plot(runs: list[dict], png: Path) -> None:
    """Draw each metric against labels, mean ± sd over seeds, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, (metric, title) in zip(axes, METRICS.items(), strict=True):
        for k, (strategy, (x, mean, sd)) in enumerate(curves(runs, metric).items()):
            ax.plot(x, mean, "o-", ms=3, color=f"C{k}", label=strategy)
            ax.fill_between(x, mean - sd, mean + sd, color=f"C{k}", alpha=0.15)
        if metric in GOALS:
            full, _ = full_pool(runs, metric)
            ax.axhline(TARGET * full if GOALS[metric] else full / TARGET, color="k", ls="--", lw=0.8,
                       label="95 % of full pool")
        ax.set_xlabel("labelled images")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"Wrote {png}")


#: The options that make the pool, the test set and the loop: runs merged from two invocations must share them.
SAME_SETS = ("pool", "test", "size", "fov", "fracture_rate", "k", "m", "steps", "epochs", "batch", "lr", "passes",
             "init", "drr", "drr_spacing", "weights")


def merged(saved: dict, runs: list[dict], args: argparse.Namespace) -> list[dict]:
    """Return the saved runs with ``runs`` added (a strategy and seed run again replaces the saved one)."""
    differ = [k for k in SAME_SETS if saved["args"].get(k) != vars(args).get(k)]
    if differ:
        raise SystemExit(f"--merge: the saved runs used other {', '.join(differ)}; run without --merge, or with the "
                         f"same options.")
    new = {(r["strategy"], r["seed"]) for r in runs}
    return [r for r in saved["runs"] if (r["strategy"], r["seed"]) not in new] + runs
