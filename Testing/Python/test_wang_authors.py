"""WangLasso against the authors' published CMT-LASSO code (github wangyidada/CMTLasso) and plain scikit-learn.

References: (1) the authors' resampling as their code calls it (Python's global ``random`` and ``numpy.random``
seeded per round); (2) their selection rule re-done here with plain scikit-learn ``Lasso`` / ``MultiTaskLasso`` and
``roc_auc_score``; (3) the features their code selects on the UCSF-PDGM table in ../shared (tasks IDH and WHO grade
4, alpha 0.01, age as the last column, run as published with PYTHONHASHSEED=0): age, firstorder Minimum, firstorder
Skewness, glszm SizeZoneNonUniformityNormalized and shape Sphericity, in-sample IDH AUC 0.961 (issue 14)."""
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Lasso, LogisticRegression, MultiTaskLasso
from sklearn.metrics import roc_auc_score

from GliomaRadiogenomicsLib.models import WangLasso, round_splits

UCSF = Path(__file__).resolve().parents[3] / "shared" / "data" / "tables" / "ucsf_pdgm"
AUTHORS_IDH_FEATURES = {"age", "original_firstorder_Minimum", "original_firstorder_Skewness",
                        "original_glszm_SizeZoneNonUniformityNormalized", "original_shape_Sphericity"}


def test_authors_resampling_is_their_generator():
    """Round i: random.seed(i); random.sample(range(n), floor(0.8 n)); the rest (row order) validates;
    np.random.seed(i); np.random.choice(train, len(train), replace=True) (the authors' CVGenerator)."""
    n, rounds = 57, 6
    state_py, state_np = random.getstate(), np.random.get_state()
    try:
        ref = []
        for i in range(rounds):
            random.seed(i)
            tr = random.sample(range(n), int(np.floor(n * 0.8)))
            va = [x for x in range(n) if x not in tr]
            np.random.seed(i)
            ref.append((np.random.choice(tr, len(tr), replace=True).tolist(), va))
    finally:
        random.setstate(state_py)
        np.random.set_state(state_np)
    ours = round_splits(n, rounds, "authors", seed=0)
    assert [(b.tolist(), v.tolist()) for b, v in ours] == ref
    assert [b.tolist() for b, _ in round_splits(n, 2, "authors", seed=3)] == [r[0] for r in ref[3:5]]


def _planted(n=140, p=14, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    lp0 = 1.5 * X[:, 0] + 1.0 * X[:, 1] + 0.8 * X[:, 2]
    lp1 = 1.5 * X[:, 0] + 0.9 * X[:, 3]
    Y = np.column_stack([rng.random(n) < 1 / (1 + np.exp(-lp0)), rng.random(n) < 1 / (1 + np.exp(-lp1))])
    return X, Y.astype(float)


def test_selection_rounds_match_plain_scikit_learn():
    """Per round: sklearn (MultiTask)Lasso at the fixed alpha on the bootstrap rows; the multi-task round's score is
    the MEAN of the tasks' validation AUCs; rounds < 0.7 are dropped; a feature needs MORE than round(0.8 x rounds)
    selections. Re-done here with plain scikit-learn on the same splits."""
    X, Y = _planted()
    rounds, alpha = 25, 0.05
    est = WangLasso(method="cmt", alpha=alpha, n_bootstrap=rounds, random_state=0).fit(X, Y)
    assert est.kept_.tolist() == list(range(X.shape[1]))  # no correlated pair here: columns = features
    Z = (X - X.mean(0)) / X.std(0)
    freq = {"shared": np.zeros(X.shape[1]), "task0": np.zeros(X.shape[1]), "task1": np.zeros(X.shape[1])}
    aucs = {k: [] for k in freq}
    for boot, va in round_splits(len(X), rounds, "authors", seed=0):
        mt = MultiTaskLasso(alpha=alpha).fit(Z[boot], Y[boot])
        pv = mt.predict(Z[va])
        a = float(np.mean([roc_auc_score(Y[va, t], pv[:, t]) for t in range(2)]))
        aucs["shared"].append(a)
        if a >= 0.7:
            freq["shared"][np.abs(mt.coef_).sum(0) != 0] += 1
        for t in range(2):
            st = Lasso(alpha=alpha).fit(Z[boot], Y[boot, t])
            a = roc_auc_score(Y[va, t], st.predict(Z[va]))
            aucs[f"task{t}"].append(a)
            if a >= 0.7:
                freq[f"task{t}"][st.coef_ != 0] += 1
    for k in freq:
        assert np.allclose(est.selection_.val_auc[k], aucs[k], atol=1e-9), k
        assert np.array_equal(est.selection_.frequency[k], freq[k]), k
        assert est.selection_.threshold[k] == round(0.8 * rounds) == 20
        assert est.selection_.selected[k] == np.flatnonzero(freq[k] > 20).tolist(), k
    # a feature selected exactly round(fraction x rounds) times is NOT kept ("more than 80 of 100")
    c = int(min(v for v in freq["task0"] if v > 0))
    est_c = WangLasso(method="st", alpha=alpha, n_bootstrap=rounds, select_fraction=c / rounds).fit(X, Y)
    assert est_c.selection_.selected["task0"] == np.flatnonzero(freq["task0"] > c).tolist()
    assert any(freq["task0"] == c)
    # the min rule (our earlier variant) keeps fewer multi-task rounds than the authors' mean
    est_min = WangLasso(method="mt", alpha=alpha, n_bootstrap=rounds, round_filter="min").fit(X, Y)
    assert est_min.selection_.kept_rounds["shared"] <= est.selection_.kept_rounds["shared"]


def test_final_model_is_the_1se_lasso_and_a_platt_calibration():
    """The final model of a task: sklearn LassoCV folds, the 1-SE alpha (SE = SD / sqrt(folds); 'sd' = the folds'
    SD as the authors' code), sklearn Lasso at that alpha = the score; probability = logistic regression on it."""
    from sklearn.linear_model import LassoCV
    from sklearn.model_selection import KFold
    X, Y = _planted(seed=1)
    for rule in ("se", "sd"):
        est = WangLasso(method="st", alpha=0.05, n_bootstrap=15, final_cv="kfold", one_se_rule=rule).fit(X, Y[:, 0])
        idx = est.task_features_[0]
        Z = ((X - X.mean(0)) / X.std(0))[:, idx]
        alphas = np.logspace(-4, 1, 100)
        cv = LassoCV(alphas=alphas, cv=KFold(5)).fit(Z, Y[:, 0])
        mean = cv.mse_path_.mean(1)
        err = cv.mse_path_.std(1) if rule == "sd" else cv.mse_path_.std(1, ddof=1) / math.sqrt(5)
        best = int(np.argmin(mean))
        a1se = cv.alphas_[int(np.flatnonzero(mean <= mean[best] + err[best])[0])]
        ref = Lasso(alpha=a1se).fit(Z, Y[:, 0])
        assert est.alpha_[0] == pytest.approx(a1se)
        assert np.allclose(est.score_coef_[0], ref.coef_, atol=1e-10)
        s = ref.predict(Z)
        assert np.allclose(est.score_function(X), s, atol=1e-9)
        platt = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000).fit(s[:, None], Y[:, 0])
        assert np.allclose(est.predict_proba(X)[:, 1], platt.predict_proba(s[:, None])[:, 1], atol=1e-5)


@pytest.fixture(scope="module")
def ucsf():
    if not UCSF.is_dir():
        pytest.skip(f"UCSF-PDGM table not found at {UCSF} (../shared is absent: real data is not in the repository)")
    f = pd.read_csv(UCSF / "radiomic_features_T1c_bias_wholetumor.csv")
    m = pd.read_csv(UCSF / "metadata.csv")
    assert (f["ID"] == m["ID"]).all()
    X = f[[c for c in f.columns if c.startswith("original_")]].copy()
    X["age"] = m["Age at MRI"].astype(float)  # age as the last column, as the reference run
    Y = np.column_stack([(m["IDH"] != "wildtype").astype(int), (m["WHO CNS Grade"] == 4).astype(int)])
    return X, Y


def test_ucsf_selects_the_authors_features(ucsf):
    X, Y = ucsf
    names = list(X.columns)
    # the authors' final step (unshuffled 5-fold LassoCV, "1-SE" as one SD): their selection exactly
    est = WangLasso(method="cmt", alpha=0.01, final_cv="kfold", one_se_rule="sd").fit(X.to_numpy(float), Y, names)
    assert set(est.selected_features(0)) == AUTHORS_IDH_FEATURES
    assert roc_auc_score(Y[:, 0], est.score_function(X.to_numpy(float))[:, 0]) == pytest.approx(0.961, abs=6e-4)
    assert roc_auc_score(Y[:, 0], est.predict_proba(X.to_numpy(float))[0][:, 1]) == pytest.approx(0.961, abs=6e-4)
    # our defaults (standard error, stratified shuffled folds) keep them and may add some
    est2 = WangLasso(method="cmt", alpha=0.01).fit(X.to_numpy(float), Y, names)
    assert AUTHORS_IDH_FEATURES <= set(est2.selected_features(0))
