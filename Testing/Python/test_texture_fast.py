"""texture_fast: PyRadiomics' texture matrices (GLCM, GLSZM, GLRLM, NGTDM, GLDM; radiomics.cMatrices) in numpy, against
the real C extension and the real feature classes. Matrices are compared with == (same shape, dtype and values: the
counts are integers and the NGTDM sums are accumulated in the C code's order), features for identity."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import cMatrices, glcm, gldm, glrlm, glszm, ngtdm
from scipy import ndimage

from GliomaRadiogenomicsLib import texture_fast as T

ONE = np.array([1])
# (name, arguments after image and mask, without force2D / force2Ddimension)
CALLS = {
    "calculate_glcm": lambda Ng, mask: (ONE, Ng),
    "calculate_glszm": lambda Ng, mask: (Ng, int(mask.sum())),
    "calculate_glrlm": lambda Ng, mask: (Ng, int(max(mask.shape))),
    "calculate_ngtdm": lambda Ng, mask: (ONE, Ng),
    "calculate_gldm": lambda Ng, mask: (ONE, Ng, int(np.random.default_rng(int(mask.sum())).choice([0, 1, 3, 10, 100]))),
}  # gldm_a: 0 (PyRadiomics' default) to far above Ng (every neighbour in the mask is "dependent")


def _masks(rng, shape):
    """Masks of every kind the C code treats specially: dense random, blobs, one voxel, one slice (out-of-plane angles
    with one voxel per line), voxels on one line with gaps (two mask voxels on a line, none adjacent)."""
    yield rng.random(shape) < rng.random()
    yield ndimage.binary_dilation(rng.random(shape) < 0.05, iterations=int(rng.integers(0, 3)))
    one = np.zeros(shape, bool)
    one[tuple(int(rng.integers(0, s)) for s in shape)] = True
    yield one
    d = int(rng.integers(0, 3))
    sl = [slice(None)] * 3
    sl[d] = int(rng.integers(0, shape[d]))
    slab = np.zeros(shape, bool)
    slab[tuple(sl)] = rng.random(slab[tuple(sl)].shape) < 0.5
    yield slab
    gaps = np.zeros(shape, bool)
    gaps[0, 0, ::2] = True
    yield gaps


def _same_as_c(name, image, mask, args, force2D=False, dim=0):
    try:
        ref = getattr(cMatrices, name)(image, mask, *args, force2D, dim)
    except Exception as exc:  # the C code refuses some shapes (fewer than two dimensions longer than 1): so do we
        with pytest.raises(type(exc)):
            getattr(T, name)(image, mask, *args, force2D, dim)
        return None
    got = getattr(T, name)(image, mask.copy(), *args, force2D, dim)
    ref_p, got_p = (ref[0], got[0]) if isinstance(ref, tuple) else (ref, got)
    assert got_p.dtype == ref_p.dtype and got_p.shape == ref_p.shape, (name, image.shape, got_p.shape, ref_p.shape)
    assert np.array_equal(got_p, ref_p), (name, image.shape, int(mask.sum()), force2D, dim)
    if isinstance(ref, tuple):
        assert np.array_equal(got[1], ref[1])
    return ref_p


@pytest.mark.parametrize("name", sorted(CALLS))
def test_equals_the_c_matrix_on_random_images_masks_and_shapes(name):
    rng = np.random.default_rng(7)
    compared = zeroed = 0
    for trial in range(40):
        shape = tuple(int(s) for s in rng.integers(1, 11, 3))
        Ng = int(rng.integers(1, 6))
        image = rng.integers(1, Ng + 1, shape).astype(np.int32)
        for mask in _masks(rng, shape):
            for force2D, dim in ((False, 0), (True, 0), (True, 1), (True, 2)):
                P = _same_as_c(name, image, mask, CALLS[name](Ng, mask), force2D, dim)
                if P is not None:
                    compared += 1
                    if name == "calculate_glrlm":
                        zeroed += int(mask.sum() > 1 and (P.sum(axis=(0, 1, 2)) == 0).any())
    assert compared > 500
    if name == "calculate_glrlm":
        assert zeroed > 20  # the C code's "no line with two mask voxels" rule was exercised


@pytest.mark.parametrize("Ng", [64, 300])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_equals_the_c_matrix_on_a_smooth_tumour_like_image(name, Ng):
    """Long runs and large zones (a smooth image in 64 or 300 grey levels: more than a byte holds) in an irregular
    blob, what the extraction sees."""
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((40, 48, 44)), 3)
    image = (1 + (Ng - 1) * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.int32)
    mask = ndimage.binary_opening(ndimage.gaussian_filter(rng.random(image.shape), 4) > 0.5, iterations=2)
    P = _same_as_c(name, image, mask, CALLS[name](Ng, mask))
    assert P is not None and P.sum() > 0
    if name == "calculate_glrlm" and Ng == 64:
        assert P[0, :, 1:].sum() > P[0, :, 0].sum() / 10  # runs longer than one voxel are common


def test_glrlm_with_grey_levels_beyond_two_bytes():
    """Ng > 65535 (a fixed bin width on raw intensities can give many levels): runs of levels that differ only above
    the second byte are different runs."""
    image = np.full((6, 8, 10), 70000, np.int32)
    image[:, :, 5:] = 70000 - 65536   # the same low two bytes
    image[2, 3, :] = 66000
    mask = np.ones(image.shape, bool)
    P = _same_as_c("calculate_glrlm", image, mask, (70000, 10))
    assert P[0, 70000 - 1].sum() > 0 and P[0, 70000 - 65536 - 1].sum() > 0


def test_other_distances_and_voxel_based_calls_go_to_the_c_code():
    """Distances other than [1] and kernel (voxel-based) arguments are PyRadiomics' C code's own results."""
    rng = np.random.default_rng(1)
    image = rng.integers(1, 5, (6, 7, 8)).astype(np.int32)
    mask = rng.random(image.shape) < 0.6
    for dist in (np.array([2]), np.array([1, 2]), np.array([1, 1])):   # [1, 1]: the C code has 26 GLCM angles then
        got, ref = T.calculate_glcm(image, mask, dist, 4, False, 0), cMatrices.calculate_glcm(image, mask, dist, 4,
                                                                                              False, 0)
        assert np.array_equal(got[0], ref[0]) and got[0].shape[3] > 13
        assert np.array_equal(T.calculate_ngtdm(image, mask, dist, 4, False, 0),
                              cMatrices.calculate_ngtdm(image, mask, dist, 4, False, 0))
        got = T.calculate_gldm(image, mask, dist, 4, 0, False, 0)
        assert np.array_equal(got, cMatrices.calculate_gldm(image, mask, dist, 4, 0, False, 0)) and got.shape[2] > 53
    image2d, mask2d = image[0], mask[0]   # 2D arrays (a 2D image): the C code's own
    for name, args in CALLS.items():
        got, ref = getattr(T, name)(image2d, mask2d, *args(4, mask2d), False, 0), \
            getattr(cMatrices, name)(image2d, mask2d, *args(4, mask2d), False, 0)
        assert np.array_equal(got[0] if isinstance(got, tuple) else got, ref[0] if isinstance(ref, tuple) else ref)
    with pytest.raises(TypeError):   # the C code's int argument
        T.calculate_gldm(image, mask, ONE, 4, 0.5, False, 0)
    coords = np.array(np.nonzero(mask))[:, :5]
    got = T.calculate_gldm(image, mask, ONE, 4, 0, False, 0, 1, coords)
    assert np.array_equal(got, cMatrices.calculate_gldm(image, mask, ONE, 4, 0, False, 0, 1, coords))
    assert got.shape[0] == 5


CLASSES = [(glcm.RadiomicsGLCM, 24), (glszm.RadiomicsGLSZM, 16), (glrlm.RadiomicsGLRLM, 16),
           (ngtdm.RadiomicsNGTDM, 5), (gldm.RadiomicsGLDM, 14)]


@pytest.mark.parametrize("cls,n", CLASSES)
@pytest.mark.parametrize("settings", [{}, {"weightingNorm": "manhattan"}, {"weightingNorm": "infinity"},
                                      {"force2D": True, "force2Ddimension": 0}, {"force2D": True, "force2Ddimension": 2},
                                      {"gldm_a": 2, "symmetricalGLCM": False}])
def test_feature_classes_with_numpy_matrices_give_pyradiomics_features(cls, n, settings):
    """texture_classes()[cls] (PyRadiomics' own _calculateMatrix with the numpy matrices) vs the class itself: every
    feature identical, anisotropic spacing (the weightings differ), 2D and other settings."""
    rng = np.random.default_rng(11)
    a = ndimage.gaussian_filter(rng.random((18, 30, 26)), 2).astype(np.float32)
    m = np.zeros(a.shape, np.uint8)
    m[2:16, 4:27, 3:22] = 1
    m[6:10, 8:14, 8:12] = 0
    img, mimg = sitk.GetImageFromArray(a), sitk.GetImageFromArray(m)
    for im in (img, mimg):
        im.SetSpacing((0.9, 1.1, 3.0))
    kw = {"binCount": 32, "label": 1, **settings}

    def run(c):
        fc = c(img, mimg, **kw)
        fc.enableAllFeatures()
        return fc.execute()
    ours = T.texture_classes()[cls]
    assert ours is not cls and issubclass(ours, cls)
    assert ours._calculateMatrix.__code__ is cls._calculateMatrix.__code__  # PyRadiomics' own code, rebound
    ref, got = run(cls), run(ours)
    assert list(got) == list(ref) and len(ref) >= n
    for k in ref:
        assert np.array_equal(np.asarray(got[k]), np.asarray(ref[k]), equal_nan=True), k


def test_the_module_of_the_pyradiomics_class_keeps_the_c_code():
    """Binding the numpy functions into our subclasses' methods leaves PyRadiomics itself (its modules' cMatrices,
    the classes' methods) untouched: plain PyRadiomics, our reference in tests and benchmarks, stays plain."""
    T.texture_classes()
    for mod in (glcm, glszm, glrlm, ngtdm, gldm):
        assert mod.cMatrices is cMatrices
    assert glrlm.RadiomicsGLRLM._calculateMatrix.__globals__["cMatrices"] is cMatrices
