"""Survival: the Cox-LASSO radiomic risk score of Shim 2021 and its evaluation (numpy / scipy only).

Shim et al. 2021 (Sci Rep 11:9974): Cox regression with a LASSO penalty (glmnet ``cv.glmnet``, 10-fold
cross-validation, lambda at the minimum cross-validated partial-likelihood deviance) selects features; the "radiomic
risk score" is the linear combination of the selected features with the Cox-LASSO coefficients; patients are split
into high / low "radiomic risk groups" at the MEDIAN score; Kaplan-Meier curves, log-rank test, C-index.

Here:
  ``CoxLasso``        scikit-learn estimator: fit(X, y) with y = (time, event); predict(X) = linear risk score
                      (higher = higher hazard); the penalty is chosen by an inner K-fold cross-validation of the
                      partial likelihood (Verweij & van Houwelingen 1993 "cross-validated partial likelihood", as
                      glmnet's grouped deviance) or of Harrell's C-index; ``risk_median_`` is the TRAINING median score
                      that splits risk groups; Breslow baseline survival.
  ``cox_fit``         unpenalised Cox proportional hazards (Breslow ties), Newton-Raphson.
  ``cox_lasso_path``  L1-penalised partial likelihood -(1/n) log PL(b) + alpha * |b|_1 along a decreasing alpha grid
                      (warm starts, sequential strong-rule screening with a KKT check, L-BFGS-B on the positive and
                      negative parts of the coefficients).
  metrics             Harrell's C-index, Kaplan-Meier (Greenwood variance), k-group log-rank test, cumulative /
                      dynamic time-dependent AUC (Uno 2007 IPCW with the censoring Kaplan-Meier). Ties are handled as
                      scikit-survival does (its functions are the tests' reference).
  ``repeated_cv_cox`` repeated nested cross-validation on the outer folds of ``train.cv_splits`` (stratified by the
                      event indicator): every step (missing values, correlation filter, standardisation, the inner
                      CV of the penalty, the training-median cut) inside each outer training fold; an age-only Cox
                      model on the same folds as the baseline.
  ``train_cox_bundle`` the final model + evaluation -> a JSON survival bundle (never pickle) and a report (JSON +
                      Kaplan-Meier PNG + HTML).
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, stats
from sklearn.base import BaseEstimator

SURVIVAL_FORMAT = "glioma-radiogenomics-survival-bundle"
SURVIVAL_SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------------------------
def as_survival(y) -> Tuple[np.ndarray, np.ndarray]:
    """(time, event) from a (time, event) pair, an (n, 2) array [time, event], or a structured array with an event
    (bool) and a time field (scikit-survival's layout). Times must be finite and >= 0; events 0 / 1."""
    if isinstance(y, np.ndarray) and y.dtype.names:
        names = y.dtype.names
        ev = next(n for n in names if y[n].dtype == bool)
        tm = next(n for n in names if n != ev)
        time, event = np.asarray(y[tm], float), np.asarray(y[ev], float)
    elif isinstance(y, tuple) or (isinstance(y, list) and len(y) == 2):
        time, event = np.asarray(y[0], float), np.asarray(y[1], float)
    else:
        a = np.asarray(y, float)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError("y must be (time, event), an (n, 2) array or a structured (event, time) array")
        time, event = a[:, 0], a[:, 1]
    if time.shape != event.shape or time.ndim != 1:
        raise ValueError("time and event must be 1-D of the same length")
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        raise ValueError("survival times must be finite and >= 0")
    if not np.all(np.isin(event, (0, 1))):
        raise ValueError("event indicators must be 0 (censored) or 1 (event)")
    return time, event


# ----------------------------------------------------------------------------------------------------------------
# Cox partial likelihood (Breslow ties)
# ----------------------------------------------------------------------------------------------------------------
class _Risk:
    """Sorted risk-set bookkeeping for one (time, event): ``first[i]`` = first position (ascending time) of the tie
    group of sorted case i, so reverse cumulative sums read at ``first`` are the risk-set sums."""

    def __init__(self, time, event):
        self.order = np.argsort(time, kind="mergesort")
        self.t = time[self.order]
        self.d = event[self.order]
        self.n = len(time)
        _, first = np.unique(self.t, return_index=True)
        counts = np.diff(np.r_[first, self.n])
        self.first = np.repeat(first, counts)
        # last position of each tie group: cumulative hazard increments up to and including the tie group
        self.last = np.repeat(np.r_[first[1:], self.n] - 1, counts)

    def loglik_grad(self, eta):
        """log PL and d logPL / d eta (per case, in the input order)."""
        e = eta[self.order]
        m = e.max()
        w = np.exp(e - m)
        s0 = np.cumsum(w[::-1])[::-1][self.first]
        ll = float(np.sum(self.d * (e - m - np.log(s0))))
        inc = np.where(self.d > 0, 1.0 / s0, 0.0)
        H = np.cumsum(inc)[self.last]              # Breslow cumulative hazard (relative) at each case's time
        g_sorted = self.d - w * H
        g = np.empty_like(g_sorted)
        g[self.order] = g_sorted
        return ll, g


def cox_loglik(beta, X, time, event) -> float:
    return _Risk(np.asarray(time, float), np.asarray(event, float)).loglik_grad(np.asarray(X, float) @ beta)[0]


def _hessian(X, beta, rs: _Risk):
    """Observed information (negative Hessian of log PL), Breslow ties."""
    Xs = X[rs.order]
    e = Xs @ beta
    w = np.exp(e - e.max())
    s0 = np.cumsum(w[::-1])[::-1]
    s1 = np.cumsum((w[:, None] * Xs)[::-1], 0)[::-1]
    s2 = np.cumsum((w[:, None, None] * Xs[:, :, None] * Xs[:, None, :])[::-1], 0)[::-1]
    idx = rs.first[rs.d > 0]
    mu = s1[idx] / s0[idx, None]
    return np.einsum("ijk->jk", s2[idx] / s0[idx, None, None]) - mu.T @ mu


def cox_fit(X, time, event, max_iter: int = 50, tol: float = 1e-10, ridge: float = 0.0):
    """Unpenalised (or ridge-stabilised) Cox regression by Newton-Raphson with step halving; Breslow ties.
    Returns (beta, standard errors, log PL)."""
    X = np.atleast_2d(np.asarray(X, float))
    time, event = as_survival((time, event))
    rs = _Risk(time, event)
    beta = np.zeros(X.shape[1])
    ll = rs.loglik_grad(X @ beta)[0] - 0.5 * ridge * beta @ beta
    for _ in range(max_iter):
        _, g_eta = rs.loglik_grad(X @ beta)
        g = X.T @ g_eta - ridge * beta
        I = _hessian(X, beta, rs) + ridge * np.eye(len(beta))
        step = np.linalg.solve(I, g)
        t = 1.0
        while True:
            nb = beta + t * step
            nll = rs.loglik_grad(X @ nb)[0] - 0.5 * ridge * nb @ nb
            if nll >= ll - 1e-12 or t < 1e-8:
                break
            t /= 2
        beta, done = nb, abs(nll - ll) < tol
        ll = nll
        if done:
            break
    I = _hessian(X, beta, rs) + ridge * np.eye(len(beta))
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(I)), 0, None))
    return beta, se, float(ll)


def _cd_quadratic(g, H, b, alpha, tol, max_sweeps=1000):
    """argmin_d g.d + d.H.d / 2 + alpha |b + d|_1 by cyclic coordinate descent (small dense H)."""
    q = len(b)
    x = b.copy()                       # x = b + d
    r = g.copy()                       # gradient of the quadratic at d = x - b: g + H (x - b)
    diag = np.maximum(np.diag(H), 1e-12)
    for _ in range(max_sweeps):
        dmax = 0.0
        for j in range(q):
            z = x[j] - r[j] / diag[j]
            nx = math.copysign(max(abs(z) - alpha / diag[j], 0.0), z)
            dx = nx - x[j]
            if dx != 0.0:
                r += H[:, j] * dx
                x[j] = nx
                dmax = max(dmax, abs(dx))
        if dmax < tol:
            break
    return x


def _lasso_solve(Z, rs: _Risk, alpha: float, beta0: np.ndarray, tol: float, max_iter: int = 100) -> np.ndarray:
    """argmin -(1/n) log PL(Z b) + alpha |b|_1 by proximal Newton (exact Hessian of the candidate columns, the L1
    quadratic sub-problem by coordinate descent, Armijo backtracking): exact zeros."""
    n, p = Z.shape
    if p == 0:
        return np.zeros(0)
    b = beta0.astype(float).copy()

    def F(v):
        return -rs.loglik_grad(Z @ v)[0] / n + alpha * np.abs(v).sum()

    f = F(b)
    for _ in range(max_iter):
        _, g_eta = rs.loglik_grad(Z @ b)
        g = -(Z.T @ g_eta) / n
        H = _hessian(Z, b, rs) / n + 1e-10 * np.eye(p)
        x = _cd_quadratic(g, H, b, alpha, tol * 1e-2)
        d = x - b
        delta = g @ d + alpha * (np.abs(x).sum() - np.abs(b).sum())
        if np.max(np.abs(d)) < tol:
            b = x
            break
        t = 1.0
        while True:
            nb = b + t * d
            nf = F(nb)
            if nf <= f + 0.25 * t * delta or t < 1e-10:
                break
            t *= 0.5
        done = abs(f - nf) < tol * max(1.0, abs(f)) * 1e-3 and np.max(np.abs(t * d)) < tol
        b, f = nb, nf
        if done:
            break
    b[np.abs(b) < 1e-12] = 0.0
    return b


def alpha_max(Z, time, event) -> float:
    """The smallest penalty at which every coefficient is zero: max_j |d/db_j (1/n) log PL(0)|."""
    rs = _Risk(np.asarray(time, float), np.asarray(event, float))
    _, g = rs.loglik_grad(np.zeros(len(Z)))
    return float(np.max(np.abs(Z.T @ g)) / len(Z))


def cox_lasso_path(Z, time, event, alphas: Sequence[float], tol: float = 1e-9,
                   max_features: Optional[int] = None, max_dev_ratio: float = 0.99) -> np.ndarray:
    """Coefficients (len(alphas), p) of the L1-penalised Cox model on the (standardised) design ``Z`` along a
    DECREASING ``alphas`` grid. Warm starts; sequential strong rule (Tibshirani 2012) for the candidate set, then
    the KKT conditions checked on every column (violators added, solved again). The path stops (the remaining rows
    repeat the last solution) once ``max_features`` coefficients are non-zero or the model explains more than
    ``max_dev_ratio`` of the null deviance (1 - logPL / logPL(0); p > n designs saturate), as glmnet does."""
    Z = np.asarray(Z, float)
    n, p = Z.shape
    rs = _Risk(np.asarray(time, float), np.asarray(event, float))
    B = np.zeros((len(alphas), p))
    beta = np.zeros(p)
    prev_alpha = None
    ll0 = rs.loglik_grad(np.zeros(n))[0]
    for k, a in enumerate(alphas):
        _, g_eta = rs.loglik_grad(Z @ beta)
        grad = np.abs(Z.T @ g_eta) / n
        thr = 2 * a - (prev_alpha if prev_alpha is not None else alpha_max(Z, time, event))
        cand = (grad >= thr) | (beta != 0)
        for _ in range(20):
            idx = np.flatnonzero(cand)
            nb = np.zeros(p)
            nb[idx] = _lasso_solve(Z[:, idx], rs, a, beta[idx], tol)
            _, g_eta = rs.loglik_grad(Z @ nb)
            viol = (~cand) & (np.abs(Z.T @ g_eta) / n > a * (1 + 1e-6) + 1e-12)
            if not viol.any():
                break
            cand |= viol
        beta = nb
        B[k] = beta
        prev_alpha = a
        nz = np.count_nonzero(beta)
        ll = rs.loglik_grad(Z @ beta)[0]
        # glmnet's stops: too many features, or (nearly) saturated (fraction of the null deviance explained)
        if (max_features is not None and nz >= max_features) or (ll0 < 0 and 1 - ll / ll0 > max_dev_ratio):
            B[k + 1:] = beta
            break
    return B


def breslow_baseline(eta, time, event) -> Tuple[np.ndarray, np.ndarray]:
    """Breslow baseline cumulative hazard at the distinct event times (for exp(eta) relative risks)."""
    time, event = as_survival((time, event))
    ut = np.unique(time[event > 0])
    r = np.exp(np.asarray(eta, float))
    H = np.cumsum([np.sum(event[time == t]) / np.sum(r[time >= t]) for t in ut])
    return ut, H


def _step_at(x_steps, y_steps, t, before=0.0):
    i = np.searchsorted(x_steps, np.asarray(t, float), side="right") - 1
    return np.where(i >= 0, np.asarray(y_steps)[np.clip(i, 0, None)], before)


# ----------------------------------------------------------------------------------------------------------------
# the estimator
# ----------------------------------------------------------------------------------------------------------------
def cv_partial_likelihood(Z, time, event, alphas, folds, tol=1e-9, max_features=None):
    """Cross-validated partial likelihood (Verweij & van Houwelingen 1993; glmnet's grouped Cox deviance) of each
    alpha: per fold k, l(b_-k; all cases) - l(b_-k; cases outside k), b_-k fitted outside k (standardised there).
    Returns (cvl per fold (K, len(alphas)), C-index per fold (K, len(alphas)))."""
    cvl = np.full((len(folds), len(alphas)), np.nan)
    cix = np.full((len(folds), len(alphas)), np.nan)
    rs_all = _Risk(time, event)
    for k, (tr, te) in enumerate(folds):
        mu, sd = Z[tr].mean(0), Z[tr].std(0)
        sd[sd == 0] = 1
        Zs = (Z - mu) / sd
        B = cox_lasso_path(Zs[tr], time[tr], event[tr], alphas, tol, max_features)
        rs_tr = _Risk(time[tr], event[tr])
        for j, b in enumerate(B):
            eta = Zs @ b
            cvl[k, j] = rs_all.loglik_grad(eta)[0] - rs_tr.loglik_grad(eta[tr])[0]
            if event[te].sum() > 0:
                try:
                    cix[k, j] = concordance_index(time[te], event[te], eta[te])
                except ValueError:
                    pass
    return cvl, cix


class CoxLasso(BaseEstimator):
    """Cox-LASSO radiomic risk score (Shim 2021). fit(X, y) with y = (time, event); predict(X) = linear risk score
    b . (x - center) / scale (higher = shorter survival); ``risk_group(X)`` = "high" above the TRAINING median score.

    alpha: fixed penalty, or None (default) = chosen by ``inner_folds``-fold cross-validation on the training data
    (``criterion`` "partial_likelihood" as glmnet's cv.glmnet default deviance, or "cindex"; ``rule`` "min" as
    Shim 2021 (lambda.min) or "1se"). The alpha grid: ``n_alphas`` log-spaced values from alpha_max (all zero) down
    to ``alpha_min_ratio`` * alpha_max. ``correlation_threshold``: of any pair of training columns with |r| above
    it, the later is dropped before the fit (None: no filter). ``max_features``: the alpha path stops once this many
    coefficients are non-zero (default: half the training events, at least 2: beyond it a Cox model with these
    few events is saturated and slow to fit)."""

    def __init__(self, alpha: Optional[float] = None, n_alphas: int = 30, alpha_min_ratio: float = 0.05,
                 inner_folds: int = 10, criterion: str = "partial_likelihood", rule: str = "min",
                 correlation_threshold: Optional[float] = 0.99, max_features: Optional[int] = None,
                 tol: float = 1e-9, random_state: int = 0):
        self.alpha = alpha
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.inner_folds = inner_folds
        self.criterion = criterion
        self.rule = rule
        self.correlation_threshold = correlation_threshold
        self.max_features = max_features
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y, feature_names: Optional[Sequence[str]] = None):
        from sklearn.model_selection import StratifiedKFold
        from .models import correlation_keep
        if self.criterion not in ("partial_likelihood", "cindex") or self.rule not in ("min", "1se"):
            raise ValueError("criterion: partial_likelihood | cindex; rule: min | 1se")
        X = np.asarray(X, float)
        time, event = as_survival(y)
        if not np.all(np.isfinite(X)):
            raise ValueError("X has missing or non-finite values (impute them first)")
        if event.sum() < 2:
            raise ValueError("a Cox model needs at least 2 events")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = list(feature_names) if feature_names is not None else [f"x{j}" for j in
                                                                                         range(X.shape[1])]
        sd0 = X.std(0)
        cols = np.flatnonzero(sd0 > 1e-12)
        if self.correlation_threshold is not None and len(cols) > 1:
            cols = cols[correlation_keep(X[:, cols], self.correlation_threshold)]
        self.kept_ = cols
        Xk = X[:, cols]
        mu, sd = Xk.mean(0), Xk.std(0)
        Z = (Xk - mu) / sd
        amax = alpha_max(Z, time, event) if len(cols) else 1.0
        self.alphas_ = np.geomspace(amax, amax * self.alpha_min_ratio, self.n_alphas)
        self.max_features_ = (int(self.max_features) if self.max_features is not None
                              else max(2, int(event.sum() // 2)))
        self.cv_ = None
        if self.alpha is None:
            k = int(max(2, min(self.inner_folds, event.sum(), (1 - event).sum() or self.inner_folds)))
            strata = event.astype(int) if (1 - event).sum() >= k else np.zeros(len(event), int)
            folds = list(StratifiedKFold(k, shuffle=True, random_state=self.random_state)
                         .split(np.zeros(len(time)), strata))
            cvl, cix = cv_partial_likelihood(Xk, time, event, self.alphas_, folds, self.tol, self.max_features_)
            score = cvl.sum(0) if self.criterion == "partial_likelihood" else np.nanmean(cix, 0)
            per_fold = cvl if self.criterion == "partial_likelihood" else cix
            # the SE of the total (partial likelihood) or of the mean (C-index) over folds
            se = (np.sqrt(len(folds)) * np.nanstd(per_fold, 0, ddof=1) if self.criterion == "partial_likelihood"
                  else np.nanstd(per_fold, 0, ddof=1) / np.sqrt(np.sum(np.isfinite(per_fold), 0)))
            best = int(np.nanargmax(score))
            if self.rule == "1se":  # the largest penalty within one SE of the best
                best = int(np.flatnonzero(score >= score[best] - se[best])[0])
            self.alpha_ = float(self.alphas_[best])
            self.cv_ = {"criterion": self.criterion, "rule": self.rule, "folds": k,
                        "alphas": [float(a) for a in self.alphas_], "score": [float(s) for s in score],
                        "se": [float(s) for s in se], "best_index": best,
                        "cindex": [float(v) for v in np.nanmean(cix, 0)]}
            grid = self.alphas_[: best + 1]
        else:
            self.alpha_ = float(self.alpha)
            grid = np.r_[self.alphas_[self.alphas_ > self.alpha_], self.alpha_]
        b = cox_lasso_path(Z, time, event, grid, self.tol, self.max_features_)[-1] if len(cols) else np.zeros(0)
        nz = np.flatnonzero(b)
        self.coef_full_ = np.zeros(self.n_features_in_)
        self.coef_full_[cols] = b / sd       # on the raw scale (for reference)
        self.features_idx_ = cols[nz]
        self.features_ = [self.feature_names_in_[j] for j in self.features_idx_]
        self.center_, self.scale_, self.coef_ = mu[nz], sd[nz], b[nz]
        eta = self.predict(X)
        self.risk_median_ = float(np.median(eta))
        self.baseline_times_, self.baseline_cumhaz_ = breslow_baseline(eta, time, event)
        self.n_events_, self.n_ = int(event.sum()), int(len(time))
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, float)
        if len(self.features_idx_) == 0:
            return np.zeros(len(X))
        return ((X[:, self.features_idx_] - self.center_) / self.scale_) @ self.coef_

    def risk_group(self, X) -> np.ndarray:
        """1 = high risk (score above the training median), 0 = low."""
        return (self.predict(X) > self.risk_median_).astype(int)

    def survival_at(self, X, times) -> np.ndarray:
        """Breslow survival S(t | x) = exp(-H0(t) exp(score)) at ``times`` (n, len(times))."""
        H0 = _step_at(self.baseline_times_, self.baseline_cumhaz_, times)
        return np.exp(-np.outer(np.exp(self.predict(X)), H0))

    def score(self, X, y) -> float:
        time, event = as_survival(y)
        return concordance_index(time, event, self.predict(X))


# ----------------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------------
def concordance_index(time, event, risk, tied_tol: float = 1e-8) -> float:
    """Harrell's C: over the comparable pairs (i had an event, j survived longer, or j was censored at the same
    time), the fraction in which i has the higher risk; risk ties count 1/2."""
    time, event = as_survival((time, event))
    risk = np.asarray(risk, float)
    ev = event > 0
    T_i, T_j = time[:, None], time[None, :]
    comp = ev[:, None] & ((T_j > T_i) | ((T_j == T_i) & ~ev[None, :]))
    if not comp.any():
        raise ValueError("no comparable pairs: the C-index is undefined")
    diff = risk[:, None] - risk[None, :]
    tie = np.abs(diff) <= tied_tol
    num = np.sum(comp & (diff > 0) & ~tie) + 0.5 * np.sum(comp & tie)
    return float(num / comp.sum())


def kaplan_meier(time, event) -> Dict[str, np.ndarray]:
    """Kaplan-Meier estimate at every distinct time (events and censorings): survival, Greenwood variance,
    number at risk, events."""
    time, event = as_survival((time, event))
    ut = np.unique(time)
    d = np.array([event[time == t].sum() for t in ut])
    n = np.array([(time >= t).sum() for t in ut])
    s = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.cumsum(np.where(n > d, d / (n * (n - d)), 0.0))
    return {"time": ut, "survival": s, "variance": s ** 2 * g, "at_risk": n, "events": d}


def logrank_test(time, event, groups) -> Dict[str, float]:
    """k-group log-rank test: chi-square with k - 1 degrees of freedom (hypergeometric variance)."""
    time, event = as_survival((time, event))
    groups = np.asarray(groups)
    labels = np.unique(groups)
    if len(labels) < 2:
        raise ValueError("the log-rank test needs at least two groups")
    ut = np.unique(time[event > 0])
    G = (groups[:, None] == labels[None, :]).astype(float)  # (n, k)
    O = np.zeros(len(labels))
    E = np.zeros(len(labels))
    V = np.zeros((len(labels), len(labels)))
    for t in ut:
        at = time >= t
        n_g = G[at].sum(0)
        d_g = G[(time == t) & (event > 0)].sum(0)
        n, d = n_g.sum(), d_g.sum()
        O += d_g
        E += d * n_g / n
        if n > 1:
            f = d * (n - d) / (n - 1) / n
            V += f * (np.diag(n_g) - np.outer(n_g, n_g) / n)
    diff = (O - E)[:-1]
    chi2 = float(diff @ np.linalg.pinv(V[:-1, :-1]) @ diff)
    df = len(labels) - 1
    return {"chi2": chi2, "df": df, "p": float(stats.chi2.sf(chi2, df)),
            "observed": O.tolist(), "expected": E.tolist(), "groups": [str(g) for g in labels]}


def censoring_survival(time, event):
    """Kaplan-Meier of the censoring distribution (events at a tied time leave the risk set first)."""
    time, event = as_survival((time, event))
    ut = np.unique(time)
    c = np.array([((time == t) & (event == 0)).sum() for t in ut])
    n = np.array([(time >= t).sum() - ((time == t) & (event > 0)).sum() for t in ut])
    with np.errstate(divide="ignore", invalid="ignore"):
        return ut, np.cumprod(np.where(n > 0, 1.0 - c / np.where(n > 0, n, 1), 1.0))


def cumulative_dynamic_auc(train, test, risk, times, tied_tol: float = 1e-8) -> np.ndarray:
    """Time-dependent AUC (cumulative cases T <= t with an event, dynamic controls T > t) at each time, with
    inverse-probability-of-censoring weights 1 / G(T_i) from the censoring Kaplan-Meier of ``train`` (Uno 2007;
    as scikit-survival's cumulative_dynamic_auc). ``train`` / ``test`` = (time, event)."""
    ttr, etr = as_survival(train)
    tte, ete = as_survival(test)
    risk = np.asarray(risk, float)
    gt, gs = censoring_survival(ttr, etr)
    G = _step_at(gt, gs, tte, before=1.0)
    out = []
    for t in np.atleast_1d(times):
        case = (tte <= t) & (ete > 0)
        ctrl = tte > t
        if not case.any() or not ctrl.any():
            out.append(np.nan)
            continue
        w = 1.0 / G[case]
        diff = risk[case][:, None] - risk[ctrl][None, :]
        tie = np.abs(diff) <= tied_tol
        num = (w[:, None] * ((diff > 0) & ~tie) + 0.5 * w[:, None] * tie).sum()
        out.append(float(num / (w.sum() * ctrl.sum())))
    return np.asarray(out)


def survival_summary(time, event, P, groups, times, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                     train=None) -> dict:
    """Repeated-CV summary of out-of-fold risk scores P (repeats, n) and risk groups (repeats, n): pooled Harrell's
    C per repetition (mean, SD, range, case-bootstrap CI of the repetition mean and repetitions x bootstrap
    interval), td-AUC at ``times`` per repetition (mean, SD), log-rank test of the risk groups per repetition (median
    p, repetitions with p < 0.05) and of the majority group over repetitions (high in more than half)."""
    time, event = as_survival((time, event))
    P = np.atleast_2d(np.asarray(P, float))
    groups = np.atleast_2d(np.asarray(groups))
    c = np.array([concordance_index(time, event, r) for r in P])
    rng = np.random.default_rng(seed)
    boots, pooled = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(time), len(time))
        try:
            ci = [concordance_index(time[i], event[i], r[i]) for r in P]
        except ValueError:
            continue
        boots.append(float(np.mean(ci)))
        pooled.extend(ci)
    train = train if train is not None else (time, event)
    auc = np.array([cumulative_dynamic_auc(train, (time, event), r, times) for r in P])
    lr = [logrank_test(time, event, g) if len(np.unique(g)) > 1 else None for g in groups]
    ps = np.array([x["p"] for x in lr if x is not None])
    major = (groups.mean(0) > 0.5).astype(int)
    q = (alpha / 2, 1 - alpha / 2)
    return {"n": int(len(time)), "events": int(event.sum()), "repeats": int(len(P)),
            "cindex_mean": round(float(c.mean()), 4),
            "cindex_sd": round(float(c.std(ddof=1)) if len(c) > 1 else 0.0, 4),
            "cindex_min": round(float(c.min()), 4), "cindex_max": round(float(c.max()), 4),
            "cindex_95ci_bootstrap": [round(float(v), 4) for v in np.quantile(boots, q)] if boots else None,
            "cindex_95ci_repetitions_x_bootstrap": [round(float(v), 4) for v in np.quantile(pooled, q)]
            if pooled else None,
            "cindex_per_repetition": [round(float(v), 4) for v in c],
            "td_auc_times": [float(t) for t in np.atleast_1d(times)],
            "td_auc_mean": [None if not np.isfinite(v) else round(float(v), 4) for v in np.nanmean(auc, 0)]
            if np.isfinite(auc).any() else None,
            "td_auc_sd": [round(float(v), 4) for v in np.nanstd(auc, 0, ddof=1)] if len(P) > 1 else None,
            "logrank_p_median": float(f"{np.median(ps):.4g}") if len(ps) else None,
            "logrank_p_per_repetition": [float(f"{v:.4g}") for v in ps],
            "logrank_repetitions_p_below_0.05": int((ps < 0.05).sum()),
            "logrank_majority_group": logrank_test(time, event, major) if len(np.unique(major)) > 1 else None,
            "majority_group": major.tolist(),
            "notes": {"cindex": "Harrell's C of the pooled out-of-fold risk scores of each repetition",
                      "cindex_95ci_bootstrap": "case bootstrap of the repetition-mean C-index",
                      "risk_groups": "each held-out case is high risk when its score exceeds the median score of "
                                     "its outer TRAINING fold",
                      "logrank_majority_group": "high risk in more than half of the repetitions"}}


# ----------------------------------------------------------------------------------------------------------------
# repeated nested cross-validation (the fold machinery of train.py)
# ----------------------------------------------------------------------------------------------------------------
def _cox_baseline(dtr, dte, time_col, event_col, cols):
    mu = {c: float(dtr[c].mean()) for c in cols}
    C = dtr[list(cols)].fillna(mu).to_numpy(float)
    m, sd = C.mean(0), C.std(0)
    sd[sd == 0] = 1
    b, _, _ = cox_fit((C - m) / sd, dtr[time_col].to_numpy(float), dtr[event_col].to_numpy(float))
    return ((dte[list(cols)].fillna(mu).to_numpy(float) - m) / sd) @ b, ((C - m) / sd) @ b


def _fit_fold(dtr, time_col, event_col, img_cols, clinical, params, threshold):
    from .train import apply_missing, missing_rule, model_clinical
    rule = missing_rule(dtr, img_cols, clinical, threshold)
    d = apply_missing(dtr, rule, clinical)
    cols = rule["img_cols"] + model_clinical(clinical, rule)
    est = CoxLasso(**params).fit(d[cols].to_numpy(float),
                                 (d[time_col].to_numpy(float), d[event_col].to_numpy(float)), cols)
    return est, rule, cols


def repeated_cv_cox(df, time_col: str, event_col: str, img_cols: List[str], clinical: Sequence[str] = (), *,
                    repeats: int = 10, folds: int = 5, seed: int = 0, params: Optional[dict] = None,
                    baselines: Optional[Dict[str, Sequence[str]]] = None, missing_threshold: float = 0.2,
                    progress=None) -> dict:
    """Out-of-fold risk scores and training-median risk groups (repeats, n) of CoxLasso and of the Cox baselines
    (default: age when present) on the SAME outer folds (``train.cv_splits`` stratified by the event)."""
    import pandas as pd
    from .train import apply_missing, cv_splits
    params = dict(params or {})
    if baselines is None:
        baselines = {"age": ("age",)} if "age" in df.columns and df["age"].notna().any() else {}
    jobs, k = cv_splits(pd.Series(df[event_col].astype(int).astype(str).to_numpy()), repeats, folds, seed)
    n = len(df)
    P = np.full((repeats, n), np.nan)
    Gp = np.zeros((repeats, n), int)
    B = {b: np.full((repeats, n), np.nan) for b in baselines}
    GB = {b: np.zeros((repeats, n), int) for b in baselines}
    nfeat, selected, alphas = [], {}, []
    for j, (r, f, tr, te) in enumerate(jobs):
        dtr, dte = df.iloc[tr], df.iloc[te]
        est, rule, cols = _fit_fold(dtr, time_col, event_col, img_cols, clinical,
                                    {**params, "random_state": seed + r}, missing_threshold)
        X = apply_missing(dte, rule, list(clinical))[cols].to_numpy(float)
        P[r, te] = est.predict(X)
        Gp[r, te] = (P[r, te] > est.risk_median_).astype(int)
        nfeat.append(len(est.features_))
        alphas.append(est.alpha_)
        for c in est.features_:
            selected[c] = selected.get(c, 0) + 1
        for b, bc in baselines.items():
            s_te, s_tr = _cox_baseline(dtr, dte, time_col, event_col, bc)
            B[b][r, te] = s_te
            GB[b][r, te] = (s_te > np.median(s_tr)).astype(int)
        if progress:
            progress(j + 1, len(jobs))
    return {"oof": P, "groups": Gp, "baselines": B, "baseline_groups": GB, "folds": k, "repeats": repeats,
            "n_features_per_fold": nfeat, "alpha_per_fold": alphas,
            "selection_frequency": dict(sorted(selected.items(), key=lambda kv: -kv[1])),
            "baseline_columns": {b: list(c) for b, c in baselines.items()}}


def default_times(time, event, quantiles=(0.25, 0.5, 0.75)) -> List[float]:
    """Evaluation times for the td-AUC: quantiles of the event times, inside the follow-up."""
    time, event = as_survival((time, event))
    t = np.quantile(time[event > 0], quantiles)
    return sorted({float(v) for v in t if time.min() <= v < time.max()})


def km_figure(time, event, groups, title: str, path=None, labels=("low risk", "high risk")):
    """Kaplan-Meier curves by risk group with the log-rank p and numbers at risk; PNG to ``path`` (and returned as
    base64 for the HTML report)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .evaluation import _png
    time, event = as_survival((time, event))
    groups = np.asarray(groups)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for g, lab, col in zip((0, 1), labels, ("#2e86c1", "#c0392b")):
        m = groups == g
        if not m.any():
            continue
        km = kaplan_meier(time[m], event[m])
        x = np.r_[0, km["time"]]
        ax.step(x, np.r_[1, km["survival"]], where="post", color=col,
                label=f"{lab} (n={int(m.sum())}, events={int(event[m].sum())})")
        cens = m & (event == 0)
        ax.plot(time[cens], _step_at(km["time"], km["survival"], time[cens], 1.0), "|", color=col, ms=7)
    sub = ""
    if len(np.unique(groups)) > 1:
        sub = f"\nlog-rank p = {logrank_test(time, event, groups)['p']:.3g}"
    ax.set(xlabel="time", ylabel="survival probability", ylim=(0, 1.02), title=title + sub)
    ax.legend(fontsize=7, loc="lower left")
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return _png(fig)


# ----------------------------------------------------------------------------------------------------------------
# bundle (JSON, never pickle)
# ----------------------------------------------------------------------------------------------------------------
def survival_bundle_dict(est: CoxLasso, *, task: str, name: str, version: str, feature_schema: dict, training: dict,
                         metrics: dict, synthetic: bool, intended_use: str, imputation: Dict[str, float],
                         times: Sequence[float]) -> dict:
    from . import __version__
    S0 = np.exp(-_step_at(est.baseline_times_, est.baseline_cumhaz_, times))
    return {"format": SURVIVAL_FORMAT, "schema_version": SURVIVAL_SCHEMA_VERSION, "kind": "cox-lasso",
            "task": task, "name": name, "version": version, "features": list(est.features_),
            "center": [float(v) for v in est.center_], "scale": [float(v) for v in est.scale_],
            "coefficients": [float(v) for v in est.coef_], "alpha": float(est.alpha_),
            "risk_score": "sum of coefficient * (value - center) / scale; higher = higher hazard",
            "risk_group_cutoff": float(est.risk_median_),
            "risk_group_rule": "high risk when the risk score exceeds the TRAINING median (Shim 2021)",
            "baseline_survival": {"times": [float(t) for t in times], "survival": [float(v) for v in S0],
                                  "estimator": "Breslow, at a risk score of 0"},
            "imputation": {k: float(v) for k, v in imputation.items() if k in est.features_},
            "feature_schema": feature_schema, "training": {**training, "software": f"glioma-radiogenomics "
                                                                                   f"{__version__}",
                                                          "python": platform.python_version(),
                                                          "date": _dt.date.today().isoformat()},
            "metrics": metrics, "synthetic": bool(synthetic), "intended_use": intended_use,
            "card": {"model": f"{name} {version}", "method": "Cox-LASSO radiomic risk score (Shim 2021)",
                     "trained on": training.get("trained_on"), "n (events)": f"{training.get('n')} "
                                                                              f"({training.get('events')})",
                     "synthetic": bool(synthetic), "features": len(est.features_),
                     "C-index (repeated CV)": metrics.get("cindex_cv"), "intended use": intended_use}}


def load_survival_bundle(path) -> dict:
    """Read and check a survival bundle (JSON only)."""
    import json
    from .bundle import BundleError
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable JSON survival bundle ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != SURVIVAL_FORMAT:
        raise BundleError(f"{path}: not a GliomaRadiogenomics survival bundle (format "
                          f"'{d.get('format') if isinstance(d, dict) else None}')")
    if d.get("schema_version") != SURVIVAL_SCHEMA_VERSION:
        raise BundleError(f"{path}: survival bundle schema version {d.get('schema_version')} is not supported")
    for k in ("features", "center", "scale", "coefficients", "risk_group_cutoff", "synthetic", "training",
              "metrics", "intended_use", "card"):
        if k not in d:
            raise BundleError(f"{path}: missing key '{k}'")
    n = len(d["features"])
    if any(len(d[k]) != n for k in ("center", "scale", "coefficients")):
        raise BundleError(f"{path}: center / scale / coefficients do not match the {n} features")
    vals = d["center"] + d["scale"] + d["coefficients"] + [d["risk_group_cutoff"]]
    if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in vals) or any(v <= 0 for v in d["scale"]):
        raise BundleError(f"{path}: non-numeric, non-finite or non-positive scale values")
    return d


def bundle_risk(bundle: dict, row: Dict[str, float]) -> dict:
    """Risk score and group of one case (a mapping feature -> value; missing values take the bundle's training
    medians and are named)."""
    imputed, x = [], []
    for f in bundle["features"]:
        v = row.get(f)
        if v is None or not np.isfinite(float(v)):
            if f not in bundle.get("imputation", {}):
                raise ValueError(f"feature '{f}' is missing and has no imputation value")
            v = bundle["imputation"][f]
            imputed.append(f)
        x.append(float(v))
    s = float(np.dot((np.asarray(x) - bundle["center"]) / np.asarray(bundle["scale"]), bundle["coefficients"]))
    return {"risk_score": s, "risk_group": "high" if s > bundle["risk_group_cutoff"] else "low", "imputed": imputed,
            "synthetic": bundle["synthetic"]}


# ----------------------------------------------------------------------------------------------------------------
# training from a feature table: `train --method cox-lasso --time COL --event COL`
# ----------------------------------------------------------------------------------------------------------------
def train_cox_bundle(table, time_col: str, event_col: str, provenance: dict, *, trained_on: str, synthetic: bool,
                     intended_use: str, clinical: Optional[Sequence[str]] = None, seed: int = 0, repeats: int = 10,
                     folds: int = 5, inner_folds: int = 10, features: Optional[str] = None,
                     id_column: Optional[str] = None, missing_threshold: float = 0.2, report_path=None,
                     times: Optional[Sequence[float]] = None, task: str = "overall survival",
                     version: str = "1.0.0", params: Optional[dict] = None, progress=None) -> Tuple[dict, dict]:
    """Repeated nested CV + final Cox-LASSO fit on all cases -> (survival bundle dict, evaluation dict). With
    ``report_path`` (no suffix): <report_path>.json, .km.png (out-of-fold risk groups) and .html."""
    import pandas as pd
    from .io import InputError, atomic_write_json
    from .train import (_usable, add_derived_columns, apply_missing, imaging_columns, missing_rule,
                        model_clinical, offered_sequences)
    for c in (time_col, event_col):
        if c not in table.columns:
            raise InputError(f"column '{c}' is not in the table")
    if id_column and id_column != "case_id":
        if id_column not in table.columns:
            raise InputError(f"--id-column: column '{id_column}' is not in the table")
        table = table.drop(columns=[c for c in ("case_id",) if c in table.columns]).assign(
            case_id=table[id_column].astype(str))
    df = add_derived_columns(table)
    tt = pd.to_numeric(df[time_col], errors="coerce")
    ee = pd.to_numeric(df[event_col], errors="coerce")
    bad = df[(tt.notna() & (tt < 0)) | (ee.notna() & ~ee.isin([0, 1]))]
    if len(bad):
        raise InputError(f"'{time_col}' must be >= 0 and '{event_col}' 0 / 1; {len(bad)} row(s) are not")
    keep = tt.notna() & ee.notna()
    df = df[keep].reset_index(drop=True)
    df[time_col], df[event_col] = tt[keep].to_numpy(float), ee[keep].to_numpy(float)
    n_dropped = int((~keep).sum())
    if df[event_col].sum() < 4:
        raise InputError(f"only {int(df[event_col].sum())} events: a Cox-LASSO needs more")
    clinical = [c for c in (clinical or []) if c in df.columns and df[c].notna().any()]
    exclude = {time_col, event_col, "case_id", "sex", id_column or "case_id", *clinical,
               "age", "sex_male", "who_grade", "vasari_score"}
    img_cols = _usable(df, imaging_columns(df.columns, features, exclude))
    if not img_cols:
        raise InputError("no usable imaging feature columns (finite, non-constant) in the table")
    df[img_cols] = df[img_cols].apply(pd.to_numeric, errors="coerce")
    params = {"inner_folds": inner_folds, **(params or {})}
    time, event = df[time_col].to_numpy(float), df[event_col].to_numpy(float)
    times = list(times) if times else default_times(time, event)
    cv = repeated_cv_cox(df, time_col, event_col, img_cols, clinical, repeats=repeats, folds=folds, seed=seed,
                         params=params, missing_threshold=missing_threshold, progress=progress)
    summ = survival_summary(time, event, cv["oof"], cv["groups"], times, seed=seed)
    base = {b: survival_summary(time, event, v, cv["baseline_groups"][b], times, n_boot=500, seed=seed)
            for b, v in cv["baselines"].items()}
    diff = {b: {"cindex_diff_mean": round(float(np.mean(np.array(summ["cindex_per_repetition"]) -
                                                        np.array(v["cindex_per_repetition"]))), 4),
                "repetitions_model_better": int(np.sum(np.array(summ["cindex_per_repetition"]) >
                                                       np.array(v["cindex_per_repetition"])))}
            for b, v in base.items()}
    rule = missing_rule(df, img_cols, clinical, missing_threshold)
    dfi = apply_missing(df, rule, clinical)
    cols = rule["img_cols"] + model_clinical(clinical, rule)
    est = CoxLasso(**{**params, "random_state": seed}).fit(dfi[cols].to_numpy(float), (time, event), cols)
    train_eta = est.predict(dfi[cols].to_numpy(float))
    apparent = {"cindex": round(concordance_index(time, event, train_eta), 4),
                "logrank_training_median": logrank_test(time, event, (train_eta > est.risk_median_).astype(int))
                if len(np.unique(train_eta > est.risk_median_)) > 1 else None}
    nf = np.asarray(cv["n_features_per_fold"])
    design = {"repeats": repeats, "outer_folds": cv["folds"], "inner_folds": params["inner_folds"], "seed": seed,
              "criterion": params.get("criterion", "partial_likelihood"), "rule": params.get("rule", "min"),
              "n_imaging_columns_offered": len(img_cols), "clinical_offered": clinical,
              "outer_split": "stratified by the event indicator (train.cv_splits), a different shuffle per "
                             "repetition; missing values, correlation filter (|r| > 0.99), standardisation, the "
                             "inner CV of the penalty and the median cut all inside each outer training fold",
              "baselines": "Cox regression (unpenalised) on the baseline columns, same outer training folds"}
    metrics = {"cindex_cv": summ["cindex_mean"], "cindex_cv_sd": summ["cindex_sd"],
               "cindex_cv_95ci_bootstrap": summ["cindex_95ci_bootstrap"],
               "cindex_cv_95ci_repetitions_x_bootstrap": summ["cindex_95ci_repetitions_x_bootstrap"],
               "cindex_cv_range": [summ["cindex_min"], summ["cindex_max"]],
               "td_auc_times": summ["td_auc_times"], "td_auc_cv": summ["td_auc_mean"], "td_auc_cv_sd": summ["td_auc_sd"],
               "logrank_p_cv_median": summ["logrank_p_median"],
               "logrank_cv_repetitions_p_below_0.05": summ["logrank_repetitions_p_below_0.05"],
               "baselines_cv": {b: {"cindex": v["cindex_mean"], "cindex_sd": v["cindex_sd"],
                                    "cindex_95ci_bootstrap": v["cindex_95ci_bootstrap"], "td_auc": v["td_auc_mean"],
                                    "logrank_p_median": v["logrank_p_median"], "columns": cv["baseline_columns"][b]}
                                for b, v in base.items()},
               "comparison_with_baselines": diff,
               "n_features_per_fold": {"mean": round(float(nf.mean()), 2), "min": int(nf.min()), "max": int(nf.max())},
               "cindex_train_apparent": apparent["cindex"], "validation": "internal (repeated nested CV) only",
               "method": f"{repeats} x {cv['folds']}-fold outer CV, {params['inner_folds']}-fold inner CV of the "
                         "penalty; Harrell's C of the pooled out-of-fold scores per repetition"}
    training = {"trained_on": trained_on, "n": int(len(df)), "events": int(event.sum()), "time_column": time_col,
                "event_column": event_col, "rows_without_time_or_event": n_dropped, "seed": seed,
                "method": "Cox-LASSO (Shim 2021): L1-penalised Cox partial likelihood (Breslow ties), penalty by "
                          "inner cross-validation, risk groups at the training median",
                "alpha": est.alpha_, "inner_cv": est.cv_, "validation_design": design,
                "selection_frequency_cv": cv["selection_frequency"],
                "sequences": offered_sequences(img_cols)}
    imputation = {**rule["medians"], **rule["means"]}
    name = f"{task.replace(' ', '-')}-cox-lasso"
    bundle = survival_bundle_dict(est, task=task, name=name, version=version,
                                  feature_schema={**provenance, "columns": list(est.features_)}, training=training,
                                  metrics=metrics, synthetic=synthetic, intended_use=intended_use,
                                  imputation=imputation, times=times)
    ev = {"task": task, "method": "cox-lasso", "design": design, "model": summ, "baselines": base,
          "comparison_with_baselines": diff, "training_apparent": apparent, "features": list(est.features_),
          "coefficients": [float(v) for v in est.coef_],
          "oof_risk_score_mean": [round(float(v), 6) for v in cv["oof"].mean(0)],
          "case_id": df["case_id"].astype(str).tolist() if "case_id" in df else None,
          "time": time.tolist(), "event": event.astype(int).tolist(),
          "alpha_per_fold": cv["alpha_per_fold"], "n_features_per_fold": cv["n_features_per_fold"],
          "synthetic": synthetic}
    if report_path:
        report_path = Path(report_path)
        png = report_path.parent / (report_path.name + ".km.png")
        km = km_figure(time, event, summ["majority_group"], f"{task}: out-of-fold risk groups "
                       f"(majority of {repeats} repetitions){' [SYNTHETIC]' if synthetic else ''}", png)
        ev["km_figure"] = png.name
        atomic_write_json(report_path.parent / (report_path.name + ".json"), ev)
        from .evaluation import write_report
        rows = [["Cox-LASSO", summ["cindex_mean"], summ["cindex_sd"], "-".join(map(str, summ["cindex_95ci_bootstrap"]
                                                                                 or [])),
                 summ["td_auc_mean"], summ["logrank_p_median"]]]
        rows += [[f"Cox on {b}", v["cindex_mean"], v["cindex_sd"], "-".join(map(str, v["cindex_95ci_bootstrap"] or [])),
                  v["td_auc_mean"], v["logrank_p_median"]] for b, v in base.items()]
        write_report(report_path.parent / (report_path.name + ".html"), "Survival model evaluation", [
            {"title": f"{task}: repeated nested cross-validation (internal validation)",
             "text": f"n = {len(df)}, events = {int(event.sum())}; td-AUC at {summ['td_auc_times']}. "
                     + design["outer_split"],
             "table": {"columns": ["model", "C-index mean", "SD over repetitions", "95% CI (bootstrap)",
                                   "td-AUC", "log-rank p (median over repetitions)"], "rows": rows},
             "figures": {"Kaplan-Meier by out-of-fold risk group": km}}], bundle["card"])
    return bundle, ev
