"""PyRadiomics' texture matrices in numpy: the same counts as its C code (``cMatrices``), faster.

The GLRLM is a table of counts: ``P[0, i - 1, j - 1, a]`` is the number of runs of grey level ``i`` and length ``j``
along angle ``a``. A run, as PyRadiomics' C code (``radiomics/src/cmatrices.c``) walks it, is a maximal sequence of
mask voxels with the same grey level, consecutive along the angle's offset (a voxel outside the mask ends a run).
The C code walks every line of the mask's bounding box voxel by voxel for each of the 13 angles (one process, ~0.5 s
for a 150 mL tumour box; the largest single cost of the wang2025 extraction). Here, per angle, with whole-array
operations: a mask voxel *continues* a run when the voxel one offset back is in the mask with the same grey level;
run starts are the mask voxels that do not continue one, run ends the mask voxels that the next voxel does not
continue. Each start and end gets its line (the point where its line enters the array) and its step along the line;
sorted by (line, step), the k-th start and the k-th end belong to the same run (runs on a line do not overlap), so
run lengths are ``step_end - step_start + 1``, counted per grey level with ``bincount``.

Two details of the C code are kept: an angle along which no line holds two mask voxels (a one-slice mask and an
out-of-plane angle) gets its length-1 counts zeroed (PyRadiomics then drops the empty angle), and the angles and
their order are the C extension's own (read from it once on a 3-voxel call; 13 in 3D, 4 with ``force2D``). The
result is the same float64 array, element for element (counts are integers: no rounding is involved), so every
GLRLM feature computed from it is identical (Testing/Python/test_texture_fast.py against the C function).
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["calculate_glrlm", "angles"]


@functools.lru_cache(maxsize=None)
def _c_angles(pattern, force2D: bool, force2Ddimension: int) -> np.ndarray:
    from radiomics import cMatrices
    one = np.ones(pattern, np.int32)
    _, a = cMatrices.calculate_glrlm(one, one.astype(bool), 1, max(pattern), force2D, force2Ddimension)
    return np.asarray(a)


def angles(shape, force2D: bool = False, force2Ddimension: int = 0) -> np.ndarray:
    """The C extension's angles (z, y, x offsets) for an image of this shape, in its order (a copy): it leaves out
    the offsets along dimensions of size 1 (and raises, as here, when fewer than two dimensions are longer)."""
    pattern = tuple(min(int(n), 3) for n in shape)
    return _c_angles(pattern, bool(force2D), int(force2Ddimension)).copy()


def _one_voxel_lines(mask: np.ndarray, offset) -> bool:
    """True when no line along ``offset`` holds two mask voxels (then the C code zeroes the angle's counts)."""
    pts = np.nonzero(mask)
    shape = mask.shape
    moving = [d for d in range(3) if offset[d] != 0]
    steps = [pts[d] if offset[d] > 0 else shape[d] - 1 - pts[d] for d in moving]
    k = functools.reduce(np.minimum, steps)
    entry = np.ravel_multi_index(tuple(pts[d] - k * offset[d] for d in range(3)), shape)
    return np.unique(entry).size == entry.size


def calculate_glrlm(image: np.ndarray, mask: np.ndarray, Ng: int, Nr: int, force2D: bool = False,
                    force2Ddimension: int = 0):
    """``radiomics.cMatrices.calculate_glrlm(image, mask, Ng, Nr, force2D, force2Ddimension)`` (segment-based):
    ``(P, angles)`` with ``P`` float64 of shape (1, Ng, Nr, Na), the same values.

    The mask is padded with one voxel of background on every side and flattened: along an offset with flat step
    ``f`` (its sign dropped: a run is the same set of voxels in either direction), a mask voxel's neighbour is the
    voxel ``f`` further (the padding keeps runs from wrapping around a border), and reshaping the flat array to rows
    of ``f`` puts every line in one column. Listed column by column, run starts and run ends alternate (runs do not
    overlap), so the k-th start and the k-th end are one run: length = position(end) - position(start) + 1."""
    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool, copy=False)
    if image.ndim != 3 or image.shape != mask.shape:
        raise ValueError(f"calculate_glrlm: image {image.shape} and mask {mask.shape} must be equal 3D shapes")
    angle_list = angles(mask.shape, force2D, force2Ddimension)
    Ng, Nr = int(Ng), int(Nr)
    P = np.zeros((1, Ng, Nr, len(angle_list)), np.float64)
    if not mask.any():
        return P, angle_list
    levels = image[mask]
    if levels.min() <= 0 or levels.max() > Ng:
        raise ValueError(f"calculate_glrlm: grey levels in the mask must lie in [1, {Ng}]")
    padded = np.pad(mask, 1)
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
    m = padded.ravel()
    g = np.zeros(padded.shape, np.uint8 if Ng < 256 else np.uint16 if Ng < 65536 else np.int64)
    g[1:-1, 1:-1, 1:-1] = np.where(mask, image, 0)
    g = g.ravel()
    n = m.size
    for a, offset in enumerate(angle_list):
        f = abs(int(np.dot(offset, strides)))
        rows = -(-n // f)
        same = np.zeros(n + f, bool)                     # voxel i continues the run of voxel i - f
        same[f:n] = m[f:] & m[:-f] & (g[f:] == g[:-f])
        start = np.zeros(rows * f, bool)
        start[:n] = m & ~same[:n]
        end = np.zeros(rows * f, bool)
        end[:n] = m & ~same[f:]
        # column-major positions (column = line, row = step): the k-th start and the k-th end are one run
        s_pos = np.flatnonzero(start.reshape(rows, f).T)
        e_pos = np.flatnonzero(end.reshape(rows, f).T)
        length = e_pos - s_pos + 1
        g_cols = np.zeros(rows * f, g.dtype)
        g_cols[:n] = g
        level = g_cols.reshape(rows, f).T.ravel()[s_pos].astype(np.int64)
        if length.max() > Nr:
            raise ValueError(f"calculate_glrlm: a run of {int(length.max())} voxels is longer than Nr = {Nr}")
        P[0, :, :, a] = np.bincount((level - 1) * Nr + (length - 1), minlength=Ng * Nr).reshape(Ng, Nr)
        if not same.any() and not (m[f:] & m[:-f]).any() and _one_voxel_lines(mask, offset):
            P[0, :, 0, a] = 0   # the C code's "multiElement" rule: no line with two mask voxels
    return P, angle_list


class GlrlmInNumpy:
    """Mixin for ``radiomics.glrlm.RadiomicsGLRLM``: segment-based matrices from ``calculate_glrlm`` above (voxel-based
    extraction keeps PyRadiomics' C code). ``_calculateMatrix`` is PyRadiomics 3.1.4's, with the C call replaced
    (Testing/Python/test_texture_fast.py guards that the installed PyRadiomics method is still that version)."""

    def _calculateMatrix(self, voxelCoordinates=None):
        if self.voxelBased:
            return super()._calculateMatrix(voxelCoordinates)
        Ng = self.coefficients['Ng']
        Nr = np.max(self.imageArray.shape)
        P_glrlm, angle_list = calculate_glrlm(self.imageArray, self.maskArray, Ng, Nr,
                                              self.settings.get('force2D', False),
                                              self.settings.get('force2Ddimension', 0))
        # Delete rows that specify gray levels not present in the ROI
        NgVector = range(1, Ng + 1)
        GrayLevels = self.coefficients['grayLevels']
        emptyGrayLevels = np.array(list(set(NgVector) - set(GrayLevels)), dtype=int)
        P_glrlm = np.delete(P_glrlm, emptyGrayLevels - 1, 1)
        if self.weightingNorm is not None:
            pixelSpacing = self.inputImage.GetSpacing()[::-1]
            weights = np.empty(len(angle_list))
            for a_idx, a in enumerate(angle_list):
                if self.weightingNorm == 'infinity':
                    weights[a_idx] = max(np.abs(a) * pixelSpacing)
                elif self.weightingNorm == 'euclidean':
                    weights[a_idx] = np.sqrt(np.sum((np.abs(a) * pixelSpacing) ** 2))
                elif self.weightingNorm == 'manhattan':
                    weights[a_idx] = np.sum(np.abs(a) * pixelSpacing)
                elif self.weightingNorm == 'no_weighting':
                    weights[a_idx] = 1
                else:
                    self.logger.warning('weigthing norm "%s" is unknown, weighting factor is set to 1',
                                        self.weightingNorm)
                    weights[a_idx] = 1
            P_glrlm = np.sum(P_glrlm * weights[None, None, None, :], 3, keepdims=True)
        Nr = np.sum(P_glrlm, (1, 2))
        # Delete empty angles if no weighting is applied
        if P_glrlm.shape[3] > 1:
            emptyAngles = np.where(np.sum(Nr, 0) == 0)
            if len(emptyAngles[0]) > 0:
                P_glrlm = np.delete(P_glrlm, emptyAngles, 3)
                Nr = np.delete(Nr, emptyAngles, 1)
        Nr[Nr == 0] = np.nan
        self.coefficients['Nr'] = Nr
        return P_glrlm
