"""Training of logistic model bundles (L1-penalised logistic regression, 1-SE rule, nested CV metrics).

This is the estimator behind the shipped default bundles. It follows the common core of the papers' radiomics
workflows: z-score, drop one of any feature pair with Pearson |r| > 0.99 (Wang 2025), LASSO-logistic selection
with the regularisation chosen by cross-validated AUC and the 1-SE rule, the selected radiomic terms summed into a
"Radiomics score" nomogram variable next to the clinical variables. Performance is estimated by an outer
cross-validation that repeats every step inside each fold (no selection leakage).
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from . import __version__
from .bundle import ModelBundle, build_nomogram

CLINICAL_FEATURES = ("age", "sex_male")
RADIOMIC_PREFIXES = ("mask_", "T1_", "T1c_", "T2_", "FLAIR_")


def add_derived_columns(df: pd.DataFrame) -> pd.DataFrame:
    """sex (M/F) -> sex_male (1/0)."""
    df = df.copy()
    if "sex" in df.columns and "sex_male" not in df.columns:
        df["sex_male"] = df["sex"].map(lambda s: np.nan if pd.isna(s) else float(str(s).strip().upper() in ("M", "MALE")))
    return df


def radiomic_columns(columns: Sequence[str]) -> List[str]:
    return [c for c in columns if c.startswith(RADIOMIC_PREFIXES)]


def drop_correlated(X: np.ndarray, names: List[str], threshold: float = 0.99):
    """Greedy: keep a feature unless |r| > threshold with one already kept (Wang 2025 drops one of each pair)."""
    Z = (X - X.mean(0)) / X.std(0)
    R = np.abs(np.corrcoef(Z, rowvar=False))
    keep: List[int] = []
    for j in range(X.shape[1]):
        if all(R[j, k] <= threshold for k in keep):
            keep.append(j)
    return X[:, keep], [names[k] for k in keep]


@dataclass
class LassoLogisticResult:
    features: List[str]
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float


def _sklearn_at_least(major: int, minor: int) -> bool:
    import sklearn
    v = tuple(int(x) for x in sklearn.__version__.split(".")[:2])
    return v >= (major, minor)


def l1_logistic(C: float, seed: int = 0, max_iter: int = 5000) -> LogisticRegression:
    """L1-penalised logistic regression (liblinear), spelled for old and new scikit-learn alike."""
    if _sklearn_at_least(1, 8):
        return LogisticRegression(l1_ratio=1.0, solver="liblinear", C=C, max_iter=max_iter, random_state=seed)
    return LogisticRegression(penalty="l1", solver="liblinear", C=C, max_iter=max_iter, random_state=seed)


def fit_lasso_logistic(X: np.ndarray, y: np.ndarray, names: List[str], seed: int = 0, max_features: int = 12,
                       n_splits: int = 5, Cs: Optional[np.ndarray] = None) -> LassoLogisticResult:
    """Selection + fit on one training set. Returns only the features with non-zero coefficients."""
    finite = np.isfinite(X).all(0) & (X.std(0) > 1e-12)
    X, names = X[:, finite], [n for n, f in zip(names, finite) if f]
    X, names = drop_correlated(X, names)
    center, scale = X.mean(0), X.std(0)
    Z = (X - center) / scale
    Cs = Cs if Cs is not None else np.logspace(-2.0, 0.5, 16)
    cv = StratifiedKFold(n_splits=min(n_splits, int(min(np.bincount(y)))), shuffle=True, random_state=seed)
    aucs = np.zeros((len(Cs), cv.get_n_splits()))
    for k, (tr, va) in enumerate(cv.split(Z, y)):
        for i, C in enumerate(Cs):
            m = l1_logistic(C, seed, 2000)
            m.fit(Z[tr], y[tr])
            p = m.decision_function(Z[va])
            aucs[i, k] = roc_auc_score(y[va], p) if len(np.unique(y[va])) == 2 else 0.5
    mean, se = aucs.mean(1), aucs.std(1, ddof=1) / math.sqrt(aucs.shape[1])
    best = int(np.argmax(mean))
    # 1-SE rule: the most regularised model within one standard error of the best
    ok = [i for i in range(len(Cs)) if mean[i] >= mean[best] - se[best]]
    order = sorted(ok, key=lambda i: Cs[i])
    for i in order + [best]:
        m = l1_logistic(Cs[i], seed)
        m.fit(Z, y)
        nz = np.flatnonzero(m.coef_[0])
        if 0 < len(nz) <= max_features:
            break
    if len(nz) == 0:  # nothing selected: keep the single most discriminative feature
        auc1 = [abs(roc_auc_score(y, Z[:, j]) - 0.5) for j in range(Z.shape[1])]
        nz = np.array([int(np.argmax(auc1))])
        m = LogisticRegression(C=1.0, max_iter=5000).fit(Z[:, nz], y)
        return LassoLogisticResult([names[j] for j in nz], center[nz], scale[nz], m.coef_[0], float(m.intercept_[0]),
                                   float("nan"))
    if len(nz) > max_features:
        nz = nz[np.argsort(-np.abs(m.coef_[0][nz]))[:max_features]]
        m2 = l1_logistic(m.C, seed).fit(Z[:, nz], y)
        return LassoLogisticResult([names[j] for j in nz], center[nz], scale[nz], m2.coef_[0],
                                   float(m2.intercept_[0]), float(m.C))
    return LassoLogisticResult([names[j] for j in nz], center[nz], scale[nz], m.coef_[0][nz],
                               float(m.intercept_[0]), float(m.C))


def _predict(res: LassoLogisticResult, X: np.ndarray, names: List[str]) -> np.ndarray:
    idx = [names.index(f) for f in res.features]
    lp = res.intercept + ((X[:, idx] - res.center) / res.scale) @ res.coef
    return 1 / (1 + np.exp(-lp))


def bootstrap_auc_ci(y: np.ndarray, p: np.ndarray, n: int = 2000, seed: int = 0, alpha: float = 0.05):
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) == 2:
            aucs.append(roc_auc_score(y[i], p[i]))
    return float(np.quantile(aucs, alpha / 2)), float(np.quantile(aucs, 1 - alpha / 2))


def youden_cutoff(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_curve
    fpr, tpr, thr = roc_curve(y, p)
    j = int(np.argmax(tpr - fpr))
    return float(np.clip(thr[j], 1e-3, 1 - 1e-3))


def classification_metrics(y, p, cutoff) -> Dict[str, float]:
    yhat = (p >= cutoff).astype(int)
    tp = int(((yhat == 1) & (y == 1)).sum()); tn = int(((yhat == 0) & (y == 0)).sum())
    fp = int(((yhat == 1) & (y == 0)).sum()); fn = int(((yhat == 0) & (y == 1)).sum())
    div = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {"accuracy": div(tp + tn, len(y)), "sensitivity": div(tp, tp + fn), "specificity": div(tn, tn + fp),
            "ppv": div(tp, tp + fp), "npv": div(tn, tn + fn)}


def train_bundle(table: pd.DataFrame, label: str, task: str, provenance: dict, *, positive_label: str,
                 negative_label: str, trained_on: str, synthetic: bool, intended_use: str, seed: int = 0,
                 max_features: int = 12, name: Optional[str] = None, version: str = "1.0.0",
                 outer_folds: int = 5) -> ModelBundle:
    df = add_derived_columns(table)
    df = df[df[label].notna()]
    y = df[label].astype(int).to_numpy()
    names = radiomic_columns(df.columns) + [c for c in CLINICAL_FEATURES if c in df.columns]
    X = df[names].to_numpy(dtype=float)
    # clinical missing values: mean imputation (recorded in the bundle)
    imputation = {}
    for c in CLINICAL_FEATURES:
        if c in names:
            j = names.index(c)
            mu = float(np.nanmean(X[:, j]))
            X[np.isnan(X[:, j]), j] = mu
            imputation[c] = mu
    # outer cross-validation: every step repeated inside each fold
    oof = np.full(len(y), np.nan)
    skf = StratifiedKFold(n_splits=outer_folds, shuffle=True, random_state=seed + 1)
    for tr, te in skf.split(X, y):
        r = fit_lasso_logistic(X[tr], y[tr], names, seed=seed, max_features=max_features)
        oof[te] = _predict(r, X[te], names)
    res = fit_lasso_logistic(X, y, names, seed=seed, max_features=max_features)
    p_train = _predict(res, X, names)
    cutoff = youden_cutoff(y, oof)
    auc_cv = float(roc_auc_score(y, oof))
    lo, hi = bootstrap_auc_ci(y, oof, seed=seed)
    metrics = {
        "auc_cv": round(auc_cv, 4), "auc_cv_95ci": [round(lo, 4), round(hi, 4)],
        "auc_cv_method": f"{outer_folds}-fold outer cross-validation (selection repeated in each fold), "
                         "95% CI from 2000 bootstrap resamples",
        "auc_train_apparent": round(float(roc_auc_score(y, p_train)), 4),
        "cutoff_method": "Youden index on out-of-fold probabilities",
        "at_cutoff_cv": classification_metrics(y, oof, cutoff),
    }
    Xsel = X[:, [names.index(f) for f in res.features]]
    groups: Dict[str, List[str]] = {}
    rad = [f for f in res.features if f not in CLINICAL_FEATURES]
    if rad:
        groups["Radiomics score"] = rad
    if "age" in res.features:
        groups["Age (years)"] = ["age"]
    if "sex_male" in res.features:
        groups["Sex (male = 1)"] = ["sex_male"]
    variables, nomogram = build_nomogram(res.features, res.coef, res.center, res.scale, res.intercept, Xsel, groups,
                                         units={"age": "years"})
    training = {
        "trained_on": trained_on, "n": int(len(y)), "n_positive": int(y.sum()), "label_column": label,
        "date": _dt.date.today().isoformat(), "software": f"glioma-radiogenomics {__version__}",
        "python": platform.python_version(), "method": "L1-logistic regression (liblinear), C by 5-fold CV AUC "
        "with the 1-SE rule, Pearson |r| > 0.99 pruning, z-score", "seed": seed, "regularisation_C": res.C,
        "candidate_features": len(names),
    }
    encodings = {"sex_male": {"M": 1.0, "MALE": 1.0, "F": 0.0, "FEMALE": 0.0}}
    return ModelBundle(
        task=task, name=name or f"default-{task}-lasso-logistic", version=version,
        features=list(res.features), center=[float(v) for v in res.center], scale=[float(v) for v in res.scale],
        coefficients=[float(v) for v in res.coef], intercept=float(res.intercept), cutoff=cutoff,
        variables=variables, nomogram=nomogram,
        feature_schema={**provenance, "clinical": [c for c in CLINICAL_FEATURES if c in res.features],
                        "columns": list(res.features)},
        training=training, metrics=metrics, synthetic=synthetic, positive_label=positive_label,
        negative_label=negative_label, intended_use=intended_use,
        encodings={k: v for k, v in encodings.items() if k in res.features},
        imputation={k: v for k, v in imputation.items() if k in res.features})


SYNTHETIC_USE = ("SOFTWARE DEMONSTRATION ONLY. Trained on SYNTHETIC simulated cases; the probability has no "
                 "clinical meaning. Research use, not a diagnosis.")


def train_default_bundles(table: pd.DataFrame, provenance: dict, out_dir: Path, seed: int = 2025,
                          cohort_description: str = "synthetic cohort") -> List[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [
        ("IDH", "IDH", table, "IDH-mutant", "IDH-wildtype", cohort_description),
        ("epilepsy", "epilepsy", table, "glioma-associated epilepsy", "no epilepsy", cohort_description),
        ("ATRX", "ATRX", table[table["IDH"] == 1], "ATRX-mutant", "ATRX-wildtype",
         cohort_description + ", IDH-mutant subset (Liu 2024 population)"),
    ]
    paths = []
    for task, label, df, pos, neg, desc in specs:
        b = train_bundle(df, label, task, provenance, positive_label=pos, negative_label=neg,
                         trained_on=desc, synthetic=True, intended_use=SYNTHETIC_USE + (
                             " ATRX model: intended for IDH-mutant gliomas only." if task == "ATRX" else ""),
                         seed=seed, max_features=10)
        paths.append(b.save(out_dir / f"default_{task}.json"))
    return paths
