import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.regions import (REGION_LABELS, dice_per_region, region_mask, region_volumes_ml)
from GliomaRadiogenomicsLib.intensity import robust_z
from GliomaRadiogenomicsLib.segment import HyperintensityBackend, get_backend


def test_region_algebra():
    lab = np.array([0, 1, 2, 3, 2, 3], np.uint8)
    assert region_mask(lab, "WT").tolist() == [False, True, True, True, True, True]
    assert region_mask(lab, "TC").tolist() == [False, True, False, True, False, True]
    assert region_mask(lab, "NE").sum() == 2 and region_mask(lab, "CE").sum() == 2
    assert set(REGION_LABELS) >= {"WT", "TC", "ET", "NCR", "ED", "CE", "NE", "edema", "tumor", "overall"}
    img = sitk.GetImageFromArray(lab.reshape(1, 2, 3))
    img.SetSpacing((2.0, 2.0, 2.0))
    v = region_volumes_ml(img)
    assert v["WT"] == pytest.approx(5 * 8 / 1000) and v["NCR"] == pytest.approx(8 / 1000)
    with pytest.raises(ValueError):
        region_mask(lab, "XYZ")


def test_robust_z_ignores_outliers():
    a = np.concatenate([np.random.default_rng(0).normal(10, 1, 10000), np.full(2000, 100.0)])
    z = robust_z(a, np.ones_like(a, bool))
    assert abs(np.median(z[:10000])) < 0.35 and z[-1] > 50  # a plain z-score would give ~ -0.4 and ~ 2.3


def test_weight_free_backend_on_synthetic_demo(small_pre, small_demo_case):
    lab = get_backend("hyperintensity").segment(small_pre)  # the default (auto) is the FLAIR U-Net when installed
    arr = sitk.GetArrayFromImage(lab)
    assert set(np.unique(arr)) <= {0, 1, 2, 3}
    truth = sitk.GetArrayFromImage(sitk.Resample(small_demo_case.label, small_pre.grid, sitk.Transform(),
                                                 sitk.sitkNearestNeighbor))
    d = dice_per_region(arr, truth)
    assert d["WT"] > 0.75, d
    assert d["ET"] > 0.4, d
    brain = sitk.GetArrayFromImage(small_pre.brain_mask) > 0
    assert not (arr[~brain] > 0).any()


def test_weight_free_backend_finds_nothing_in_normal_brain(small_pre):
    from GliomaRadiogenomicsLib import synthetic as S
    from GliomaRadiogenomicsLib.preprocess import PreprocessedCase
    an = S.load_anatomy(2)
    spec = S.TumorSpec(radius_mm=0.1, necrosis_fraction=0, enhancing_thickness=0, edema_factor=1.0, seed=3)
    truth, _ = S.simulate_truth(spec, an)
    pre = PreprocessedCase("normal", {}, None, "flair", {})
    for s in S.SEQUENCES:
        img = sitk.GetImageFromArray((truth[s] * 1000 + np.random.default_rng(1).normal(0, 20, truth[s].shape)).astype(np.float32))
        img.CopyInformation(an.reference)
        pre.images[s] = img
    m = sitk.GetImageFromArray(an.icv.astype(np.uint8))
    m.CopyInformation(an.reference)
    pre.brain_mask = m
    arr = sitk.GetArrayFromImage(HyperintensityBackend().segment(pre))
    vox_ml = 8 / 1000
    assert (arr > 0).sum() * vox_ml < 5.0  # at most a few mL of false positives in a tumor-free brain


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown segmentation backend"):
        get_backend("nope")
