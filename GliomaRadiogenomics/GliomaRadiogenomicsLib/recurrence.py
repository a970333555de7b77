"""Recurrence pattern (distant vs local) from rCBV radiomics: the classifier of Shim 2021 (issue 17 item 4).

Shim et al. 2021 (Sci Rep 11:9974): 1702 radiomic features of the CBV map (contrast-enhancing CE and non-enhancing
T2-hyperintense NE regions), z-normalised; SVM-RFE (recursive feature elimination with a linear SVM) keeps 32; SMOTE
oversamples the minority class of the TRAINING data only; a multilayer perceptron (5 hidden layers) predicts the
recurrence pattern; 5-fold cross-validation; SHAP explains the predictions.

Here (``ShimRecurrence``, a scikit-learn estimator, and ``repeated_cv_recurrence``):
  selection  ``SvmRfeSelector``: standardisation and SVM-RFE (``sklearn.feature_selection.RFE`` ranking by the
             squared weights of a class-balanced linear SVM) fitted on the training cases only; the number of
             features kept is the paper's 32 or chosen from a grid by an inner stratified CV of the linear SVM's AUC.
  balancing  SMOTE (imbalanced-learn) on the selected, standardised TRAINING cases only (``oversample``); test cases
             are never resampled and every case is scored exactly once per repetition.
  classifier ``mlp`` (the paper's: ReLU MLP, 5 hidden layers), compared with ``svm`` (linear) and ``lr`` (logistic)
             on identical outer folds AND the identical selected features of each fold.
  validation repeated stratified K-fold (``train.cv_splits``), every step inside each outer training fold (nested: the
             inner CV of the feature count sits inside it); pooled out-of-fold AUC per repetition with DeLong and
             bootstrap CIs (``evaluation.repeated_cv_summary``) and paired comparisons (``compare_repeated``).
  explanation Shapley values (``explain.py``): exact for LR / linear SVM (their linear predictor), Kernel SHAP for the
             MLP's probability, against a background of k-means centroids of the training cases.
  bundle     JSON only: feature schema (features must come from rCBV: sequence ``CBV``), standardisation, the MLP
             weights as arrays, a numpy forward pass (``mlp_forward``), metrics, training description, synthetic flag.

There is no public CBV data with recurrence patterns here: ``synthetic_recurrence_table`` makes a SYNTHETIC cohort
(rCBV-named features with a planted signal) and every model trained on it says ``synthetic: true``.
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.model_selection import StratifiedKFold

RECURRENCE_FORMAT = "glioma-radiogenomics-recurrence-bundle"
RECURRENCE_SCHEMA_VERSION = 1
CLASSIFIERS = ("mlp", "svm", "lr")
CBV_SEQUENCE = "cbv"                      # the input every feature of the model must come from (its rCBV map)
CBV_FEATURES = r"^r?CBV_"                 # default --features of `train --method shim-recurrence` (rCBV_CE_...)
HIDDEN_LAYERS = (32, 32, 16, 16, 8)       # 5 hidden layers as Shim 2021 (their widths are in a supplement: ours)
SMOTE_INSTALL = "pip install -c constraints.txt '.[recurrence]' (imbalanced-learn)"


# ----------------------------------------------------------------------------------------------------------------
# selection: standardisation + SVM-RFE, fitted on training cases only
# ----------------------------------------------------------------------------------------------------------------
def _linear_svm(C: float = 1.0, seed: int = 0):
    from sklearn.svm import LinearSVC
    return LinearSVC(C=C, class_weight="balanced", dual="auto", max_iter=20000, random_state=seed)


def _auc(y, s) -> float:
    from .evaluation import _rank_aucs
    return float(_rank_aucs(np.asarray(y), np.asarray(s, float)[None, :])[0])


def _standardise(X: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    c, s = X.mean(0), X.std(0)
    return c, np.where(s > 1e-12, s, 1.0)


def svm_rfe(Z: np.ndarray, y: np.ndarray, k: int, step=0.1, C: float = 1.0, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of the ``k`` features SVM-RFE keeps on standardised ``Z``."""
    from sklearn.feature_selection import RFE
    k = int(min(k, Z.shape[1]))
    rfe = RFE(_linear_svm(C, seed), n_features_to_select=k, step=step).fit(Z, y)
    return np.flatnonzero(rfe.support_)


class SvmRfeSelector(BaseEstimator, TransformerMixin):
    """z-normalisation + SVM-RFE. ``n_features``: an int (the paper: 32) or a grid; with a grid, an inner stratified
    ``inner_folds``-fold CV (standardisation and RFE refitted in each inner training part) picks the count with the
    highest mean AUC of the linear SVM (ties: the smaller). ``transform`` returns the standardised kept features."""

    def __init__(self, n_features=32, step=0.1, C: float = 1.0, inner_folds: int = 3, random_state: int = 0):
        self.n_features = n_features
        self.step = step
        self.C = C
        self.inner_folds = inner_folds
        self.random_state = random_state

    def fit(self, X, y):
        X, y = np.asarray(X, float), np.asarray(y).astype(int)
        grid = sorted({int(min(k, X.shape[1])) for k in np.atleast_1d(self.n_features)})
        self.inner_auc_ = {}
        if len(grid) > 1:
            k_in = max(2, min(int(self.inner_folds), int(np.bincount(y).min())))
            cv = StratifiedKFold(k_in, shuffle=True, random_state=self.random_state)
            scores = {k: [] for k in grid}
            for tr, te in cv.split(X, y):
                c, s = _standardise(X[tr])
                Ztr, Zte = (X[tr] - c) / s, (X[te] - c) / s
                for k in grid:
                    keep = svm_rfe(Ztr, y[tr], k, self.step, self.C, self.random_state)
                    svm = _linear_svm(self.C, self.random_state).fit(Ztr[:, keep], y[tr])
                    scores[k].append(_auc(y[te], svm.decision_function(Zte[:, keep])))
            self.inner_auc_ = {k: round(float(np.mean(v)), 4) for k, v in scores.items()}
            self.k_ = max(grid, key=lambda k: (self.inner_auc_[k], -k))
        else:
            self.k_ = grid[0]
        self.center_, self.scale_ = _standardise(X)
        self.support_ = svm_rfe((X - self.center_) / self.scale_, y, self.k_, self.step, self.C, self.random_state)
        return self

    def transform(self, X):
        X = np.asarray(X, float)
        return (X[:, self.support_] - self.center_[self.support_]) / self.scale_[self.support_]


# ----------------------------------------------------------------------------------------------------------------
# SMOTE (training data only) and the three classifiers
# ----------------------------------------------------------------------------------------------------------------
def oversample(Z: np.ndarray, y: np.ndarray, k_neighbors: int = 5, seed: int = 0):
    """SMOTE (imbalanced-learn) of the minority class up to the majority's size; the input rows come first, the
    synthetic ones after them. Called on training cases ONLY. Returns (Z', y', number of synthetic rows)."""
    try:
        from imblearn.over_sampling import SMOTE
    except ImportError as exc:
        from .io import InputError
        raise InputError(f"SMOTE needs imbalanced-learn ({exc}): {SMOTE_INSTALL}") from None
    counts = np.bincount(np.asarray(y).astype(int), minlength=2)
    if counts.min() < 2 or counts[0] == counts[1]:
        return Z, y, 0
    Zs, ys = SMOTE(k_neighbors=int(min(k_neighbors, counts.min() - 1)), random_state=seed).fit_resample(Z, y)
    return Zs, ys, int(len(ys) - len(y))


def make_classifier(kind: str, seed: int = 0, hidden_layer_sizes=HIDDEN_LAYERS, alpha: float = 1e-3,
                    max_iter: int = 500, C: float = 1.0):
    if kind == "mlp":
        from sklearn.neural_network import MLPClassifier
        return MLPClassifier(hidden_layer_sizes=tuple(hidden_layer_sizes), activation="relu", solver="adam",
                             alpha=alpha, max_iter=max_iter, random_state=seed)
    if kind == "svm":
        return _linear_svm(C, seed)
    if kind == "lr":
        from sklearn.linear_model import LogisticRegression
        return LogisticRegression(C=C, max_iter=5000)
    raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, not '{kind}'")


def scores(model, Z) -> np.ndarray:
    """A classifier's score of class 1: probability (MLP, LR) or the linear SVM's decision value."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(Z)[:, 1]
    return model.decision_function(Z)


def _fit_head(kind: str, Z, y, seed: int, smote: bool, k_neighbors: int, clf_params: dict):
    """SMOTE (training data) + one classifier. The MLP trains for a fixed ``max_iter`` epochs (the paper trained a
    fixed number of epochs): scikit-learn's 'not converged' warning is expected and silenced."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    Zs, ys, n_syn = oversample(Z, y, k_neighbors, seed) if smote else (Z, y, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_classifier(kind, seed, **clf_params).fit(Zs, ys), n_syn


class ShimRecurrence(BaseEstimator, ClassifierMixin):
    """SVM-RFE (inside ``fit``) + SMOTE on the training data + MLP / linear SVM / LR. ``predict_proba`` for the MLP
    and LR; the linear SVM gives ``decision_function`` (its ``predict_proba`` is the uncalibrated logistic of it)."""

    def __init__(self, classifier: str = "mlp", n_features=32, rfe_step=0.1, inner_folds: int = 3, smote: bool = True,
                 smote_k_neighbors: int = 5, hidden_layer_sizes=HIDDEN_LAYERS, alpha: float = 1e-3,
                 max_iter: int = 500, C: float = 1.0, n_background: int = 10, random_state: int = 0):
        self.classifier = classifier
        self.n_features = n_features
        self.rfe_step = rfe_step
        self.inner_folds = inner_folds
        self.smote = smote
        self.smote_k_neighbors = smote_k_neighbors
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.C = C
        self.n_background = n_background
        self.random_state = random_state

    def _clf_params(self) -> dict:
        if self.classifier == "mlp":
            return {"hidden_layer_sizes": self.hidden_layer_sizes, "alpha": self.alpha, "max_iter": self.max_iter}
        return {"C": self.C}

    def fit(self, X, y, feature_names: Optional[Sequence[str]] = None):
        from sklearn.cluster import KMeans
        X, y = np.asarray(X, float), np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        self.feature_names_in_all_ = list(feature_names) if feature_names is not None else \
            [f"x{j}" for j in range(X.shape[1])]
        self.selector_ = SvmRfeSelector(self.n_features, self.rfe_step, self.C, self.inner_folds,
                                        self.random_state).fit(X, y)
        Z = self.selector_.transform(X)
        self.model_, self.n_synthetic_ = _fit_head(self.classifier, Z, y, self.random_state, self.smote,
                                                   self.smote_k_neighbors, self._clf_params())
        k = int(min(self.n_background, len(Z)))
        self.background_ = KMeans(k, n_init=10, random_state=self.random_state).fit(Z).cluster_centers_
        return self

    @property
    def features_(self) -> List[str]:
        return [self.feature_names_in_all_[j] for j in self.selector_.support_]

    def decision_scores(self, X) -> np.ndarray:
        return scores(self.model_, self.selector_.transform(X))

    def decision_function(self, X) -> np.ndarray:
        Z = self.selector_.transform(X)
        if self.classifier == "mlp":
            p = np.clip(self.model_.predict_proba(Z)[:, 1], 1e-15, 1 - 1e-15)
            return np.log(p / (1 - p))
        return self.model_.decision_function(Z)

    def predict_proba(self, X) -> np.ndarray:
        Z = self.selector_.transform(X)
        p = self.model_.predict_proba(Z)[:, 1] if self.classifier != "svm" else expit(self.model_.decision_function(Z))
        return np.c_[1 - p, p]

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def linear(self) -> Optional[dict]:
        """{"coef", "intercept"} of the linear predictor on the standardised selected features (LR: logit; SVM:
        decision value); None for the MLP."""
        if self.classifier == "mlp":
            return None
        return {"coef": self.model_.coef_.ravel().tolist(), "intercept": float(self.model_.intercept_[0])}

    def explain(self, x, n_samples: int = 2048, top: int = 10) -> dict:
        """Shapley values of one case (a row of the ORIGINAL feature columns) over the selected features."""
        from .explain import explain_case
        z = self.selector_.transform(np.asarray(x, float)[None, :])[0]
        return explain_case(lambda Z: scores(self.model_, Z) if self.classifier != "svm" else
                            self.model_.decision_function(Z), z, self.background_, self.features_,
                            linear=self.linear(), n_samples=n_samples, seed=self.random_state, top=top)


# ----------------------------------------------------------------------------------------------------------------
# repeated nested cross-validation: the three classifiers on identical folds and identical selected features
# ----------------------------------------------------------------------------------------------------------------
def repeated_cv_recurrence(X: np.ndarray, y: np.ndarray, *, repeats: int = 10, folds: int = 5, seed: int = 0,
                           params: Optional[dict] = None, classifiers: Sequence[str] = CLASSIFIERS,
                           progress=None) -> dict:
    """Out-of-fold scores (repeats, n) per classifier. In each outer training fold: standardisation, SVM-RFE (and the
    inner CV of the feature count), SMOTE and the classifiers; the held-out cases are only scored. ``folds_info``
    records, per outer fold, the training / test sizes, the synthetic rows SMOTE added and the rows scored."""
    from .train import cv_splits
    X, y = np.asarray(X, float), np.asarray(y).astype(int)
    p = {**ShimRecurrence().get_params(), **(params or {})}
    jobs, k = cv_splits(pd.Series(y.astype(str)), repeats, folds, seed)
    n = len(y)
    P = {c: np.full((repeats, n), np.nan) for c in classifiers}
    info, freq = [], {}
    for j, (r, f, tr, te) in enumerate(jobs):
        s = seed + 1000 * r + f
        sel = SvmRfeSelector(p["n_features"], p["rfe_step"], p["C"], p["inner_folds"], s).fit(X[tr], y[tr])
        Ztr, Zte = sel.transform(X[tr]), sel.transform(X[te])
        rec = {"repetition": r, "fold": f, "n_train": int(len(tr)), "n_test": int(len(te)), "k": int(sel.k_),
               "inner_auc": sel.inner_auc_, "n_synthetic_train": {}, "n_scored": {}}
        for c in classifiers:
            est = ShimRecurrence(classifier=c, **{kk: v for kk, v in p.items() if kk != "classifier"})
            model, n_syn = _fit_head(c, Ztr, y[tr], s, p["smote"], p["smote_k_neighbors"], est._clf_params())
            sc = scores(model, Zte)
            P[c][r, te] = sc
            rec["n_synthetic_train"][c], rec["n_scored"][c] = n_syn, int(len(sc))
        for jj in sel.support_:
            freq[int(jj)] = freq.get(int(jj), 0) + 1
        info.append(rec)
        if progress:
            progress(j + 1, len(jobs))
    return {"oof": P, "folds": k, "repeats": repeats, "folds_info": info, "selection_count": freq,
            "n_outer_fits": len(jobs)}


# ----------------------------------------------------------------------------------------------------------------
# JSON bundle: numpy forward pass of the MLP (no pickle, no scikit-learn needed to apply it)
# ----------------------------------------------------------------------------------------------------------------
def mlp_to_dict(mlp) -> dict:
    if mlp.out_activation_ != "logistic" or mlp.activation != "relu":
        raise ValueError("only a binary ReLU MLP (logistic output) is exported")
    return {"activation": "relu", "output_activation": "logistic",
            "weights": [W.tolist() for W in mlp.coefs_], "biases": [b.tolist() for b in mlp.intercepts_]}


def mlp_forward(mlp: dict, Z) -> np.ndarray:
    """P(class 1) of a JSON MLP (``mlp_to_dict``) for standardised rows ``Z``: ReLU hidden layers, logistic output
    (scikit-learn's MLPClassifier forward pass)."""
    h = np.atleast_2d(np.asarray(Z, float))
    Ws, bs = mlp["weights"], mlp["biases"]
    for i, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ np.asarray(W, float) + np.asarray(b, float)
        if i < len(Ws) - 1:
            h = np.maximum(h, 0.0)
    return expit(h[:, 0])


def recurrence_bundle_dict(est: ShimRecurrence, *, name: str, version: str, label: str, feature_schema: dict,
                           training: dict, metrics: dict, synthetic: bool, intended_use: str,
                           imputation: Dict[str, float]) -> dict:
    from . import __version__
    if est.classifier != "mlp":
        raise ValueError("the recurrence bundle holds the MLP (the paper's classifier)")
    sup = est.selector_.support_
    feats = est.features_
    return {"format": RECURRENCE_FORMAT, "schema_version": RECURRENCE_SCHEMA_VERSION, "kind": "mlp",
            "task": "recurrence pattern", "name": name, "version": version, "label": label,
            "positive_label": f"{label} = 1 (distant recurrence)", "negative_label": f"{label} = 0 (local recurrence)",
            "features": feats, "center": [float(v) for v in est.selector_.center_[sup]],
            "scale": [float(v) for v in est.selector_.scale_[sup]], "mlp": mlp_to_dict(est.model_), "cutoff": 0.5,
            "imputation": {f: float(imputation[f]) for f in feats if f in imputation},
            "explanation": {"method": "Kernel SHAP of the probability (explain.kernel_shap), interventional",
                            "background": est.background_.tolist(),
                            "background_note": f"{len(est.background_)} k-means centroids of the standardised "
                                               "selected training features, equal weight"},
            "feature_schema": {**feature_schema, "sequences": [CBV_SEQUENCE], "columns": feats,
                               "requires": "every feature from the rCBV map (DSC perfusion, CBV normalised to "
                                           "contralateral normal-appearing white matter)"},
            "training": {**training, "software": f"glioma-radiogenomics {__version__}",
                         "python": platform.python_version(), "date": _dt.date.today().isoformat()},
            "metrics": metrics, "synthetic": bool(synthetic), "intended_use": intended_use,
            "card": {"model": f"{name} {version}",
                     "method": "SVM-RFE + SMOTE + MLP recurrence pattern (Shim 2021)",
                     "trained on": training.get("trained_on"), "n (positive)": f"{training.get('n')} "
                                                                               f"({training.get('n_positive')})",
                     "synthetic": bool(synthetic), "features": len(feats), "sequence": CBV_SEQUENCE,
                     "AUC (repeated CV)": metrics.get("auc_cv"), "AUC 95% CI": metrics.get("auc_cv_95ci"),
                     "intended use": intended_use}}


def load_recurrence_bundle(path) -> dict:
    """Read and check a recurrence bundle (JSON only: a pickle is refused before parsing, as ``bundle.load_bundle``)."""
    from .bundle import BundleError, read_format_json
    d = read_format_json(path, RECURRENCE_FORMAT, RECURRENCE_SCHEMA_VERSION,
                         ("features", "center", "scale", "mlp", "cutoff", "feature_schema", "synthetic", "training",
                          "metrics", "intended_use", "explanation"), "recurrence")
    n = len(d["features"])
    if len(d["center"]) != n or len(d["scale"]) != n:
        raise BundleError(f"{path}: center / scale do not match the {n} features")
    try:
        shapes = [np.asarray(W, float).shape for W in d["mlp"]["weights"]]
        bshapes = [np.asarray(b, float).shape for b in d["mlp"]["biases"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable MLP weights ({exc})") from None
    chain = [n] + [s[1] if len(s) == 2 else -1 for s in shapes]
    if (any(len(s) != 2 or s[0] != chain[i] for i, s in enumerate(shapes)) or chain[-1] != 1
            or [b[0] if len(b) == 1 else -1 for b in bshapes] != chain[1:]):
        raise BundleError(f"{path}: MLP weight shapes {shapes} do not chain from {n} features to one output")
    if not _offers_cbv(d["feature_schema"]):
        raise BundleError(f"{path}: the feature schema does not declare the sequence {CBV_SEQUENCE}")
    if not isinstance(d["synthetic"], bool):
        raise BundleError(f"{path}: 'synthetic' must be true or false")
    return d


def _offers_cbv(provenance: dict) -> bool:
    return any(str(s).lower() in ("cbv", "rcbv") for s in (provenance or {}).get("sequences") or [])


def check_recurrence_features(bundle: dict, columns: Sequence[str], provenance: Optional[dict]) -> List[str]:
    """Refuse (FeatureMismatchError) a feature set without the bundle's features, or whose provenance does not say
    the features come from rCBV, or differs in a hard setting; returns the soft differences as warnings."""
    from .bundle import FeatureMismatchError
    from .shim import check_offered
    schema = {k: v for k, v in bundle["feature_schema"].items() if k != "sequences"}
    check_offered(bundle, columns, None, schema, "rCBV ")  # a missing feature is named first
    if provenance is None:
        return [f"model '{bundle['name']}': no provenance: the features were NOT checked to come from rCBV"]
    if not _offers_cbv(provenance):
        raise FeatureMismatchError(f"model '{bundle['name']}' refuses these features: it needs features of the rCBV "
                                   f"map (sequence {CBV_SEQUENCE}); the offered ones come from "
                                   f"{', '.join(map(str, provenance.get('sequences') or [])) or 'unrecorded sequences'}"
                                   ". No T1c substitute.")
    return check_offered(bundle, columns, provenance, schema, "rCBV ")


def predict_recurrence(bundle: dict, table: pd.DataFrame, provenance: Optional[dict] = None,
                       explain: bool = True, top: int = 5, n_samples: int = 1024) -> pd.DataFrame:
    """Probability of distant recurrence per row of a feature table (after ``check_recurrence_features``), the label
    at the bundle's cutoff, the top Shapley contributions and the synthetic flag."""
    from .explain import kernel_shap
    warnings = check_recurrence_features(bundle, table.columns, provenance)
    X = table[bundle["features"]].apply(pd.to_numeric, errors="coerce")
    imputed = X.isna()
    X = X.fillna(bundle.get("imputation", {}))
    if X.isna().any().any():
        from .bundle import FeatureMismatchError
        raise FeatureMismatchError(f"model '{bundle['name']}': missing values without an imputation value")
    Z = (X.to_numpy(float) - np.asarray(bundle["center"])) / np.asarray(bundle["scale"])
    p = mlp_forward(bundle["mlp"], Z)
    B = np.asarray(bundle["explanation"]["background"], float)
    rows = []
    for i in range(len(Z)):
        row = {"probability": float(p[i]), "label": bundle["positive_label"] if p[i] >= bundle["cutoff"]
               else bundle["negative_label"], "imputed": ";".join(np.asarray(bundle["features"])[imputed.iloc[i]
                                                                                              .to_numpy()]),
               "synthetic_model": bundle["synthetic"], "model": bundle["name"]}
        if explain:
            r = kernel_shap(lambda A: mlp_forward(bundle["mlp"], A), Z[i], B, n_samples=n_samples)
            order = np.argsort(-np.abs(r["values"]))[:top]
            row["base_value"] = r["base_value"]
            row["top_shapley"] = "; ".join(f"{bundle['features'][j]} {r['values'][j]:+.3f}" for j in order)
        rows.append(row)
    out = pd.DataFrame(rows)
    if "case_id" in table.columns:
        out.insert(0, "case_id", table["case_id"].astype(str).to_numpy())
    out.attrs["warnings"] = warnings
    return out


# ----------------------------------------------------------------------------------------------------------------
# SYNTHETIC cohort: rCBV radiomic features with a planted distant-vs-local signal
# ----------------------------------------------------------------------------------------------------------------
_FIRSTORDER = ("10Percentile", "90Percentile", "Mean", "Median", "Kurtosis", "Skewness", "Entropy", "Uniformity")
_TEXTURE = ("glcm_Contrast", "glcm_Idm", "glcm_JointEntropy", "glrlm_RunEntropy", "glszm_ZoneEntropy",
            "gldm_DependenceNonUniformity", "ngtdm_Busyness")
_IMAGE_TYPES = ("original", "wavelet-LLL", "wavelet-HHH", "wavelet-HLL")
# (feature, direction): + higher in distant recurrence, - higher in local (Shim 2021: high NE CBV -> local)
PLANTED = (("rCBV_CE_original_firstorder_90Percentile", +1), ("rCBV_CE_wavelet-LLL_firstorder_Entropy", +1),
           ("rCBV_NE_wavelet-LLL_firstorder_10Percentile", -1), ("rCBV_NE_wavelet-LLL_firstorder_Kurtosis", -1))


def synthetic_recurrence_table(n: int = 160, seed: int = 0, prevalence: float = 0.4, effect: float = 1.0,
                               label: str = "distant_recurrence") -> Tuple[pd.DataFrame, dict]:
    """A SYNTHETIC cohort (deterministic by ``seed``): ``case_id``, the 0/1 ``label`` (1 = distant, 0 = local
    recurrence), rCBV radiomic columns ``rCBV_<CE|NE>_<image type>_<class>_<feature>`` (correlated blocks from a few
    latent factors, positive rCBV-like scales) of which the ``PLANTED`` ones shift by ``effect`` SDs with the label,
    and ``synthetic`` = True. Returns (table, provenance) with ``synthetic: true`` and sequence CBV."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]  # both classes always present
    names = [f"rCBV_{reg}_{it}_{cls}" for reg in ("CE", "NE") for it in _IMAGE_TYPES
             for cls in [f"firstorder_{f}" for f in _FIRSTORDER] + list(_TEXTURE)]
    m = len(names)
    L = rng.normal(size=(n, 6))                                  # latent heterogeneity / perfusion factors
    load = rng.normal(scale=0.7, size=(6, m)) * (rng.random((6, m)) < 0.4)
    Z = L @ load + rng.normal(size=(n, m))
    Z = (Z - Z.mean(0)) / Z.std(0)
    for f, sign in PLANTED:
        j = names.index(f)
        Z[:, j] = rng.normal(size=n) + sign * effect * (y - y.mean())
    scale = np.exp(rng.normal(-0.5, 0.5, m))
    level = np.exp(rng.normal(0.3, 0.6, m))
    X = level + scale * Z
    df = pd.DataFrame(X.round(6), columns=names)
    df.insert(0, label, y)
    df.insert(0, "case_id", [f"SYN-REC-{i:04d}" for i in range(n)])
    df["synthetic"] = True
    from .features import load_preset
    from .perfusion import REFERENCE_REGION
    # the provenance keys of real shim2021 features (pipeline.analyze_case): the preset's own (preset, settings hash,
    # PyRadiomics version, normalization 'none') and the rCBV definition, so that a model trained here applies to
    # features extracted from a real rCBV map and refuses others
    prov = {**load_preset("shim2021").provenance(), "rcbv_normalization": REFERENCE_REGION,
            "sequences": ["rCBV"], "regions": ["CE", "NE"], "synthetic": True,
            "source": f"recurrence.synthetic_recurrence_table(n={n}, seed={seed}, prevalence={prevalence}, "
                      f"effect={effect}): SYNTHETIC features, no images",
            "planted_features": [f for f, _ in PLANTED]}
    return df, prov


# ----------------------------------------------------------------------------------------------------------------
# training from a table: `train --method shim-recurrence --table T --label COL`
# ----------------------------------------------------------------------------------------------------------------
def train_recurrence_bundle(table: pd.DataFrame, label: str, provenance: dict, *, trained_on: str, synthetic: bool,
                            intended_use: str, seed: int = 0, repeats: int = 10, folds: int = 5,
                            features: Optional[str] = None, id_column: Optional[str] = None,
                            missing_threshold: float = 0.2, params: Optional[dict] = None,
                            version: str = "1.0.0", report_path=None, progress=None) -> Tuple[dict, dict]:
    """Repeated nested CV of MLP / SVM / LR on identical folds + the final MLP on all cases -> (bundle, evaluation).
    Refuses (InputError) a provenance whose sequences do not include CBV."""
    from .evaluation import at_cutoff, compare_repeated, repeated_cv_summary
    from .io import InputError, atomic_write_json
    from .train import _usable, apply_missing, imaging_columns, missing_rule
    if label not in table.columns:
        raise InputError(f"column '{label}' is not in the table")
    if provenance.get("sequences") is not None and not _offers_cbv(provenance):
        raise InputError(f"the recurrence model needs rCBV features (sequence {CBV_SEQUENCE}); the table's provenance "
                         f"says {', '.join(map(str, provenance['sequences'])) or 'no sequence'}")
    synthetic = bool(synthetic or provenance.get("synthetic") is True or
                     ("synthetic" in table.columns and table["synthetic"].astype(str).str.lower().eq("true").all()))
    df = table.copy()
    if id_column and id_column != "case_id":
        if id_column not in df.columns:
            raise InputError(f"--id-column: column '{id_column}' is not in the table")
        df["case_id"] = df[id_column].astype(str)
    yy = pd.to_numeric(df[label], errors="coerce")
    if (yy.notna() & ~yy.isin([0, 1])).any():
        raise InputError(f"'{label}' must be 0 (local) / 1 (distant recurrence)")
    df = df[yy.notna()].reset_index(drop=True)
    y = yy[yy.notna()].to_numpy(int)
    if np.bincount(y, minlength=2).min() < max(3, folds):
        raise InputError(f"'{label}': {np.bincount(y, minlength=2).tolist()} cases per class; too few for "
                         f"{folds}-fold cross-validation")
    img_cols = _usable(df, imaging_columns(df.columns, features or CBV_FEATURES, {label, "case_id", id_column or ""}))
    if not img_cols:
        raise InputError(f"no usable rCBV feature columns (matching '{features or CBV_FEATURES}') in the table")
    df[img_cols] = df[img_cols].apply(pd.to_numeric, errors="coerce")
    rule = missing_rule(df, img_cols, [], missing_threshold)
    if rule["n_imputed_values"] or rule["dropped_for_missingness"]:
        raise InputError("the recurrence model needs complete rCBV features (missing values in "
                         f"{len(rule['n_imputed_values']) + len(rule['dropped_for_missingness'])} column(s)): "
                         "impute or drop them before training")
    cols = rule["img_cols"]
    X = apply_missing(df, rule, [])[cols].to_numpy(float)
    p = {**ShimRecurrence().get_params(), **(params or {})}
    cv = repeated_cv_recurrence(X, y, repeats=repeats, folds=folds, seed=seed, params=p, progress=progress)
    summ = {c: repeated_cv_summary(y, P, seed=seed) for c, P in cv["oof"].items()}
    comp = {f"mlp vs {c}": compare_repeated(y, cv["oof"]["mlp"], cv["oof"][c], "mlp", c) for c in ("svm", "lr")}
    est = ShimRecurrence(**{**p, "classifier": "mlp", "random_state": seed}).fit(X, y, cols)
    nsel = cv["n_outer_fits"]
    design = {"repeats": repeats, "outer_folds": cv["folds"], "inner_folds": p["inner_folds"], "seed": seed,
              "n_features_grid": [int(k) for k in np.atleast_1d(p["n_features"])], "rfe_step": p["rfe_step"],
              "smote": p["smote"], "mlp_hidden_layers": list(p["hidden_layer_sizes"]),
              "n_columns_offered": len(cols),
              "outer_split": "stratified by the label (train.cv_splits), a different shuffle per repetition; "
                             "standardisation, SVM-RFE (with the inner CV of the feature count), SMOTE and the "
                             "classifiers fitted inside each outer training fold; SVM / LR / MLP on identical folds "
                             "and identical selected features"}
    m = summ["mlp"]
    oof_mean = cv["oof"]["mlp"].mean(0)
    metrics = {"auc_cv": m["auc_mean"], "auc_cv_sd": m["auc_sd"], "auc_cv_95ci": m["auc_95ci_delong"],
               "auc_cv_95ci_bootstrap": m["auc_95ci_bootstrap"],
               "auc_cv_95ci_repetitions_x_bootstrap": m["auc_95ci_repetitions_x_bootstrap"],
               "at_cutoff_0.5_mean_oof": at_cutoff(y, oof_mean, 0.5),
               "classifiers_cv": {c: {"auc": s["auc_mean"], "auc_sd": s["auc_sd"], "auc_95ci_delong": s["auc_95ci_delong"],
                                      "auc_95ci_bootstrap": s["auc_95ci_bootstrap"]} for c, s in summ.items()},
               "comparisons": comp, "validation": "internal (repeated nested CV) only",
               "features_kept_per_fold": sorted({int(r["k"]) for r in cv["folds_info"]})}
    freq = {cols[j]: round(c / nsel, 3) for j, c in sorted(cv["selection_count"].items(), key=lambda kv: -kv[1])}
    training = {"trained_on": trained_on, "n": int(len(y)), "n_positive": int(y.sum()), "label_column": label,
                "seed": seed, "method": "Shim 2021: z-normalisation, SVM-RFE, SMOTE on the training data, MLP",
                "n_features_kept": int(est.selector_.k_), "inner_auc_per_k": est.selector_.inner_auc_,
                "n_synthetic_smote_rows": est.n_synthetic_, "validation_design": design,
                "selection_frequency_cv": dict(list(freq.items())[:50]), "sequences": [CBV_SEQUENCE],
                "synthetic_data": synthetic}
    name = "recurrence-pattern-shim-mlp" + ("-SYNTHETIC" if synthetic else "")
    bundle = recurrence_bundle_dict(est, name=name, version=version, label=label,
                                    feature_schema={k: v for k, v in provenance.items() if k != "planted_features"},
                                    training=training, metrics=metrics, synthetic=synthetic,
                                    intended_use=intended_use, imputation=rule["medians"])
    ev = {"task": "recurrence pattern", "method": "shim-recurrence", "design": design, "classifiers": summ,
          "comparisons": comp, "features": est.features_, "selection_frequency_cv": freq,
          "folds_info": cv["folds_info"], "oof_mean": {c: [round(float(v), 6) for v in P.mean(0)]
                                                      for c, P in cv["oof"].items()},
          "y": y.tolist(), "case_id": df["case_id"].astype(str).tolist() if "case_id" in df else None,
          "synthetic": synthetic}
    if report_path:
        from .evaluation import write_report
        report_path = Path(report_path)
        atomic_write_json(report_path.parent / (report_path.name + ".json"), ev)
        rows = [[c.upper(), s["auc_mean"], s["auc_sd"], "-".join(map(str, s["auc_95ci_delong"])),
                 "-".join(map(str, s["auc_95ci_bootstrap"] or []))] for c, s in summ.items()]
        write_report(report_path.parent / (report_path.name + ".html"),
                     "Recurrence pattern model evaluation" + (" [SYNTHETIC]" if synthetic else ""), [
                         {"title": "distant vs local recurrence: repeated nested cross-validation (internal)",
                          "text": f"n = {len(y)}, distant = {int(y.sum())}. " + design["outer_split"],
                          "table": {"columns": ["classifier", "AUC mean", "SD over repetitions", "95% CI (DeLong)",
                                                "95% CI (bootstrap)"], "rows": rows}}], bundle["card"])
    return bundle, ev
