"""The papers' model estimators, scikit-learn style (fit / predict_proba / decision_function / get_params).

Wang 2025 (IDH + epilepsy) — ``WangLasso(method="st" | "mt" | "cmt")``, by default as the authors' published code
(github wangyidada/CMTLasso) runs it, with its three bugs fixed (docs/models.md lists them):
  1. z-score; of any pair with Pearson |r| > 0.99 the later column (column order) is dropped;
  2. ``n_bootstrap`` (100) rounds: round i (seed ``random_state + i``) takes floor(80 %) of the cases at random for
     training, the rest for validation, and resamples the training part with replacement (the authors' generator:
     ``random_state=0`` gives their 100 rounds). Each round fits at ONE fixed penalty ``alpha`` (the paper's 0.001;
     the authors' script runs 0.001, 0.01 and 0.1) and scores the validation part; nothing is tuned on it:
       st  — per task, ``Lasso`` (squared error on the 0/1 label, scikit-learn);
       mt  — ``MultiTaskLasso`` (L2,1: a feature is in or out for all tasks at once: the shared features); the
             round counts when the MEAN of the tasks' validation AUCs is >= ``min_val_auc`` (0.7);
       cmt — both: each task uses the shared (mt) features plus its own (st) features;
     rounds with validation AUC < 0.7 are discarded;
  3. a feature is kept when selected in MORE than round(0.8 x 100) = 80 of the rounds (kept rounds counted). When no
     feature of a task passes, the task takes its ``fallback_features`` (10) most frequently selected ones and the
     model says so;
  4. per task, the final squared-error LASSO on those features (column order) along alpha 1e-4 .. 10 (100 values),
     alpha by the 1-SE rule (standard error = SD / sqrt(folds)) on 5-fold cross-validated MSE; its score is turned
     into a probability by a logistic calibration (Platt) fitted on the training cases (2 parameters; the ranking,
     hence the AUC, is the LASSO's). ``one_se_rule="sd"`` and ``final_cv="kfold"`` reproduce the authors' final step.
  ``loss="logistic"``: our variant: L1 / L2,1-penalised logistic regression at the same fixed alpha (glmnet's lambda:
  mean log-loss + alpha * penalty on z-scored features; solver FISTA with warm starts and working sets, missing
  labels (NaN) of a task left out of that task's loss), final L1-logistic by the 1-SE rule on cross-validated
  deviance (alpha 1e-1 .. 1e-4, 20 values).

Liu 2024 (ATRX) — ``LiuFusion``: Student's t-test (Welch's on request) p < 0.05 -> L1-logistic with 10-fold CV on AUC (the alpha with the
  best mean AUC) -> backward stepwise elimination by AIC when more than 20 features remain -> logistic regression
  = the imaging model; ``imaging score`` = its linear predictor. Fusion: logistic regression on the imaging score
  (cross-fitted, out-of-fold, for the training cases so that the fusion weights are not fitted on an optimistic
  score) + age + sex + VASARI score (WHO grade when named). ``compare_classifiers`` reports logistic regression, random
  forest and SVM on the selected features by cross-validated AUC.
  ``imaging_models="best-of-9"`` (default): Liu's 9 candidate imaging models, 3 feature types (radiomics, DL =
  ResNet34 deep features, hybrid = both) x 3 regions (edema, tumor, overall), read from the column names
  (``liu_column_kind``); each candidate's whole pipeline (t-test -> LASSO -> AIC -> logistic) is refitted in each of
  5 stratified folds of the training cases and the candidate with the best mean fold AUC is the imaging model.
  Without that column structure (one region, PyRadiomics names, ...) the imaging model is fitted on all imaging
  columns (``"all"``, the fitted ``imaging_models_used_`` says which).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from .sequences import SEQUENCE_NAMES

ALPHA_PATH = np.logspace(-1, -4, 20)          # final L1-logistic (loss='logistic') along 1e-1 .. 1e-4
SQUARED_ALPHA_PATH = np.logspace(1, -4, 100)  # the authors' final LassoCV grid: logspace(-4, 1, 100), largest first
AUTHORS_ROUND_ALPHAS = (0.001, 0.01, 0.1)     # the authors' script runs the whole procedure at each


# ----------------------------------------------------------------------------------------------------------------
# preprocessing
# ----------------------------------------------------------------------------------------------------------------
def correlation_keep(X: np.ndarray, threshold: float = 0.99) -> np.ndarray:
    """Indices kept when dropping, for every pair with |r| > threshold, the later column (greedy, column order)."""
    sd = X.std(0)
    Z = (X - X.mean(0)) / np.where(sd > 0, sd, 1)
    R = np.abs(Z.T @ Z) / len(X)
    np.fill_diagonal(R, 0)
    keep = np.ones(X.shape[1], bool)
    for j in range(X.shape[1]):
        if keep[j]:
            later = np.flatnonzero(R[j, j + 1:] > threshold) + j + 1
            keep[later] = False
    return np.flatnonzero(keep)


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-np.clip(t, -35, 35)))


# ----------------------------------------------------------------------------------------------------------------
# solver: multi-task penalised logistic regression by FISTA
# ----------------------------------------------------------------------------------------------------------------
def _prox(W, t, penalty):
    if penalty == "l1":
        return np.sign(W) * np.maximum(np.abs(W) - t, 0.0)
    norms = np.sqrt((W ** 2).sum(1, keepdims=True))
    return W * np.maximum(1.0 - t / np.maximum(norms, 1e-300), 0.0)


def _lipschitz(Z: np.ndarray, n_min: float) -> float:
    """Lipschitz constant of the mean log-loss gradient: 0.25 * (||Z||_2^2 + n) / n (power iteration)."""
    if Z.shape[1] == 0:
        return 0.25 * len(Z) / n_min
    v = np.random.default_rng(0).standard_normal(Z.shape[1])
    for _ in range(20):
        v = Z.T @ (Z @ v)
        v /= np.linalg.norm(v) or 1.0
    return 0.25 * (float(np.linalg.norm(Z @ v) ** 2) * 1.05 + len(Z)) / n_min


def _fista(Z, Yf, M, n_t, W, b, alpha, penalty, max_iter, tol):
    from scipy.special import expit
    step = 1.0 / _lipschitz(Z, n_t.min())
    thr = step * alpha
    Mn = M / n_t
    Wy, by, tk = W.copy(), b.copy(), 1.0
    for _ in range(max_iter):
        R = (expit(Z @ Wy + by) - Yf) * Mn
        V = Wy - step * (Z.T @ R)
        if penalty == "l1":
            W_new = V - np.minimum(np.maximum(V, -thr), thr)
        else:
            W_new = _prox(V, thr, penalty)
        b_new = by - step * R.sum(0)
        dW, db = W_new - W, b_new - b
        if np.vdot(Wy - W_new, dW) + np.vdot(by - b_new, db) > 0:
            tk = 1.0  # adaptive restart (O'Donoghue & Candes 2015): momentum pointed uphill
        t_new = (1 + math.sqrt(1 + 4 * tk * tk)) / 2
        mom = (tk - 1) / t_new
        Wy = W_new + mom * dW
        by = b_new + mom * db
        W, b, tk = W_new, b_new, t_new
        if max(np.abs(dW).max(initial=0.0), np.abs(db).max()) < tol:
            break
    return W, b


def logistic_path(Z: np.ndarray, Y: np.ndarray, alphas: Sequence[float], penalty: str = "l1",
                  max_iter: int = 500, tol: float = 1e-5, stop=None):
    """Penalised logistic regression for T tasks at once along ``alphas`` (largest first), warm-started.

    Z: (n, p) standardised features; Y: (n, T) labels 0/1 with NaN = missing. penalty 'l1' (independent LASSO per
    task) or 'group' (L2,1: rows of W in or out together). Returns lists of W (p, T) and b (T,). ``stop(W, b)``,
    called after each alpha, ends the path early when it returns True.

    Working sets: for each alpha, FISTA runs on the previous active features plus those passing the sequential
    strong rule (|gradient| >= 2 alpha - previous alpha); the full gradient then checks the optimality conditions
    and any violating feature joins the working set until none is left (exact solution, much less work)."""
    Y = np.asarray(Y, float).reshape(len(Z), -1)
    M = np.isfinite(Y).astype(float)
    Yf = np.where(M > 0, Y, 0.0)
    n_t = np.maximum(M.sum(0), 1.0)
    p, T = Z.shape[1], Y.shape[1]
    W = np.zeros((p, T))
    pos = np.clip(Yf.sum(0) / n_t, 1e-6, 1 - 1e-6)
    b = np.log(pos / (1 - pos))

    def grad_norms(W, b):
        nz = np.flatnonzero(np.abs(W).sum(1) > 0)
        G = Z.T @ ((_sigmoid(Z[:, nz] @ W[nz] + b) - Yf) * M / n_t)
        return np.abs(G) if penalty == "l1" else np.sqrt((G ** 2).sum(1, keepdims=True))

    Ws, bs = [], []
    prev_alpha = None
    for alpha in alphas:
        g = grad_norms(W, b)
        active = (np.abs(W) > 0) if penalty == "l1" else (np.abs(W).sum(1, keepdims=True) > 0)
        strong = g >= (2 * alpha - (prev_alpha if prev_alpha is not None else alpha))
        S = np.flatnonzero((active | strong).any(1))
        for _ in range(50):
            Ws_, b = _fista(Z[:, S], Yf, M, n_t, W[S], b, alpha, penalty, max_iter, tol)
            W = np.zeros((p, T))
            W[S] = Ws_
            g = grad_norms(W, b)
            viol = (g > alpha * (1 + 1e-3)).any(1)
            viol[S] = False
            if not viol.any():
                break
            S = np.union1d(S, np.flatnonzero(viol))
        Ws.append(W.copy())
        bs.append(b.copy())
        prev_alpha = alpha
        if stop is not None and stop(W, b):
            break
    return Ws, bs


def _auc(y, s):
    """ROC AUC by the Mann-Whitney rank formula (ties count 1/2), NaN labels ignored; NaN with one class only."""
    from scipy.stats import rankdata
    m = np.isfinite(y)
    y, s = y[m], s[m]
    n1 = int((y == 1).sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _deviance(y, lp):
    m = np.isfinite(y)
    y, lp = y[m], lp[m]
    p = np.clip(_sigmoid(lp), 1e-12, 1 - 1e-12)
    return float(-2 * np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _strata(Y: np.ndarray) -> np.ndarray:
    """One stratification key from several (possibly missing) binary labels."""
    key = np.zeros(len(Y), int)
    for t in range(Y.shape[1]):
        col = np.where(np.isfinite(Y[:, t]), Y[:, t], 2).astype(int)
        key = key * 3 + col
    # merge strata too small to split
    vals, counts = np.unique(key, return_counts=True)
    for v, c in zip(vals, counts):
        if c < 2:
            key[key == v] = vals[np.argmax(counts)]
    return key


def _final_cv(y: np.ndarray, folds: int, scheme: str, seed: int):
    """Folds of the final model's penalty choice: 'stratified' (shuffled, seeded) or 'kfold' (contiguous blocks in
    row order, unshuffled: scikit-learn's ``LassoCV(cv=5)`` as the authors' code calls it)."""
    from sklearn.model_selection import KFold
    k = int(min(folds, np.bincount(y.astype(int)).min()))
    if scheme == "kfold":
        return list(KFold(max(k, 2)).split(y))
    if scheme != "stratified":
        raise ValueError(f"final_cv must be 'stratified' or 'kfold', not '{scheme}'")
    return list(StratifiedKFold(max(k, 2), shuffle=True, random_state=seed).split(y, y))


def _one_se_index(mean: np.ndarray, err: np.ndarray) -> int:
    """Largest penalty (alphas sorted largest first) whose CV error is within one ``err`` of the minimum."""
    best = int(np.argmin(mean))
    return int(min(i for i in range(len(mean)) if mean[i] <= mean[best] + err[best]))


def _spread(errors: np.ndarray, rule: str) -> np.ndarray:
    """(n_alphas, n_folds) CV errors -> the error bar of the 1-SE rule: 'se' = SD / sqrt(folds) (glmnet's standard
    error, what the paper names), 'sd' = the folds' SD (what the authors' code computes, ``np.std``)."""
    if rule == "sd":
        return errors.std(1)
    if rule != "se":
        raise ValueError(f"one_se_rule must be 'se' or 'sd', not '{rule}'")
    return errors.std(1, ddof=1) / math.sqrt(errors.shape[1])


def lasso_1se(Z: np.ndarray, y: np.ndarray, alphas=ALPHA_PATH, folds: int = 5, seed: int = 0,
              final_cv: str = "stratified", one_se_rule: str = "se"):
    """L1-logistic along ``alphas``; alpha by the 1-SE rule on cross-validated deviance. Returns (w, b, alpha, cv)."""
    y = np.asarray(y, float)
    splits = _final_cv(y, folds, final_cv, seed)
    dev = np.zeros((len(alphas), len(splits)))
    for f, (tr, va) in enumerate(splits):
        Ws, bs = logistic_path(Z[tr], y[tr, None], alphas)
        for i, (W, b) in enumerate(zip(Ws, bs)):
            dev[i, f] = _deviance(y[va], Z[va] @ W[:, 0] + b[0])
    mean, err = dev.mean(1), _spread(dev, one_se_rule)
    best, i1se = int(np.argmin(mean)), _one_se_index(mean, err)
    Ws, bs = logistic_path(Z, y[:, None], alphas)
    chosen = i1se
    while chosen < len(alphas) - 1 and not np.any(Ws[chosen]):  # the null model: take the sparsest non-empty one
        chosen += 1
    info = {"mean_deviance": mean.tolist(), "error_bar": err.tolist(), "best": best, "1se": i1se,
            "null_model_at_1se": bool(chosen != i1se)}
    return Ws[chosen][:, 0], float(bs[chosen][0]), float(alphas[chosen]), info


def squared_lasso_1se(Z: np.ndarray, y: np.ndarray, alphas=SQUARED_ALPHA_PATH, folds: int = 5, seed: int = 0,
                      final_cv: str = "stratified", one_se_rule: str = "se"):
    """The authors' final model: squared-error LASSO (scikit-learn ``Lasso``) on the 0/1 labels along ``alphas``,
    alpha by the 1-SE rule on cross-validated mean squared error; the sparsest non-empty model when the 1-SE model
    is empty. Returns (w, b, alpha, info): the LASSO score is b + Z @ w (not a probability)."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso, LassoCV
    y = np.asarray(y, float)
    alphas = np.sort(np.asarray(alphas, float))[::-1]
    with warnings.catch_warnings():  # the smallest penalties of the authors' grid stop at max_iter 1000, as theirs
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = LassoCV(alphas=alphas, cv=_final_cv(y, folds, final_cv, seed)).fit(Z, y)
    mse = cv.mse_path_  # rows follow cv.alphas_ (largest first)
    mean, err = mse.mean(1), _spread(mse, one_se_rule)
    best, i1se = int(np.argmin(mean)), _one_se_index(mean, err)
    chosen = i1se
    while True:
        m = Lasso(alpha=float(cv.alphas_[chosen])).fit(Z, y)
        if np.any(m.coef_) or chosen >= len(alphas) - 1:
            break
        chosen += 1
    info = {"mean_mse": mean.tolist(), "error_bar": err.tolist(), "best": best, "1se": i1se,
            "alpha_min_cv": float(cv.alphas_[best]), "null_model_at_1se": bool(chosen != i1se)}
    return m.coef_.astype(float), float(m.intercept_), float(cv.alphas_[chosen]), info


# ----------------------------------------------------------------------------------------------------------------
# Wang 2025: single-task, multi-task and collaborative multi-task LASSO
# ----------------------------------------------------------------------------------------------------------------
_ROUND_INPUT: dict = {}


def _one_blas_thread():
    """Worker processes: one BLAS thread each (n_jobs processes already use the cores)."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)


def round_splits(n: int, n_rounds: int, scheme: str = "authors", seed: int = 0, strata=None, val_fraction=0.2):
    """The selection rounds' (bootstrap training rows, validation rows).

    'authors': round i draws, with seed ``seed + i``, ``floor(0.8 n)`` rows without replacement for training (Python's
    ``random.Random(seed).sample``) and keeps the others (in row order) for validation, then resamples the training
    rows with replacement (``numpy.random.RandomState(seed).choice``): the authors' CVGenerator, so that seed 0 gives
    their 100 rounds exactly. 'stratified': a stratified 80/20 split (strata = the label combination) from one
    ``numpy.random.default_rng(seed)`` stream, the 80 % resampled with replacement."""
    import random
    out = []
    if scheme == "authors":
        n_train = int(np.floor(n * (1 - val_fraction)))
        for i in range(n_rounds):
            s = int(seed) + i
            tr = random.Random(s).sample(range(n), n_train)
            chosen = np.zeros(n, bool)
            chosen[tr] = True
            boot = np.random.RandomState(s).choice(tr, len(tr), replace=True)
            out.append((np.asarray(boot, int), np.flatnonzero(~chosen)))
        return out
    if scheme != "stratified":
        raise ValueError(f"resampling must be 'authors' or 'stratified', not '{scheme}'")
    rng = np.random.default_rng(seed)
    for _ in range(n_rounds):
        tr, va = train_test_split(np.arange(n), test_size=val_fraction, stratify=strata,
                                  random_state=int(rng.integers(2 ** 31 - 1)))
        out.append((rng.choice(tr, size=len(tr), replace=True), va))
    return out


def _round_auc(y, s):
    """Validation AUC of one task (labelled rows); NaN when the validation rows hold one class only."""
    m = np.isfinite(y)
    return _auc(y[m], s[m])


def _one_round(split, job=None):
    """One selection round at the fixed penalty: {selector: (validation AUC, selected column indices)}.

    The multi-task selector's AUC is the mean (or ``round_filter='min'``: the minimum) of the tasks' AUCs."""
    Z, Y, alpha, loss, want_st, want_mt, combine = job if job is not None else _ROUND_INPUT["job"]
    boot, va = split
    T = Y.shape[1]
    Zb, Yb, Zv = Z[boot], Y[boot], Z[va]
    out = {}
    if loss == "squared":
        import warnings
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import Lasso, MultiTaskLasso
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the authors' settings (max_iter 1000) as they ran
            if want_mt:
                rows = np.isfinite(Yb).all(1)  # MultiTaskLasso needs every task's label: complete cases
                m = MultiTaskLasso(alpha=alpha).fit(Zb[rows], Yb[rows])
                P = Zv @ m.coef_.T + m.intercept_
                aucs = [_round_auc(Y[va, t], P[:, t]) for t in range(T)]
                out["shared"] = (float(combine(aucs)), np.flatnonzero(np.abs(m.coef_).sum(0) > 0))
            if want_st:
                for t in range(T):
                    rows = np.isfinite(Yb[:, t])
                    m = Lasso(alpha=alpha).fit(Zb[rows], Yb[rows, t])
                    out[f"task{t}"] = (_round_auc(Y[va, t], Zv @ m.coef_ + m.intercept_), np.flatnonzero(m.coef_))
        return out
    ok = Zb.std(0) > 1e-12
    cols = np.flatnonzero(ok)
    if want_mt:
        Ws, bs = logistic_path(Zb[:, ok], Yb, [alpha], "group", tol=1e-4)
        W, b = Ws[0], bs[0]
        aucs = [_round_auc(Y[va, t], Zv[:, ok] @ W[:, t] + b[t]) for t in range(T)]
        out["shared"] = (float(combine(aucs)), cols[np.abs(W).sum(1) > 0])
    if want_st:  # the tasks' LASSO problems are independent: one call solves them all
        Ws, bs = logistic_path(Zb[:, ok], Yb, [alpha], "l1", tol=1e-4)
        W, b = Ws[0], bs[0]
        for t in range(T):
            out[f"task{t}"] = (_round_auc(Y[va, t], Zv[:, ok] @ W[:, t] + b[t]), cols[W[:, t] != 0])
    return out


def _mean_auc(aucs):
    return float(np.mean(aucs))  # NaN when a task's AUC is undefined: the round is not kept


def _min_auc(aucs):
    return float(np.min(aucs))


@dataclass
class SelectionReport:
    n_rounds: int
    kept_rounds: Dict[str, int]
    frequency: Dict[str, np.ndarray]             # per selector ("shared", task names): selection counts per feature
    selected: Dict[str, List[int]]               # column indices (after the correlation filter), column order
    threshold: Dict[str, float] = field(default_factory=dict)  # a feature needs MORE selections than this
    val_auc: Dict[str, List[float]] = field(default_factory=dict)
    fallback: List[int] = field(default_factory=list)  # tasks where no feature passed: top by frequency used


class WangLasso(BaseEstimator, ClassifierMixin):
    """Single-task / multi-task / collaborative multi-task LASSO (Wang 2025). ``fit(X, Y)`` with Y (n, T).

    Defaults reproduce the authors' published code (github wangyidada/CMTLasso) except its three bugs (docs/models.md):
    ``loss='squared'`` (scikit-learn ``Lasso`` / ``MultiTaskLasso`` on the 0/1 labels), one fixed ``alpha`` in every
    round (the paper's 0.001; the authors' script runs 0.001, 0.01 and 0.1), ``resampling='authors'`` (their
    rounds exactly when ``random_state=0``), ``round_filter='mean'`` (the multi-task round counts when the MEAN of
    the tasks' validation AUCs is >= ``min_val_auc``), ``select_of='rounds'`` (a feature must be selected in MORE
    than round(``select_fraction`` x ``n_bootstrap``) = 80 of the 100 rounds, counting only kept rounds), the final
    per-task squared-error LASSO with the 1-SE rule over ``alphas`` (1e-4 .. 10, 100 values) whose score is mapped
    to a probability by a logistic calibration (Platt) on the training cases.

    ``loss='logistic'``: our variant (documented): L1 / L2,1-penalised logistic regression at the same fixed alpha
    (mean log-loss + alpha x penalty: at the null model the penalty meets the same residual correlation as the
    squared loss), final L1-logistic by the 1-SE rule on cross-validated deviance (alpha 1e-1 .. 1e-4, 20 values).
    In both, no penalty is chosen on the validation split that the round filter scores."""

    def __init__(self, method: str = "cmt", loss: str = "squared", alpha: float = 0.001, n_bootstrap: int = 100,
                 min_val_auc: float = 0.7, select_fraction: float = 0.8, select_of: str = "rounds",
                 round_filter: str = "mean", resampling: str = "authors", corr_threshold: float = 0.99,
                 alphas=None, cv_folds: int = 5, final_cv: str = "stratified", one_se_rule: str = "se",
                 max_features: Optional[int] = None, fallback_features: int = 10, n_jobs: Optional[int] = None,
                 random_state: int = 0):
        self.method = method
        self.loss = loss
        self.alpha = alpha
        self.n_bootstrap = n_bootstrap
        self.min_val_auc = min_val_auc
        self.select_fraction = select_fraction
        self.select_of = select_of
        self.round_filter = round_filter
        self.resampling = resampling
        self.corr_threshold = corr_threshold
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.final_cv = final_cv
        self.one_se_rule = one_se_rule
        self.max_features = max_features
        self.fallback_features = fallback_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -------------------------------------------------------------- selection
    def _rounds(self, Z, Y):
        T = Y.shape[1]
        want_st = self.method in ("st", "cmt")
        want_mt = self.method in ("mt", "cmt")
        keys = (["shared"] if want_mt else []) + ([f"task{t}" for t in range(T)] if want_st else [])
        # every split and resample drawn here: results do not depend on n_jobs
        splits = round_splits(len(Z), self.n_bootstrap, self.resampling, self.random_state,
                              _strata(Y) if self.resampling == "stratified" else None)
        combine = {"mean": _mean_auc, "min": _min_auc}[self.round_filter]
        job = (Z, Y, float(self.alpha), self.loss, want_st, want_mt, combine)
        n_jobs = max(1, min(int(self.n_jobs or 1), self.n_bootstrap))
        if n_jobs > 1:
            _ROUND_INPUT["job"] = job  # inherited by the forked workers
            try:
                from .parallel import process_pool  # any start method: spawned workers get the job once each
                with process_pool(n_jobs, _one_blas_thread, shared=(__name__, "_ROUND_INPUT", {"job": job})) as pool:
                    results = list(pool.map(_one_round, splits, chunksize=max(1, len(splits) // (4 * n_jobs))))
            finally:
                _ROUND_INPUT.clear()
        else:
            results = [_one_round(sp, job) for sp in splits]
        freq = {k: np.zeros(Z.shape[1]) for k in keys}
        kept = {k: 0 for k in keys}
        val_auc = {k: [] for k in keys}
        for res in results:
            for k, (auc, sel) in res.items():
                val_auc[k].append(auc)
                if auc >= self.min_val_auc:  # NaN (a one-class validation split) is not kept
                    kept[k] += 1
                    freq[k][sel] += 1
        selected, threshold, fallback = {}, {}, []
        for k, f in freq.items():
            # the authors: more than round(0.8 x 100) = 80 selections among the kept rounds
            threshold[k] = (float(np.round(self.n_bootstrap * self.select_fraction)) if self.select_of == "rounds"
                            else self.select_fraction * kept[k])
            selected[k] = np.flatnonzero(f > threshold[k]).tolist() if kept[k] else []
        for t in range(T):  # a task with no stable feature at all: its most frequently selected ones (stated)
            own = [k for k in (f"task{t}", "shared") if k in freq]
            if not any(selected[k] for k in own):
                f = sum(freq[k] for k in own)
                top = [int(j) for j in np.argsort(-f, kind="stable")[: self.fallback_features] if f[j] > 0]
                selected[own[0]] = sorted(top)
                fallback.append(t)
        return SelectionReport(self.n_bootstrap, kept, freq, selected, threshold, val_auc, fallback)

    def _check_params(self):
        for name, value, allowed in (("method", self.method, ("st", "mt", "cmt")),
                                     ("loss", self.loss, ("squared", "logistic")),
                                     ("round_filter", self.round_filter, ("mean", "min")),
                                     ("select_of", self.select_of, ("rounds", "kept")),
                                     ("resampling", self.resampling, ("authors", "stratified")),
                                     ("final_cv", self.final_cv, ("stratified", "kfold")),
                                     ("one_se_rule", self.one_se_rule, ("se", "sd"))):
            if value not in allowed:
                raise ValueError(f"{name} must be {' or '.join(allowed)}, not '{value}'")
        if not (self.alpha > 0):
            raise ValueError(f"alpha must be > 0, not {self.alpha}")

    def fit(self, X, Y, feature_names: Optional[Sequence[str]] = None):
        self._check_params()
        X = np.asarray(X, float)
        Y = np.asarray(Y, float).reshape(len(X), -1)
        if not np.isfinite(X).all():
            raise ValueError("X has missing or infinite values: impute or drop them before fitting")
        self.feature_names_in_ = np.asarray(feature_names if feature_names is not None
                                            else [f"x{j}" for j in range(X.shape[1])], dtype=object)
        var = X.std(0) > 1e-12
        self.kept_ = np.flatnonzero(var)[correlation_keep(X[:, var], self.corr_threshold)]
        Xk = X[:, self.kept_]
        self.mean_, self.scale_ = Xk.mean(0), Xk.std(0)
        Z = (Xk - self.mean_) / self.scale_
        self.selection_ = self._rounds(Z, Y)
        T = Y.shape[1]
        squared = self.loss == "squared"
        alphas = np.asarray(self.alphas if self.alphas is not None else
                            (SQUARED_ALPHA_PATH if squared else ALPHA_PATH))
        self.task_features_, self.coef_, self.intercept_, self.alpha_, self.cv_ = [], [], [], [], []
        self.score_coef_, self.score_intercept_, self.calibration_ = [], [], []
        for t in range(T):
            # shared + task-specific, in column order (the authors' set order depends on PYTHONHASHSEED)
            idx = sorted(set(self.selection_.selected.get("shared", []))
                         | set(self.selection_.selected.get(f"task{t}", [])))
            if self.max_features:
                f = sum(self.selection_.frequency[k] for k in ("shared", f"task{t}") if k in self.selection_.frequency)
                idx = sorted(sorted(idx, key=lambda j: -f[j])[: self.max_features])
            m = np.isfinite(Y[:, t])
            if not idx:  # nothing stable: the single most discriminative feature, so that a model exists
                auc1 = [abs(_auc(Y[m, t], Z[m, j]) - 0.5) for j in range(Z.shape[1])]
                idx = [int(np.nanargmax(auc1))]
            Zt, yt = Z[m][:, idx], Y[m, t]
            fit_1se = squared_lasso_1se if squared else lasso_1se
            w, b, a, cv = fit_1se(Zt, yt, alphas, self.cv_folds, self.random_state, self.final_cv, self.one_se_rule)
            self.score_coef_.append(w)
            self.score_intercept_.append(b)
            if squared:  # the LASSO score -> probability: logistic calibration (Platt) on the training cases
                s = Zt @ w + b
                sd = float(s.std()) or 1.0
                c1, c0, _ = _logit_fit(((s - s.mean()) / sd)[:, None], yt)
                slope = float(c1[0]) / sd
                intercept = c0 - slope * s.mean()
                self.calibration_.append({"slope": slope, "intercept": float(intercept)})
                w, b = slope * w, float(intercept + slope * b)
            else:
                self.calibration_.append(None)
            self.task_features_.append(np.asarray(idx))
            self.coef_.append(w)
            self.intercept_.append(b)
            self.alpha_.append(a)
            self.cv_.append(cv)
        self.n_tasks_ = T
        return self

    def score_function(self, X) -> np.ndarray:
        """The final models' raw scores: for ``loss='squared'`` the LASSO regression output (the authors' score,
        ranked for their AUC), for 'logistic' the linear predictor."""
        Z = (np.asarray(X, float)[:, self.kept_] - self.mean_) / self.scale_
        out = np.column_stack([Z[:, idx] @ w + b for idx, w, b in zip(self.task_features_, self.score_coef_,
                                                                       self.score_intercept_)])
        return out[:, 0] if self.n_tasks_ == 1 else out

    def decision_function(self, X) -> np.ndarray:
        """Log-odds (the calibrated score for ``loss='squared'``): same ranking as ``score_function``."""
        Z = (np.asarray(X, float)[:, self.kept_] - self.mean_) / self.scale_
        out = np.column_stack([Z[:, idx] @ w + b for idx, w, b in zip(self.task_features_, self.coef_,
                                                                       self.intercept_)])
        return out[:, 0] if self.n_tasks_ == 1 else out

    def predict_proba(self, X):
        """(n, 2) for one task; a list of (n, 2) arrays (one per task) otherwise (scikit-learn multi-output)."""
        P = _sigmoid(np.asarray(self.decision_function(X)).reshape(len(X), -1))
        out = [np.column_stack([1 - P[:, t], P[:, t]]) for t in range(P.shape[1])]
        return out[0] if self.n_tasks_ == 1 else out

    def predict(self, X):
        P = _sigmoid(np.asarray(self.decision_function(X)).reshape(len(X), -1))
        return (P[:, 0] >= 0.5).astype(int) if self.n_tasks_ == 1 else (P >= 0.5).astype(int)

    def selected_features(self, t: int = 0) -> List[str]:
        """Names of the features with a non-zero coefficient in task t's final model, in column order."""
        idx = self.task_features_[t]
        return [str(self.feature_names_in_[c]) for c in self.kept_[idx][self.coef_[t] != 0]]

    def task_model(self, t: int = 0) -> dict:
        """Task t as a plain linear-logistic model in the original feature units (for a bundle)."""
        idx = self.task_features_[t]
        w = self.coef_[t]
        nz = np.abs(w) > 0
        cols = self.kept_[idx][nz]
        return {"features": [str(self.feature_names_in_[c]) for c in cols],
                "center": self.mean_[idx][nz], "scale": self.scale_[idx][nz], "coef": w[nz],
                "intercept": float(self.intercept_[t]), "alpha": self.alpha_[t],
                "candidates": [str(self.feature_names_in_[c]) for c in self.kept_[idx]],
                "calibration": self.calibration_[t]}


# ----------------------------------------------------------------------------------------------------------------
# Liu 2024: t-test -> LASSO (10-fold CV AUC) -> backward AIC -> logistic; fusion with clinical variables
# ----------------------------------------------------------------------------------------------------------------
def _logit_fit(Z: np.ndarray, y: np.ndarray, iters: int = 100):
    """Unpenalised logistic regression by Newton's method (tiny ridge for separable data). Returns (w, b, loglik)."""
    A = np.column_stack([np.ones(len(Z)), Z])
    beta = np.zeros(A.shape[1])
    ridge = 1e-6 * np.eye(A.shape[1])
    ridge[0, 0] = 0
    for _ in range(iters):
        p = _sigmoid(A @ beta)
        g = A.T @ (y - p) - ridge @ beta
        H = (A * (p * (1 - p))[:, None]).T @ A + ridge
        step = np.linalg.solve(H, g)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    p = np.clip(_sigmoid(A @ beta), 1e-12, 1 - 1e-12)
    ll = float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return beta[1:], float(beta[0]), ll


def firth_fit(Z: np.ndarray, y: np.ndarray, iters: int = 200, tol: float = 1e-8):
    """Firth's penalised logistic regression (Firth 1993; R ``logistf``): maximises log L + 0.5 log det(I(beta)),
    which keeps every coefficient finite when the data are (quasi-)separated - the usual case for a handful of
    radiomic features on ~50 patients, where plain maximum likelihood runs off to infinity. Newton steps on the
    modified score A'(y - p + h (1/2 - p)) (h: hat-matrix diagonal) with step halving on the penalised likelihood.
    Returns (w, b, penalised log-likelihood)."""
    A = np.column_stack([np.ones(len(Z)), Z])
    beta = np.zeros(A.shape[1])

    def pen_ll(b):
        lp = A @ b
        p = _sigmoid(lp)
        w = p * (1 - p)
        sign, logdet = np.linalg.slogdet((A * w[:, None]).T @ A)
        ll = float(np.sum(y * lp - np.logaddexp(0, lp)))
        return ll + 0.5 * (logdet if sign > 0 else -np.inf), p, w

    cur, p, w = pen_ll(beta)
    for _ in range(iters):
        info = (A * w[:, None]).T @ A
        inv = np.linalg.pinv(info)
        h = w * np.einsum("ij,jk,ik->i", A, inv, A)
        step = inv @ (A.T @ (y - p + h * (0.5 - p)))
        t = 1.0
        while True:
            new, p_new, w_new = pen_ll(beta + t * step)
            if new >= cur - 1e-12 or t < 1e-6:
                break
            t /= 2
        beta = beta + t * step
        cur, p, w = new, p_new, w_new
        if np.abs(t * step).max() < tol:
            break
    return beta[1:], float(beta[0]), cur


def backward_aic(Z: np.ndarray, y: np.ndarray, fit=None) -> List[int]:
    """Backward stepwise elimination by AIC: drop the feature whose removal lowers AIC most, until none does.
    ``fit`` (default ``firth_fit``) returns (w, b, log-likelihood); with Firth's fit the AIC is computed on the
    penalised likelihood, so separated subsets do not look perfect (deviance 0) and win by default."""
    fit = fit or firth_fit
    idx = list(range(Z.shape[1]))

    def aic(cols):
        return 2 * (len(cols) + 1) - 2 * fit(Z[:, cols], y)[2]

    current = aic(idx)
    while len(idx) > 1:
        best_aic, drop = min((aic([c for c in idx if c != j]), j) for j in idx)
        if best_aic >= current:
            break
        idx.remove(drop)
        current = best_aic
    return idx


LIU_TTESTS = {"student": "Student's t-test (pooled variance; Liu 2024's independent-samples t-test)",
              "welch": "Welch's t-test (unequal variances)"}


LIU_REGIONS = ("edema", "tumor", "overall")        # the liu2024 preset's regions (regions.REGION_LABELS)
LIU_FEATURE_TYPES = ("radiomics", "DL", "hybrid")  # hybrid = radiomics + DL of the same region
LIU_IMAGING_MODELS = ("best-of-9", "all")
_LIU_COLUMN = re.compile(r"^(mask|%s)_(%s)_(.+)$" % ("|".join(SEQUENCE_NAMES.values()), "|".join(LIU_REGIONS)))
_DEEP_FEATURE = re.compile(r"^resnet34_fc_\d+$")  # deep.deep_features: <SEQ>_<region>_resnet34_fc_<i>


def liu_column_kind(column: str) -> Optional[tuple]:
    """(feature type, region) of an imaging column in the project's naming for the liu2024 preset regions, or None:
    ``<SEQ>_<region>_resnet34_fc_<i>`` (deep.py) -> ("DL", region); ``<SEQ>_<region>_<PyRadiomics feature>`` and
    ``mask_<region>_original_shape_<f>`` (features.py) -> ("radiomics", region); region in edema / tumor / overall.
    Anything else (other regions such as WT, location, VASARI items, other naming) fits no candidate model."""
    from .train import is_pyradiomics_feature  # the one PyRadiomics-name rule (train imports this module)
    m = _LIU_COLUMN.match(column)
    if not m:
        return None
    seq, region, rest = m.groups()
    if seq != "mask" and _DEEP_FEATURE.match(rest):
        return "DL", region
    if is_pyradiomics_feature(rest):
        return "radiomics", region
    return None


def liu_candidates(names: Sequence[str]):
    """Liu's 9 candidate imaging models over ``names``: ({"<region> <type>": (type, region, column indices)} in the
    order edema, tumor, overall x radiomics, DL, hybrid; the indices of the columns that fit no candidate)."""
    kinds = [liu_column_kind(str(c)) for c in names]
    out = {}
    for region in LIU_REGIONS:
        for ft in LIU_FEATURE_TYPES:
            want = ("radiomics", "DL") if ft == "hybrid" else (ft,)
            out[f"{region} {ft}"] = (ft, region, [j for j, k in enumerate(kinds) if k and k[1] == region
                                                  and k[0] in want])
    return out, [j for j, k in enumerate(kinds) if k is None]


def _json_float(v) -> Optional[float]:
    return round(float(v), 4) if v is not None and np.isfinite(v) else None


class LiuFusion(BaseEstimator, ClassifierMixin):
    """Liu 2024 ATRX fusion model. ``fit(X, y, feature_names)``: radiomic/deep columns + clinical columns.
    ``clinical``: the clinical columns fused with the imaging score (default age, sex and VASARI score as Liu's
    pre-operative variables; WHO grade is post-operative and only fused when named). ``ttest``: the univariate
    filter, ``"student"`` (default, Liu's independent-samples t-test) or ``"welch"``. ``imaging_models``:
    ``"best-of-9"`` (default, Liu's choice among 3 feature types x 3 regions by mean 5-fold CV AUC on the training
    cases; falls back to ``"all"`` when no column fits a candidate) or ``"all"`` (one imaging model on every imaging
    column). Fitted: ``imaging_models_used_`` and ``imaging_choice_`` (each candidate's CV AUCs or the reason it was
    skipped, the chosen one)."""

    def __init__(self, clinical: Sequence[str] = ("age", "sex_male", "vasari_score"),
                 p_threshold: float = 0.05, cv_folds: int = 10, max_stepwise: int = 20, alphas=None,
                 random_state: int = 0, ttest: str = "student", imaging_models: str = "best-of-9"):
        self.clinical = clinical
        self.p_threshold = p_threshold
        self.cv_folds = cv_folds
        self.max_stepwise = max_stepwise
        self.alphas = alphas
        self.random_state = random_state
        self.ttest = ttest
        self.imaging_models = imaging_models

    def ttest_filter(self, X, y):
        """Indices of the columns whose two-sample t-test (``ttest``: Student or Welch) gives p < ``p_threshold``
        (the single smallest p when none does), and every column's p-value."""
        from scipy.stats import ttest_ind
        if self.ttest not in LIU_TTESTS:
            raise ValueError(f"ttest must be one of {', '.join(LIU_TTESTS)}, not {self.ttest!r}")
        X, y = np.asarray(X, float), np.asarray(y, float)
        p = ttest_ind(X[y == 1], X[y == 0], equal_var=self.ttest == "student").pvalue
        cand = np.flatnonzero(np.nan_to_num(p, nan=1.0) < self.p_threshold)
        if not len(cand):
            cand = np.array([int(np.nanargmin(p))])
        return cand, p

    def _imaging(self, X, y):
        cand, _ = self.ttest_filter(X, y)
        mean, sd = X[:, cand].mean(0), X[:, cand].std(0)
        sd[sd == 0] = 1
        Z = (X[:, cand] - mean) / sd
        alphas = np.asarray(self.alphas if self.alphas is not None else ALPHA_PATH)
        k = int(min(self.cv_folds, np.bincount(y.astype(int)).min()))
        cv = StratifiedKFold(n_splits=max(k, 2), shuffle=True, random_state=self.random_state)
        auc = np.zeros((len(alphas), cv.get_n_splits()))
        for f, (tr, va) in enumerate(cv.split(Z, y)):
            Ws, bs = logistic_path(Z[tr], y[tr, None], alphas)
            for i, (W, b) in enumerate(zip(Ws, bs)):
                auc[i, f] = _auc(y[va], Z[va] @ W[:, 0] + b[0])
        best = int(np.nanargmax(np.nanmean(auc, 1)))
        Ws, _ = logistic_path(Z, y[:, None], alphas[: best + 1])
        sel = np.flatnonzero(Ws[-1][:, 0])
        if not len(sel):
            sel = np.array([int(np.argmax(np.abs(Z.T @ (y - y.mean()))))])
        if len(sel) > self.max_stepwise:  # the strongest LASSO features enter the stepwise step (bounded cost)
            sel = sel[np.argsort(-np.abs(Ws[-1][sel, 0]), kind="stable")[: self.max_stepwise]]
        keep = backward_aic(Z[:, sel], y)  # Liu 2024: t-test -> LASSO -> backward stepwise AIC, always
        cols = cand[sel[keep]]
        m, s = X[:, cols].mean(0), X[:, cols].std(0)
        s[s == 0] = 1
        w, b, _ = firth_fit((X[:, cols] - m) / s, y)  # finite under separation (plain ML is not)
        return {"cols": cols, "center": m, "scale": s, "coef": w, "intercept": b,
                "n_ttest": int(len(cand)), "n_lasso": int(len(sel)), "alpha": float(alphas[best])}

    @staticmethod
    def _score(model, X):
        return model["intercept"] + ((X[:, model["cols"]] - model["center"]) / model["scale"]) @ model["coef"]

    def _cross_fit(self, Xc, y, folds):
        """Out-of-fold imaging scores of the whole imaging pipeline refitted in each fold, and the folds' AUCs."""
        oof = np.zeros(len(y))
        aucs = []
        for tr, te in folds:
            oof[te] = self._score(self._imaging(Xc[tr], y[tr]), Xc[te])
            aucs.append(_auc(y[te], oof[te]))
        return oof, aucs

    @staticmethod
    def _skip_reason(Xc, ft, region, cols, kinds):
        """Why a candidate cannot be fitted on this cohort (None when it can)."""
        if ft == "hybrid" and len({kinds[j] for j in cols}) < 2:
            have = {kinds[j] for j in cols}
            return (f"no {region} {'DL' if 'radiomics' in have else 'radiomics'} columns: the hybrid model would "
                    "repeat a single-type one" if have else f"no {region} columns")
        if not cols:
            return (f"no {ft} columns of region {region} (none in the table, or all dropped before the fit, e.g. for "
                    "missingness)")
        fin = np.isfinite(Xc)
        if not fin.any():
            return f"region {region} empty: all {len(cols)} columns missing in all {len(Xc)} cases"
        if not fin.all():
            n = int((~fin).any(1).sum())
            return (f"missing values in {n} of {len(Xc)} cases (impute first; train imputes inside each training "
                    "fold)")
        if not (Xc.std(0) > 1e-12).any():
            return f"all {len(cols)} columns constant"
        return None

    def _choose(self, Xi, y, names, cands, unassigned, folds):
        """Liu's choice among the candidate imaging models: each evaluable candidate's pipeline refitted in every
        fold of ``folds`` (training cases only), chosen by the best mean fold AUC (ties: the first in the order
        edema, tumor, overall x radiomics, DL, hybrid). Returns (choice record, chosen columns, chosen OOF score)."""
        kinds = {j: k[0] for j in range(len(names)) if (k := liu_column_kind(str(names[j])))}
        rows, best = [], None
        for name, (ft, region, cols) in cands.items():
            row = {"name": name, "feature_type": ft, "region": region, "n_columns": len(cols),
                   "cv_auc_mean": None, "cv_auc_folds": None, "skipped": None}
            Xc = Xi[:, cols]
            row["skipped"] = self._skip_reason(Xc, ft, region, cols, kinds)
            if row["skipped"] is None:
                oof, aucs = self._cross_fit(Xc, y, folds)
                mean = float(np.nanmean(aucs))
                row["cv_auc_mean"], row["cv_auc_folds"] = _json_float(mean), [_json_float(a) for a in aucs]
                if best is None or mean > best[0]:
                    best = (mean, name, np.asarray(cols), oof)
            rows.append(row)
        if best is None:
            raise ValueError("no candidate imaging model can be fitted: "
                             + "; ".join(f"{r['name']}: {r['skipped']}" for r in rows))
        record = {"requested": self.imaging_models, "used": "best-of-9", "chosen": best[1],
                  "selection": (f"mean AUC over {len(folds)} stratified folds of the training cases, each fold "
                                "refitting the candidate's t-test -> LASSO -> AIC -> logistic pipeline (Liu 2024)"),
                  "folds": len(folds), "candidates": rows, "n_evaluated": sum(r["skipped"] is None for r in rows),
                  "n_unassigned_columns": len(unassigned),
                  "unassigned_columns_examples": [str(names[j]) for j in unassigned[:5]],
                  "unassigned_note": ("imaging columns that fit no (feature type, region) candidate are left out of "
                                      "the candidate models")}
        return record, best[2], best[3]

    def fit(self, X, y, feature_names: Sequence[str]):
        X = np.asarray(X, float)
        y = np.asarray(y, float)
        names = list(feature_names)
        if self.imaging_models not in LIU_IMAGING_MODELS:
            raise ValueError(f"imaging_models must be one of {', '.join(LIU_IMAGING_MODELS)}, "
                             f"not {self.imaging_models!r}")
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.clinical_cols_ = [names.index(c) for c in self.clinical if c in names]
        self.imaging_cols_ = [j for j in range(len(names)) if j not in self.clinical_cols_]
        Xi = X[:, self.imaging_cols_]
        img_names = [names[j] for j in self.imaging_cols_]
        # the cross-fitting folds of the fusion weights, also the folds of the best-of-9 choice
        k = int(min(5, np.bincount(y.astype(int)).min()))
        folds = list(StratifiedKFold(max(k, 2), shuffle=True, random_state=self.random_state).split(Xi, y))
        cands, unassigned = liu_candidates(img_names)
        if self.imaging_models == "best-of-9" and any(c[2] for c in cands.values()):
            self.imaging_choice_, cols, oof = self._choose(Xi, y, img_names, cands, unassigned, folds)
            self.imaging_models_used_ = "best-of-9"
            self.imaging_ = self._imaging(Xi[:, cols], y)
            self.imaging_["cols"] = cols[self.imaging_["cols"]]  # indices into the imaging columns
        else:
            if not np.isfinite(Xi).all():
                raise ValueError("imaging features have missing values")
            self.imaging_models_used_ = "all"
            self.imaging_choice_ = {
                "requested": self.imaging_models, "used": "all",
                "reason": ("requested" if self.imaging_models == "all" else
                           "no imaging column fits Liu's feature types x regions (<SEQ>_<edema|tumor|overall>_"
                           "<PyRadiomics feature> or _resnet34_fc_<i>): one imaging model on all imaging columns")}
            self.imaging_ = self._imaging(Xi, y)
            oof, _ = self._cross_fit(Xi, y, folds)  # cross-fitted imaging score for the fusion weights
        C = X[:, self.clinical_cols_]
        self.clinical_mean_ = np.nanmean(C, 0) if C.size else np.zeros(0)
        C = np.where(np.isfinite(C), C, self.clinical_mean_)
        F = np.column_stack([oof, C])
        self.fusion_center_, self.fusion_scale_ = F.mean(0), F.std(0)
        self.fusion_scale_[self.fusion_scale_ == 0] = 1
        self.fusion_coef_, self.fusion_intercept_, _ = firth_fit((F - self.fusion_center_) / self.fusion_scale_, y)
        self.classes_ = np.array([0, 1])
        return self

    def imaging_score(self, X) -> np.ndarray:
        """The imaging model's linear predictor (Liu's imaging score, "Rad-score"); sigmoid of it = the imaging
        model's probability."""
        return self._score(self.imaging_, np.asarray(X, float)[:, self.imaging_cols_])

    def imaging_linear_model(self) -> dict:
        """The imaging model alone (logistic regression on the t-test / LASSO / AIC features: Liu's "imaging
        model", whose linear predictor is the imaging score) over the original columns, for a bundle whose one
        nomogram axis is the imaging score."""
        im = self.imaging_
        feats = [str(self.feature_names_in_[self.imaging_cols_[c]]) for c in im["cols"]]
        return {"features": feats, "center": np.asarray(im["center"], float), "scale": np.asarray(im["scale"], float),
                "coef": np.asarray(im["coef"], float), "intercept": float(im["intercept"]),
                "groups": {f: "Imaging score" for f in feats},
                "imaging": {"n_ttest": im["n_ttest"], "n_lasso": im["n_lasso"], "n_final": int(len(im["cols"])),
                            "alpha": im["alpha"], "imaging_models": self.imaging_choice_}}

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, float)
        C = X[:, self.clinical_cols_]
        C = np.where(np.isfinite(C), C, self.clinical_mean_)
        F = np.column_stack([self.imaging_score(X), C])
        return self.fusion_intercept_ + ((F - self.fusion_center_) / self.fusion_scale_) @ self.fusion_coef_

    def predict_proba(self, X):
        p = _sigmoid(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def linear_model(self) -> dict:
        """The fusion model collapsed to one linear predictor over the original columns (imaging terms scaled by
        the imaging score's fusion weight), for a bundle and its nomogram."""
        im = self.imaging_
        a = self.fusion_coef_[0] / self.fusion_scale_[0]
        names = list(self.feature_names_in_)
        feats, center, scale, coef, group = [], [], [], [], {}
        for j, c, m, s, w in zip(range(len(im["cols"])), im["cols"], im["center"], im["scale"], im["coef"]):
            feats.append(names[self.imaging_cols_[c]])
            center.append(m), scale.append(s), coef.append(a * w)
            group[feats[-1]] = "Imaging score"
        intercept = self.fusion_intercept_ + a * (im["intercept"] - self.fusion_center_[0])
        for k, col in enumerate(self.clinical_cols_):
            feats.append(names[col])
            center.append(self.fusion_center_[k + 1]), scale.append(self.fusion_scale_[k + 1])
            coef.append(self.fusion_coef_[k + 1])
            group[names[col]] = names[col]
        return {"features": feats, "center": np.array(center), "scale": np.array(scale), "coef": np.array(coef),
                "intercept": float(intercept), "groups": group,
                "imaging": {"n_ttest": im["n_ttest"], "n_lasso": im["n_lasso"], "n_final": int(len(im["cols"])),
                            "alpha": im["alpha"], "imaging_models": self.imaging_choice_}}


def compare_classifiers(X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> Dict[str, float]:
    """Cross-validated AUC of logistic regression, random forest and SVM on the same (selected) features."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    k = int(min(folds, np.bincount(y.astype(int)).min()))
    cv = StratifiedKFold(max(k, 2), shuffle=True, random_state=seed)
    models = {"logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
              "random_forest": RandomForestClassifier(n_estimators=300, random_state=seed),
              "svm": make_pipeline(StandardScaler(), SVC(probability=True, random_state=seed))}
    out = {}
    for name, m in models.items():
        p = cross_val_predict(m, X, y, cv=cv, method="predict_proba")[:, 1]
        out[name] = round(float(roc_auc_score(y, p)), 4)
    return out
