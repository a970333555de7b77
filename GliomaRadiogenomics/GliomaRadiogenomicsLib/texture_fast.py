"""PyRadiomics' texture matrices in numpy: the same matrices as its C code (``radiomics.cMatrices``), less CPU.

PyRadiomics computes the GLCM, GLSZM, GLRLM, NGTDM and GLDM of an (image, mask) in C (``radiomics/src/cmatrices.c``),
one voxel and one neighbour at a time; for the wang2025 preset these five calls were ~40 % of the extraction's CPU.
Each matrix here is built from whole-array operations and is the same float64 array as the C function's, element for
element (Testing/Python/test_texture_fast.py compares them with == on random images, masks and shapes):

- GLCM, GLRLM, GLSZM, GLDM hold counts (integers: no rounding anywhere, any order of counting gives the same values);
- NGTDM holds, per grey level, a count and a sum of |grey level - mean of the neighbours in the mask|: the neighbour
  sums and counts are integers, the mean and the difference the same two double operations as in C, and the sum per
  grey level is accumulated voxel by voxel in the C loop's (raster) order by ``np.bincount``, which adds its weights
  sequentially: the same double sums.

Neighbours are the C code's: every offset with entries in {-1, 0, 1} (26 in 3D; 13 one-way for GLCM and GLRLM, in
the C extension's own order, read from it once per shape pattern), none along a dimension of size 1 or (``force2D``)
along the out-of-plane dimension; a neighbour counts only when it is inside the mask.

- GLCM: per angle, the pairs (voxel, voxel + offset) both in the mask, counted by grey-level pair (``bincount``).
- GLRLM: a run is a maximal sequence of mask voxels with the same grey level, consecutive along the angle's offset.
  The mask is padded by one background voxel and flattened: along an offset with flat step ``f`` (sign dropped: a run
  is the same set either way), a voxel's neighbour is the voxel ``f`` further (the padding keeps runs from wrapping
  around a border), and reshaping the flat array to rows of ``f`` puts every line in one column. Listed column by
  column, run starts and ends alternate (runs do not overlap): the k-th start and the k-th end are one run, length =
  position(end) - position(start) + 1. The C code's one-voxel rule is kept: an angle along which no line holds two
  mask voxels (a one-slice mask and an out-of-plane angle) gets its length-1 counts zeroed.
- GLSZM: zones are the 26-connected (8 in a one-voxel-thick image) sets of mask voxels with one grey level:
  ``skimage.measure.label`` (connected equal values) on the masked image, zone sizes by ``bincount``; the matrix is
  cut at the largest zone like the C function's.
- NGTDM and GLDM: per voxel, the neighbours in the mask (count, grey-level sum, and how many differ by <= alpha) by
  summing shifted arrays over the 26 offsets.

Anything else goes to PyRadiomics' C function unchanged: voxel-based extraction (kernel arguments), distances other
than exactly [1] (also [1, 1]: the C code builds angles per entry), 2D arrays, GLSZM with ``force2D``, a GLDM
``gldm_a`` that is not an int of moderate size. The feature classes keep PyRadiomics' own Python code:
``texture_classes()`` gives subclasses whose ``_calculateMatrix`` is PyRadiomics' own function object with the name
``cMatrices`` bound to this module's functions (``bound_to``), no copied source.
"""
from __future__ import annotations

import functools
import types

import numpy as np

__all__ = ["calculate_glcm", "calculate_glszm", "calculate_glrlm", "calculate_ngtdm", "calculate_gldm",
           "texture_classes", "angles"]


@functools.lru_cache(maxsize=None)
def _c_angles(pattern, force2D: bool, force2Ddimension: int) -> np.ndarray:
    from radiomics import cMatrices
    one = np.ones(pattern, np.int32)
    _, a = cMatrices.calculate_glcm(one, one.astype(bool), np.array([1]), 1, force2D, force2Ddimension)
    return np.asarray(a)


def angles(shape, force2D: bool = False, force2Ddimension: int = 0) -> np.ndarray:
    """The C extension's one-way angles at distance 1 (z, y, x offsets) for an image of this shape, in its order (a
    copy): none along a dimension of size 1; a shape the C code refuses (1 x 1 x 1) raises its error here too."""
    pattern = tuple(min(int(n), 3) for n in shape)
    return _c_angles(pattern, bool(force2D), int(force2Ddimension)).copy()


def _c(name):
    from radiomics import cMatrices
    return getattr(cMatrices, name)


def _numpy_path(image, mask, distances=(1,)) -> bool:
    """The cases computed here: 3D arrays of one shape and distances exactly [1] (the C code builds its angles once
    per distance entry, so [1, 1] gives twice the angles). Everything else goes to the C function unchanged."""
    d = np.asarray(distances)
    return (d.shape == (1,) and int(d[0]) == 1 and np.ndim(image) == 3 and np.shape(image) == np.shape(mask))


def _prepared(image, mask, Ng):
    """(image as int64, mask as bool) after the check the C code makes (grey levels 1..Ng inside the mask); the
    shapes were checked by ``_numpy_path``."""
    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.any():
        levels = image[mask]
        if levels.min() <= 0 or levels.max() > Ng:
            raise ValueError(f"grey levels in the mask must lie in [1, {Ng}]")
    return image.astype(np.int64, copy=False), mask


def _shifted(offset):
    """Slices (here, there) such that array[here] and array[there] are the voxels p and p + offset."""
    here, there = [], []
    for o in offset:
        o = int(o)
        if o > 0:
            here.append(slice(None, -o))
            there.append(slice(o, None))
        elif o < 0:
            here.append(slice(-o, None))
            there.append(slice(None, o))
        else:
            here.append(slice(None))
            there.append(slice(None))
    return tuple(here), tuple(there)


def calculate_glcm(image, mask, distances, Ng, force2D=False, force2Ddimension=0, *voxel_based):
    """``cMatrices.calculate_glcm``: ``(P, angles)``, P[0, i - 1, j - 1, a] = pairs (p, p + angle a) in the mask
    with grey levels i, j."""
    if voxel_based or not _numpy_path(image, mask, distances):
        return _c("calculate_glcm")(image, mask, distances, Ng, force2D, force2Ddimension, *voxel_based)
    Ng = int(Ng)
    image, mask = _prepared(image, mask, Ng)
    angle_list = angles(mask.shape, force2D, force2Ddimension)
    P = np.zeros((1, Ng, Ng, len(angle_list)), np.float64)
    g = np.where(mask, image - 1, -1).astype(np.int32)
    for a, offset in enumerate(angle_list):
        here, there = _shifted(offset)
        gi, gj = g[here], g[there]
        both = (gi >= 0) & (gj >= 0)
        P[0, :, :, a] = np.bincount(gi[both] * Ng + gj[both], minlength=Ng * Ng).reshape(Ng, Ng)
    return P, angle_list


def calculate_ngtdm(image, mask, distances, Ng, force2D=False, force2Ddimension=0, *voxel_based):
    """``cMatrices.calculate_ngtdm``: P[0, i - 1] = (number of mask voxels of grey level i, sum of their |i - mean
    grey level of their neighbours in the mask| (0 without any), i)."""
    if voxel_based or not _numpy_path(image, mask, distances):
        return _c("calculate_ngtdm")(image, mask, distances, Ng, force2D, force2Ddimension, *voxel_based)
    Ng = int(Ng)
    image, mask = _prepared(image, mask, Ng)
    g = np.where(mask, image, 0).astype(np.int32)
    m = mask.astype(np.uint8)
    total = np.zeros(mask.shape, np.int32)   # at most 26 x Ng
    count = np.zeros(mask.shape, np.uint8)
    for offset in angles(mask.shape, force2D, force2Ddimension):  # each neighbour pair once, both ways
        here, there = _shifted(offset)
        total[here] += g[there]
        total[there] += g[here]
        count[here] += m[there]
        count[there] += m[here]
    gm, sm, cm = image[mask], total[mask].astype(np.float64), count[mask].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(gm.astype(np.float64) - sm / cm)
    diff[cm == 0] = 0.0
    P = np.zeros((1, Ng, 3), np.float64)
    P[0, :, 0] = np.bincount(gm - 1, minlength=Ng)
    P[0, :, 1] = np.bincount(gm - 1, weights=diff, minlength=Ng)   # sequential sums, raster order, as in C
    P[0, :, 2] = np.arange(1, Ng + 1)
    return P


def calculate_gldm(image, mask, distances, Ng, alpha, force2D=False, force2Ddimension=0, *voxel_based):
    """``cMatrices.calculate_gldm``: P[0, i - 1, k] = mask voxels of grey level i with k neighbours in the mask whose
    grey level differs by at most alpha (width 2 x neighbours + 1, as the C function allocates)."""
    if (voxel_based or not _numpy_path(image, mask, distances) or not isinstance(alpha, (int, np.integer))
            or abs(int(alpha)) > 2 ** 20):   # the C code's int argument (a float raises there); no int32 overflow here
        return _c("calculate_gldm")(image, mask, distances, Ng, alpha, force2D, force2Ddimension, *voxel_based)
    Ng = int(Ng)
    image, mask = _prepared(image, mask, Ng)
    one_way = angles(mask.shape, force2D, force2Ddimension)
    width = 4 * len(one_way) + 1   # the C function's 2 x (neighbours, both ways) + 1
    g = np.where(mask, image, -(2 * Ng + int(abs(alpha)) + 2)).astype(np.int32)  # outside: never within alpha
    dep = np.zeros(mask.shape, np.uint8)
    for offset in one_way:   # each neighbour pair once, counted for both voxels
        here, there = _shifted(offset)
        close = np.abs(g[here] - g[there]) <= alpha
        close &= mask[here]
        dep[here] += close
        dep[there] += close
    P = np.zeros((1, Ng, width), np.float64)
    P[0] = np.bincount((image[mask] - 1) * width + dep[mask], minlength=Ng * width).reshape(Ng, width)
    return P


def calculate_glszm(image, mask, Ng, Ns, force2D=False, force2Ddimension=0, *voxel_based):
    """``cMatrices.calculate_glszm``: P[0, i - 1, s - 1] = zones (connected mask voxels of one grey level, through
    the 26 neighbours) of grey level i and s voxels, cut at the largest zone."""
    if voxel_based or force2D or not _numpy_path(image, mask):
        return _c("calculate_glszm")(image, mask, Ng, Ns, force2D, force2Ddimension, *voxel_based)
    from skimage.measure import label
    Ng = int(Ng)
    image, mask = _prepared(image, mask, Ng)
    angles(mask.shape)  # the C code refuses the same shapes
    zones, n = label(np.where(mask, image, 0), background=0, connectivity=3, return_num=True)
    if n == 0:
        return _c("calculate_glszm")(image, mask, Ng, Ns, force2D, force2Ddimension)
    flat = zones.ravel()
    inside = flat > 0
    size = np.bincount(flat[inside], minlength=n + 1)[1:]
    level = np.zeros(n + 1, np.int64)
    level[flat[inside]] = image.ravel()[inside]
    level = level[1:]
    biggest = int(size.max())
    P = np.zeros((1, Ng, biggest), np.float64)
    P[0] = np.bincount((level - 1) * biggest + size - 1, minlength=Ng * biggest).reshape(Ng, biggest)
    return P


def _one_voxel_lines(mask: np.ndarray, offset) -> bool:
    """True when no line along ``offset`` holds two mask voxels (then the C code zeroes the angle's counts)."""
    pts = np.nonzero(mask)
    shape = mask.shape
    moving = [d for d in range(3) if offset[d] != 0]
    steps = [pts[d] if offset[d] > 0 else shape[d] - 1 - pts[d] for d in moving]
    k = functools.reduce(np.minimum, steps)
    entry = np.ravel_multi_index(tuple(pts[d] - k * offset[d] for d in range(3)), shape)
    return np.unique(entry).size == entry.size


def calculate_glrlm(image, mask, Ng, Nr, force2D=False, force2Ddimension=0, *voxel_based):
    """``cMatrices.calculate_glrlm``: ``(P, angles)``, P[0, i - 1, j - 1, a] = runs of grey level i and length j
    along angle a (the method: module docstring)."""
    if voxel_based or not _numpy_path(image, mask):
        return _c("calculate_glrlm")(image, mask, Ng, Nr, force2D, force2Ddimension, *voxel_based)
    Ng, Nr = int(Ng), int(Nr)
    image, mask = _prepared(image, mask, Ng)
    angle_list = angles(mask.shape, force2D, force2Ddimension)
    P = np.zeros((1, Ng, Nr, len(angle_list)), np.float64)
    if not mask.any():
        return P, angle_list
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
        if not (m[f:] & m[:-f]).any() and _one_voxel_lines(mask, offset):   # no two adjacent: check the lines
            P[0, :, 0, a] = 0   # the C code's "multiElement" rule: no line with two mask voxels
    return P, angle_list


def bound_to(func, **names):
    """A copy of the function ``func`` whose global names ``names`` resolve to the given objects (its own code object,
    defaults and closure; the module it comes from is not changed)."""
    g = dict(func.__globals__)
    g.update(names)
    f = types.FunctionType(func.__code__, g, func.__name__, func.__defaults__, func.__closure__)
    f.__kwdefaults__, f.__doc__, f.__qualname__ = func.__kwdefaults__, func.__doc__, func.__qualname__
    return f


_NUMPY_CMATRICES = types.SimpleNamespace(calculate_glcm=calculate_glcm, calculate_glszm=calculate_glszm,
                                         calculate_glrlm=calculate_glrlm, calculate_ngtdm=calculate_ngtdm,
                                         calculate_gldm=calculate_gldm)


@functools.lru_cache(maxsize=None)
def texture_classes() -> dict:
    """{PyRadiomics texture class: its subclass with the matrix computed here} for GLCM, GLSZM, GLRLM, NGTDM, GLDM."""
    from radiomics import glcm, gldm, glrlm, glszm, ngtdm
    out = {}
    for cls in (glcm.RadiomicsGLCM, glszm.RadiomicsGLSZM, glrlm.RadiomicsGLRLM, ngtdm.RadiomicsNGTDM,
                gldm.RadiomicsGLDM):
        method = bound_to(cls._calculateMatrix, cMatrices=_NUMPY_CMATRICES)
        out[cls] = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__doc__": cls.__doc__,
                                               "_calculateMatrix": method})
    return out
