"""Batch infer that also works without a GPU.

monailabel 0.8.5's BatchInferTask defaults to multi-GPU and, on a machine without CUDA, spreads the images over
an empty device list (ZeroDivisionError). This picks the GPUs only when there are some.
"""

from __future__ import annotations

import torch
from monailabel.interfaces.tasks.batch_infer import BatchInferTask

__all__ = ["BatchInfer"]


class BatchInfer(BatchInferTask):
    """Infers every (or every unlabelled) image, on all GPUs when present, else on the CPU."""

    def __call__(self, request, datastore, infer):
        gpus = torch.cuda.device_count()
        request = {"multi_gpu": gpus > 1, "device": "cuda" if gpus else "cpu", **request}
        if not gpus:
            request["multi_gpu"] = False
        return super().__call__(request, datastore, infer)
