import numpy as np
import SimpleITK as sitk
from sklearn.metrics import roc_auc_score

from GliomaRadiogenomicsLib import synthetic as S


def test_demo_case_is_deterministic_and_has_all_labels(small_demo_case):
    again = S.make_demo_case(downsample=2)
    for s in S.SEQUENCES:
        assert np.array_equal(sitk.GetArrayFromImage(again.images[s]), sitk.GetArrayFromImage(small_demo_case.images[s]))
    lab = sitk.GetArrayFromImage(small_demo_case.label)
    assert set(np.unique(lab)) == {0, 1, 2, 3}


def test_native_grids_are_anisotropic_and_differ(small_demo_case):
    sp = {s: small_demo_case.images[s].GetSpacing() for s in S.SEQUENCES}
    assert sp["flair"][2] > sp["flair"][0]  # thick slices
    assert sp["t2"][2] >= 4.0
    assert len({small_demo_case.images[s].GetSize() for s in S.SEQUENCES}) > 1
    assert small_demo_case.images["t1"].GetPixelID() == sitk.sitkInt16


def test_relative_contrasts_are_plausible():
    an = S.load_anatomy(2)
    truth, label = S.simulate_truth(S.DEMO_SPEC, an)
    wm = (an.wm > 0.9) & (label == 0)
    gm = (an.gm > 0.9) & (label == 0)
    csf = (an.csf > 0.9) & (label == 0)
    m = lambda seq, region: float(np.median(truth[seq][region]))  # noqa: E731
    assert m("t1", wm) > m("t1", gm) > m("t1", csf)
    assert m("t2", csf) > m("t2", gm) > m("t2", wm)
    assert m("flair", label == 2) > m("flair", wm) > m("flair", csf)
    assert m("t1c", label == 3) > 1.3 * m("t1", label == 3)  # enhancement
    assert m("t1c", label == 1) < m("t1c", wm)  # necrosis dark on T1c


def test_misregistration_is_simulated():
    caught = []
    orig = S._rigid

    def spy(*a, **k):
        t = orig(*a, **k)
        caught.append(t)
        return t
    S._rigid = spy
    try:
        S.make_demo_case(downsample=2)
    finally:
        S._rigid = orig
    assert len(caught) == 3  # T1, T1c, T2 moved against FLAIR
    assert all(np.abs(t.GetTranslation()).max() > 0.05 for t in caught)


def test_cohort_labels_shape_phenotype_without_trivial_separation():
    subjects = S.draw_cohort(400, seed=7, downsample=4)
    idh = np.array([s["IDH"] for s, _ in subjects])
    epi = np.array([s["epilepsy"] for s, _ in subjects])
    age = np.array([s["age"] for s, _ in subjects])
    enh = np.array([sp.enhancing_thickness > 0 for _, sp in subjects])
    mism = np.array([sp.mismatch > 0 for _, sp in subjects])
    radius = np.array([sp.radius_mm for _, sp in subjects])
    frontal = np.array([s["lobe"] == "frontal" for s, _ in subjects])
    cortical = np.array([s["cortical"] for s, _ in subjects])
    assert age[idh == 1].mean() < age[idh == 0].mean() - 8
    assert enh[idh == 1].mean() < enh[idh == 0].mean() - 0.3
    assert mism[idh == 1].mean() > mism[idh == 0].mean() + 0.2
    assert frontal[idh == 1].mean() > frontal[idh == 0].mean()
    assert epi[idh == 1].mean() > epi[idh == 0].mean()
    assert radius[epi == 1].mean() < radius[epi == 0].mean()
    assert cortical[epi == 1].mean() > cortical[epi == 0].mean()
    # noisy enough: no single phenotype variable separates a label almost perfectly
    for y in (idh, epi):
        for x in (age, radius, enh.astype(float), mism.astype(float)):
            auc = roc_auc_score(y, x)
            assert max(auc, 1 - auc) < 0.9
    atrx = np.array([s["ATRX"] for s, _ in subjects])
    assert atrx[idh == 1].mean() > 0.35 and atrx[idh == 0].mean() < 0.2


def test_generate_cohort_writes_cases_and_table(tmp_path):
    table = S.generate_cohort(2, tmp_path, seed=3, downsample=4)
    assert list(table.columns[:3]) == ["case_id", "age", "sex"]
    assert (tmp_path / "cohort.csv").exists() and "SYNTHETIC" in (tmp_path / "README.txt").read_text()
    for cid in table.case_id:
        assert (tmp_path / cid / "flair.nii.gz").exists() and (tmp_path / cid / "label.nii.gz").exists()
