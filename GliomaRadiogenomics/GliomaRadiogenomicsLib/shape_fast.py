"""PyRadiomics' 3D shape mesh (``cShape.calculate_coefficients``) in numpy, bit-identical and faster.

``radiomics.shape.RadiomicsShape`` gets SurfaceArea, MeshVolume and the four maximum diameters from the C function
``calculate_coefficients(mask, spacing)`` (PyRadiomics ``radiomics/src/cshape.c``). What it does, and what we do:

- Marching cubes on the (zero-padded) boolean mask: cube (iz, iy, ix) has corners ``_GRID_ANGLES``; bit k of the cube
  index is corner k in the mask. An index with corner 7 set is flipped (``^ 0xff``) and its volume sign is -1. Each
  triangle of ``_TRI_TABLE[index]`` has its 3 points on edge midpoints ``(i + _VERT_LIST[edge]) * spacing`` (double).
  The C code sums, in z, y, x cube order and table order, ``0.5 * sqrt(|(a - c) x (b - c)|^2)`` into the surface area
  and ``sign * (a x b) . c`` into the volume (divided by 6 at the end), one addition at a time. We compute the same
  per-triangle values with the same float operations in the same order (numpy element-wise operations are IEEE
  correctly rounded like C's) and sum them with ``np.cumsum``, which adds left to right like the C loop (not
  numpy's pairwise ``sum``): bit-identical.
- Diameters: the C code stores, per cube, the vertices on the 3 edges at corner 7 (edges 6, 7, 11; present when
  corner 6, 4, 3 of the flipped index is set), i.e. every crossing edge's midpoint once, and compares all pairs
  (O(V^2)): squared distance ``((a0 - b0)^2 + (a1 - b1)^2) + (a2 - b2)^2``; Maximum3DDiameter over all pairs, the
  2D diameters over pairs with an equal z (Slice), y (Column) or x (Row) coordinate; square root at the end.
  A farthest pair is a pair of extreme points of the set (the squared distance is strictly convex), and a point
  strictly between two others of an axis-parallel line is not extreme. So we keep, for 3D, the points that are the
  first or last on each of their 3 axis lines (exact integer coordinates 2 * (i + v); the physical points are their
  image under the diagonal spacing scaling, which keeps that order), and per plane of equal z, y or x the points
  first or last on both of their lines in that plane. Among those, all pairs are compared, except pairs of grid cells
  whose boxes cannot reach the distance of a pair already found (``_max_sq_bnb``), with the C formula: the maximum of
  the same doubles, bit-identical. (A convex hull with qhull cuts the 3D candidates further but costs as much as it
  saves here, plus ~0.25 s to import scipy.spatial in each worker.)

The lookup tables below are PyRadiomics' (``radiomics/src/cshape.c``, AIM-Harvard/pyradiomics, BSD-3-Clause), the
same bytes as in the installed ``radiomics._cshape`` extension (checked by Testing/Python/test_shape_fast.py).
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["calculate_coefficients", "pyradiomics_classes"]

# corners of the marching cube relative to its origin (z, y, x)
_GRID_ANGLES = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0]])

# edge midpoints relative to the cube origin (z, y, x)
_VERT_LIST = np.array([[0, 0, 0.5], [0, 0.5, 1], [0, 1, 0.5], [0, 0.5, 0],
                       [1, 0, 0.5], [1, 0.5, 1], [1, 1, 0.5], [1, 0.5, 0],
                       [0.5, 0, 0], [0.5, 0, 1], [0.5, 1, 1], [0.5, 1, 0]], dtype=np.float64)

# triangles (3 edge numbers each) per cube index < 128
_TRI_TABLE = np.array([
    [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 8, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 8, 3, 1, 9, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 2, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 8, 3, 1, 2, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [9, 2, 10, 0, 2, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [2, 8, 3, 2, 10, 8, 10, 9, 8, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 0, 0, 8, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, 11, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 1, 1, 9, 11, 9, 8, 11, -1, -1, -1, -1, -1, -1, -1],
    [3, 10, 1, 11, 10, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [10, 1, 0, 0, 8, 10, 8, 11, 10, -1, -1, -1, -1, -1, -1, -1],
    [9, 0, 3, 3, 11, 9, 11, 10, 9, -1, -1, -1, -1, -1, -1, -1],
    [9, 8, 10, 11, 10, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [4, 7, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 4, 3, 4, 7, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, 4, 7, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 4, 1, 4, 7, 1, 7, 3, -1, -1, -1, -1, -1, -1, -1],
    [1, 2, 10, 4, 7, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [3, 4, 7, 3, 0, 4, 1, 2, 10, -1, -1, -1, -1, -1, -1, -1],
    [9, 2, 10, 9, 0, 2, 4, 7, 8, -1, -1, -1, -1, -1, -1, -1],
    [2, 10, 9, 2, 9, 7, 2, 7, 3, 4, 7, 9, -1, -1, -1, -1],
    [4, 7, 8, 11, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [11, 4, 7, 11, 2, 4, 2, 0, 4, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, 4, 7, 8, 11, 2, 3, -1, -1, -1, -1, -1, -1, -1],
    [4, 7, 11, 9, 4, 11, 11, 2, 9, 1, 9, 2, -1, -1, -1, -1],
    [3, 10, 1, 11, 10, 3, 4, 7, 8, -1, -1, -1, -1, -1, -1, -1],
    [11, 10, 1, 1, 4, 11, 1, 0, 4, 4, 7, 11, -1, -1, -1, -1],
    [4, 7, 8, 9, 0, 3, 3, 11, 9, 11, 10, 9, -1, -1, -1, -1],
    [4, 7, 11, 4, 11, 9, 9, 11, 10, -1, -1, -1, -1, -1, -1, -1],
    [9, 5, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [9, 5, 4, 0, 8, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 5, 4, 0, 1, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [8, 5, 4, 8, 3, 5, 3, 1, 5, -1, -1, -1, -1, -1, -1, -1],
    [1, 2, 10, 9, 5, 4, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 8, 3, 1, 2, 10, 9, 5, 4, -1, -1, -1, -1, -1, -1, -1],
    [2, 10, 5, 5, 4, 2, 2, 4, 0, -1, -1, -1, -1, -1, -1, -1],
    [2, 10, 5, 3, 2, 5, 3, 5, 4, 8, 3, 4, -1, -1, -1, -1],
    [9, 5, 4, 11, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 0, 0, 8, 11, 9, 5, 4, -1, -1, -1, -1, -1, -1, -1],
    [0, 5, 4, 0, 1, 5, 11, 2, 3, -1, -1, -1, -1, -1, -1, -1],
    [2, 1, 5, 2, 5, 8, 11, 2, 8, 5, 4, 8, -1, -1, -1, -1],
    [3, 10, 1, 11, 10, 3, 9, 5, 4, -1, -1, -1, -1, -1, -1, -1],
    [5, 4, 9, 10, 1, 0, 0, 8, 10, 8, 11, 10, -1, -1, -1, -1],
    [5, 4, 0, 5, 0, 11, 10, 5, 11, 11, 0, 3, -1, -1, -1, -1],
    [5, 4, 8, 10, 5, 8, 11, 10, 8, -1, -1, -1, -1, -1, -1, -1],
    [7, 8, 9, 5, 7, 9, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [3, 0, 9, 5, 3, 9, 3, 5, 7, -1, -1, -1, -1, -1, -1, -1],
    [7, 8, 0, 0, 1, 7, 7, 1, 5, -1, -1, -1, -1, -1, -1, -1],
    [1, 5, 7, 1, 7, 3, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [7, 8, 9, 5, 7, 9, 1, 2, 10, -1, -1, -1, -1, -1, -1, -1],
    [1, 2, 10, 3, 0, 9, 3, 9, 5, 3, 5, 7, -1, -1, -1, -1],
    [0, 2, 8, 8, 2, 5, 8, 5, 7, 2, 10, 5, -1, -1, -1, -1],
    [2, 10, 5, 2, 5, 3, 3, 5, 7, -1, -1, -1, -1, -1, -1, -1],
    [5, 7, 9, 7, 8, 9, 11, 2, 3, -1, -1, -1, -1, -1, -1, -1],
    [5, 7, 9, 9, 7, 2, 2, 0, 9, 11, 2, 7, -1, -1, -1, -1],
    [11, 2, 3, 0, 1, 8, 1, 7, 8, 1, 5, 7, -1, -1, -1, -1],
    [2, 1, 11, 1, 7, 11, 1, 5, 7, -1, -1, -1, -1, -1, -1, -1],
    [7, 8, 9, 5, 7, 9, 3, 10, 1, 11, 10, 3, -1, -1, -1, -1],
    [5, 7, 0, 5, 0, 9, 7, 11, 0, 10, 1, 0, 11, 10, 0, -1],
    [11, 10, 0, 0, 3, 11, 10, 5, 0, 0, 7, 8, 5, 7, 0, -1],
    [11, 10, 5, 5, 7, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [6, 5, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 8, 3, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 8, 3, 1, 9, 8, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1],
    [1, 6, 5, 1, 2, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [1, 6, 5, 1, 2, 6, 0, 8, 3, -1, -1, -1, -1, -1, -1, -1],
    [9, 6, 5, 9, 0, 6, 0, 2, 6, -1, -1, -1, -1, -1, -1, -1],
    [5, 9, 8, 5, 8, 2, 5, 2, 6, 8, 3, 2, -1, -1, -1, -1],
    [11, 2, 3, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 0, 0, 8, 11, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, 11, 2, 3, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 1, 1, 9, 11, 9, 8, 11, 6, 5, 10, -1, -1, -1, -1],
    [6, 3, 11, 6, 5, 3, 5, 1, 3, -1, -1, -1, -1, -1, -1, -1],
    [0, 8, 11, 0, 11, 5, 0, 5, 1, 5, 11, 6, -1, -1, -1, -1],
    [6, 3, 11, 0, 3, 6, 0, 6, 5, 0, 5, 9, -1, -1, -1, -1],
    [6, 5, 9, 6, 9, 11, 11, 9, 8, -1, -1, -1, -1, -1, -1, -1],
    [4, 7, 8, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 4, 3, 4, 7, 3, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 0, 4, 7, 8, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1],
    [1, 9, 4, 1, 4, 7, 1, 7, 3, 6, 5, 10, -1, -1, -1, -1],
    [4, 7, 8, 1, 6, 5, 1, 2, 6, -1, -1, -1, -1, -1, -1, -1],
    [0, 4, 3, 4, 7, 3, 1, 6, 5, 1, 2, 6, -1, -1, -1, -1],
    [4, 7, 8, 9, 6, 5, 9, 0, 6, 0, 2, 6, -1, -1, -1, -1],
    [7, 3, 9, 4, 7, 9, 3, 2, 9, 5, 9, 6, 2, 6, 9, -1],
    [11, 2, 3, 4, 7, 8, 6, 5, 10, -1, -1, -1, -1, -1, -1, -1],
    [11, 4, 7, 11, 2, 4, 2, 0, 4, 6, 5, 10, -1, -1, -1, -1],
    [1, 9, 0, 11, 2, 3, 4, 7, 8, 6, 5, 10, -1, -1, -1, -1],
    [4, 7, 11, 9, 4, 11, 11, 2, 9, 1, 9, 2, 6, 5, 10, -1],
    [4, 7, 8, 6, 3, 11, 6, 5, 3, 5, 1, 3, -1, -1, -1, -1],
    [5, 1, 11, 5, 11, 6, 1, 0, 11, 4, 7, 11, 0, 4, 11, -1],
    [4, 7, 8, 6, 3, 11, 0, 3, 6, 0, 6, 5, 0, 5, 9, -1],
    [6, 5, 9, 6, 9, 11, 4, 7, 9, 7, 11, 9, -1, -1, -1, -1],
    [10, 4, 9, 6, 4, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [10, 4, 9, 6, 4, 10, 0, 8, 3, -1, -1, -1, -1, -1, -1, -1],
    [0, 1, 10, 10, 6, 0, 6, 4, 0, -1, -1, -1, -1, -1, -1, -1],
    [1, 8, 3, 1, 6, 8, 8, 6, 4, 6, 1, 10, -1, -1, -1, -1],
    [1, 4, 9, 1, 2, 4, 2, 6, 4, -1, -1, -1, -1, -1, -1, -1],
    [1, 4, 9, 1, 2, 4, 2, 6, 4, 0, 8, 3, -1, -1, -1, -1],
    [0, 2, 4, 4, 2, 6, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [8, 3, 2, 8, 2, 4, 4, 2, 6, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 3, 10, 4, 9, 6, 4, 10, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 0, 0, 8, 11, 10, 4, 9, 6, 4, 10, -1, -1, -1, -1],
    [11, 2, 3, 0, 1, 10, 10, 6, 0, 6, 4, 0, -1, -1, -1, -1],
    [6, 4, 1, 6, 1, 10, 1, 4, 8, 11, 2, 1, 1, 8, 11, -1],
    [9, 6, 4, 3, 6, 9, 1, 3, 9, 11, 6, 3, -1, -1, -1, -1],
    [1, 8, 11, 0, 8, 1, 11, 6, 1, 1, 4, 9, 6, 4, 1, -1],
    [6, 3, 11, 0, 3, 6, 6, 4, 0, -1, -1, -1, -1, -1, -1, -1],
    [8, 6, 4, 6, 8, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [6, 7, 10, 7, 8, 10, 8, 9, 10, -1, -1, -1, -1, -1, -1, -1],
    [6, 7, 10, 0, 10, 7, 0, 9, 10, 0, 7, 3, -1, -1, -1, -1],
    [6, 7, 10, 1, 10, 7, 1, 7, 8, 0, 1, 8, -1, -1, -1, -1],
    [6, 7, 10, 1, 10, 7, 1, 7, 3, -1, -1, -1, -1, -1, -1, -1],
    [1, 2, 6, 1, 6, 8, 1, 8, 9, 6, 7, 8, -1, -1, -1, -1],
    [2, 6, 9, 1, 2, 9, 6, 7, 9, 3, 0, 9, 7, 3, 9, -1],
    [0, 7, 8, 7, 0, 6, 6, 0, 2, -1, -1, -1, -1, -1, -1, -1],
    [2, 7, 3, 2, 6, 7, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [11, 2, 3, 6, 7, 10, 7, 8, 10, 8, 9, 10, -1, -1, -1, -1],
    [2, 0, 7, 11, 2, 7, 0, 9, 7, 6, 7, 10, 9, 10, 7, -1],
    [6, 7, 10, 1, 10, 7, 1, 7, 8, 0, 1, 8, 11, 2, 3, -1],
    [11, 2, 1, 1, 7, 11, 10, 6, 1, 1, 6, 7, -1, -1, -1, -1],
    [8, 9, 6, 6, 7, 8, 1, 6, 9, 11, 6, 3, 1, 3, 6, -1],
    [0, 9, 1, 6, 7, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
    [0, 7, 8, 7, 0, 6, 0, 3, 11, 11, 6, 0, -1, -1, -1, -1],
    [6, 7, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
], dtype=np.int32)

_N_TRI = (_TRI_TABLE[:, 0::3] >= 0).sum(axis=1)  # triangles per cube index (the -1 ends each row)

# vertices stored for the diameters: corner bit of the flipped index -> edge (C: points_edges = {{6, 4, 3}, {6, 7, 11}})
_POINT_EDGES = ((6, 6), (4, 7), (3, 11))

_BRUTE_MAX = 512      # up to this many points: all pairs, no cells
_CHUNK = 1 << 22      # pair distances per block (32 MB of doubles)


def _cube_index(mask: np.ndarray) -> np.ndarray:
    """Marching-cube index of every cube (uint8), as the C loop builds it."""
    n0, n1, n2 = mask.shape
    idx = np.zeros((n0 - 1, n1 - 1, n2 - 1), np.uint8)
    for a, (dz, dy, dx) in enumerate(_GRID_ANGLES):
        corner = mask[dz:dz + n0 - 1, dy:dy + n1 - 1, dx:dx + n2 - 1]
        idx |= corner.astype(np.uint8) << np.uint8(a)
    return idx


def _surface_and_volume(idx: np.ndarray, flip: np.ndarray, spacing: np.ndarray):
    cubes = np.flatnonzero(idx)  # C order = the C loop's z, y, x order; index 0 (outside / inside) has no triangle
    if not cubes.size:
        return 0.0, 0.0
    cidx = idx.ravel()[cubes]
    ntri = _N_TRI[cidx]
    total = int(ntri.sum())
    cube_of = np.repeat(np.arange(cubes.size), ntri)
    t = np.arange(total) - np.repeat(np.cumsum(ntri) - ntri, ntri)  # triangle number inside its cube
    row = _TRI_TABLE[cidx[cube_of]]
    col = 3 * t
    ea, eb, ec = (row[np.arange(total), col + k] for k in range(3))
    pos = np.unravel_index(cubes[cube_of], idx.shape)
    a, b, c = [], [], []
    for d in range(3):  # C: a[d] = i_d; a[d] += vertList[e][d]; a[d] *= spacing[d]
        base = pos[d].astype(np.float64)
        a.append((base + _VERT_LIST[ea, d]) * spacing[d])
        b.append((base + _VERT_LIST[eb, d]) * spacing[d])
        c.append((base + _VERT_LIST[ec, d]) * spacing[d])
    # volume: sign * ((a x b) . c), left to right as in C
    ab0 = a[1] * b[2] - b[1] * a[2]
    ab1 = a[2] * b[0] - b[2] * a[0]
    ab2 = a[0] * b[1] - b[0] * a[1]
    sign = np.where(flip.ravel()[cubes[cube_of]], -1.0, 1.0)
    vol_terms = sign * (ab0 * c[0] + ab1 * c[1] + ab2 * c[2])
    # surface: 0.5 * sqrt(|(a - c) x (b - c)|^2)
    for d in range(3):
        a[d] = a[d] - c[d]
        b[d] = b[d] - c[d]
    ab0 = a[1] * b[2] - b[1] * a[2]
    ab1 = a[2] * b[0] - b[2] * a[0]
    ab2 = a[0] * b[1] - b[0] * a[1]
    sa_terms = 0.5 * np.sqrt(ab0 * ab0 + ab1 * ab1 + ab2 * ab2)
    # one addition at a time, in the C loop's order (np.sum would add pairwise: different last bits)
    return float(np.cumsum(sa_terms)[-1]), float(np.cumsum(vol_terms)[-1]) / 6


def _mesh_vertices(idx: np.ndarray, spacing: np.ndarray):
    """The C code's diameter vertices: integer coordinates 2 * (i + v) and physical coordinates (i + v) * spacing."""
    ints, phys = [], []
    for bit, edge in _POINT_EDGES:
        pos = np.nonzero(idx & np.uint8(1 << bit))
        v = _VERT_LIST[edge]
        ints.append(np.column_stack([2 * pos[d].astype(np.int64) + int(2 * v[d]) for d in range(3)]))
        phys.append(np.column_stack([(pos[d].astype(np.float64) + v[d]) * spacing[d] for d in range(3)]))
    return np.concatenate(ints), np.concatenate(phys)


def _sq_dist(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """C squared distances between the rows of q and of p: ((d0^2 + d1^2) + d2^2), columns in order (a leading
    0 + d0^2 is d0^2 exactly, so the 2D sums are the C sums with the equal coordinate's 0 term)."""
    d = np.zeros((len(q), len(p)))
    for k in range(p.shape[1]):
        diff = q[:, k, None] - p[None, :, k]
        d += diff * diff
    return d


def _max_sq_pairs(p: np.ndarray) -> float:
    """max over all pairs of the C squared distance (0 when < 2 points)."""
    n = len(p)
    best = 0.0
    step = max(1, _CHUNK // max(n, 1))
    for s in range(0, n if n > 1 else 0, step):
        best = max(best, float(_sq_dist(p[s:s + step], p).max()))
    return best


def _max_sq_bnb(p: np.ndarray) -> float:
    """``_max_sq_pairs(p)`` (the same maximum of the same doubles) without comparing every pair: the points are put
    in cells of a grid; a pair of cells is compared only when the largest distance between their boxes reaches a lower
    bound (the largest distance of some pairs found first: the extremes along 13 directions and two farthest-point
    sweeps). The bound is an actual pair's distance, so the farthest pair's cells always pass (margin 1e-9)."""
    n, dim = p.shape
    if n <= _BRUTE_MAX:
        return _max_sq_pairs(p)
    dirs = [np.eye(dim)[k] for k in range(dim)]
    if dim == 3:
        dirs += [np.array(v, float) for v in ((1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1),
                                                (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1))]
    else:
        dirs += [np.array(v, float) for v in ((1, 1), (1, -1))]
    proj = p @ np.array(dirs).T
    seeds = np.unique(np.r_[proj.argmax(axis=0), proj.argmin(axis=0)])
    lb = _max_sq_pairs(p[seeds])
    i = seeds[0]
    for _ in range(2):  # farthest-point sweeps
        d = _sq_dist(p[i:i + 1], p)[0]
        i = int(d.argmax())
        lb = max(lb, float(d[i]))
    # cells: about 30 points each on a surface (3D) or a curve (2D) crossing ~pi k^(dim - 1) of the k^dim cells
    lo, hi = p.min(axis=0), p.max(axis=0)
    k = min(max(2, int(round((n / 100) ** (1.0 / (dim - 1))))), 32 if dim == 3 else 256)
    ext = np.where(hi > lo, hi - lo, 1.0)
    cell3 = np.minimum((k * (p - lo) / ext).astype(np.int64), k - 1)
    cell = np.ravel_multi_index(tuple(cell3.T), (k,) * dim)
    order = np.argsort(cell, kind="stable")
    cs = cell[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    ends = np.r_[starts[1:], n]
    ps = p[order]
    blo = np.minimum.reduceat(ps, starts, axis=0)
    bhi = np.maximum.reduceat(ps, starts, axis=0)
    best = lb
    rows = max(1, (1 << 20) // len(starts))  # cell-pair bounds a block of rows at a time (bounded memory)
    for r0 in range(0, len(starts), rows):
        a_lo, a_hi = blo[r0:r0 + rows, None, :], bhi[r0:r0 + rows, None, :]
        span = np.maximum(np.abs(a_hi - blo[None, :, :]), np.abs(bhi[None, :, :] - a_lo))
        ub = (span * span).sum(axis=2)  # >= every squared distance between the two cells' points
        keep = ub >= lb * (1 - 1e-9)
        keep &= np.arange(len(starts))[None, :] >= np.arange(r0, r0 + len(ub))[:, None]  # each pair once
        for i in np.flatnonzero(keep.any(axis=1)):
            a = r0 + i
            other = np.concatenate([ps[starts[b]:ends[b]] for b in np.flatnonzero(keep[i])])
            best = max(best, float(_sq_dist(ps[starts[a]:ends[a]], other).max()))
    return best


def _line_extremes(ints: np.ndarray) -> list:
    """For each axis k, the mask of the points that are the first or last on their line along k (the points with the
    same other coordinates): a point strictly between two others of a line is not a vertex of any convex hull that
    contains that line's points (3D, or 2D in a plane containing the line)."""
    out = []
    for k in range(3):
        o = [j for j in range(3) if j != k]
        order = np.lexsort((ints[:, k], ints[:, o[1]], ints[:, o[0]]))
        key = ints[order][:, o]
        change = np.r_[True, np.any(key[1:] != key[:-1], axis=1)]
        ext = np.zeros(len(ints), bool)
        ext[order[change | np.r_[change[1:], True]]] = True
        out.append(ext)
    return out


def _diameters(ints: np.ndarray, phys: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    if len(ints) < 2:
        return out
    ext = _line_extremes(ints)
    sel = np.flatnonzero(ext[0] & ext[1] & ext[2])
    out[3] = _max_sq_bnb(phys[sel])
    for axis in range(3):  # pairs with an equal coordinate `axis` (C: a[axis] == b[axis]), plane by plane
        others = [k for k in range(3) if k != axis]
        sel = np.flatnonzero(ext[others[0]] & ext[others[1]])  # extreme on both lines of the plane
        order = sel[np.argsort(ints[sel, axis], kind="stable")]
        key = ints[order, axis]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[starts[1:], len(key)]
        best = 0.0
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            plane = order[s:e]
            best = max(best, _max_sq_bnb(phys[plane][:, others]))
        out[axis] = best
    return out


def calculate_coefficients(mask: np.ndarray, spacing) -> tuple:
    """Same inputs and outputs as ``radiomics.cShape.calculate_coefficients``: ``mask`` (z, y, x; non-zero = in the
    region; PyRadiomics passes it padded with one 0 voxel on every side), ``spacing`` (z, y, x) ->
    ``(SurfaceArea, MeshVolume, diameters)`` with diameters = [Slice (equal z), Column (equal y), Row (equal x), 3D]."""
    mask = np.ascontiguousarray(np.asarray(mask) != 0)
    spacing = np.asarray(spacing, dtype=np.float64)
    if mask.ndim != 3 or spacing.shape != (3,):
        raise ValueError("calculate_coefficients: expected a 3D mask and 3 spacings")
    if min(mask.shape) < 2:
        return 0.0, 0.0, np.zeros(4)
    idx = _cube_index(mask)
    flip = (idx & np.uint8(0x80)) != 0
    idx[flip] ^= np.uint8(0xFF)
    sa, vol = _surface_and_volume(idx, flip, spacing)
    ints, phys = _mesh_vertices(idx, spacing)
    return sa, vol, np.sqrt(_diameters(ints, phys))


@functools.lru_cache(maxsize=None)
def pyradiomics_classes():
    """``(RadiomicsShape, RadiomicsFeatureExtractor)`` subclasses that take the mesh values from
    ``calculate_coefficients`` above instead of ``cShape.calculate_coefficients``; everything else (padding, the
    PCA eigenvalues, every feature formula, names, settings, the extractor's steps) is PyRadiomics' own. Nothing in
    the radiomics package is replaced: only these classes use the numpy mesh.

    The extractor's ``computeShape`` computes 3D ``shape`` with the subclass; an extraction that also asks for
    ``shape2D`` (or a 2D mask) goes through PyRadiomics' own ``computeShape`` unchanged."""
    import collections

    import SimpleITK as sitk
    from radiomics import featureextractor, imageoperations, shape

    class RadiomicsShape(shape.RadiomicsShape):
        __doc__ = shape.RadiomicsShape.__doc__

        def _initSegmentBasedCalculation(self):
            # PyRadiomics 3.1.4's RadiomicsShape._initSegmentBasedCalculation, with calculate_coefficients (numpy)
            self.pixelSpacing = np.array(self.inputImage.GetSpacing()[::-1])
            cpif = sitk.ConstantPadImageFilter()  # pad the mask with one 0 voxel on every side
            cpif.SetPadLowerBound([1, 1, 1])
            cpif.SetPadUpperBound([1, 1, 1])
            self.inputMask = cpif.Execute(self.inputMask)
            self.maskArray = (sitk.GetArrayFromImage(self.inputMask) == self.label)
            self.labelledVoxelCoordinates = np.where(self.maskArray != 0)
            self.SurfaceArea, self.Volume, self.diameters = calculate_coefficients(self.maskArray, self.pixelSpacing)
            Np = len(self.labelledVoxelCoordinates[0])
            coordinates = np.array(self.labelledVoxelCoordinates, dtype='int').transpose((1, 0))
            physicalCoordinates = coordinates * self.pixelSpacing[None, :]
            physicalCoordinates -= np.mean(physicalCoordinates, axis=0)
            physicalCoordinates /= np.sqrt(Np)
            covariance = np.dot(physicalCoordinates.T.copy(), physicalCoordinates)
            self.eigenValues = np.linalg.eigvals(covariance)
            machine_errors = np.bitwise_and(self.eigenValues < 0, self.eigenValues > -1e-10)
            if np.sum(machine_errors) > 0:
                self.logger.warning('Encountered %d eigenvalues < 0 and > -1e-10, rounding to 0',
                                    np.sum(machine_errors))
                self.eigenValues[machine_errors] = 0
            self.eigenValues.sort()

    class RadiomicsFeatureExtractor(featureextractor.RadiomicsFeatureExtractor):
        def computeShape(self, image, mask, boundingBox, **kwargs):
            enabled = self.enabledFeatures
            if "shape" not in enabled or "shape2D" in enabled or mask.GetDimension() != 3:
                return super().computeShape(image, mask, boundingBox, **kwargs)
            # PyRadiomics' computeShape for 3D shape only, with the subclass above
            out = collections.OrderedDict()
            croppedImage, croppedMask = imageoperations.cropToTumorMask(image, mask, boundingBox)
            fc = RadiomicsShape(croppedImage, croppedMask, **kwargs)
            if enabled["shape"] is not None:
                for feature in enabled["shape"]:
                    fc.enableFeatureByName(feature)
            for name, value in fc.execute().items():
                out["original_shape_%s" % name] = value
            return out

    return RadiomicsShape, RadiomicsFeatureExtractor
