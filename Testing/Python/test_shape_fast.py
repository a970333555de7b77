"""shape_fast: PyRadiomics' shape mesh (cShape.calculate_coefficients) in numpy, against the real C extension and the
real RadiomicsShape class. Expected and observed: bit-identical (the asserts allow 1e-9 relative for the class
features, as the issue asks, but the mesh values themselves are compared with ==)."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import cShape, featureextractor, shape
from scipy import ndimage

from GliomaRadiogenomicsLib import shape_fast
from GliomaRadiogenomicsLib.shape_fast import calculate_coefficients, pyradiomics_classes

SPACINGS = [(1.0, 1.0, 1.0), (3.0, 1.1, 0.9), (0.7, 0.7, 5.0)]  # (z, y, x)


def _mesh_c(mask, spacing):
    sa, vol, diam = cShape.calculate_coefficients(np.ascontiguousarray(mask, dtype=bool), np.asarray(spacing, float))
    return np.r_[sa, vol, diam]


def _mesh_ours(mask, spacing):
    sa, vol, diam = calculate_coefficients(mask, spacing)
    return np.r_[sa, vol, diam]


def _masks():
    """(name, mask) pairs, unpadded: random blobs of several sizes (some touch the box border), tiny masks,
    one-slice / one-row masks, a hollow shell, two separate blobs."""
    out = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        for size in (4, 9, 20, 30):
            noise = rng.random((size, size + 3, size + 1))
            out.append((f"blob{seed}-{size}", ndimage.gaussian_filter(noise, 1.0 + size / 12) > 0.5))
    for n in (1, 2, 3, 5):
        rng = np.random.default_rng(100 + n)
        m = np.zeros((3, 3, 3), bool)
        m.flat[rng.choice(27, n, replace=False)] = True
        out.append((f"tiny{n}", m))
    rng = np.random.default_rng(7)
    out.append(("one-slice", (ndimage.gaussian_filter(rng.random((1, 40, 37)), (0, 3, 3)) > 0.5)))
    out.append(("one-row", rng.random((1, 1, 30)) > 0.3))
    out.append(("one-voxel", np.ones((1, 1, 1), bool)))
    zz, yy, xx = np.mgrid[:30, :34, :32]
    r = np.sqrt(((zz - 15) / 14) ** 2 + ((yy - 17) / 16) ** 2 + ((xx - 16) / 15) ** 2)
    out.append(("shell", (r < 1) & (r > 0.7)))
    two = np.zeros((12, 40, 12), bool)
    two[2:6, 2:6, 2:6] = two[6:11, 30:38, 5:10] = True
    out.append(("two-blobs", two))
    return out


MASKS = _masks()


def test_lookup_tables_are_the_ones_compiled_into_pyradiomics():
    """Our triangle table and edge midpoints are byte for byte in the installed radiomics._cshape extension."""
    so = glob.glob(os.path.join(os.path.dirname(shape.__file__), "_cshape*"))
    assert so, "radiomics._cshape extension not found"
    data = open(so[0], "rb").read()
    assert data.count(shape_fast._TRI_TABLE.astype("<i4").tobytes()) == 1
    assert data.count(shape_fast._VERT_LIST.astype("<f8").tobytes()) == 1


@pytest.mark.parametrize("brute_max", [512, 8])  # 8: the cell pruning on (nearly) every point set
@pytest.mark.parametrize("spacing", SPACINGS, ids=["iso", "aniso", "thick"])
def test_mesh_is_bit_identical_to_cshape(spacing, brute_max, monkeypatch):
    monkeypatch.setattr(shape_fast, "_BRUTE_MAX", brute_max)
    for name, m in MASKS:
        for padded in (True, False):  # PyRadiomics pads; the border cases also unpadded (mask on the array border)
            mm = np.pad(m, 1) if padded else m
            ref, ours = _mesh_c(mm, spacing), _mesh_ours(mm, spacing)
            assert np.array_equal(ref, ours), (name, padded, ref, ours)


def _shape_features(cls, mask_arr, spacing_zyx):
    mask = sitk.GetImageFromArray(mask_arr.astype(np.uint8))
    mask.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image = sitk.Cast(mask, sitk.sitkFloat32)
    fc = cls(image, mask, label=1)
    fc.enableAllFeatures()
    return {k: float(v) for k, v in fc.execute().items()}


def _assert_features_equal(ref, ours, what):
    assert set(ref) == set(ours) and len(ref) >= 14, what
    for k, v in ref.items():
        if np.isnan(v):
            assert np.isnan(ours[k]), (what, k)
        else:
            assert ours[k] == pytest.approx(v, rel=1e-9, abs=1e-12), (what, k, v, ours[k])


@pytest.fixture(scope="module")
def demo_regions(small_demo_case):
    """The SYNTHETIC demo tumour's regions (WT, TC, ET, necrosis) on its native grid: realistic, non-convex masks."""
    lab = sitk.GetArrayFromImage(small_demo_case.label)
    spacing = np.array(small_demo_case.label.GetSpacing()[::-1])
    regions = {"WT": lab > 0, "TC": (lab == 1) | (lab == 3), "ET": lab == 3, "NCR": lab == 1}
    out = {}
    for name, m in regions.items():
        assert m.sum() > 100, name
        lo = np.argwhere(m).min(axis=0)
        hi = np.argwhere(m).max(axis=0) + 1
        out[name] = m[tuple(slice(a, b) for a, b in zip(lo, hi))]
    return out, spacing


def test_shape_class_features_equal_pyradiomics(demo_regions):
    """Every shape feature of our RadiomicsShape subclass = PyRadiomics' RadiomicsShape (C mesh)."""
    fast_cls = pyradiomics_classes()[0]
    regions, demo_spacing = demo_regions
    cases = [(n, m, sp) for n, m in MASKS[::3] for sp in SPACINGS[:2]]
    cases += [(f"demo-{n}", m, demo_spacing) for n, m in regions.items()]
    cases += [("demo-WT-aniso", regions["WT"], np.array([0.9, 1.1, 3.0]))]
    for name, m, sp in cases:
        _assert_features_equal(_shape_features(shape.RadiomicsShape, m, sp), _shape_features(fast_cls, m, sp), name)
    m = np.pad(regions["WT"], 1)
    assert np.array_equal(_mesh_c(m, demo_spacing), _mesh_ours(m, demo_spacing))


def test_extractor_with_fast_shape_equals_pyradiomics_execute(demo_regions):
    """The extractor subclass (our shape jobs' extractor) = PyRadiomics' execute(), shape only, same settings;
    with shape2D also enabled it falls back to PyRadiomics' own computeShape."""
    regions, spacing = demo_regions
    mask = sitk.GetImageFromArray(np.pad(regions["TC"], 3).astype(np.uint8))
    mask.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    image = sitk.Cast(mask, sitk.sitkFloat32)
    params = {"setting": {"label": 1}, "imageType": {"Original": {}}, "featureClass": {"shape": None}}
    fast = pyradiomics_classes()[1](params).execute(image, mask)
    ref = featureextractor.RadiomicsFeatureExtractor(params).execute(image, mask)
    strip = lambda r: {k: float(v) for k, v in r.items() if not k.startswith("diagnostics_")}  # noqa: E731
    _assert_features_equal(strip(ref), strip(fast), "extractor")
    assert any(k.endswith("Maximum3DDiameter") for k in strip(fast))
    some = {"setting": {"label": 1}, "imageType": {"Original": {}},
            "featureClass": {"shape": ["SurfaceArea", "Maximum2DDiameterRow"]}}
    assert strip(pyradiomics_classes()[1](some).execute(image, mask)) == strip(
        featureextractor.RadiomicsFeatureExtractor(some).execute(image, mask))


def test_extraction_with_shape2d_equals_pyradiomics():
    """shape + shape2D on a one-slice mask (force2D): the extractor subclass leaves shape2D to PyRadiomics' own
    computeShape; every value equals plain PyRadiomics."""
    from radiomics import featureextractor
    rng = np.random.default_rng(0)
    m = np.zeros((9, 20, 20), np.uint8)
    m[4, 5:15, 4:16] = 1
    m[4, 2:18, 8:10] = 1
    mask = sitk.GetImageFromArray(m)
    mask.SetSpacing((0.9, 1.1, 3.0))
    image = sitk.GetImageFromArray(rng.random(m.shape).astype(np.float32) * 100)
    image.CopyInformation(mask)
    params = {"setting": {"label": 1, "force2D": True, "force2Ddimension": 0}, "imageType": {"Original": {}},
              "featureClass": {"shape": None, "shape2D": None}}
    strip = lambda r: {k: float(v) for k, v in r.items() if not k.startswith("diagnostics_")}  # noqa: E731
    ours = strip(pyradiomics_classes()[1](params).execute(image, mask))
    assert sum("shape2D" in k for k in ours) == 9
    assert ours == strip(featureextractor.RadiomicsFeatureExtractor(params).execute(image, mask))


def test_the_copied_pyradiomics_method_is_the_installed_one():
    """shape_fast's RadiomicsShape copies PyRadiomics 3.1.4's _initSegmentBasedCalculation (with the numpy mesh in
    place of the C call): a PyRadiomics whose method differs fails here instead of diverging quietly."""
    import hashlib
    import inspect
    src = inspect.getsource(shape.RadiomicsShape._initSegmentBasedCalculation)
    assert hashlib.sha256(src.encode()).hexdigest() == \
        "69549231255f37a99ec002e2216dc0d74ae82dc4646282f2722f31c64c92ae58", \
        "radiomics.shape.RadiomicsShape._initSegmentBasedCalculation changed: update shape_fast's copy of it"
