"""The annotation loop in numbers, for the server's /info: time per label, labels done and left, last training.

A client sends the seconds its annotator spent on an image (from Next sample to Submit) with the label it saves,
as the label info ``annotation_seconds`` (the Slicer module does); ``annotation_times`` gathers them, so label
efficiency can be measured with real annotators and not only with a simulated one.
"""

from __future__ import annotations

import statistics

from lib.activelearning.morphometry import number

__all__ = ["ANNOTATION_SECONDS", "annotation_times", "last_training", "progress"]

ANNOTATION_SECONDS = "annotation_seconds"  # label info key


def _seconds(value) -> float | None:
    seconds = number(value)
    return seconds if seconds is not None and seconds >= 0 else None


def annotation_times(objects: dict, tag: str = "final") -> dict:
    """Return {labels, mean_seconds, median_seconds, total_seconds, per_label: {image id: seconds}} over the
    ``tag`` labels whose info holds a number of seconds (a datastore's ``json()["objects"]``); the mean, median
    and total are None when no label has one. Anything else under ``annotation_seconds`` is not counted."""
    per_label = {}
    for image_id, obj in (objects or {}).items():
        label = (obj.get("labels") or {}).get(tag) if isinstance(obj, dict) else None
        info = label.get("info") if isinstance(label, dict) else None
        seconds = _seconds(info.get(ANNOTATION_SECONDS)) if isinstance(info, dict) else None
        if seconds is not None:
            per_label[image_id] = seconds
    values = list(per_label.values())
    return {"labels": len(values), "mean_seconds": round(statistics.fmean(values), 2) if values else None,
            "median_seconds": round(statistics.median(values), 2) if values else None,
            "total_seconds": round(sum(values), 2) if values else None, "per_label": per_label}


def last_training(train_stats: dict) -> dict | None:
    """Return the most recently finished training that reports a best validation Dice, as {model, metric, score,
    finished}, or None when none has (``train_stats`` as /info gives it: model -> its trainer's stats)."""
    runs = []
    for model, stats in (train_stats or {}).items():
        if not isinstance(stats, dict):
            continue
        metric = next((k for k in stats if k.startswith("best_val_") and "dice" in k), None)
        if metric is not None and isinstance(stats[metric], (int, float)):
            runs.append((str(stats.get("finished", "")), model, metric, float(stats[metric])))
    if not runs:
        return None
    finished, model, metric, score = max(runs)
    return {"model": model, "metric": metric, "score": round(score, 4), "finished": finished or None}


def progress(status: dict, train_stats: dict) -> dict:
    """Return {labelled, total, left, last_training} from the datastore's status (total, completed) and the
    trainers' stats."""
    total, done = int(status.get("total", 0)), int(status.get("completed", 0))
    return {"labelled": done, "total": total, "left": max(total - done, 0), "last_training": last_training(train_stats)}
