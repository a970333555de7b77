"""The papers' estimators on data with a known answer, and the evaluation statistics on hand-checked examples."""
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib.evaluation import (at_cutoff, bootstrap_ci, clinical_impact, cohort_table, decision_curve,
                                               delong_ci, delong_test, evaluate)
from GliomaRadiogenomicsLib.models import LiuFusion, WangLasso, correlation_keep, logistic_path


def two_task_data(n=300, p=150, seed=0):
    """Features 0-2 drive both tasks (shared), 3-4 only task 0, 5-6 only task 1; the rest is noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    shared = X[:, :3].sum(1)
    lp0 = 1.0 * shared + 1.3 * (X[:, 3] + X[:, 4])
    lp1 = 1.0 * shared + 1.3 * (X[:, 5] + X[:, 6])
    Y = np.column_stack([rng.random(n) < 1 / (1 + np.exp(-lp0)), rng.random(n) < 1 / (1 + np.exp(-lp1))])
    return X, Y.astype(float)


@pytest.fixture(scope="module")
def fitted():
    X, Y = two_task_data()
    # alpha 0.03: on 150 features x 300 cases the paper's 0.001 barely penalises the rounds' LASSO (almost every
    # feature passes; the final 1-SE model then does all the selection), so the stage under test would be idle
    return {m: WangLasso(method=m, n_bootstrap=40, alpha=0.03, random_state=3).fit(X, Y)
            for m in ("st", "mt", "cmt")}, X, Y


def _used(est, t):
    return set(est.kept_[est.task_features_[t]][est.coef_[t] != 0].tolist())


def test_cmt_recovers_shared_and_task_specific_features(fitted):
    est = fitted[0]["cmt"]
    assert {0, 1, 2, 3, 4} <= _used(est, 0) and {0, 1, 2, 5, 6} <= _used(est, 1)
    assert not _used(est, 0) & {5, 6} or len(_used(est, 0)) <= 9  # task 1's own features do not flood task 0
    assert len(_used(est, 0) | _used(est, 1)) <= 14  # few noise features survive the 80 % stability rule
    shared = set(est.kept_[est.selection_.selected["shared"]].tolist())
    assert {0, 1, 2} <= shared


def test_single_and_multi_task_variants(fitted):
    ests, X, Y = fitted
    st0 = set(ests["st"].kept_[ests["st"].selection_.selected["task0"]].tolist())
    assert {0, 1, 2, 3, 4} <= st0 and not st0 & {5, 6}
    assert "shared" not in ests["st"].selection_.selected
    assert set(ests["mt"].selection_.selected) == {"shared"}
    for est in ests.values():
        P = est.predict_proba(X)
        assert len(P) == 2 and P[0].shape == (len(X), 2) and np.allclose(P[0].sum(1), 1)
        assert delong_ci(Y[:, 0], P[0][:, 1])[0] > 0.8


def test_estimator_is_deterministic_and_sklearn_shaped():
    X, Y = two_task_data(n=120, p=30, seed=1)
    a = WangLasso(method="st", n_bootstrap=10, random_state=5).fit(X, Y[:, 0])
    b = WangLasso(method="st", n_bootstrap=10, random_state=5).fit(X, Y[:, 0])
    assert np.allclose(a.decision_function(X), b.decision_function(X))
    assert a.predict_proba(X).shape == (120, 2) and a.get_params()["n_bootstrap"] == 10
    with pytest.raises(ValueError, match="missing"):
        WangLasso(n_bootstrap=2).fit(np.where(X > 2, np.nan, X), Y)


def test_solver_matches_scikit_learn_lasso_logistic():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((200, 12))
    y = (rng.random(200) < 1 / (1 + np.exp(-(Z[:, 0] - Z[:, 1])))).astype(float)
    alpha = 0.02
    Ws, bs = logistic_path(Z, y[:, None], [0.2, 0.05, alpha], tol=1e-9, max_iter=20000)
    ref = LogisticRegression(C=1 / (alpha * len(y)), l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=100000).fit(Z, y)
    assert np.allclose(Ws[-1][:, 0], ref.coef_[0], atol=2e-3) and abs(bs[-1][0] - ref.intercept_[0]) < 2e-3


def test_correlation_filter_drops_the_later_of_a_pair():
    rng = np.random.default_rng(0)
    a = rng.normal(size=100)
    X = np.c_[a, rng.normal(size=100), a * 3 + 1e-4 * rng.normal(size=100)]
    assert correlation_keep(X).tolist() == [0, 1]


def test_liu_fusion_selects_planted_imaging_features_and_uses_clinical_variables():
    rng = np.random.default_rng(4)
    n, p = 260, 60
    X = rng.standard_normal((n, p))
    age = rng.normal(45, 12, n)
    lp = 1.4 * X[:, 0] - 1.2 * X[:, 1] + 0.06 * (age - 45)
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(float)
    names = [f"T1c_tumor_f{i}" for i in range(p)] + ["age", "sex_male"]
    data = np.column_stack([X, age, rng.integers(0, 2, n)])
    est = LiuFusion(clinical=("age", "sex_male"), random_state=0).fit(data, y, names)
    cols = set(est.imaging_["cols"].tolist())
    assert {0, 1} <= cols and len(cols) <= 20
    assert est.fusion_coef_[0] > 0 and est.fusion_coef_[1] > 0  # imaging score and age raise the risk
    lm = est.linear_model()
    lp_collapsed = lm["intercept"] + ((data[:, [names.index(f) for f in lm["features"]]] - lm["center"]) /
                                      lm["scale"]) @ lm["coef"]
    assert np.allclose(lp_collapsed, est.decision_function(data))  # one linear predictor = the fusion model


def test_firth_fit_maximises_the_penalised_likelihood_like_a_generic_optimiser():
    """Reference: scipy's BFGS on log L + 0.5 log det(X'WX) (an independent computation of Firth's objective)."""
    from scipy.optimize import minimize
    from GliomaRadiogenomicsLib.models import firth_fit

    def neg_pen(beta, A, y):
        lp = A @ beta
        p = 1 / (1 + np.exp(-lp))
        w = p * (1 - p)
        return -(np.sum(y * lp - np.logaddexp(0, lp)) + 0.5 * np.linalg.slogdet((A * w[:, None]).T @ A)[1])

    rng = np.random.default_rng(7)
    for X, y in ((rng.normal(size=(40, 3)), (rng.random(40) < 0.4).astype(float)),
                 (np.array([[-2.0], [-1.0], [1.0], [2.0], [0.5], [-0.5]]), np.array([0, 0, 1, 1, 1, 0.0]))):
        A = np.column_stack([np.ones(len(X)), X])
        ref = minimize(neg_pen, np.zeros(A.shape[1]), args=(A, y), method="BFGS", options={"gtol": 1e-9}).x
        w, b, ll = firth_fit(X, y)
        assert np.allclose(np.r_[b, w], ref, atol=1e-4)
        assert ll == pytest.approx(-neg_pen(ref, A, y), abs=1e-6)


def test_liu_fusion_stays_finite_on_separable_data():
    """~50 patients and a dozen informative features: plain maximum likelihood separates and its coefficients run
    off (a shipped bundle once held 1.5e6 per feature); Liu's fits use Firth's penalty and keep them finite."""
    rng = np.random.default_rng(11)
    n, p = 48, 40
    y = np.r_[np.ones(24), np.zeros(24)]
    X = rng.standard_normal((n, p))
    X[:, :12] += 1.3 * (2 * y[:, None] - 1)  # strongly separating features
    names = [f"FLAIR_WT_f{i}" for i in range(p)] + ["age", "sex_male"]
    data = np.column_stack([X, rng.normal(40, 10, n), rng.integers(0, 2, n)])
    est = LiuFusion(clinical=("age", "sex_male"), random_state=0).fit(data, y, names)
    assert np.abs(est.imaging_["coef"]).max() < 20
    assert np.abs(est.linear_model()["coef"]).max() < 20
    assert np.isfinite(est.decision_function(data)).all()


# ---------------------------------------------------------------------------------------------------- statistics
def test_delong_hand_checked_example():
    # positives 0.9, 0.8, 0.4; negatives 0.7, 0.3. psi = [[1, 1], [1, 1], [0, 1]]: AUC 5/6.
    # V10 (positives) = 1, 1, 0.5 -> var 1/12; V01 (negatives) = 2/3, 1 -> var 1/18;
    # var(AUC) = (1/12)/3 + (1/18)/2 = 1/18.
    y = np.array([1, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.4, 0.7, 0.3])
    auc, lo, hi, se = delong_ci(y, s)
    assert auc == pytest.approx(5 / 6) and se == pytest.approx(math.sqrt(1 / 18))
    assert lo == pytest.approx(max(0, 5 / 6 - 1.959964 * math.sqrt(1 / 18)), abs=1e-5) and hi == 1.0


def test_delong_test_against_brute_force_and_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    a = y + rng.normal(0, 0.8, 150)
    b = y + rng.normal(0, 1.6, 150)
    auc_a, auc_b, z, p = delong_test(y, a, b)
    assert auc_a > auc_b and p < 0.05
    assert delong_test(y, a, a)[3] == 1.0
    # DeLong's SE agrees with the bootstrap's spread
    _, lo, hi, se = delong_ci(y, a)
    blo, bhi = bootstrap_ci(y, a, n=1000, seed=1)
    assert (bhi - blo) / 3.92 == pytest.approx(se, rel=0.25)


def test_cutoff_metrics_decision_and_impact_curves():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.3, 0.4, 0.2, 0.1, 0.7, 0.8])
    m = at_cutoff(y, p, 0.5)
    assert m["confusion_matrix"] == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert m["sensitivity"] == 0.75 and m["ppv"] == 0.75 and m["accuracy"] == 0.75
    d = {r["threshold"]: r for r in decision_curve(y, p, [0.5])}[0.5]
    assert d["model"] == pytest.approx(3 / 8 - 1 / 8 * 1.0) and d["treat_all"] == pytest.approx(0.5 - 0.5)
    c = clinical_impact(y, p, 1000, [0.5])[0]
    assert c["high_risk"] == 500 and c["high_risk_with_event"] == 375
    ev = evaluate(y, p, p_train=p, y_train=y, n_boot=200)
    assert ev["auc"] == pytest.approx(13 / 16) and 0 <= ev["brier"] <= 1 and ev["at_cutoff"]["cutoff"] > 0


def test_cohort_table_tests():
    df = pd.DataFrame({"y": [1] * 20 + [0] * 20, "age": list(range(40, 60)) + list(range(20, 40)),
                       "sex": ["M"] * 15 + ["F"] * 5 + ["M"] * 5 + ["F"] * 15})
    rows = {r["variable"]: r for r in cohort_table(df, "y", ["age", "sex"])}
    assert rows["age"]["test"] == "Mann-Whitney U" and rows["age"]["p"] < 1e-6
    assert rows["sex"]["test"] == "chi-square" and rows["sex"]["p"] < 0.05


# ---------------------------------------------------------------------------------------------------- commands
def test_train_and_predict_commands(tmp_path):
    X, Y = two_task_data(n=160, p=40, seed=7)
    df = pd.DataFrame(X, columns=[f"FLAIR_WT_original_glcm_F{i}" for i in range(X.shape[1])])
    df["IDH"], df["epilepsy"] = Y[:, 0].astype(int), Y[:, 1].astype(int)
    df.insert(0, "case_id", [f"c{i:03d}" for i in range(len(df))])
    table = tmp_path / "cohort.csv"
    df.to_csv(table, index=False)
    (tmp_path / "cohort.provenance.json").write_text(json.dumps({"preset": "wang2025", "settings_hash": "h1"}))
    cli = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]
    r = subprocess.run(cli + ["train", "--table", str(table), "--label", "IDH", "--label2", "epilepsy", "--method", "cmt",
                              "--bootstrap", "20", "--repeats", "2", "--out", str(tmp_path / "m.json"), "--synthetic"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["auc_cv"]["IDH"][0] > 0.75
    assert summary["repeats"] == 2 and summary["sequences"]["IDH"] == ["FLAIR"]
    html = (tmp_path / "m.evaluation.html").read_text()
    for fig in ("ROC curve", "Calibration curve", "Decision curve", "Clinical impact curve", "Waterfall plot",
                "Confusion matrix", "Precision-recall curve"):
        assert f"alt='{fig}'" in html
    ev = json.loads((tmp_path / "m.evaluation.json").read_text())
    assert ev["tasks"][0]["cross_validated"]["auc_95ci_delong"][0] < ev["tasks"][0]["cross_validated"]["auc"]
    bundle = json.loads((tmp_path / "m_IDH.json").read_text())
    assert bundle["synthetic"] is True and bundle["feature_schema"]["settings_hash"] == "h1"
    r = subprocess.run(cli + ["predict", "--bundle", str(tmp_path / "m_IDH.json"), "--table", str(table),
                              "--out", str(tmp_path / "pred.csv")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["case_id", "task", "probability", "label", "total_points", "status", "model", "synthetic", "warnings"] and len(pred) == 160
    # a table without the model's features is refused (even when trusted without a provenance file)
    df.drop(columns=bundle["features"][:1]).to_csv(tmp_path / "bad.csv", index=False)
    r = subprocess.run(cli + ["predict", "--bundle", str(tmp_path / "m_IDH.json"), "--table", str(tmp_path / "bad.csv"),
                              "--out", str(tmp_path / "pred2.csv"), "--trust-table"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "not offered" in r.stderr


def test_nomogram_axes_and_figure(tmp_path):
    from GliomaRadiogenomicsLib.nomogram import nomogram_axes, plot_nomogram, probability_axis
    from test_models import PROV, planted_table
    from GliomaRadiogenomicsLib.train import train_bundles
    b = train_bundles(planted_table(160), ["label"], "atrx-fusion", PROV, trained_on="planted", synthetic=True,
                      intended_use="test", clinical=["age", "sex_male"], n_bootstrap=5, repeats=2)[0][0]
    names = [v.name for v in b.variables]
    assert "Imaging score" in names and "Age (years)" in names
    axes = {a["name"]: a for a in nomogram_axes(b)}
    assert max(a["points_max"] for a in axes.values()) == pytest.approx(100)
    age = axes["Age (years)"]  # readable ticks (whole years) inside the axis' points range
    assert age["unit"] == "years" and all(0 <= t["points"] <= age["points_max"] + 1e-9 for t in age["ticks"])
    assert all(float(t["value"]).is_integer() for t in age["ticks"])
    probs = probability_axis(b)
    assert all(x["total_points"] < y["total_points"] for x, y in zip(probs, probs[1:]))  # increasing
    plot_nomogram(b, str(tmp_path / "n.png"))
    assert (tmp_path / "n.png").stat().st_size > 5000


def test_atrx_fusion_bundle_reports_classifier_comparison():
    from test_models import PROV, planted_table
    from GliomaRadiogenomicsLib.train import train_bundles
    b, ev = train_bundles(planted_table(160, seed=3), ["label"], "atrx-fusion", PROV, trained_on="planted",
                          synthetic=True, intended_use="test", clinical=["age", "sex_male"], repeats=2)
    comp = ev["tasks"][0]["model"]["classifier_comparison_cv_auc"]
    assert set(comp) == {"logistic_regression", "random_forest", "svm"} and all(0.5 < v <= 1 for v in comp.values())
    names = {t["b"] for t in ev["tasks"][0]["cross_validated"]["delong_tests"]}
    assert names == {"imaging only", "clinical only"}
