"""The Ha, Hm and Hp lines of each vertebra in RAS, and the six points back from a moved line: no Slicer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinemorph.measure import Morphometry, VertebraRecord
from SpineMorphLib.grid import PlaneGrid
from SpineMorphLib.records import STATIONS, regrade, set_station

__all__ = ["HeightLine", "height_lines", "line_name", "move_line", "records_with_points"]


@dataclass(frozen=True)
class HeightLine:
    """One height of one vertebra: its superior and inferior points in RAS mm."""

    level: str
    station: str  # "anterior", "middle" or "posterior"
    superior: np.ndarray
    inferior: np.ndarray

    @property
    def name(self) -> str:
        """Return the node name, such as "L1 Ha"."""
        return line_name(self.level, self.station)


def line_name(level: str, station: str) -> str:
    """Return the name of a vertebra's height line, such as "L1 Ha"."""
    return f"{level} {STATIONS[station]}"


def height_lines(result: Morphometry, grid: PlaneGrid) -> list[HeightLine]:
    """Return the three height lines of every measured vertebra, top to bottom, in RAS."""
    lines = []
    for rec in result.vertebrae:
        for station in STATIONS:
            top, bottom = rec.points.get(f"superior_{station}"), rec.points.get(f"inferior_{station}")
            if top is None or bottom is None:
                continue
            superior, inferior = grid.rc_to_ras([top, bottom])
            lines.append(HeightLine(rec.level, station, superior, inferior))
    return lines


def move_line(result: Morphometry, grid: PlaneGrid, level: str, station: str, superior_ras,
              inferior_ras) -> VertebraRecord:
    """Set one height line's points from RAS, recompute that height and re-grade every vertebra; return its record.

    A vertebra's VCR uses its neighbours' anterior heights, so moving one line can change the neighbours' VCR too.
    """
    record = result.by_level().get(level)
    if record is None:
        raise KeyError(f"No vertebra {level!r} in the measurement.")
    superior, inferior = grid.ras_to_rc([superior_ras, inferior_ras])
    set_station(record, station, superior, inferior, result.spacing_mm)
    regrade(result)
    return record


def records_with_points(result: Morphometry, lines: list[HeightLine], grid: PlaneGrid) -> list[dict]:
    """Return the records as dicts whose six points are read back from ``lines`` (for drawing what is shown)."""
    points: dict[str, dict[str, list[float]]] = {}
    for line in lines:
        top, bottom = grid.ras_to_rc([line.superior, line.inferior])
        points.setdefault(line.level, {})[f"superior_{line.station}"] = top.tolist()
        points[line.level][f"inferior_{line.station}"] = bottom.tolist()
    out = []
    for rec in result.vertebrae:
        row = {"level": rec.level, "genant_grade": rec.genant_grade, "deformity": rec.deformity,
               "vcr_percent": rec.vcr_percent, "points": points.get(rec.level, {})}
        out.append(row)
    return out
