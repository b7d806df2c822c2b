"""Image (row, column) pixels of a 2D MRML volume, and their RAS positions: numpy only, no Slicer.

Slicer stores a volume as a (K, J, I) array with an IJK-to-RAS matrix. A 2D radiograph has one axis of size 1, and
which of the other two is the image row depends on how the file was written: a DICOM or PNG loads with rows along J,
an H×W×1 NIfTI (SpineMorph's labels included) with rows along I. ``PlaneGrid`` finds the row axis from the geometry
(rows run down the view the plane is shown in), so every caller sees the (H, W) array ``spinemorph`` measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlaneGrid"]

_EPS = 1e-6


@dataclass(frozen=True)
class PlaneGrid:
    """The map between a 2D volume's voxels, its (row, column) image pixels and RAS millimetres.

    Attributes:
        ijk_to_ras: 4×4 IJK-to-RAS matrix of the volume.
        shape_kji: the volume's array shape, (K, J, I) as ``slicer.util.arrayFromVolume`` gives it.
        row_axis: the IJK axis (0 = I, 1 = J, 2 = K) that runs along image rows.
        col_axis: the IJK axis that runs along image columns.
        through_axis: the IJK axis of size 1.
    """

    ijk_to_ras: np.ndarray
    shape_kji: tuple[int, int, int]
    row_axis: int
    col_axis: int
    through_axis: int

    @classmethod
    def from_matrix(cls, ijk_to_ras, shape_kji) -> PlaneGrid:
        """Return the grid of a volume with this IJK-to-RAS matrix and (K, J, I) shape; raise ValueError if 3D."""
        matrix = np.asarray(ijk_to_ras, float).reshape(4, 4)
        shape = tuple(int(v) for v in shape_kji)
        if len(shape) != 3:
            raise ValueError(f"Expected a (K, J, I) volume shape, not {shape}.")
        sizes = {0: shape[2], 1: shape[1], 2: shape[0]}
        flat = [axis for axis in (2, 1, 0) if sizes[axis] == 1]
        if not flat:
            raise ValueError(f"The volume is 3D ({shape[2]}×{shape[1]}×{shape[0]} voxels): SpineMorph measures one "
                             "2D radiograph.")
        through = flat[0]
        a, b = (axis for axis in (0, 1, 2) if axis != through)
        dirs = matrix[:3, :3] / np.maximum(np.linalg.norm(matrix[:3, :3], axis=0), _EPS)
        normal = np.cross(dirs[:, a], dirs[:, b])
        # Rows run down the view: posterior in an axial plane (how DICOM and PNG load), inferior otherwise.
        down = np.array([0.0, -1.0, 0.0]) if np.argmax(np.abs(normal)) == 2 else np.array([0.0, 0.0, -1.0])
        along_a, along_b = abs(dirs[:, a] @ down), abs(dirs[:, b] @ down)
        if abs(along_a - along_b) < _EPS:
            row = 1 if 1 in (a, b) else a  # no preference from the geometry: Slicer's convention, rows along J
        else:
            row = a if along_a > along_b else b
        return cls(matrix, shape, row, b if row == a else a, through)

    @classmethod
    def from_affine(cls, affine, shape) -> PlaneGrid:
        """Return the grid of an (H, W) image whose (row, column, 0) indices map to RAS by ``affine``.

        This is ``spinemorph.io.Radiograph.affine``; the volume it makes has columns along I and rows along J.
        """
        aff = np.asarray(affine, float).reshape(4, 4)
        matrix = aff[:, [1, 0, 2, 3]]
        return cls(matrix, (1, int(shape[0]), int(shape[1])), 1, 0, 2)

    @property
    def shape(self) -> tuple[int, int]:
        """Return the image shape (H, W)."""
        sizes = {0: self.shape_kji[2], 1: self.shape_kji[1], 2: self.shape_kji[0]}
        return sizes[self.row_axis], sizes[self.col_axis]

    @property
    def affine(self) -> np.ndarray:
        """Return the 4×4 RAS affine of (row, column, 0) indices, as ``spinemorph.io`` writes labelmaps."""
        m = self.ijk_to_ras
        return np.column_stack([m[:, self.row_axis], m[:, self.col_axis], m[:, self.through_axis], m[:, 3]])

    @property
    def spacing(self) -> tuple[float, float]:
        """Return the (row, column) voxel spacing in mm."""
        norms = np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)
        return float(norms[self.row_axis]), float(norms[self.col_axis])

    def _rows_first(self) -> bool:
        """Return True when the squeezed (K, J, I) array already has rows first."""
        return [axis for axis in (2, 1, 0) if axis != self.through_axis][0] == self.row_axis

    def to_rc(self, array_kji) -> np.ndarray:
        """Return the (H, W) image of a (K, J, I) volume array (a view where possible)."""
        arr = np.asarray(array_kji)
        if arr.shape != self.shape_kji:
            raise ValueError(f"Array shape {arr.shape} does not match the volume's {self.shape_kji}.")
        plane = np.take(arr, 0, axis=2 - self.through_axis)
        return plane if self._rows_first() else plane.T

    def to_kji(self, image) -> np.ndarray:
        """Return the (K, J, I) volume array of an (H, W) image."""
        img = np.asarray(image)
        if img.shape != self.shape:
            raise ValueError(f"Image shape {img.shape} does not match the volume's {self.shape}.")
        plane = img if self._rows_first() else img.T
        return np.ascontiguousarray(np.expand_dims(plane, axis=2 - self.through_axis))

    def rc_to_ras(self, points) -> np.ndarray:
        """Return the RAS positions (N, 3) of (row, column) pixel positions (N, 2); pixel centres are integers."""
        rc = np.atleast_2d(np.asarray(points, float))
        homogeneous = np.column_stack([rc[:, 0], rc[:, 1], np.zeros(len(rc)), np.ones(len(rc))])
        return (self.affine @ homogeneous.T).T[:, :3]

    def ras_to_rc(self, points) -> np.ndarray:
        """Return the (row, column) pixel positions (N, 2) of RAS positions (N, 3), projected onto the plane."""
        ras = np.atleast_2d(np.asarray(points, float))
        homogeneous = np.column_stack([ras, np.ones(len(ras))])
        return (np.linalg.inv(self.affine) @ homogeneous.T).T[:, :2]
