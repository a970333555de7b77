"""Evaluation of a binary risk model as a reviewer expects it: numbers (JSON) and figures (HTML).

ROC AUC with 95 % CIs by DeLong (fast algorithm of Sun & Xu 2014) and by 2000 bootstrap resamples; pairwise DeLong
test of correlated AUCs; the Youden cutoff taken from the TRAINING predictions and applied to the evaluated ones
(accuracy, sensitivity, specificity, PPV, NPV, confusion matrix), and in repeated cross-validation each outer fold's
own training-fold cutoff applied to its held-out cases (``at_fold_cutoffs``); AUPRC; calibration curve (deciles and a
spline-logistic smoothed curve), calibration intercept and slope with bootstrap CIs, and Brier score; decision
curve (net benefit) and clinical impact curve; waterfall plot; Pearson heat map of the model's features; cohort
table (Mann-Whitney U for numbers, chi-square for categories). Repeated cross-validation: the pooled out-of-fold AUC
per repetition summarised (mean, SD, range, DeLong and bootstrap CIs) and paired comparisons on the same folds.
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats


# ----------------------------------------------------------------------------------------------------------------
# DeLong
# ----------------------------------------------------------------------------------------------------------------
def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_components(y: np.ndarray, scores: np.ndarray):
    """AUCs and the DeLong covariance matrix for k score vectors (k, n) on the same cases."""
    y = np.asarray(y).astype(int)
    S = np.atleast_2d(np.asarray(scores, float))
    pos, neg = S[:, y == 1], S[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs both classes")
    k = S.shape[0]
    tx = np.array([_midrank(r) for r in pos])
    ty = np.array([_midrank(r) for r in neg])
    tz = np.array([_midrank(r) for r in np.hstack([pos, neg])])
    aucs = tz[:, :m].sum(1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n          # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m    # of the negatives
    sx = np.atleast_2d(np.cov(v01)) if k > 1 else np.array([[np.var(v01, ddof=1)]])
    sy = np.atleast_2d(np.cov(v10)) if k > 1 else np.array([[np.var(v10, ddof=1)]])
    return aucs, sx / m + sy / n


def delong_ci(y, score, alpha: float = 0.05):
    """(auc, low, high, se) with a normal CI on the logit-free AUC scale, clipped to [0, 1]."""
    aucs, cov = delong_components(y, score)
    auc, se = float(aucs[0]), float(math.sqrt(max(cov[0, 0], 0.0)))
    z = stats.norm.ppf(1 - alpha / 2)
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se), se


def delong_test(y, score_a, score_b):
    """Two-sided DeLong test of AUC(a) == AUC(b) on the same cases: (auc_a, auc_b, z, p)."""
    aucs, cov = delong_components(y, np.vstack([score_a, score_b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if var <= 0:
        return float(aucs[0]), float(aucs[1]), 0.0, 1.0
    z = float((aucs[0] - aucs[1]) / math.sqrt(var))
    return float(aucs[0]), float(aucs[1]), z, float(2 * stats.norm.sf(abs(z)))


def bootstrap_ci(y, score, n: int = 2000, seed: int = 0, alpha: float = 0.05, metric=None):
    """Percentile bootstrap CI of ``metric`` (default: the AUC) over ``n`` case resamples; resamples with one class
    are skipped. The AUC is computed for all resamples at once (``bootstrap_aucs``: ranks, no per-resample
    scikit-learn call, ~100x faster; equal to ``roc_auc_score`` on each resample to rounding); another ``metric`` is
    called once per resample, on the same resamples."""
    y, score = np.asarray(y), np.asarray(score)
    rng = np.random.default_rng(seed)
    if metric is None:
        if not np.isfinite(np.asarray(score, float)).all():
            raise ValueError("bootstrap_ci: the scores must be finite numbers (NaN or infinite found)")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("bootstrap_ci: the labels must be 0 / 1")
        vals = np.concatenate([bootstrap_aucs(y, score, rng.integers(0, len(y), (b, len(y))))
                               for b in _resample_blocks(n, len(y))] or [np.array([])])
    else:
        vals = []
        for _ in range(n):
            i = rng.integers(0, len(y), len(y))
            if 0 < y[i].sum() < len(i):
                vals.append(metric(y[i], score[i]))
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def _resample_blocks(n_boot: int, cells: int, budget: int = 1 << 21):
    """Sizes of the blocks in which ``n_boot`` resamples are drawn and scored, so that a block holds about
    ``budget`` index cells at most (``cells`` per resample): memory stays bounded for large cohorts or many
    repetitions. Successive draws of shape (b, n) are the numbers of successive draws of size n (one generator
    stream), so the blocks do not change the resamples."""
    step = max(1, budget // max(1, cells))
    return [min(step, n_boot - i) for i in range(0, n_boot, step)]


def bootstrap_aucs(y, score, idx: np.ndarray) -> np.ndarray:
    """The AUC (Mann-Whitney with ties counted 1/2, as ``roc_auc_score``) of each resample ``idx[b]`` (rows of case
    indices) whose labels hold both classes, in row order; the one-class rows are left out. The callers bound the
    rows per call (``_resample_blocks``)."""
    y = np.asarray(y).astype(int)
    yy = y[idx]
    n1 = yy.sum(1)
    keep = (n1 > 0) & (n1 < idx.shape[1])
    if not keep.any():
        return np.array([])
    yy, n1 = yy[keep], n1[keep]
    r = stats.rankdata(np.asarray(score, float)[idx[keep]], axis=1)
    return ((r * yy).sum(1) - n1 * (n1 + 1) / 2) / (n1 * (idx.shape[1] - n1))


# ----------------------------------------------------------------------------------------------------------------
# repeated cross-validation: out-of-fold predictions of R repetitions (different fold shuffles) on the same cases
# ----------------------------------------------------------------------------------------------------------------
def _rank_aucs(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """AUC of each row of P (R, n) against y (Mann-Whitney, ties 1/2); NaN when y has one class."""
    y = np.asarray(y).astype(int)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return np.full(P.shape[0], np.nan)
    r = stats.rankdata(P, axis=1)
    return (r[:, y == 1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def repeated_cv_summary(y, P, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """The pooled out-of-fold AUC of each repetition (rows of ``P``), summarised over the repetitions.

    mean, SD, min, max over repetitions; 95 % CI (DeLong): mean AUC +- z * sqrt(mean of the repetitions' DeLong
    variances) (each repetition is a full out-of-fold prediction of the same cases, so the case-sampling variance
    is that of one repetition; averaging repetitions removes fold-assignment noise, not case-sampling noise);
    95 % CI (bootstrap): percentile interval of the repetition-mean AUC over ``n_boot`` case resamples."""
    y = np.asarray(y).astype(int)
    P = np.atleast_2d(np.asarray(P, float))
    aucs, var = [], []
    for row in P:
        a, _, _, se = delong_ci(y, row)
        aucs.append(a)
        var.append(se ** 2)
    aucs = np.asarray(aucs)
    mean = float(aucs.mean())
    z = stats.norm.ppf(1 - alpha / 2)
    se = math.sqrt(float(np.mean(var)))
    rng = np.random.default_rng(seed)
    R, n = P.shape
    y_long, p_long, offset = np.tile(y, R), P.reshape(-1), (np.arange(R) * n)[None, :, None]
    boots, pooled = [], []
    for b in _resample_blocks(n_boot, R * n):   # the resamples of n_boot successive draws, a block at a time
        idx = rng.integers(0, n, (b, n))
        # every (resample, repetition) AUC at once: repetition r of resample i reads P[r, idx[i]]; a one-class
        # resample drops its R rows together, so the rows stay grouped by resample
        per = bootstrap_aucs(y_long, p_long, (idx[:, None, :] + offset).reshape(-1, n)).reshape(-1, R)
        boots += per.mean(1).tolist()
        pooled += per.reshape(-1).tolist()
    return {"repeats": int(len(aucs)), "n": int(len(y)), "n_positive": int(y.sum()),
            "auc_mean": round(mean, 4), "auc_sd": round(float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0, 4),
            "auc_min": round(float(aucs.min()), 4), "auc_max": round(float(aucs.max()), 4),
            "auc_95ci_delong": [round(max(0.0, mean - z * se), 4), round(min(1.0, mean + z * se), 4)],
            "auc_se_delong": round(se, 4),
            "auc_95ci_bootstrap": [round(float(np.quantile(boots, alpha / 2)), 4),
                                   round(float(np.quantile(boots, 1 - alpha / 2)), 4)] if boots else None,
            # every (repetition, bootstrap resample) AUC pooled: case sampling AND the variability of refitting the
            # whole pipeline (selection included) on other folds; wider than the interval of the repetition mean
            "auc_95ci_repetitions_x_bootstrap": [round(float(np.quantile(pooled, alpha / 2)), 4),
                                                 round(float(np.quantile(pooled, 1 - alpha / 2)), 4)]
            if pooled else None,
            "auc_ci_notes": {
                "auc_sd": "SD over repetitions of the whole pipeline (fold assignment + refitted selection): "
                          "selection variability, not case sampling",
                "auc_95ci_delong": "case sampling of one repetition (mean of the repetitions' DeLong variances)",
                "auc_95ci_bootstrap": "case bootstrap of the repetition-mean AUC (case sampling; fold noise averaged)",
                "auc_95ci_repetitions_x_bootstrap": "percentile interval over every repetition x case-bootstrap "
                                                    "AUC: case sampling and pipeline / selection variability"},
            "auc_per_repetition": [round(float(a), 4) for a in aucs],
            "auc_of_mean_prediction": round(float(delong_ci(y, P.mean(0))[0]), 4)}


def compare_repeated(y, P_a, P_b, name_a: str = "model", name_b: str = "baseline") -> dict:
    """Paired comparison of two models evaluated on the SAME folds of every repetition: the per-repetition AUC
    differences (a - b) and a DeLong test on the repetition-averaged out-of-fold predictions."""
    y = np.asarray(y).astype(int)
    P_a, P_b = np.atleast_2d(np.asarray(P_a, float)), np.atleast_2d(np.asarray(P_b, float))
    if P_a.shape != P_b.shape:
        raise ValueError("compare_repeated: both models need predictions of the same repetitions and cases")
    d = _rank_aucs(y, P_a) - _rank_aucs(y, P_b)
    a1, a2, z, p = delong_test(y, P_a.mean(0), P_b.mean(0))
    return {"a": name_a, "b": name_b, "auc_diff_mean": round(float(d.mean()), 4),
            "auc_diff_sd": round(float(d.std(ddof=1)) if len(d) > 1 else 0.0, 4),
            "auc_diff_min": round(float(d.min()), 4), "auc_diff_max": round(float(d.max()), 4),
            "repetitions_a_better": int((d > 0).sum()), "repeats": int(len(d)),
            "delong_mean_prediction": {"auc_a": round(a1, 4), "auc_b": round(a2, 4), "z": round(z, 3), "p": p}}


# ----------------------------------------------------------------------------------------------------------------
# cutoff, metrics, curves
# ----------------------------------------------------------------------------------------------------------------
def youden_cutoff(y, p) -> float:
    from sklearn.metrics import roc_curve
    fpr, tpr, thr = roc_curve(y, p)
    j = int(np.argmax(tpr - fpr))
    return float(np.clip(thr[j], 1e-6, 1 - 1e-6))


def at_cutoff(y, p, cutoff) -> Dict[str, object]:
    y = np.asarray(y).astype(int)
    yhat = (np.asarray(p) >= cutoff).astype(int)
    tp = int(((yhat == 1) & (y == 1)).sum())
    tn = int(((yhat == 0) & (y == 0)).sum())
    fp = int(((yhat == 1) & (y == 0)).sum())
    fn = int(((yhat == 0) & (y == 1)).sum())

    def div(a, b):
        return round(a / b, 4) if b else None
    c = np.asarray(cutoff, float)  # one cutoff, or one per case (fold-specific cutoffs): their median is shown
    return {"cutoff": round(float(np.median(c)), 4), "accuracy": div(tp + tn, len(y)), "sensitivity": div(tp, tp + fn),
            "specificity": div(tn, tn + fp), "ppv": div(tp, tp + fp), "npv": div(tn, tn + fn),
            "confusion_matrix": {"tp": tp, "fp": fp, "tn": tn, "fn": fn}}


def calibration(y, p, bins: int = 10):
    """Quantile bins: (mean predicted, observed fraction, n) per bin; plus the Brier score."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = [(float(p[idx == b].mean()), float(y[idx == b].mean()), int((idx == b).sum()))
            for b in range(len(edges) - 1) if (idx == b).any()]
    return rows, float(np.mean((p - y) ** 2))


def decision_curve(y, p, thresholds=None):
    """Net benefit of the model, treat-all and treat-none at each threshold probability."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    th = np.asarray(thresholds if thresholds is not None else np.arange(0.01, 1.0, 0.01))
    n = len(y)
    prev = y.mean()
    out = []
    for t in th:
        tp = float(((p >= t) & (y == 1)).sum())
        fp = float(((p >= t) & (y == 0)).sum())
        w = t / (1 - t)
        out.append({"threshold": round(float(t), 3), "model": tp / n - fp / n * w,
                    "treat_all": prev - (1 - prev) * w, "treat_none": 0.0})
    return out


def clinical_impact(y, p, population: int = 1000, thresholds=None):
    """Per threshold: how many of ``population`` the model calls high risk, and how many of them have the event."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    th = np.asarray(thresholds if thresholds is not None else np.arange(0.01, 1.0, 0.01))
    return [{"threshold": round(float(t), 3), "high_risk": population * float((p >= t).mean()),
             "high_risk_with_event": population * float(((p >= t) & (y == 1)).mean())} for t in th]


def cohort_table(df: pd.DataFrame, label: str, columns: Sequence[str]) -> List[dict]:
    """Per variable: summary in each class and the test (Mann-Whitney U for numbers, chi-square for categories)."""
    rows = []
    y = df[label]
    for c in columns:
        if c not in df.columns or c == label:
            continue
        x = df[c]
        numeric = pd.api.types.is_numeric_dtype(x) and x.nunique() > 5
        if numeric:
            a, b = x[y == 1].dropna(), x[y == 0].dropna()
            if len(a) < 2 or len(b) < 2:
                continue
            p = float(stats.mannwhitneyu(a, b).pvalue)
            rows.append({"variable": c, "test": "Mann-Whitney U", "positive": f"{a.median():.3g} [{a.quantile(.25):.3g}, "
                         f"{a.quantile(.75):.3g}]", "negative": f"{b.median():.3g} [{b.quantile(.25):.3g}, "
                         f"{b.quantile(.75):.3g}]", "p": p})
        else:
            tab = pd.crosstab(x, y)
            if tab.shape[0] < 2 or tab.shape[1] < 2:
                continue
            p = float(stats.chi2_contingency(tab)[1])
            fmt = lambda col: ", ".join(f"{k}: {int(v)}" for k, v in tab[col].items())  # noqa: E731
            rows.append({"variable": c, "test": "chi-square", "positive": fmt(tab.columns[-1]),
                         "negative": fmt(tab.columns[0]), "p": p})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# cutoffs chosen inside the training folds, applied out-of-fold
# ----------------------------------------------------------------------------------------------------------------
def at_fold_cutoffs(y, P, C) -> dict:
    """Classification figures of repeated cross-validation when each outer fold's cutoff was chosen on its own
    training part and applied to its held-out cases: ``P`` (R, n) out-of-fold probabilities, ``C`` (R, n) the cutoff
    applied to each case in each repetition. Per repetition the pooled out-of-fold classification gives accuracy,
    sensitivity, specificity, PPV, NPV; reported: their mean, SD and range over repetitions, the confusion matrix
    summed over repetitions divided by R, and the fold cutoffs (median, range)."""
    y = np.asarray(y).astype(int)
    P, C = np.atleast_2d(np.asarray(P, float)), np.atleast_2d(np.asarray(C, float))
    if P.shape != C.shape or P.shape[1] != len(y):
        raise ValueError("at_fold_cutoffs: P and C must both be (repetitions, cases)")
    per = [at_cutoff(y, p, c) for p, c in zip(P, C)]  # at_cutoff compares element-wise: c may be a vector
    keys = ("accuracy", "sensitivity", "specificity", "ppv", "npv")
    out = {"repeats": int(P.shape[0]),
           "cutoff_source": "Youden index on each outer fold's training predictions, applied to that fold's held-out "
                            "cases"}
    for k in keys:
        v = np.array([r[k] for r in per if r[k] is not None], float)
        out[k] = round(float(v.mean()), 4) if len(v) else None
        out[k + "_sd"] = round(float(v.std(ddof=1)), 4) if len(v) > 1 else 0.0
        out[k + "_range"] = [round(float(v.min()), 4), round(float(v.max()), 4)] if len(v) else None
    cm = {k: round(sum(r["confusion_matrix"][k] for r in per) / len(per), 2) for k in ("tp", "fp", "tn", "fn")}
    out["confusion_matrix_mean"] = cm
    cu = np.unique(C[np.isfinite(C)])
    out["fold_cutoffs"] = {"median": round(float(np.median(cu)), 4), "min": round(float(cu.min()), 4),
                           "max": round(float(cu.max()), 4), "n": int(len(cu))}
    return out


# ----------------------------------------------------------------------------------------------------------------
# calibration intercept and slope (logistic recalibration), smoothed calibration curve
# ----------------------------------------------------------------------------------------------------------------
def _logit(p, eps: float = 1e-8):
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    return np.log(p / (1 - p))


def _newton_logistic(Z: np.ndarray, y: np.ndarray, offset=None, max_iter: int = 100, tol: float = 1e-10):
    """Unpenalised logistic regression by Newton-Raphson: coefficients of the columns of Z (include a column of ones
    for an intercept), with an optional offset. Returns (beta, converged). One problem of
    ``_newton_logistic_batch``."""
    y = np.asarray(y, float)
    off = np.zeros(len(y)) if offset is None else np.asarray(offset, float)
    beta, ok = _newton_logistic_batch(np.asarray(Z, float)[None], y[None], off[None], max_iter, tol)
    return beta[0], bool(ok[0])


def _newton_logistic_batch(Z: np.ndarray, y: np.ndarray, offset: np.ndarray, max_iter: int = 100,
                           tol: float = 1e-10):
    """``M`` independent Newton-Raphson logistic fits at once: Z (M, n, k), y and offset (M, n). Each problem stops
    (its coefficients frozen) at its first step with max |step| < ``tol``, as a fit of its own would. Returns (beta
    (M, k), converged (M,))."""
    M, _, k = Z.shape
    beta = np.zeros((M, k))
    active = np.ones(M, bool)
    ridge = 1e-12 * np.eye(k)
    for _ in range(max_iter):
        a = np.flatnonzero(active)
        if not len(a):
            break
        Za = Z[a]
        eta = offset[a] + np.einsum("mnk,mk->mn", Za, beta[a])
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -700, 700)))
        w = np.maximum(mu * (1 - mu), 1e-12)
        H = np.einsum("mnk,mn,mnl->mkl", Za, w, Za) + ridge
        step = np.linalg.solve(H, np.einsum("mnk,mn->mk", Za, y[a] - mu)[..., None])[..., 0]
        beta[a] += step
        active[a[np.max(np.abs(step), axis=1) < tol]] = False
    return beta, ~active


def _calibration_batch(Y: np.ndarray, P: np.ndarray):
    """Intercept (logit(p) as offset) and slope of the logistic recalibration of each row of P (M, n) against the
    same row of Y: arrays (intercepts, slopes, converged)."""
    Y = np.asarray(Y, float)
    lp = _logit(P)
    one = np.ones(Y.shape + (1,))
    a, ok1 = _newton_logistic_batch(one, Y, lp)
    b, ok2 = _newton_logistic_batch(np.concatenate([one, lp[..., None]], axis=2), Y, np.zeros_like(Y))
    return a[:, 0], b[:, 1], ok1 & ok2


def calibration_intercept_slope(y, p) -> Dict[str, float]:
    """Logistic recalibration of probabilities ``p`` (Cox 1958; Steyerberg): slope = coefficient of logit(p) in
    logit P(y=1) = a + b logit(p); intercept = calibration-in-the-large, a in logit P(y=1) = a + logit(p) (logit(p)
    as an offset). Ideal: intercept 0, slope 1; slope < 1: predictions too extreme (overfitting)."""
    a, b, ok = _calibration_batch(np.asarray(y, float)[None], np.asarray(p, float)[None])
    return {"intercept": float(a[0]), "slope": float(b[0]), "converged": bool(ok[0])}


def rcs_basis(x, knots) -> np.ndarray:
    """Restricted (natural) cubic spline basis of x (Harrell's parameterisation, without the linear term's
    intercept): columns x, then k - 2 nonlinear terms, linear beyond the outer knots."""
    x = np.asarray(x, float)
    t = np.asarray(knots, float)
    k = len(t)
    norm = (t[-1] - t[0]) ** 2
    cube = lambda u: np.maximum(u, 0.0) ** 3  # noqa: E731
    cols = [x]
    for j in range(k - 2):
        cols.append((cube(x - t[j]) - cube(x - t[k - 2]) * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
                     + cube(x - t[k - 1]) * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2])) / norm)
    return np.column_stack(cols)


def smoothed_calibration(y, p, knots: int = 3, grid: int = 50) -> dict:
    """Smoothed calibration curve: logistic regression of the outcome on a restricted cubic spline of logit(p)
    (``knots`` knots at Harrell's quantiles: 3 -> 10 / 50 / 90 %), evaluated on ``grid`` predicted probabilities
    between the 1st and 99th percentiles of ``p``. Returns {"predicted": [...], "observed": [...], "knots": ...}."""
    y = np.asarray(y, float)
    lp = _logit(p)
    qs = {3: (0.10, 0.50, 0.90), 4: (0.05, 0.35, 0.65, 0.95), 5: (0.05, 0.275, 0.50, 0.725, 0.95)}[knots]
    t = np.unique(np.quantile(lp, qs))
    B = rcs_basis(lp, t) if len(t) >= 3 else lp[:, None]
    beta, ok = _newton_logistic(np.column_stack([np.ones(len(y)), B]), y)
    lo, hi = np.quantile(lp, [0.01, 0.99])
    g = np.linspace(lo, hi, grid)
    Bg = rcs_basis(g, t) if len(t) >= 3 else g[:, None]
    obs = 1.0 / (1.0 + np.exp(-np.clip(beta[0] + Bg @ beta[1:], -700, 700)))
    return {"predicted": [round(float(v), 5) for v in 1.0 / (1.0 + np.exp(-g))],
            "observed": [round(float(v), 5) for v in obs], "knots_logit": [round(float(v), 5) for v in t],
            "method": f"logistic regression on a restricted cubic spline of logit(p), {len(t)} knots",
            "converged": bool(ok)}


def calibration_summary(y, P, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Calibration intercept and slope of out-of-fold probabilities. ``P``: (n,) or (R, n) (one row per
    repetition of the cross-validation). Estimates: mean over repetitions of each repetition's intercept and slope
    (pooled out-of-fold predictions of that repetition); SD over repetitions; 95 % CI: percentile interval of the
    repetition mean over ``n_boot`` case-bootstrap resamples (the same resampled cases in every repetition)."""
    y = np.asarray(y).astype(int)
    P = np.atleast_2d(np.asarray(P, float))
    R, n = P.shape
    a, b, _ = _calibration_batch(np.broadcast_to(y, P.shape), P)
    rng = np.random.default_rng(seed)
    ba, bb = [], []
    for size in _resample_blocks(n_boot, R * n, budget=1 << 18):   # successive draws of n cases, a block at a time
        ii = rng.integers(0, n, (size, n))
        ii = ii[(y[ii].sum(1) > 0) & (y[ii].sum(1) < n)]
        if not len(ii):
            continue
        Pb = P[:, ii].transpose(1, 0, 2).reshape(-1, n)          # (resample, repetition) rows, fitted at once
        Yb = np.repeat(y[ii], R, axis=0)
        ia, ib, _ = _calibration_batch(Yb, Pb)
        ba.extend(ia.reshape(-1, R).mean(1).tolist())
        bb.extend(ib.reshape(-1, R).mean(1).tolist())
    q = (alpha / 2, 1 - alpha / 2)
    ci = lambda v: [round(float(x), 4) for x in np.quantile(v, q)] if v else None  # noqa: E731
    return {"intercept": round(float(a.mean()), 4), "intercept_95ci_bootstrap": ci(ba),
            "intercept_sd_repetitions": round(float(a.std(ddof=1)), 4) if len(a) > 1 else 0.0,
            "slope": round(float(b.mean()), 4), "slope_95ci_bootstrap": ci(bb),
            "slope_sd_repetitions": round(float(b.std(ddof=1)), 4) if len(b) > 1 else 0.0,
            "repeats": int(P.shape[0]), "n_bootstrap": int(len(ba)),
            "method": "logistic recalibration of logit(out-of-fold probability): slope = its coefficient, "
                      "intercept = calibration-in-the-large (logit(p) as offset); per repetition, mean over "
                      "repetitions, 95 % CI = percentile bootstrap of cases"}


# ----------------------------------------------------------------------------------------------------------------
# the whole evaluation
# ----------------------------------------------------------------------------------------------------------------
def evaluate(y, p, p_train=None, y_train=None, name: str = "model", compare: Optional[Dict[str, np.ndarray]] = None,
             n_boot: int = 2000, seed: int = 0) -> dict:
    """Numbers of the evaluation. ``p`` are the evaluated (e.g. out-of-fold or test) probabilities; the cutoff
    comes from ``p_train`` / ``y_train`` (the training predictions) when given, else from ``p`` (stated)."""
    from sklearn.metrics import average_precision_score
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    auc, lo, hi, se = delong_ci(y, p)
    blo, bhi = bootstrap_ci(y, p, n_boot, seed)
    if p_train is not None and y_train is not None:
        cutoff, source = youden_cutoff(y_train, p_train), "Youden index on the training predictions"
    else:
        cutoff, source = youden_cutoff(y, p), "Youden index on the evaluated predictions (optimistic)"
    cal, brier = calibration(y, p)
    cis = calibration_summary(y, p, n_boot=min(n_boot, 1000), seed=seed) if 0 < y.sum() < len(y) else None
    smooth = smoothed_calibration(y, p) if 0 < y.sum() < len(y) else None
    out = {"name": name, "n": int(len(y)), "n_positive": int(y.sum()),
           "auc": round(auc, 4), "auc_95ci_delong": [round(lo, 4), round(hi, 4)], "auc_se_delong": round(se, 4),
           "auc_95ci_bootstrap": [round(blo, 4), round(bhi, 4)], "n_bootstrap": n_boot,
           "auprc": round(float(average_precision_score(y, p)), 4), "prevalence": round(float(y.mean()), 4),
           "brier": round(brier, 4), "cutoff_source": source, "at_cutoff": at_cutoff(y, p, cutoff),
           "calibration": [{"predicted": a, "observed": b, "n": c} for a, b, c in cal],
           "calibration_intercept_slope": cis, "calibration_smoothed": smooth,
           "decision_curve": decision_curve(y, p), "clinical_impact": clinical_impact(y, p)}
    if compare:
        out["delong_tests"] = []
        for other, q in compare.items():
            a1, a2, z, pv = delong_test(y, p, np.asarray(q, float))
            out["delong_tests"].append({"a": name, "b": other, "auc_a": round(a1, 4), "auc_b": round(a2, 4),
                                        "z": round(z, 3), "p": pv})
    return out


# ----------------------------------------------------------------------------------------------------------------
# figures and HTML
# ----------------------------------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figures(y, p, ev: dict, features: Optional[pd.DataFrame] = None, compare: Optional[Dict[str, np.ndarray]] = None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    figs = {}
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for nm, q in [(ev["name"], p)] + list((compare or {}).items()):
        fpr, tpr, _ = roc_curve(y, q)
        ax.plot(fpr, tpr, label=nm)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity",
           title=f"ROC: AUC {ev['auc']:.3f} ({ev['auc_95ci_delong'][0]:.3f}-{ev['auc_95ci_delong'][1]:.3f})")
    ax.legend(fontsize=7)
    figs["ROC curve"] = _png(fig)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    pr, rc, _ = precision_recall_curve(y, p)
    ax.plot(rc, pr)
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: AUPRC {ev['auprc']:.3f}")
    figs["Precision-recall curve"] = _png(fig)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    cal = ev["calibration"]
    ax.plot([c["predicted"] for c in cal], [c["observed"] for c in cal], "o", label="deciles")
    sm = ev.get("calibration_smoothed")
    if sm:
        ax.plot(sm["predicted"], sm["observed"], "-", label="smoothed (spline logistic)")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    cis = ev.get("calibration_intercept_slope")
    sub = (f"\nintercept {cis['intercept']:.2f}, slope {cis['slope']:.2f}" if cis else "")
    ax.set(xlabel="predicted probability", ylabel="observed fraction",
           title=f"Calibration: Brier {ev['brier']:.3f}{sub}")
    ax.legend(fontsize=7)
    figs["Calibration curve"] = _png(fig)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    dc = ev["decision_curve"]
    t = [d["threshold"] for d in dc]
    ax.plot(t, [d["model"] for d in dc], label="model")
    ax.plot(t, [d["treat_all"] for d in dc], label="treat all")
    ax.plot(t, [0] * len(t), "k", lw=0.8, label="treat none")
    ax.set(ylim=(-0.05, max(0.05, ev["prevalence"] + 0.05)), xlabel="threshold probability",
           ylabel="net benefit", title="Decision curve")
    ax.legend(fontsize=7)
    figs["Decision curve"] = _png(fig)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ci = ev["clinical_impact"]
    ax.plot([c["threshold"] for c in ci], [c["high_risk"] for c in ci], "r", label="number high risk")
    ax.plot([c["threshold"] for c in ci], [c["high_risk_with_event"] for c in ci], "b--",
            label="number high risk with event")
    ax.set(xlabel="threshold probability", ylabel="per 1000", title="Clinical impact curve")
    ax.legend(fontsize=7)
    figs["Clinical impact curve"] = _png(fig)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    cm = ev["at_cutoff"]["confusion_matrix"]
    M = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    ax.imshow(M, cmap="Blues")
    for (i, j), v in np.ndenumerate(M):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["pred -", "pred +"], yticklabels=["true -", "true +"],
           title=f"Confusion matrix at {ev['at_cutoff']['cutoff']:.3f}")
    figs["Confusion matrix"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    order = np.argsort(p)[::-1]
    cutoff = ev["at_cutoff"]["cutoff"]
    ax.bar(np.arange(len(p)), p[order] - cutoff, color=np.where(y[order] == 1, "#c0392b", "#2e86c1"), width=1.0)
    ax.set(xlabel="cases (sorted)", ylabel="probability - cutoff", title="Waterfall (red = positive)")
    figs["Waterfall plot"] = _png(fig)
    if features is not None and features.shape[1] >= 2:
        fig, ax = plt.subplots(figsize=(5, 4.4))
        R = np.corrcoef(features.to_numpy(float), rowvar=False)
        im = ax.imshow(R, vmin=-1, vmax=1, cmap="RdBu_r")
        short = [c if len(c) < 28 else c[:12] + "..." + c[-12:] for c in features.columns]
        ax.set(xticks=range(len(short)), yticks=range(len(short)), title="Pearson r of the model's features")
        ax.set_xticklabels(short, rotation=90, fontsize=5)
        ax.set_yticklabels(short, fontsize=5)
        fig.colorbar(im, ax=ax, shrink=0.7)
        figs["Feature correlation heat map"] = _png(fig)
    return figs


def write_report(path, title: str, sections: List[dict], card: Optional[dict] = None) -> None:
    """HTML with each section's numbers and figures. sections: {"title", "evaluation", "figures", "cohort"}."""
    from .io import atomic_write_text
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:48%;margin:4px}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             ".warn{background:#fff3cd;padding:8px;border:1px solid #e0c36b}</style></head><body>",
             f"<h1>{e(title)}</h1><p class='warn'>Research probabilities, not diagnoses.</p>"]
    if card:
        parts.append("<h2>Model card</h2><table>" + "".join(
            f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in card.items()) + "</table>")
    for s in sections:
        ev = s.get("evaluation")
        parts.append(f"<h2>{e(s['title'])}</h2>")
        if s.get("text"):
            parts.append(f"<p>{e(s['text'])}</p>")
        if s.get("table"):
            tab = s["table"]
            parts.append("<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in tab["columns"]) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in tab["rows"]) + "</table>")
        if ev is None:
            for name, png in s.get("figures", {}).items():
                parts.append(f"<img alt='{e(name)}' title='{e(name)}' src='data:image/png;base64,{png}'>")
            continue
        parts.append("<table>")
        for k in ("n", "n_positive", "auc", "auc_95ci_delong", "auc_95ci_bootstrap", "auprc", "brier", "cutoff_source"):
            parts.append(f"<tr><th>{e(k)}</th><td>{e(str(ev.get(k)))}</td></tr>")
        cis = ev.get("calibration_intercept_slope")
        if cis:
            for k in ("intercept", "slope"):
                parts.append(f"<tr><th>calibration {k}</th><td>{cis[k]} (95% CI "
                             f"{e('-'.join(map(str, cis[k + '_95ci_bootstrap'] or [])))}, SD over repetitions "
                             f"{cis[k + '_sd_repetitions']})</td></tr>")
        for k, v in ev["at_cutoff"].items():
            parts.append(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>")
        folds = ev.get("at_fold_cutoffs")
        if folds:
            for k in ("cutoff_source", "accuracy", "sensitivity", "specificity", "ppv", "npv"):
                v = folds[k] if k == "cutoff_source" else f"{folds[k]} (SD {folds[k + '_sd']} over repetitions)"
                parts.append(f"<tr><th>fold cutoffs: {e(k)}</th><td>{e(str(v))}</td></tr>")
        parts.append("</table>")
        for t in ev.get("delong_tests", []):
            parts.append(f"<p>DeLong test {e(t['a'])} vs {e(t['b'])}: AUC {t['auc_a']} vs {t['auc_b']}, "
                         f"z = {t['z']}, p = {t['p']:.4g}</p>")
        for name, png in s.get("figures", {}).items():
            parts.append(f"<img alt='{e(name)}' title='{e(name)}' src='data:image/png;base64,{png}'>")
        if s.get("cohort"):
            parts.append("<h3>Cohort</h3><table><tr><th>variable</th><th>positive</th><th>negative</th><th>test</th>"
                         "<th>p</th></tr>" + "".join(
                             f"<tr><td>{e(r['variable'])}</td><td>{e(r['positive'])}</td><td>{e(r['negative'])}</td>"
                             f"<td>{e(r['test'])}</td><td>{r['p']:.3g}</td></tr>" for r in s["cohort"]) + "</table>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
