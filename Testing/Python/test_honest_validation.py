"""Issue 14 items 2 and 4: cutoffs chosen inside the training folds, calibration intercept / slope with CIs and a
smoothed curve, CIs that include selection variability, and missing data handled inside the folds. References:
scikit-learn (LogisticRegression without penalty, roc_curve, roc_auc_score, SimpleImputer), scipy.optimize, and
computations written here independently."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from GliomaRadiogenomicsLib import evaluation as E
from GliomaRadiogenomicsLib.train import (add_derived_columns, apply_missing, cv_splits, missing_rule, repeated_cv,
                                          train_bundles, _fit, _lp)
from GliomaRadiogenomicsLib.models import _sigmoid
from GliomaRadiogenomicsLib.predict import predict_table

sys.path.insert(0, str(Path(__file__).parent))
from test_repeated_cv import PROV, noise_table  # noqa: E402


def _sim(n=400, a=0.0, b=1.0, seed=0):
    """Predictions p and outcomes drawn with logit P(y=1) = a + b logit(p): true intercept-with-slope (a, b)."""
    rng = np.random.default_rng(seed)
    lp = rng.normal(0, 1.5, n)
    p = 1 / (1 + np.exp(-lp))
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b * lp)))).astype(int)
    return y, p


# ---------------------------------------------------------------------------------------------------- calibration
def test_calibration_slope_and_intercept_match_sklearn_and_scipy():
    y, p = _sim(a=0.4, b=0.6, seed=1)
    lp = np.log(p / (1 - p))
    r = E.calibration_intercept_slope(y, p)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(lp[:, None], y)
    assert r["slope"] == pytest.approx(ref.coef_[0, 0], abs=1e-5)
    # calibration-in-the-large: intercept with logit(p) as offset (slope fixed at 1), maximum likelihood by scipy
    nll = lambda a: -np.sum(y * (a + lp) - np.log1p(np.exp(a + lp)))  # noqa: E731
    a_ref = optimize.minimize_scalar(nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10}).x
    assert r["intercept"] == pytest.approx(a_ref, abs=1e-5)
    assert r["converged"]
    assert r["slope"] < 0.8  # the simulated predictions are too extreme


def test_calibration_summary_repetitions_and_bootstrap():
    y, p = _sim(n=300, seed=2)
    rng = np.random.default_rng(0)
    P = np.vstack([np.clip(p + rng.normal(0, 0.02, len(p)), 0.01, 0.99) for _ in range(3)])
    s = E.calibration_summary(y, P, n_boot=200, seed=3)
    fits = [E.calibration_intercept_slope(y, row) for row in P]
    assert s["slope"] == pytest.approx(np.mean([f["slope"] for f in fits]), abs=1e-4)
    assert s["intercept_sd_repetitions"] == pytest.approx(np.std([f["intercept"] for f in fits], ddof=1), abs=1e-4)
    lo, hi = s["slope_95ci_bootstrap"]
    assert lo < s["slope"] < hi and lo < 1.0 < hi  # well calibrated by construction
    lo, hi = s["intercept_95ci_bootstrap"]
    assert lo < 0.0 < hi


def test_rcs_basis_is_linear_beyond_the_outer_knots_and_smoothed_curve_matches_sklearn():
    knots = np.array([-1.0, 0.0, 1.5])
    x = np.linspace(2.0, 6.0, 9)
    B = E.rcs_basis(x, knots)
    assert np.allclose(np.diff(B[:, 1], 2), 0, atol=1e-12)  # linear in the right tail
    assert np.allclose(E.rcs_basis(np.array([-3.0, -2.0]), knots)[:, 1], 0)  # zero left of the first knot
    # a miscalibration that is not linear in logit(p): the smooth curve follows it, the diagonal does not
    rng = np.random.default_rng(5)
    n = 3000
    lp = rng.normal(0, 1.6, n)
    p = 1 / (1 + np.exp(-lp))
    true = 1 / (1 + np.exp(-(0.4 * lp + 0.9 * np.maximum(lp, 0) - 0.3)))
    y = (rng.random(n) < true).astype(int)
    sm = E.smoothed_calibration(y, p)
    t = np.array(sm["knots_logit"])
    Z = E.rcs_basis(lp, t)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(Z, y)
    g = np.log(np.array(sm["predicted"]) / (1 - np.array(sm["predicted"])))
    assert np.allclose(sm["observed"], ref.predict_proba(E.rcs_basis(g, t))[:, 1], atol=1e-4)
    truth = 1 / (1 + np.exp(-(0.4 * g + 0.9 * np.maximum(g, 0) - 0.3)))
    assert np.max(np.abs(np.array(sm["observed"]) - truth)) < 0.08
    assert np.max(np.abs(np.array(sm["predicted"]) - truth)) > 0.12  # the miscalibration is visible


# ------------------------------------------------------------------------------------------- cutoffs inside folds
def test_at_fold_cutoffs_against_sklearn_confusion_matrices():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    P = rng.random((3, 60))
    C = np.repeat(rng.uniform(0.3, 0.7, (3, 5)), 12, axis=1)  # one cutoff per fold of 12 cases
    r = E.at_fold_cutoffs(y, P, C)
    sens, spec = [], []
    for p, c in zip(P, C):
        tn, fp, fn, tp = confusion_matrix(y, (p >= c).astype(int)).ravel()
        sens.append(tp / (tp + fn)), spec.append(tn / (tn + fp))
    assert r["sensitivity"] == pytest.approx(np.mean(sens), abs=1e-4)
    assert r["specificity_sd"] == pytest.approx(np.std(spec, ddof=1), abs=1e-4)
    assert r["fold_cutoffs"]["n"] == 15


def _youden_ref(y, p):
    fpr, tpr, thr = roc_curve(y, p)
    return float(np.clip(thr[np.argmax(tpr - fpr)], 1e-6, 1 - 1e-6))


def test_repeated_cv_cutoffs_come_from_each_training_fold():
    df = add_derived_columns(noise_table(n=50, p=12, seed=3))
    df["FLAIR_WT_original_glcm_F0"] += 1.2 * df["label"]
    strata = df["label"].astype(str)
    cols = [c for c in df.columns if c.startswith("FLAIR_")]
    cv = repeated_cv("st", df, ["label"], cols, [], strata, repeats=1, folds=5, seed=2, n_bootstrap=5, n_jobs=1)
    jobs, _ = cv_splits(strata, 1, 5, 2)
    cuts = set()
    for r, f, tr, te in jobs[:2]:
        rule = missing_rule(df.iloc[tr], cols, [])
        dtr = apply_missing(df.iloc[tr], rule, [])
        m = _fit("st", dtr, ["label"], rule["img_cols"], [], 2 + r, 5, n_jobs=1)[0]
        ref = _youden_ref(dtr["label"].to_numpy(int), _sigmoid(_lp(m, dtr)))
        assert np.allclose(cv["cutoffs"]["label"][r, te], ref)
        cuts.add(round(ref, 8))
    assert len(cuts) == 2  # each fold its own cutoff


def test_repetitions_x_bootstrap_interval_independently():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80)
    P = np.vstack([y * 0.8 + rng.normal(0, 1, 80) for _ in range(4)])
    s = E.repeated_cv_summary(y, P, n_boot=300, seed=9)
    rng = np.random.default_rng(9)
    pooled = []
    for _ in range(300):
        i = rng.integers(0, 80, 80)
        if 0 < y[i].sum() < 80:
            pooled += [roc_auc_score(y[i], row[i]) for row in P]
    assert s["auc_95ci_repetitions_x_bootstrap"] == pytest.approx(list(np.quantile(pooled, [0.025, 0.975])), abs=1e-4)
    assert "selection" in s["auc_ci_notes"]["auc_95ci_repetitions_x_bootstrap"]


# -------------------------------------------------------------------------------------------------- missing data
def test_missing_rule_learned_on_training_rows_only_against_sklearn():
    rng = np.random.default_rng(0)
    tr = pd.DataFrame(rng.normal(size=(50, 3)), columns=["FLAIR_WT_a", "FLAIR_WT_b", "FLAIR_WT_c"])
    tr.loc[:9, "FLAIR_WT_a"] = np.nan       # 10 / 50 = 20 %: kept (not MORE than the threshold)
    tr.loc[:10, "FLAIR_WT_b"] = np.nan      # 11 / 50 = 22 %: dropped
    tr["age"] = rng.normal(50, 10, 50)
    tr.loc[[3, 7], "age"] = np.nan
    tr["sex_male"] = rng.integers(0, 2, 50).astype(float)
    te = pd.DataFrame({"FLAIR_WT_a": [np.nan, 1e6], "FLAIR_WT_b": [1.0, 2.0], "FLAIR_WT_c": [np.nan, 3.0],
                       "age": [np.nan, 40.0], "sex_male": [1.0, 0.0]})
    rule = missing_rule(tr, ["FLAIR_WT_a", "FLAIR_WT_b", "FLAIR_WT_c"], ["age", "sex_male"], 0.2)
    assert rule["img_cols"] == ["FLAIR_WT_a", "FLAIR_WT_c"] and list(rule["dropped_for_missingness"]) == ["FLAIR_WT_b"]
    assert rule["indicators"] == ["age"]
    imp = SimpleImputer(strategy="median").fit(tr[["FLAIR_WT_a", "FLAIR_WT_c"]])
    before = te.copy()
    out = apply_missing(te, rule, ["age", "sex_male"])
    pd.testing.assert_frame_equal(te, before)  # input untouched
    assert np.allclose(out[["FLAIR_WT_a", "FLAIR_WT_c"]], imp.transform(te[["FLAIR_WT_a", "FLAIR_WT_c"]]))
    assert out["age"].tolist() == [pytest.approx(tr["age"].mean()), 40.0]  # the TRAINING mean, not the test's
    assert out["age_missing"].tolist() == [1.0, 0.0] and "sex_male_missing" not in out


def _missing_table(seed=0):
    df = noise_table(n=80, p=20, seed=seed)
    rng = np.random.default_rng(seed)
    fam = [f"T1c_ET_original_firstorder_F{i}" for i in range(4)]
    for c in fam:
        df[c] = rng.normal(size=80) + 0.9 * df["label"]
    absent = rng.choice(80, 8, replace=False)  # ET family absent (region empty) in 8 of 80 cases: 10 %
    df.loc[absent, fam] = np.nan
    for c in [f"T2_ET_original_firstorder_G{i}" for i in range(3)]:
        df[c] = rng.normal(size=80)
    df.loc[rng.choice(80, 30, replace=False), [f"T2_ET_original_firstorder_G{i}" for i in range(3)]] = np.nan
    # age is missing, informatively, for most positive cases: the indicator carries the signal
    miss = df.index[(df["label"] == 1) & (rng.random(80) < 0.9)]
    df.loc[miss, "age"] = np.nan
    return df


@pytest.fixture(scope="module")
def trained():
    df = _missing_table()
    b, ev = train_bundles(df, ["label"], "st", PROV, trained_on="missing-data test", synthetic=True,
                          intended_use="test", n_bootstrap=8, repeats=2, n_jobs=1, seed=3)
    return df, b[0], ev["tasks"][0]


def test_train_states_missing_data_and_records_imputation(trained):
    df, b, t = trained
    md = b.training["missing_data"]
    assert md["families_absent_cases"] == {"T1c_ET": 8, "T2_ET": 30}
    assert set(md["imaging_columns_dropped_final"]) == {f"T2_ET_original_firstorder_G{i}" for i in range(3)}
    assert md["indicators_offered"] == ["age_missing"]
    w = " ".join(t["warnings"])
    assert "T2_ET absent" in w and "dropped" in w and "T1c_ET absent" in w and "median-imputed" in w
    assert "age_missing" in b.features  # informative missingness is offered and selected
    for f in b.features:
        if f.startswith("T1c_ET"):
            assert b.imputation[f] == pytest.approx(float(df[f].median()))
    assert b.imputation.get("age") is None or b.imputation["age"] == pytest.approx(float(df["age"].mean()))
    m = b.metrics
    assert "each outer training fold" in m["cutoff_method"] and m["at_cutoff_cv"]["repeats"] == 2
    assert m["calibration_cv"]["slope_95ci_bootstrap"] is not None
    assert t["cross_validated"]["calibration_smoothed"]["observed"]


def test_predict_uses_imputation_and_indicator(trained):
    df, b, _ = trained
    row = df.iloc[[0, 0]].copy().reset_index(drop=True)
    row.loc[0, "age"] = np.nan
    row.loc[1, "age"] = 55.0
    et = [f for f in b.features if f.startswith("T1c_ET")]
    if et:
        row.loc[0, et] = np.nan
    res = b.predict_proba_row(row.iloc[0].to_dict())
    assert res["values"]["age_missing"] == 1.0
    assert b.predict_proba_row(row.iloc[1].to_dict())["values"]["age_missing"] == 0.0
    assert set(et) <= set(res["imputed"])
    from GliomaRadiogenomicsLib.bundle import FeatureMismatchError
    from GliomaRadiogenomicsLib.bundle import load_default_bundles
    shipped = load_default_bundles()[0]
    img = next(f for f in shipped.features if f not in ("age", "sex_male", "who_grade", "vasari_score"))
    shipped.imputation[img] = 0.0  # as a bundle trained now records it (training median)
    with pytest.raises(FeatureMismatchError, match="not offered"):  # a missing VALUE is imputed, a missing COLUMN not
        shipped.check_features([f for f in shipped.features if f != img])
    b.check_features([c for c in df.columns if c != "age"] + ["sex_male"])  # absent clinical: training mean
    out = predict_table(b, row)
    assert out["probability"][0] > out["probability"][1]  # missing age pointed to the positive class in training


def test_cli_missing_threshold_reaches_training(tmp_path):
    """`train --missing-threshold`: every imaging column misses 30 % of the cases; at 0.1 none may be used (clear
    input error naming the threshold, exit 2), and a value outside [0, 1) is refused."""
    import subprocess
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "IDH": rng.integers(0, 2, n),
                       "age": rng.normal(45, 10, n)})
    for j in range(5):
        v = rng.normal(size=n)
        v[rng.permutation(n)[:12]] = np.nan
        df[f"FLAIR_WT_original_firstorder_F{j}"] = v
    table = tmp_path / "t.csv"
    df.to_csv(table, index=False)
    cli = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "train", "--table", str(table), "--label", "IDH",
           "--method", "st", "--out", str(tmp_path / "m.json"), "--repeats", "1", "--bootstrap", "5"]
    r = subprocess.run(cli + ["--missing-threshold", "0.1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "missing-data threshold 10%" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(cli + ["--missing-threshold", "1.5"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "fraction in [0, 1)" in r.stderr, r.stderr[-2000:]


def test_vectorised_bootstraps_equal_a_per_resample_loop_with_scikit_learn():
    """bootstrap_ci / repeated_cv_summary / calibration_summary compute every resample at once (ranks; batched
    Newton fits): the same resamples (one stream of the seeded generator) scored one by one with scikit-learn's
    roc_auc_score and an unpenalised LogisticRegression give the same intervals."""
    rng = np.random.default_rng(4)
    n, R = 40, 3
    y = (rng.random(n) < 0.3).astype(int)
    y[:2] = [1, 0]
    lp = 1.2 * y + rng.normal(0, 1, n)
    P = np.vstack([1 / (1 + np.exp(-(lp + rng.normal(0, 0.4, n)))) for _ in range(R)])
    P[0] = np.round(P[0], 1)   # ties between the classes
    draw = np.random.default_rng(11)
    draws = [draw.integers(0, n, n) for _ in range(60)]
    resamples = [i for i in draws if 0 < y[i].sum() < n]
    q = lambda v: (np.quantile(v, 0.025), np.quantile(v, 0.975))  # noqa: E731
    assert E.bootstrap_ci(y, P[0], n=60, seed=11) == pytest.approx(q([roc_auc_score(y[i], P[0, i])
                                                                      for i in resamples]), abs=1e-12)
    per = np.array([[roc_auc_score(y[i], row[i]) for row in P] for i in resamples])
    s = E.repeated_cv_summary(y, P, n_boot=60, seed=11)
    assert s["auc_95ci_bootstrap"] == pytest.approx(np.round(q(per.mean(1)), 4), abs=1e-12)
    assert s["auc_95ci_repetitions_x_bootstrap"] == pytest.approx(np.round(q(per.ravel()), 4), abs=1e-12)

    def intercept_slope(yy, p):
        z = np.log(p / (1 - p))
        slope = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(z[:, None], yy).coef_[0, 0]
        nll = lambda a: -np.sum(yy * (a + z) - np.log1p(np.exp(a + z)))  # noqa: E731
        return optimize.minimize_scalar(nll, bounds=(-8, 8), method="bounded", options={"xatol": 1e-10}).x, slope
    # drawn and scored in small blocks (what bounds memory on a large cohort): the same resamples, the same numbers
    blocks = E._resample_blocks
    try:
        E._resample_blocks = lambda n_boot, cells, budget=0: blocks(n_boot, cells, budget=7 * cells)
        assert E.repeated_cv_summary(y, P, n_boot=60, seed=11)["auc_95ci_bootstrap"] == s["auc_95ci_bootstrap"]
        assert E.bootstrap_ci(y, P[0], n=60, seed=11) == pytest.approx(
            E.bootstrap_ci(y, P[0], n=60, seed=11, metric=roc_auc_score), abs=1e-12)
        small = E.calibration_summary(y, P, n_boot=25, seed=11)
    finally:
        E._resample_blocks = blocks
    assert small == E.calibration_summary(y, P, n_boot=25, seed=11)
    # few positives: many one-class resamples are dropped, by every function alike; none drawn: no interval
    y2 = np.zeros(12, int)
    y2[[3, 8]] = 1
    P2 = P[:, :12]
    draw2 = np.random.default_rng(5)
    kept = [i for i in (draw2.integers(0, 12, 12) for _ in range(40)) if 0 < y2[i].sum() < 12]
    assert 10 < len(kept) < 40
    per2 = np.array([[roc_auc_score(y2[i], row[i]) for row in P2] for i in kept])
    s2 = E.repeated_cv_summary(y2, P2, n_boot=40, seed=5)
    assert s2["auc_95ci_bootstrap"] == pytest.approx(np.round(q(per2.mean(1)), 4), abs=1e-12)
    assert s2["auc_95ci_repetitions_x_bootstrap"] == pytest.approx(np.round(q(per2.ravel()), 4), abs=1e-12)
    assert E.bootstrap_ci(y2, P2[1], n=40, seed=5) == pytest.approx(q(per2[:, 1]), abs=1e-12)
    assert E.calibration_summary(y2, P2, n_boot=40, seed=5)["n_bootstrap"] == len(kept)
    assert E.repeated_cv_summary(y2, P2, n_boot=0)["auc_95ci_bootstrap"] is None
    assert E.calibration_summary(y2, P2, n_boot=0)["slope_95ci_bootstrap"] is None
    with pytest.raises(ValueError, match="finite"):
        E.bootstrap_ci(y, np.where(np.arange(n) == 3, np.nan, P[0]), n=10)

    first = [i for i in draws[:25] if 0 < y[i].sum() < n]
    fits = np.array([[intercept_slope(y[i], row[i]) for row in P] for i in first])
    c = E.calibration_summary(y, P, n_boot=25, seed=11)
    assert c["n_bootstrap"] == len(first) > 15
    assert c["intercept_95ci_bootstrap"] == pytest.approx(q(fits[:, :, 0].mean(1)), abs=2e-4)
    assert c["slope_95ci_bootstrap"] == pytest.approx(q(fits[:, :, 1].mean(1)), abs=2e-4)
