"""Following a training job on the server without ever blocking the caller: progress parsing and polling.

Standard library only. The widget's QTimer calls ``TrainingMonitor.poll`` every few seconds: it returns the last
known progress at once, while a worker thread asks the server for the next.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["TrainProgress", "train_progress", "TrainingMonitor", "PROGRESS_TAG"]

log = logging.getLogger(__name__)

#: The SpineMorph trainer prints one line per epoch: this tag, then a JSON object (epoch, epochs, losses, dice).
PROGRESS_TAG = "SPINEMORPH_TRAIN"


@dataclass(frozen=True)
class TrainProgress:
    """Where a training job stands: the server's status and the last epoch the trainer reported."""

    status: str  # the server's "SUBMITTED", "RUNNING", "DONE", "ERROR" or "STOPPED"; "NONE" when no job ran
    epoch: int = 0
    epochs: int = 0
    message: str = ""

    @property
    def fraction(self) -> float:
        """Return the share of epochs done (0-1); 1 once the job is done."""
        if self.status == "DONE":
            return 1.0
        return min(self.epoch / self.epochs, 1.0) if self.epochs else 0.0

    @property
    def finished(self) -> bool:
        """Return True when no job is running any more."""
        return self.status in ("DONE", "ERROR", "STOPPED", "NONE")


def _epoch_line(info: dict) -> tuple[int, int, str]:
    """Return (epoch, epochs, message) of one SPINEMORPH_TRAIN record: an epoch's, or the final summary's."""
    if info.get("done"):
        last = info.get("last") or {}
        epochs = int(info.get("epochs") or last.get("epoch") or 0)
        epoch, metrics = epochs, {"train loss": last.get("train_loss"), "best val level dice":
                                  info.get("best_val_level_dice")}
    else:
        epoch, epochs = int(info.get("epoch", 0)), int(info.get("epochs", 0))
        metrics = {"train loss": info.get("train_loss"), "val level dice": info.get("val_level_dice")}
    parts = [f"epoch {epoch}/{epochs}"] + [f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float))]
    return epoch, epochs, ", ".join(parts)


def train_progress(status: dict | None) -> TrainProgress:
    """Return the progress in a ``GET /train/`` answer, from its status and its last SPINEMORPH_TRAIN line."""
    if not status:
        return TrainProgress("NONE", message="No training job has run on this server yet.")
    state = str(status.get("status", "NONE")).upper()
    for line in reversed(status.get("details") or []):
        text = str(line)
        if PROGRESS_TAG in text:
            try:
                info = json.loads(text.split(PROGRESS_TAG, 1)[1].strip())
            except json.JSONDecodeError:
                continue
            return TrainProgress(state, *_epoch_line(info))
    return TrainProgress(state, message=state.lower())


class TrainingMonitor:
    """Starts, follows and stops one training job through a client (``SpineMorphClient`` or alike)."""

    def __init__(self) -> None:
        self.client = None
        self.progress = TrainProgress("NONE")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="SpineMorph-train-status")
        self._pending: Future | None = None

    def start(self, client, model: str, max_epochs: int, batch_size: int) -> dict:
        """Start training ``model``; return the server's answer."""
        answer = client.train_start(model, {"max_epochs": int(max_epochs), "batch_size": int(batch_size)})
        self.client, self._pending = client, None
        self.progress = TrainProgress("SUBMITTED", 0, int(max_epochs), "submitted")
        return answer

    def poll(self) -> TrainProgress:
        """Return the latest known progress at once; ask the server for the next one in the background."""
        if self._pending is not None and self._pending.done():
            try:
                self.progress = train_progress(self._pending.result())
            except Exception as err:  # the server went away: report it, never raise into a timer
                self.progress = TrainProgress("ERROR", message=str(err))
            self._pending = None
        if self._pending is None and self.client is not None and not self.progress.finished:
            self._pending = self._executor.submit(self.client.train_status)
        return self.progress

    def stop(self) -> dict:
        """Ask the server to stop the job; return its answer."""
        if self.client is None:
            raise RuntimeError("No training job was started.")
        return self.client.train_stop()
