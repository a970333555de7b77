"""Survival (issue 17 item 5, Shim 2021): the Cox-LASSO risk score estimator and its metrics (survival.py, numpy /
scipy only) against scikit-survival (the `survival` extra) on toy sets, a planted signal recovered, and
`train --method cox-lasso` writing a JSON survival bundle that loads."""
import json

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib import survival as S

sksurv = pytest.importorskip("sksurv", reason="scikit-survival (pip install -c constraints.txt '.[survival]') is "
                                              "the reference implementation of these tests")
from sksurv.compare import compare_survival  # noqa: E402
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis  # noqa: E402
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc  # noqa: E402
from sksurv.nonparametric import kaplan_meier_estimator  # noqa: E402
from sksurv.util import Surv  # noqa: E402


def _toy(n=60, seed=1):
    """Integer times (many ties, events tied with censorings), rounded risks (ties in the score)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    t = np.round(rng.exponential(np.exp(-X[:, 0])) * 10) + 1
    e = (rng.random(n) < 0.7).astype(float)
    risk = np.round(X[:, 0] + 0.3 * rng.normal(size=n), 1)
    return X, t, e, risk, Surv.from_arrays(e.astype(bool), t)


def _planted(n, p=20, seed=0):
    """Exponential times with hazard 0.1 exp(1.2 x0 - 1.2 x1), uniform censoring: 2 of p features matter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    t = rng.exponential(1 / (0.1 * np.exp(1.2 * X[:, 0] - 1.2 * X[:, 1])))
    c = rng.uniform(2, 30, n)
    return X, np.minimum(t, c), (t <= c).astype(float)


def test_metrics_equal_scikit_survival_on_a_toy_set_with_ties():
    X, t, e, risk, y = _toy()
    assert abs(S.concordance_index(t, e, risk) - concordance_index_censored(e.astype(bool), t, risk)[0]) < 1e-12
    km = S.kaplan_meier(t, e)
    ut, p = kaplan_meier_estimator(e.astype(bool), t)
    assert np.array_equal(km["time"], ut) and np.allclose(km["survival"], p, atol=1e-12)
    g2, g3 = (risk > 0).astype(int), np.digitize(risk, [-0.5, 0.5])
    for g in (g2, g3):
        ours = S.logrank_test(t, e, g)
        chi2, pv = compare_survival(y, g)
        assert abs(ours["chi2"] - chi2) < 1e-8 and abs(ours["p"] - pv) < 1e-10
    times = [5, 10, 15]
    assert np.allclose(S.cumulative_dynamic_auc((t, e), (t, e), risk, times),
                       cumulative_dynamic_auc(y, y, risk, times)[0], atol=1e-12)
    # the censoring distribution from a different "training" set, as the function allows
    tr = (t[::2], e[::2])
    ytr = Surv.from_arrays(e[::2].astype(bool), t[::2])
    assert np.allclose(S.cumulative_dynamic_auc(tr, (t, e), risk, [6, 9]),
                       cumulative_dynamic_auc(ytr, y, risk, [6, 9])[0], atol=1e-12)


def test_cox_coefficients_equal_scikit_survival():
    X, t, e, _, y = _toy()
    b, se, ll = S.cox_fit(X, t, e)
    ref = CoxPHSurvivalAnalysis(ties="breslow").fit(X, y)
    assert np.allclose(b, ref.coef_, atol=1e-7)
    assert abs(ll - S.cox_loglik(b, X, t, e)) < 1e-9 and np.all(se > 0)
    # the L1 path at one penalty = scikit-survival's Coxnet (l1_ratio 1, same -(1/n) log PL + alpha |b|_1 objective)
    Z = (X - X.mean(0)) / X.std(0)
    a = 0.05
    ours = S.cox_lasso_path(Z, t, e, [S.alpha_max(Z, t, e), a], tol=1e-12)[-1]
    net = CoxnetSurvivalAnalysis(l1_ratio=1.0, alphas=[a], tol=1e-12, max_iter=100000).fit(Z, y)
    assert np.allclose(ours, net.coef_.ravel(), atol=1e-5)
    assert (ours == 0).sum() == (np.abs(net.coef_.ravel()) < 1e-8).sum() >= 1  # same exact zeros
    assert abs(S.alpha_max(Z, t, e) - CoxnetSurvivalAnalysis(l1_ratio=1.0, n_alphas=3).fit(Z, y).alphas_[0]) < 1e-10


def test_planted_signal_recovered():
    X, t, e = _planted(200)
    est = S.CoxLasso(inner_folds=5, random_state=0).fit(X, (t, e))
    assert {"x0", "x1"} <= set(est.features_)
    c = dict(zip(est.features_, est.coef_))
    assert c["x0"] > 0.5 and c["x1"] < -0.5
    assert all(abs(v) < 0.2 for f, v in c.items() if f not in ("x0", "x1"))  # noise features: shrunk to ~0
    Xt, tt, et = _planted(300, seed=7)
    assert est.score(Xt, (tt, et)) > 0.75  # Harrell's C on new cases
    groups = est.risk_group(Xt)
    assert S.logrank_test(tt, et, groups)["p"] < 1e-6
    # the training median splits the training cases in halves; survival from the Breslow baseline is monotone
    assert abs(est.risk_group(X).mean() - 0.5) < 0.01
    s = est.survival_at(Xt[:3], [1, 5, 10])
    assert np.all(np.diff(s, axis=1) <= 0) and np.all((s > 0) & (s <= 1))
    assert est.cv_["folds"] == 5 and est.alpha_ == est.cv_["alphas"][est.cv_["best_index"]]


def test_repeated_cv_uses_training_median_and_age_baseline():
    X, t, e = _planted(90, p=8, seed=3)
    df = pd.DataFrame(X, columns=[f"FLAIR_WT_original_firstorder_F{j}" for j in range(8)])
    df["age"] = np.random.default_rng(0).normal(50, 10, len(df))
    df["time"], df["event"] = t, e
    cv = S.repeated_cv_cox(df, "time", "event", list(df.columns[:8]), repeats=2, folds=3, seed=0,
                           params={"inner_folds": 3})
    assert cv["oof"].shape == (2, 90) and np.isfinite(cv["oof"]).all() and set(cv["baselines"]) == {"age"}
    summ = S.survival_summary(t, e, cv["oof"], cv["groups"], [2.0, 5.0], n_boot=100)
    base = S.survival_summary(t, e, cv["baselines"]["age"], cv["baseline_groups"]["age"], [2.0, 5.0], n_boot=100)
    assert summ["cindex_mean"] > 0.7 > base["cindex_mean"]  # age is noise here
    assert summ["logrank_p_median"] < 1e-3


def test_cli_train_cox_lasso_writes_a_json_bundle_that_loads(tmp_path):
    from GliomaRadiogenomicsLib.cli import main
    X, t, e = _planted(80, p=12, seed=5)
    df = pd.DataFrame(X, columns=[f"FLAIR_WT_original_firstorder_F{j}" for j in range(12)])
    df.insert(0, "case_id", [f"c{i}" for i in range(len(df))])
    df["age"] = np.random.default_rng(1).normal(50, 10, len(df)).round()
    df["os_days"], df["death"] = t.round(3), e.astype(int)
    df.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "os.json"
    argv = ["train", "--table", str(tmp_path / "t.csv"), "--method", "cox-lasso", "--time", "os_days", "--event",
            "death", "--repeats", "1", "--folds", "3", "--inner-folds", "3", "--synthetic", "--out", str(out)]
    assert main(argv) == 0
    b = S.load_survival_bundle(out)
    assert b["synthetic"] is True and b["kind"] == "cox-lasso" and b["training"]["events"] == int(e.sum())
    assert {"FLAIR_WT_original_firstorder_F0", "FLAIR_WT_original_firstorder_F1"} <= set(b["features"])
    assert b["metrics"]["cindex_cv"] > 0.7 and "age" in b["metrics"]["baselines_cv"]
    assert len(b["baseline_survival"]["survival"]) == len(b["metrics"]["td_auc_times"]) == 3
    assert b["card"]["synthetic"] is True
    r = S.bundle_risk(b, df.iloc[0].to_dict())
    assert r["risk_group"] in ("high", "low") and not r["imputed"]
    assert (tmp_path / "os.evaluation.km.png").read_bytes()[:4] == b"\x89PNG"
    ev = json.loads((tmp_path / "os.evaluation.json").read_text())
    assert ev["model"]["n"] == 80 and (tmp_path / "os.evaluation.html").exists()
    assert "pickle" not in out.read_text()
    # `predict --bundle` applies it: risk score and group per row, as bundle_risk, marked synthetic
    df.drop(columns=["os_days", "death"]).head(6).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--bundle", str(out), "--table", str(tmp_path / "new.csv"), "--trust-table",
                 "--out", str(tmp_path / "risk.csv")]) == 0
    got = pd.read_csv(tmp_path / "risk.csv")
    want = [S.bundle_risk(b, df.iloc[i].to_dict()) for i in range(6)]
    assert np.allclose(got["risk_score"], [w["risk_score"] for w in want], atol=1e-12)
    assert got["risk_group"].tolist() == [w["risk_group"] for w in want] and got["synthetic_model"].all()
    assert got["case_id"].tolist() == df["case_id"].head(6).tolist()
    assert main(["predict", "--bundle", str(out), "--table", str(tmp_path / "t.csv"),
                 "--out", str(tmp_path / "r2.csv")]) == 2  # no provenance file and not --trust-table
    df.drop(columns=[b["features"][0], "os_days", "death"]).to_csv(tmp_path / "less.csv", index=False)
    assert main(["predict", "--bundle", str(out), "--table", str(tmp_path / "less.csv"), "--trust-table",
                 "--out", str(tmp_path / "r3.csv")]) == 2 and not (tmp_path / "r3.csv").exists()
    # input errors: no --time, a bundle of another kind
    assert main(argv[:5] + argv[7:]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**b, "format": "something-else"}))
    from GliomaRadiogenomicsLib.bundle import BundleError
    with pytest.raises(BundleError):
        S.load_survival_bundle(bad)
