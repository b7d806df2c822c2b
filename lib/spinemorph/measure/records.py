"""Morphometry records (one per vertebra, as in docs/ARCHITECTURE.md) and their JSON and CSV writers."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["VertebraRecord", "Morphometry", "TABLE_COLUMNS"]

#: Columns of the CSV and of every table a reader sees, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "level", "Ha", "Hm", "Hp", "wedge", "biconcave", "crush", "vcr_percent", "avh_pvh_percent",
    "genant_grade", "deformity", "flags",
)


@dataclass
class VertebraRecord:
    """The morphometry of one vertebral body.

    Heights are in mm (``Ha_mm``...) when the spacing is known, and always in pixels (``Ha_px``...). Indices:
    wedge = Ha/Hp, biconcave = Hm/Hp, crush = Hp over the neighbours' mean Hp. ``vcr_percent`` is equation 2
    of Kim et al. 2021 on anterior heights; ``avh_pvh_percent`` is 1 - Ha/Hp in percent.
    """

    level: str
    code: int | None
    Ha_mm: float | None = None
    Hm_mm: float | None = None
    Hp_mm: float | None = None
    Ha_px: float | None = None
    Hm_px: float | None = None
    Hp_px: float | None = None
    wedge: float | None = None
    biconcave: float | None = None
    crush: float | None = None
    vcr_percent: float | None = None
    avh_pvh_percent: float | None = None
    genant_grade: int | None = None
    deformity: str | None = None
    points: dict[str, list[float]] = field(default_factory=dict)
    points_mm: dict[str, list[float]] | None = None
    center_px: list[float] | None = None
    confidence: float | None = None  # the network's mean body probability over the segment, when known
    stage: int | None = None  # which stage drew the outline: 1 (whole film) or 2 (full-resolution crop)
    agreement: float | None = None  # intersection over union of the stage-1 and stage-2 outlines, when stage 2 ran
    heights_from: str | None = None  # where the heights and points come from: "outline", "mean" or "landmarks"
    landmarks: dict[str, list[float]] | None = None  # the landmark network's own six points (px), when it ran
    flags: list[str] = field(default_factory=list)

    def height(self, which: str, unit: str) -> float | None:
        """Return height "Ha", "Hm" or "Hp" in "mm" or "px"."""
        return getattr(self, f"{which}_{unit}")

    def row(self, unit: str) -> dict:
        """Return this record as a table row (TABLE_COLUMNS), heights in ``unit``."""
        out = {c: getattr(self, c, None) for c in TABLE_COLUMNS}
        for h in ("Ha", "Hm", "Hp"):
            out[h] = self.height(h, unit)
        out["flags"] = ";".join(self.flags)
        return out


@dataclass
class Morphometry:
    """Everything ``spinemorph.measure`` found in one labelmap."""

    vertebrae: list[VertebraRecord]
    facing: str | None
    facing_source: str  # "argument", "PatientOrientation", "file" or "inferred"
    spacing_mm: tuple[float, float] | None
    flags: list[str] = field(default_factory=list)
    facing_confidence: float | None = None
    level_naming: dict | None = None  # anchor, level_uncertain and alternatives, from spinemorph.postprocess

    @property
    def unit(self) -> str:
        """Return the unit of the heights: "mm", or "px" without a spacing."""
        return "mm" if self.spacing_mm else "px"

    @property
    def graded(self) -> list[VertebraRecord]:
        """Return the records given a Genant grade (0-3); the others were refused or could not be measured."""
        return [r for r in self.vertebrae if r.genant_grade is not None]

    @property
    def finding(self) -> dict:
        """Return the image-level reading: how many vertebrae were graded, which were graded 1 or more, the verdict
        ("fracture", "no fracture among the graded" or "not gradable": nothing graded, no finding), and whether
        the level names are uncertain (``level_uncertain``: a named level may be the one above or below)."""
        graded = self.graded
        fractures = [r.level for r in graded if r.genant_grade >= 1]
        verdict = "fracture" if fractures else "no fracture among the graded" if graded else "not gradable"
        return {"vertebrae_graded": len(graded), "graded_1_or_more": fractures, "verdict": verdict,
                "level_uncertain": "level_uncertain" in self.flags}

    def by_level(self) -> dict[str, VertebraRecord]:
        """Return the records keyed by level name."""
        return {r.level: r for r in self.vertebrae}

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {
            "units": self.unit, "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
            "facing": self.facing, "facing_source": self.facing_source, "facing_confidence": self.facing_confidence,
            "flags": list(self.flags), "level_naming": self.level_naming, "finding": self.finding,
            "vertebrae": [asdict(r) for r in self.vertebrae],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Morphometry:
        """Return the Morphometry a ``to_dict`` (the morphometry JSON) holds; unknown keys are ignored."""
        from dataclasses import fields

        from spinemorph.levels import LEVELS, level_code

        names = {f.name for f in fields(VertebraRecord)}
        vertebrae = []
        for v in data.get("vertebrae", []):
            rec = {k: v[k] for k in names if k in v}
            rec.setdefault("code", level_code(v["level"]) if str(v["level"]).upper() in LEVELS else None)
            rec["points"], rec["flags"] = dict(rec.get("points") or {}), list(rec.get("flags") or [])
            vertebrae.append(VertebraRecord(**rec))
        spacing = data.get("spacing_mm")
        return cls(vertebrae, data.get("facing"), data.get("facing_source", "file"),
                   tuple(spacing) if spacing else None, list(data.get("flags", [])), data.get("facing_confidence"),
                   data.get("level_naming"))

    def write_json(self, path: str | Path) -> None:
        """Write the records as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def write_csv(self, path: str | Path) -> None:
        """Write one row per vertebra; heights in the result's unit, named in the header."""
        unit = self.unit
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[f"{c}_{unit}" if c in ("Ha", "Hm", "Hp") else c
                                                    for c in TABLE_COLUMNS])
            writer.writeheader()
            for rec in self.vertebrae:
                row = rec.row(unit)
                writer.writerow({(f"{k}_{unit}" if k in ("Ha", "Hm", "Hp") else k): _fmt(v) for k, v in row.items()})

    def table(self) -> str:
        """Return a fixed-width text table for a terminal."""
        unit = self.unit
        head = f"{'level':6s} {'Ha':>6s} {'Hm':>6s} {'Hp':>6s} {'wedge':>6s} {'bicon':>6s} {'crush':>6s} " \
               f"{'VCR%':>6s} {'grade':>5s} {'type':10s} flags"
        lines = [f"heights in {unit}; facing {self.facing} ({self.facing_source})", head]
        for r in self.vertebrae:
            vals = [r.height(h, unit) for h in ("Ha", "Hm", "Hp")] + [r.wedge, r.biconcave, r.crush, r.vcr_percent]
            cells = " ".join(f"{_fmt(v):>6s}" for v in vals)
            grade = "" if r.genant_grade is None else str(r.genant_grade)
            lines.append(f"{r.level:6s} {cells} {grade:>5s} {r.deformity or '':10s} {','.join(r.flags)}")
        # here: the flags' words read the gates, which read records
        from spinemorph.measure.flags import finding_caveat, why_not_graded

        lines += [f"{r.level} not graded: {why_not_graded(r.flags)}" for r in self.vertebrae
                  if r.genant_grade is None and "facing_uncertain" not in r.flags]
        caveat = finding_caveat(self)
        if caveat:
            lines.append(caveat)
        if "facing_uncertain" in self.flags:
            lines.append("The facing is unsure, so nothing was graded: this is no finding.")
        elif self.vertebrae and not self.graded:
            lines.append("No vertebra could be graded (see the flags): this is no finding.")
        return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)
