"""Liu 2024's choice of the imaging model (issue 14 item 3): 9 candidates, 3 feature types (radiomics, ResNet34 deep
= DL, hybrid) x 3 regions (edema, tumor, overall) read from the column names, the best mean 5-fold CV AUC on the
training cases wins; empty regions skipped with a reason; one model on all columns when the table has no such
structure. Small penalty grids and 3-fold LASSO CV keep each fit to a fraction of a second."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from GliomaRadiogenomicsLib.models import LiuFusion, liu_candidates, liu_column_kind
from GliomaRadiogenomicsLib.train import train_bundles

FAST = {"cv_folds": 3, "alphas": np.logspace(-1, -2.5, 6)}
REGIONS = ("edema", "tumor", "overall")


def regions_table(n=40, k=4, seed=0, signal=("tumor", "DL"), strength=2.0, weak=None):
    """Radiomic (T1c, features.py naming) and deep (FLAIR, deep.py naming) columns of the liu2024 regions, noise
    except the ``signal`` (region, type) block's first two columns; ``weak``: a second (region, type) block with a
    weaker signal. Two unassigned columns (a WT radiomic column and a location column) carry the label strongly."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2), np.zeros(n - n // 2)]
    cols = {}
    for region in REGIONS:
        for i in range(k):
            cols[f"T1c_{region}_original_firstorder_F{i}"] = ("radiomics", region, i)
            cols[f"FLAIR_{region}_resnet34_fc_{i}"] = ("DL", region, i)
    data = {}
    for name, (ft, region, i) in cols.items():
        v = rng.standard_normal(n)
        if (region, ft) == signal and i < 2:
            v = v + strength * (2 * y - 1) * (1 if i == 0 else -1)
        if weak and (region, ft) == weak and i == 0:
            v = v + 0.8 * (2 * y - 1)
        data[name] = v
    data["FLAIR_WT_original_firstorder_Mean"] = rng.standard_normal(n) + 4 * (2 * y - 1)
    data["loc_WT_frontal"] = rng.standard_normal(n) + 4 * (2 * y - 1)
    df = pd.DataFrame(data)
    df["age"] = rng.normal(45, 12, n)
    return df, y


def fit(df, y, **kw):
    names = list(df.columns)
    return LiuFusion(clinical=("age",), **FAST, **kw).fit(df.to_numpy(float), y, names)


def chosen_features(est):
    return [str(est.feature_names_in_[est.imaging_cols_[c]]) for c in est.imaging_["cols"]]


def test_column_kinds_follow_the_project_naming():
    assert liu_column_kind("FLAIR_tumor_resnet34_fc_999") == ("DL", "tumor")            # deep.deep_features
    assert liu_column_kind("T1c_edema_log-sigma-1-0-mm-3D_glcm_Idm") == ("radiomics", "edema")  # features.py
    assert liu_column_kind("mask_overall_original_shape_Sphericity") == ("radiomics", "overall")
    for other in ("FLAIR_WT_original_firstorder_Mean", "original_firstorder_Mean", "loc_WT_frontal",
                  "T1c_tumor_f3", "mask_tumor_resnet34_fc_1", "vasari_F1", "age"):
        assert liu_column_kind(other) is None, other
    cands, unassigned = liu_candidates(["T1c_tumor_original_firstorder_Mean", "FLAIR_tumor_resnet34_fc_0", "age"])
    assert list(cands) == [f"{r} {t}" for r in REGIONS for t in ("radiomics", "DL", "hybrid")]
    assert cands["tumor hybrid"][2] == [0, 1] and cands["tumor DL"][2] == [1] and unassigned == [2]


@pytest.fixture(scope="module")
def planted():
    df, y = regions_table()
    return df, y, fit(df, y)


def test_planted_tumor_dl_signal_is_the_chosen_imaging_model(planted):
    df, y, est = planted
    ch = est.imaging_choice_
    assert est.imaging_models_used_ == "best-of-9" and ch["chosen"] == "tumor DL"
    rows = {r["name"]: r for r in ch["candidates"]}
    assert len(rows) == 9 and ch["n_evaluated"] == 9 and all(r["skipped"] is None for r in rows.values())
    best = rows["tumor DL"]["cv_auc_mean"]
    assert best > 0.9 and all(r["cv_auc_mean"] <= best for r in rows.values())
    assert max(r["cv_auc_mean"] for n, r in rows.items() if not n.startswith("tumor")) < 0.8
    # the final imaging model uses tumor DL columns only: the strong unassigned columns stay out
    feats = chosen_features(est)
    assert feats and all(f.startswith("FLAIR_tumor_resnet34_fc_") for f in feats)
    assert ch["n_unassigned_columns"] == 2
    json.dumps(ch)  # JSON data (bundles hold no pickle)


@pytest.mark.parametrize("name, prefix", [("tumor DL", "FLAIR_tumor_resnet34_fc_"),
                                          ("edema radiomics", "T1c_edema_original_")])
def test_candidate_fold_aucs_are_refitted_on_the_training_folds_only(planted, name, prefix):
    """Independent recomputation of a candidate's 5 fold AUCs (the chosen one and a noise one, where a pipeline fitted
    on all cases would score too well): its pipeline fitted on the 4 training folds only (a separate estimator on
    those columns), scored on the held-out fold by scikit-learn."""
    df, y, est = planted
    cols = [c for c in df.columns if c.startswith(prefix)]
    X = df[cols].to_numpy(float)
    ref = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        m = LiuFusion(clinical=(), imaging_models="all", **FAST)
        m.feature_names_in_, m.imaging_cols_ = np.asarray(cols, dtype=object), list(range(len(cols)))
        m.imaging_ = m._imaging(X[tr], y[tr])
        ref.append(roc_auc_score(y[te], m.imaging_score(X[te])))
    row = next(r for r in est.imaging_choice_["candidates"] if r["name"] == name)
    np.testing.assert_allclose(row["cv_auc_folds"], ref, atol=1e-4)
    assert row["cv_auc_mean"] == pytest.approx(np.mean(ref), abs=1e-4)


def test_empty_best_region_is_skipped_with_its_reason():
    """No enhancing tumor in any case (IDH-mutant LGG): the tumor columns, which would carry the signal, are all
    missing; the three tumor candidates are skipped with the reason and the weaker overall DL model is chosen."""
    df, y = regions_table(seed=2, weak=("overall", "DL"))
    df.loc[:, [c for c in df.columns if "_tumor_" in c]] = np.nan
    est = fit(df, y)
    rows = {r["name"]: r for r in est.imaging_choice_["candidates"]}
    for t in ("radiomics", "DL", "hybrid"):
        assert rows[f"tumor {t}"]["cv_auc_mean"] is None
        assert "region tumor empty" in rows[f"tumor {t}"]["skipped"] and "40 cases" in rows[f"tumor {t}"]["skipped"]
    assert est.imaging_choice_["n_evaluated"] == 6
    assert est.imaging_choice_["chosen"] == "overall DL"
    assert np.isfinite(est.decision_function(df.to_numpy(float))).all()  # the unused empty columns do no harm
    # the same table without those columns (train drops them for missingness): skipped as having no columns
    kept = df[[c for c in df.columns if "_tumor_" not in c]]
    rows2 = {r["name"]: r for r in fit(kept, y).imaging_choice_["candidates"]}
    assert "no DL columns of region tumor" in rows2["tumor DL"]["skipped"]
    assert rows2["tumor hybrid"]["skipped"] == "no tumor columns"


@pytest.mark.parametrize("naming", ["wang2025", "pyradiomics"])
def test_no_region_structure_falls_back_to_one_model_on_all_columns(naming):
    rng = np.random.default_rng(3)
    n = 40
    y = np.r_[np.ones(20), np.zeros(20)]
    feats = ["firstorder_Mean", "firstorder_Skewness", "glcm_Idm", "glszm_ZoneEntropy", "shape_Sphericity"]
    names = [f"FLAIR_WT_original_{f}" if naming == "wang2025" else f"original_{f}" for f in feats]
    X = rng.standard_normal((n, len(names)))
    X[:, 0] += 1.5 * (2 * y - 1)
    data, names = np.column_stack([X, rng.normal(45, 12, n)]), names + ["age"]
    est = LiuFusion(clinical=("age",), **FAST).fit(data, y, names)
    assert est.imaging_models_used_ == "all" and est.imaging_choice_["used"] == "all"
    assert "no imaging column fits" in est.imaging_choice_["reason"]
    assert est.linear_model()["imaging"]["imaging_models"]["used"] == "all"
    ref = LiuFusion(clinical=("age",), imaging_models="all", **FAST).fit(data, y, names)
    assert ref.imaging_choice_["reason"] == "requested"
    np.testing.assert_array_equal(est.decision_function(data), ref.decision_function(data))
    with pytest.raises(ValueError, match="imaging_models"):
        LiuFusion(imaging_models="best").fit(data, y, names)


def test_one_candidate_equals_the_single_model_fit():
    """Only tumor radiomics columns: one candidate, 8 skipped with reasons; imaging model, fusion weights and the
    collapsed linear predictor identical to the one-model fit on all imaging columns."""
    rng = np.random.default_rng(5)
    n = 40
    y = np.r_[np.ones(20), np.zeros(20)]
    names = [f"T1c_tumor_original_firstorder_F{i}" for i in range(6)] + ["mask_tumor_original_shape_Elongation"]
    X = rng.standard_normal((n, len(names)))
    X[:, :2] += 1.0 * (2 * y - 1)[:, None]
    data, names = np.column_stack([X, rng.normal(45, 12, n)]), names + ["age"]
    best = LiuFusion(clinical=("age",), **FAST).fit(data, y, names)
    one = LiuFusion(clinical=("age",), imaging_models="all", **FAST).fit(data, y, names)
    ch = best.imaging_choice_
    assert best.imaging_models_used_ == "best-of-9" and ch["chosen"] == "tumor radiomics" and ch["n_evaluated"] == 1
    assert sum(r["skipped"] is not None for r in ch["candidates"]) == 8
    for key in ("cols", "center", "scale", "coef"):
        np.testing.assert_array_equal(best.imaging_[key], one.imaging_[key])
    np.testing.assert_array_equal(best.fusion_coef_, one.fusion_coef_)
    assert best.fusion_intercept_ == one.fusion_intercept_
    np.testing.assert_array_equal(best.linear_model()["coef"], one.linear_model()["coef"])


def test_bundle_records_the_candidates_and_the_choice_per_outer_fold():
    """train_bundles (1 x 3-fold outer CV, the fusion bundle only: its evaluation bootstraps dominate the time) and
    _fit's imaging-model info, which becomes the atrx-imaging bundle's method_details."""
    from GliomaRadiogenomicsLib.train import _fit
    df, y = regions_table(n=40, k=3, seed=4)
    df["sex"] = np.where(np.arange(len(df)) % 2, "M", "F")
    df["ATRX"] = y.astype(int)
    df.insert(0, "case_id", [f"c{i:02d}" for i in range(len(df))])
    bundles, ev = train_bundles(df, ["ATRX"], "atrx-fusion", {"preset": "liu2024", "settings_hash": "x"},
                                trained_on="synthetic", synthetic=True, intended_use="test", repeats=1,
                                outer_folds=3, n_jobs=1, seed=1, liu=dict(FAST))
    (b,) = bundles
    d = json.loads(json.dumps(b.training))["method_details"]  # plain JSON data
    im = d["imaging_models"]
    assert im["used"] == "best-of-9" and im["chosen"] == "tumor DL" and len(im["candidates"]) == 9
    assert all(isinstance(r["cv_auc_mean"], float) for r in im["candidates"])
    assert sum(d["imaging_model_chosen_in_outer_folds"].values()) == 3
    assert all(f.startswith("FLAIR_tumor_resnet34_fc_") for f in b.features if f.startswith(("T1c", "FLAIR")))
    df["sex_male"] = (df["sex"] == "M").astype(float)
    img_cols = [c for c in df.columns if c.startswith(("T1c", "FLAIR", "loc_"))]
    (lm,) = _fit("atrx-fusion", df, ["ATRX"], img_cols, ["age", "sex_male"], 1, 0, liu=dict(FAST))
    img = lm["extra"]["imaging_model"]
    assert img["info"]["imaging_models"]["chosen"] == "tumor DL"
    assert img["info"]["imaging_models"] == lm["info"]["imaging_models"]
