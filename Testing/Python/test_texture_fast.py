"""texture_fast: PyRadiomics' grey-level run-length matrix (cMatrices.calculate_glrlm) in numpy, against the real C
extension and the real RadiomicsGLRLM class. The matrix holds counts: compared with == (same shape, dtype, values),
and the GLRLM features computed from it must be identical."""
from __future__ import annotations

import hashlib
import inspect

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import cMatrices, glrlm
from scipy import ndimage

from GliomaRadiogenomicsLib.texture_fast import GlrlmInNumpy, calculate_glrlm


def _masks(rng, shape):
    """Masks of every kind the C code treats specially: dense random, blobs, one voxel, one slice (out-of-plane angles
    with one voxel per line: zeroed), voxels on one line with gaps (two mask voxels on a line, none adjacent)."""
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


def _equal_to_c(image, mask, Ng, Nr, force2D=False, dim=0):
    try:
        ref = cMatrices.calculate_glrlm(image, mask, Ng, Nr, force2D, dim)
    except Exception as exc:  # the C code refuses some shapes (fewer than two dimensions longer than 1): so do we
        with pytest.raises(type(exc)):
            calculate_glrlm(image, mask, Ng, Nr, force2D, dim)
        return None
    got = calculate_glrlm(image, mask, Ng, Nr, force2D, dim)
    assert got[0].dtype == ref[0].dtype and got[0].shape == ref[0].shape
    assert np.array_equal(got[0], ref[0]), (image.shape, int(mask.sum()), force2D, dim)
    assert np.array_equal(got[1], ref[1])
    return ref[0]


def test_equals_the_c_matrix_on_random_images_masks_and_shapes():
    rng = np.random.default_rng(7)
    compared = zeroed = 0
    for trial in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 12, 3))
        Ng = int(rng.integers(1, 6))
        image = rng.integers(1, Ng + 1, shape).astype(np.int32)
        for mask in _masks(rng, shape):
            for force2D, dim in ((False, 0), (True, 0), (True, 1), (True, 2)):
                P = _equal_to_c(image, mask, Ng, max(shape), force2D, dim)
                if P is not None:
                    compared += 1
                    zeroed += int(mask.sum() > 1 and (P.sum(axis=(0, 1, 2)) == 0).any())
    assert compared > 800 and zeroed > 20  # the "no line with two mask voxels" rule was exercised


def test_equals_the_c_matrix_on_a_smooth_tumour_like_image():
    """Long runs (a smooth image in 64 grey levels) in an irregular blob, the case the extraction sees."""
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((40, 48, 44)), 3)
    image = (1 + 63 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.int32)
    mask = ndimage.binary_opening(ndimage.gaussian_filter(rng.random(image.shape), 4) > 0.5, iterations=2)
    P = _equal_to_c(image, mask, 64, max(image.shape))
    assert P is not None and P[0, :, 1:].sum() > P[0, :, 0].sum() / 10  # runs longer than one voxel are common


@pytest.mark.parametrize("weighting", [None, "no_weighting", "manhattan", "euclidean", "infinity"])
def test_glrlm_class_with_numpy_matrix_gives_pyradiomics_features(weighting):
    """RadiomicsGLRLM with the GlrlmInNumpy mixin vs RadiomicsGLRLM itself, every feature identical (anisotropic
    spacing, so that the weightings differ)."""
    rng = np.random.default_rng(11)
    a = ndimage.gaussian_filter(rng.random((18, 30, 26)), 2).astype(np.float32)
    m = np.zeros(a.shape, np.uint8)
    m[2:16, 4:27, 3:22] = 1
    m[6:10, 8:14, 8:12] = 0
    img, mimg = sitk.GetImageFromArray(a), sitk.GetImageFromArray(m)
    for im in (img, mimg):
        im.SetSpacing((0.9, 1.1, 3.0))
    kw = {"binCount": 32, "label": 1} if weighting is None else {"binCount": 32, "label": 1, "weightingNorm": weighting}

    class Ours(GlrlmInNumpy, glrlm.RadiomicsGLRLM):
        pass

    def run(cls):
        fc = cls(img, mimg, **kw)
        fc.enableAllFeatures()
        return fc.execute()
    ref, got = run(glrlm.RadiomicsGLRLM), run(Ours)
    assert list(got) == list(ref) and len(ref) == 16
    for k in ref:
        assert np.array_equal(np.asarray(got[k]), np.asarray(ref[k]), equal_nan=True), k


def test_the_copied_pyradiomics_method_is_the_installed_one():
    """GlrlmInNumpy copies PyRadiomics 3.1.4's RadiomicsGLRLM._calculateMatrix (with the numpy counts in place of the
    C call): a PyRadiomics whose method differs fails here instead of diverging quietly."""
    src = inspect.getsource(glrlm.RadiomicsGLRLM._calculateMatrix)
    assert hashlib.sha256(src.encode()).hexdigest() == \
        "c131bded89a7f11f1735f02d5ea49b2685ccc016038101e796d17b6b10c8c722", "radiomics.glrlm.RadiomicsGLRLM._calculateMatrix changed: update texture_fast's copy of it"
