"""What the module exports: the results table as CSV, a short per-patient report, and the overlay PNG. No Slicer."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

import numpy as np

from spinemorph.measure import Morphometry
from spinemorph.measure.flags import finding_caveat, why_not_graded
from spinemorph.overlay import draw_labels, draw_measurements, draw_note, fit_height, to_rgb
from SpineMorphLib.records import table_headers, table_rows

__all__ = ["write_table_csv", "patient_report", "render_overlay", "answered_by", "result_summary"]


def result_summary(result: Morphometry) -> str:
    """Return one line on how far to trust a result: the facing and its source, whether anything was graded, and
    how the levels were named."""
    if result is None:
        return "Facing: not measured yet"
    side = f"anterior on the {result.facing}" if result.facing else "unknown"
    sure = f", {result.facing_confidence:.2f}" if result.facing_confidence is not None else ""
    text = f"Facing: {side} ({result.facing_source}{sure})"
    if "facing_uncertain" in result.flags:
        text += ", unsure: not graded"
    elif result.vertebrae and not result.graded:
        text += ". No vertebra graded (see the flags): no finding"
    naming = result.level_naming or {}
    if naming.get("anchor") and naming.get("level_uncertain"):
        text += f". Levels counted from {naming['anchor']}, cut by the film's edge, against the network's own count: " \
                "the count may be off"
    elif naming.get("anchor"):
        text += f". Levels counted from {naming['anchor']}"
    elif naming.get("level_uncertain"):
        text += ". Levels: no anchor in view, the count may be off"
    return text


def answered_by(reply: dict) -> str:
    """Return which model answered an infer reply, e.g. "spinemorph_levels 1.1.0 (weights 3f2a9c0d81be)"."""
    if not reply.get("model"):
        return ""
    version, sha = reply.get("model_version"), reply.get("weights_sha256")
    if isinstance(version, dict):  # a model of several networks names each one
        version = ", ".join(f"{k} {v}" for k, v in version.items())
        sha = ", ".join(f"{k} {v}" for k, v in sha.items())
    return f"{reply['model']} {version or 'unversioned'} (weights {sha or 'unknown'})"


def write_table_csv(path: str | Path, result: Morphometry) -> Path:
    """Write the results table (one row per vertebra, as the module shows it) as CSV and return its path."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(table_headers(result.unit))
        writer.writerows(table_rows(result))
    return path


def _finding(rec, unit: str) -> str:
    vcr = f", VCR {rec.vcr_percent:.0f} %" if rec.vcr_percent is not None else ""
    ha = rec.height("Ha", unit)
    height = f", Ha {ha:.1f} {unit}" if ha is not None else ""
    return f"- {rec.level}: Genant grade {rec.genant_grade} ({rec.deformity}){vcr}{height}"


def patient_report(result: Morphometry, context: dict | None = None) -> str:
    """Return a short plain-text report of one radiograph: who, what was measured, and the fractures found."""
    context = context or {}
    lines = ["SpineMorph vertebral morphometry report", ""]
    for key, title in (("patient_id", "Patient"), ("study_uid", "Study"), ("image_id", "Image"),
                       ("source", "Labels from"), ("model", "Model")):
        if context.get(key):
            lines.append(f"{title}: {context[key]}")
    lines.append(f"Date: {context.get('date') or datetime.date.today().isoformat()}")
    spacing = f"{result.spacing_mm[0]:.4g} × {result.spacing_mm[1]:.4g} mm" if result.spacing_mm else \
        "unknown (heights in pixels)"
    lines += [f"Pixel spacing: {spacing}", f"Patient facing: {result.facing or 'unknown'} ({result.facing_source})", ""]
    graded = result.graded
    fractured = [r for r in graded if r.genant_grade > 0]
    lines.append(f"Vertebrae measured: {len(graded)} of {len(result.vertebrae)} "
                 f"({', '.join(r.level for r in result.vertebrae) or 'none'})")
    if fractured:
        worst = max(fractured, key=lambda r: (r.genant_grade, r.vcr_percent or 0.0))
        lines.append(f"Deformities (Genant grade 1 or more): {len(fractured)}; worst {worst.level}, "
                     f"grade {worst.genant_grade}")
        lines += [_finding(r, result.unit) for r in fractured]
    elif graded:
        lines.append(f"No vertebral deformity of Genant grade 1 or more among the {len(graded)} graded.")
    else:  # every grade withheld, or no vertebra: no finding, not a normal spine
        lines.append("No vertebra could be graded, so this is no finding: check the view and the outlines, "
                     "edit them and measure again, or read the film.")
    caveat = finding_caveat(result)  # the names above may be a level off
    if caveat:
        lines.append(caveat)
    unmeasured = [f"{r.level} ({why_not_graded(r.flags)})" for r in result.vertebrae if r.genant_grade is None]
    if unmeasured:
        lines.append(f"Not graded: {'; '.join(unmeasured)}")
    lines += ["", "Genant grades: 0 under 20 % height loss, 1 20-25 %, 2 25-40 %, 3 over 40 %. VCR compares the "
              "anterior height with the neighbours' (Kim et al. 2021).", ""]
    table = [table_headers(result.unit)[:-1]] + [row[:-1] for row in table_rows(result)]
    widths = [max(len(row[j]) for row in table) for j in range(len(table[0]))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(lines) + "\n"


def render_overlay(path: str | Path, image: np.ndarray, labels: np.ndarray | None, records: list[dict],
                   height: int = 768, note: str | None = None) -> Path:
    """Draw the radiograph, its labels coloured by level, each vertebra's height lines and a ``note`` on the whole
    picture (``finding_caveat``: the level names are uncertain); write a PNG."""
    image = np.asarray(image)
    pic = to_rgb(image, fit_height(image.shape, height))
    if labels is not None:
        pic = draw_labels(pic, np.asarray(labels), alpha=0.3)
    pic = draw_measurements(pic, records, image.shape)
    if note:
        pic = draw_note(pic, note)
    path = Path(path)
    pic.save(path, optimize=True)
    return path
