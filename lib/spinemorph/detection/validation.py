"""Validation during training: mAP@0.5 and per-patient accuracy (detect stage), or the segmentation loss."""

from __future__ import annotations

import numpy as np
import torch

from spinemorph.evaluation.detection import ImageDetections, ap_by_class, confusion

__all__ = ["validate", "image_detections"]


def image_detections(detection: dict, target: dict) -> ImageDetections:
    """Return one image's detections and truth (fractures, and ignored ones) for the metrics, in class indices."""
    gt = target["classes"]
    return ImageDetections(detection["boxes"].cpu().numpy(), detection["scores"].cpu().numpy(),
                           detection["classes"].cpu().numpy(), target["boxes"][gt >= 1].cpu().numpy(),
                           gt[gt >= 1].cpu().numpy(), target["boxes"][gt < 0].cpu().numpy())


@torch.no_grad()
def validate(net, dataset, stage: str, device, threshold: float = 0.5) -> dict[str, float]:
    """Return validation metrics and ``val_score`` (higher is better) on a non-augmented ``DetectionDataset``."""
    net.eval()
    if len(dataset) == 0:
        return {"val_score": 0.0}
    if stage == "pretrain":
        losses, correct, body = [], 0, 0
        for i in range(len(dataset)):
            image, target = dataset[i]
            features = net.backbone(image[None].to(device))
            truth = target["semantic"].to(device)
            logits = net.semantic(features[0], tuple(truth.shape))
            losses.append(float(torch.nn.functional.cross_entropy(logits, truth[None])))
            inside = truth > 0
            correct += int((logits[0].argmax(0)[inside] == truth[inside]).sum())
            body += int(inside.sum())
        loss = float(np.mean(losses))
        return {"val_semantic_loss": round(loss, 5), "val_level_accuracy": round(correct / max(body, 1), 5),
                "val_score": -loss}
    images, called, truth = [], [], []
    for i in range(len(dataset)):
        image, target = dataset[i]
        detection = net(image[None].to(device))[0]
        images.append(image_detections(detection, target))
        called.append(bool((detection["scores"] >= threshold).any()))
        truth.append(bool((target["classes"] >= 1).any()))
    aps = [v["ap"] for v in ap_by_class(images).values() if v["truths"]]
    table = confusion(called, truth)
    mean_ap = float(np.mean(aps)) if aps else float("nan")
    # mAP decides; the patient accuracy breaks ties (early on every checkpoint's mAP can be 0)
    score = (mean_ap if aps else 0.0) + 0.01 * table["accuracy"] / 100.0
    return {"val_map50": round(mean_ap, 5), "val_patient_accuracy": round(table["accuracy"], 3),
            "val_patient_sensitivity": round(table["sensitivity"], 3),
            "val_patient_specificity": round(table["specificity"], 3), "val_score": score}
