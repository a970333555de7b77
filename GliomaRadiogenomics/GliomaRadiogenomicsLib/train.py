"""Training: the papers' estimators (models.py) -> model bundles (bundle.py) + an evaluation report (evaluation.py).

``train_bundles(table, labels, method)``:
  st / mt / cmt  Wang 2025 (one bundle per label; mt and cmt need two labels, st trains each label on its own);
  atrx-fusion    Liu 2024 (one label: imaging score + age + sex + VASARI score; WHO grade only when named in
                 ``clinical``: it is post-operative). Student's t-test by default (``liu={"ttest": "welch"}``);
                 the imaging model alone (the imaging score) is evaluated on the same folds, paired per repetition
                 (``repeated_cv["fusion_vs_imaging"]``), and ``imaging_bundle=True`` also packages it.
Folds: ``fold_assignment`` (``shared_fold_assignment``: one assignment of case_ids to folds per repetition) gives
every method trained on a table the same outer folds (st and cmt compared on identical folds).
Performance is estimated by REPEATED nested cross-validation: ``repeats`` repetitions (default 10) of a stratified
``outer_folds``-fold (5) outer split, each repetition with a different shuffle; every step (correlation filter,
bootstrap selection, penalty choice, t-test / LASSO / AIC, fusion, imputation means) is repeated inside each
outer training fold. Reported: the pooled out-of-fold AUC per repetition, its mean over repetitions, SD and range,
and 95 % CIs; clinical baselines (age; age + sex: plain logistic regression) are fitted on the SAME training folds
and compared pairwise (per-repetition AUC differences; DeLong on the repetition-averaged out-of-fold predictions).
The final model is then fitted on all cases; the bundle's cutoff (for new cases) is the Youden index of its training
predictions. The cross-validated accuracy / sensitivity / specificity / PPV / NPV come from cutoffs chosen INSIDE
each outer fold (Youden on that fold's training predictions) and applied to its held-out cases
(``evaluation.at_fold_cutoffs``). Calibration: intercept and slope of the out-of-fold predictions per repetition
with bootstrap CIs, and a smoothed (spline logistic) curve.

Missing data (``missing_rule`` / ``apply_missing``, learned on the training cases of each fold and of the final
fit, never on the whole table): an imaging column is dropped when more than ``missing_threshold`` (default 20 %) of
the training cases miss it, else its missing values take the training median; a clinical variable's missing values
take the training mean and, when any training case misses it, a 0/1 indicator ``<variable>_missing`` is offered to
the model. Feature families (sequence + region, e.g. ``T1c_ET``) absent for some cases (empty or too small regions
give NaN) are counted and stated in the bundle's ``training["missing_data"]`` and the evaluation's warnings. The
bundle records the imputation values; ``predict`` uses them and names the imputed inputs.

``sequences`` restricts a training to the MRI sequences named (``restrict_to_sequences``): imaging columns of
other sequences are dropped, sequence-independent ones (segmentation shape ``mask_``, atlas location ``loc_``,
VASARI features ``vasari_F``) kept, and only cases with all the named sequences are used; the bundle records them
in ``feature_schema["sequences"]``.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from . import __version__
from .case import SEXES
from .bundle import SEQ_NAMES, ModelBundle, build_nomogram
from .evaluation import (at_fold_cutoffs, calibration_summary, cohort_table, compare_repeated, evaluate, figures,
                         repeated_cv_summary, write_report, youden_cutoff)
from .io import InputError
from .models import LiuFusion, WangLasso, _sigmoid, correlation_keep

CLINICAL = ("age", "sex_male", "who_grade", "vasari_score")
# Liu 2024 fused age, sex and VASARI score with the imaging score; WHO grade (post-operative) only when asked for
LIU_DEFAULT_CLINICAL = ("age", "sex_male", "vasari_score")
IMAGING_PREFIXES = ("mask_", "T1_", "T1c_", "T2_", "FLAIR_", "rCBV_", "loc_", "vasari_F", "t2flair_")
SEQUENCE_PREFIXES = {"t1": "T1_", "t1c": "T1c_", "t2": "T2_", "flair": "FLAIR_"}
SEQUENCE_FREE_PREFIXES = ("mask_", "loc_", "vasari_F")  # from the segmentation and the atlas, no MRI intensities
METHODS = ("st", "mt", "cmt", "atrx-fusion")
BASELINES = {"age": ("age",), "age + sex": ("age", "sex_male")}  # plain logistic regression, same folds
NOMOGRAM_NAMES = {"age": "Age (years)", "sex_male": "Sex (male = 1)", "who_grade": "WHO grade",
                  "vasari_score": "VASARI score", "vasari_auto_score": "VASARI score (automatic)"}
NOMOGRAM_NAMES.update({f"{c}_missing": f"{c} not recorded (1 = missing)" for c in CLINICAL})
# written into each bundle (model files are data): generated from the one sex definition, case.SEXES / sex_male
ENCODINGS = {"sex_male": {k: (1.0 if v == "M" else 0.0) for k, v in SEXES.items()}}


def add_derived_columns(df: pd.DataFrame) -> pd.DataFrame:
    """sex (M/F) -> sex_male (1/0); WHO grade and VASARI score as numbers."""
    df = df.copy()
    if "sex" in df.columns and "sex_male" not in df.columns:
        from .case import sex_male  # the one sex encoder: an unknown value is refused, never read as female
        ids = df["case_id"] if "case_id" in df.columns else pd.Series(df.index, index=df.index)
        df["sex_male"] = [np.nan if (v := sex_male(s, where=f"feature table row {i}")) is None else v
                          for s, i in zip(df["sex"], ids)]
    for c in ("who_grade", "vasari_score", "age"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


# A standard PyRadiomics feature name (PyRadiomics, SlicerRadiomics, published cohort tables): <image type>_<class>_
# <feature>, the image type as PyRadiomics writes it: original, log-sigma-3-0-mm-3D, wavelet-LLH (wavelet2-... at
# higher levels), square, squareroot, logarithm, exponential, gradient, lbp-2D, lbp-3D-m1 / lbp-3D-k.
PYRADIOMICS_FEATURE = re.compile(
    r"^(?:original|log-sigma-\d+-\d+-mm-[23]D|wavelet\d*-[LH]{1,3}|square|squareroot|logarithm|exponential|gradient"
    r"|lbp-2D|lbp-3D-(?:m\d+|k))_(?:shape|shape2D|firstorder|glcm|glrlm|glszm|gldm|ngtdm)_[A-Za-z0-9]+$")
NOT_FEATURES = ("diagnostics_",)  # PyRadiomics' diagnostics (versions, hashes, image / mask statistics): never offered


def is_pyradiomics_feature(column: str) -> bool:
    """A standard PyRadiomics feature column (``original_shape_Elongation``, ``wavelet-LLH_glcm_Idmn``, ...)."""
    return bool(PYRADIOMICS_FEATURE.match(column))


def imaging_columns(columns: Sequence[str], features: Optional[str] = None,
                    exclude: Sequence[str] = ()) -> List[str]:
    """The imaging feature columns of a table: ours (``T1c_WT_original_...``, ``mask_``, ``loc_``, VASARI) and
    standard PyRadiomics names (``original_*``, ``log-sigma-*``, ``wavelet-*``, ``square*``, ...); ``diagnostics_*``
    never. ``features`` (a regular expression, ``re.search``) replaces the rule for any other naming; the columns in
    ``exclude`` (labels, clinical, id) are never imaging columns."""
    skip = set(exclude)
    if features:
        try:
            rx = re.compile(features)
        except re.error as exc:
            raise InputError(f"--features: not a valid regular expression '{features}' ({exc})") from None
        return [c for c in columns if rx.search(c) and c not in skip and not c.startswith(NOT_FEATURES)]
    return [c for c in columns if c not in skip and not c.startswith(NOT_FEATURES)
            and ((c.startswith(IMAGING_PREFIXES) and not c.endswith(("_n", "_score"))) or is_pyradiomics_feature(c))]


def map_standard_names(needed: Sequence[str], columns: Sequence[str]) -> Tuple[Dict[str, str], Optional[str]]:
    """For a bundle's features missing from a table: {bundle feature: table column} and a warning, when the table
    holds standard PyRadiomics names of ONE image and region (no sequence / region prefix) and the bundle's missing
    features all come from one sequence and one region: ``T1c_WT_original_firstorder_Mean`` and
    ``mask_WT_original_shape_Sphericity`` <- ``original_firstorder_Mean`` and ``original_shape_Sphericity``. Nothing
    is mapped when that is ambiguous (several sequences or regions) or the table has prefixed columns too."""
    have = set(columns)
    missing = [f for f in needed if f not in have]
    if not missing or any(c.startswith(IMAGING_PREFIXES) for c in columns):
        return {}, None
    out, seqs, regions = {}, set(), set()
    for f in missing:
        m = re.match(r"^(mask|T1|T1c|T2|FLAIR)_([A-Za-z0-9]+)_(.+)$", f)
        if not m or not is_pyradiomics_feature(m.group(3)) or m.group(3) not in have:
            continue
        if m.group(1) != "mask":
            seqs.add(m.group(1))
        regions.add(m.group(2))
        out[f] = m.group(3)
    if not out or len(seqs) > 1 or len(regions) > 1:
        return {}, None
    seq = next(iter(seqs)) if seqs else "(shape only)"
    return out, (f"{len(out)} model feature(s) read from standard PyRadiomics columns of the table, assumed to come "
                 f"from sequence {seq} and region {next(iter(regions))} as the model's "
                 f"({', '.join(f'{k} <- {v}' for k, v in list(out.items())[:3])}{' ...' if len(out) > 3 else ''})")


# ----------------------------------------------------------------------------------------------------------------
# sequence subsets
# ----------------------------------------------------------------------------------------------------------------
def parse_sequences(spec) -> List[str]:
    """'flair,t1,t1c' (or a list; case-insensitive, FLAIR / T1c accepted) -> keys in canonical order."""
    items = re.split(r"[,+\s]+", spec) if isinstance(spec, str) else list(spec)
    keys = [str(i).strip().lower() for i in items if str(i).strip()]
    bad = [k for k in keys if k not in SEQUENCE_PREFIXES]
    if bad or not keys:
        raise InputError(f"--sequences: unknown sequence(s) {', '.join(bad) or '(none given)'}; use a comma-separated "
                         f"list of {', '.join(SEQUENCE_PREFIXES)}")
    return [k for k in SEQ_NAMES if k in keys]


def column_sequences(column: str) -> Optional[List[str]]:
    """The sequences an imaging column's values come from: [] for sequence-independent columns, None for columns
    that are not imaging features."""
    if column.startswith("t2flair_"):
        return ["t2", "flair"]
    for k, pre in SEQUENCE_PREFIXES.items():
        if column.startswith(pre):
            return [k]
    if column.startswith(SEQUENCE_FREE_PREFIXES):
        return []
    return None


def case_sequences(table: pd.DataFrame) -> List[set]:
    """Per row, the sequences whose feature columns hold at least one finite value (what was extracted)."""
    out = [set() for _ in range(len(table))]
    for k, pre in SEQUENCE_PREFIXES.items():
        cols = [c for c in table.columns if c.startswith(pre)]
        if not cols:
            continue
        has = np.isfinite(table[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)).any(1)
        for i in np.flatnonzero(has):
            out[i].add(k)
    return out


def restrict_to_sequences(table: pd.DataFrame, sequences) -> Tuple[pd.DataFrame, dict]:
    """Keep the rows (cases) that have every sequence in ``sequences`` and drop the imaging columns of any other
    sequence; sequence-independent columns (mask_, loc_, vasari_F) and non-imaging columns stay."""
    seqs = parse_sequences(sequences)
    missing = [SEQ_NAMES[k] for k in seqs if not any(c.startswith(SEQUENCE_PREFIXES[k]) for c in table.columns)]
    if missing:
        raise InputError(f"--sequences: the table has no feature columns of {', '.join(missing)}")
    have = case_sequences(table)
    rows = [i for i, h in enumerate(have) if set(seqs) <= h]
    drop = [c for c in table.columns if (column_sequences(c) or []) and not set(column_sequences(c)) <= set(seqs)]
    out = table.iloc[rows].drop(columns=drop).reset_index(drop=True)
    info = {"sequences": [SEQ_NAMES[k] for k in seqs], "n_rows_table": int(len(table)), "n_rows_kept": int(len(out)),
            "n_columns_dropped": len(drop)}
    return out, info


def offered_sequences(columns: Sequence[str]) -> List[str]:
    """Sequences (display names) of the imaging columns offered to a model."""
    used = set()
    for c in columns:
        used.update(column_sequences(c) or [])
    return [SEQ_NAMES[k] for k in SEQ_NAMES if k in used]


def drop_correlated(X: np.ndarray, names: List[str], threshold: float = 0.99):
    keep = correlation_keep(X, threshold)
    return X[:, keep], [names[k] for k in keep]


def _usable(df: pd.DataFrame, cols: List[str]) -> List[str]:
    """Imaging columns with at least one finite value that are not constant (missing values are handled inside
    the folds by ``missing_rule``)."""
    if not cols:
        return []
    X = np.array(df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float), copy=True)
    X[~np.isfinite(X)] = np.nan
    fin = np.isfinite(X).any(0)
    with np.errstate(all="ignore"):
        sd = np.where(fin, np.nanstd(np.where(fin, X, 0.0), 0), 0.0)
    ok = fin & (sd > 1e-12)
    return [c for c, k in zip(cols, ok) if k]


# ----------------------------------------------------------------------------------------------------------------
# missing data: learned on training cases only (each outer fold, the final fit)
# ----------------------------------------------------------------------------------------------------------------
MISSING_THRESHOLD = 0.20  # an imaging column is dropped when MORE than this fraction of the training cases miss it
INDICATOR_SUFFIX = "_missing"


def feature_family(column: str) -> str:
    """The family of an imaging column: sequence + region for ours (``T1c_ET``, ``mask_WT``), the prefix for
    location / VASARI columns, the image type for standard PyRadiomics names (``original``, ``wavelet-LLH``)."""
    m = re.match(r"^(mask|T1|T1c|T2|FLAIR|t2flair)_([A-Za-z0-9]+)_", column)
    if m:
        return f"{m.group(1)}_{m.group(2)}"
    return column.split("_", 1)[0]


def missing_rule(dtr: pd.DataFrame, img_cols: Sequence[str], clinical: Sequence[str],
                 threshold: float = MISSING_THRESHOLD) -> dict:
    """What to do with missing values, learned on the training cases ``dtr``: imaging columns kept (missing in at
    most ``threshold`` of them, not constant on the observed values) with their training medians, columns dropped
    for missingness (fraction missing), clinical training means, and the clinical variables that get a missing
    indicator (some but not all training cases miss them)."""
    X = dtr[list(img_cols)].apply(pd.to_numeric, errors="coerce")
    X = X.where(np.isfinite(X.to_numpy(float)))
    frac = X.isna().mean(axis=0)
    dropped = {c: round(float(frac[c]), 4) for c in img_cols if frac[c] > threshold}
    med = X.median(axis=0)
    keep = [c for c in img_cols if c not in dropped and np.isfinite(med[c])
            and float(X[c].std(ddof=0)) > 1e-12]
    C = dtr[list(clinical)].apply(pd.to_numeric, errors="coerce") if clinical else pd.DataFrame(index=dtr.index)
    means = {c: float(C[c].mean()) for c in clinical}
    indicators = [c for c in clinical if 0 < int(C[c].isna().sum()) < len(C)]
    return {"threshold": float(threshold), "img_cols": keep, "medians": {c: float(med[c]) for c in keep},
            "means": means, "indicators": indicators, "dropped_for_missingness": dropped,
            "n_imputed_values": {c: int(X[c].isna().sum()) for c in keep if X[c].isna().any()},
            "n_cases": int(len(dtr))}


def apply_missing(df: pd.DataFrame, rule: dict, clinical: Sequence[str]) -> pd.DataFrame:
    """Fill a table's missing values by a rule learned on training cases (``missing_rule``) and add the missing
    indicators (1 = the variable was missing); the input is not changed."""
    df = df.copy()
    for c in rule["indicators"]:
        df[c + INDICATOR_SUFFIX] = df[c].isna().astype(float)
    for c in clinical:
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(rule["means"][c])
    cols = rule["img_cols"]
    if cols:
        X = df[cols].apply(pd.to_numeric, errors="coerce")
        df[cols] = X.where(np.isfinite(X.to_numpy(float))).fillna(rule["medians"])
    return df


def model_clinical(clinical: Sequence[str], rule: dict) -> List[str]:
    """The clinical columns offered to the model: the variables and their missing indicators."""
    return list(clinical) + [c + INDICATOR_SUFFIX for c in rule["indicators"]]


def absent_families(df: pd.DataFrame, img_cols: Sequence[str]) -> Dict[str, int]:
    """Per imaging feature family, the number of cases in which ALL its columns are missing (a region empty or too
    small for its features, a sequence not extracted); families never absent are left out."""
    fams: Dict[str, List[str]] = {}
    for c in img_cols:
        fams.setdefault(feature_family(c), []).append(c)
    out = {}
    for f, cols in fams.items():
        X = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        n = int((~np.isfinite(X)).all(1).sum())
        if n:
            out[f] = n
    return out


# ----------------------------------------------------------------------------------------------------------------
# fitting one method on one table (used for the final model and inside each outer fold)
# ----------------------------------------------------------------------------------------------------------------
WANG_DEFAULT_CLINICAL = ("age", "sex_male")  # Wang 2025: "Age and gender were also used in model construction"


def _fit(method: str, df: pd.DataFrame, labels: List[str], img_cols: List[str], clinical: List[str], seed: int,
         n_bootstrap: int, n_jobs: Optional[int] = None, wang: Optional[dict] = None, liu: Optional[dict] = None):
    """Returns a list (one per label) of linear models {features, center, scale, coef, intercept, groups, info}.
    ``wang``: WangLasso parameters (loss, alpha, ...) over its defaults (the authors' procedure); ``liu``:
    LiuFusion parameters (``ttest``, ...)."""
    if method == "atrx-fusion":
        from .models import LIU_TTESTS
        cols = img_cols + clinical
        y = df[labels[0]].to_numpy(float)
        est = LiuFusion(clinical=tuple(clinical), random_state=seed, **(liu or {})).fit(df[cols].to_numpy(float), y,
                                                                                         cols)
        lm = est.linear_model()
        ttest = {"ttest": est.ttest, "ttest_description": LIU_TTESTS[est.ttest], "ttest_p_threshold": est.p_threshold}
        lm["info"] = {"method": "Liu 2024 fusion", **lm.pop("imaging"), **ttest, "fused_clinical": list(clinical)}
        img = est.imaging_linear_model()
        img["info"] = {"method": "Liu 2024 imaging model (imaging score alone)", **img.pop("imaging"), **ttest}
        lm["extra"] = {"imaging": est, "imaging_model": img}
        return [lm]
    X = df[img_cols + clinical].to_numpy(float)
    Y = df[labels].to_numpy(float)
    n_jobs = min(4, os.cpu_count() or 1) if n_jobs is None else n_jobs
    est = WangLasso(method=method, n_bootstrap=n_bootstrap, n_jobs=n_jobs, random_state=seed,
                    **(wang or {})).fit(X, Y, img_cols + clinical)
    out = []
    for t in range(len(labels)):
        m = est.task_model(t)
        m["groups"] = {f: ("Radiomics score" if f not in CLINICAL and f not in clinical else f)
                       for f in m["features"]}
        sel = est.selection_
        m["info"] = {"method": {"st": "single-task LASSO", "mt": "multi-task LASSO",
                                "cmt": "collaborative multi-task LASSO"}[method] + " (Wang 2025)",
                     "loss": est.loss, "round_alpha": float(est.alpha), "round_filter": est.round_filter,
                     "resampling": est.resampling,
                     "selection_threshold": {k: float(v) for k, v in sel.threshold.items()},
                     "one_se_rule": est.one_se_rule, "final_cv": est.final_cv,
                     "calibration": m.pop("calibration"),
                     "alpha_1se": m.pop("alpha"), "n_candidates_after_filter": int(len(est.kept_)),
                     "n_shared": len(sel.selected.get("shared", [])), "n_task_specific": len(sel.selected.get(f"task{t}", [])),
                     "kept_rounds": {k: int(v) for k, v in sel.kept_rounds.items()}, "n_bootstrap": n_bootstrap,
                     "selection_fallback": t in sel.fallback,
                     "null_model_at_1se": est.cv_[t]["null_model_at_1se"]}
        out.append(m)
    return out


def _lp(model: dict, df: pd.DataFrame) -> np.ndarray:
    if not model["features"]:
        return np.full(len(df), model["intercept"])
    X = df[model["features"]].to_numpy(float)
    return model["intercept"] + ((X - model["center"]) / model["scale"]) @ model["coef"]


# ----------------------------------------------------------------------------------------------------------------
# repeated nested cross-validation
# ----------------------------------------------------------------------------------------------------------------
_CV_INPUT: dict = {}


def _logistic_baseline(dtr: pd.DataFrame, dte: pd.DataFrame, label: str, cols: Sequence[str]) -> np.ndarray:
    """Plain (unpenalised) logistic regression on ``cols`` fitted on the training fold's labelled cases; missing
    values take the training fold's means."""
    from .models import _logit_fit
    tr = dtr[np.isfinite(dtr[label].to_numpy(float))]
    mu = {c: float(tr[c].mean()) for c in cols}
    C = tr[list(cols)].fillna(mu).to_numpy(float)
    m, sd = C.mean(0), C.std(0)
    sd[sd == 0] = 1
    w, b, _ = _logit_fit((C - m) / sd, tr[label].to_numpy(float))
    return _sigmoid(b + ((dte[list(cols)].fillna(mu).to_numpy(float) - m) / sd) @ w)


def _cv_fold(job, ctx=None) -> dict:
    """One outer fold of one repetition: fit every step on the training part, predict the held-out part."""
    method, df, labels, img_cols, clinical, baselines, seed, n_bootstrap, wang, threshold, liu = (
        ctx if ctx is not None else _CV_INPUT["ctx"])
    r, f, tr, te = job
    dtr, dte = df.iloc[tr], df.iloc[te]
    rule = missing_rule(dtr, img_cols, clinical, threshold)  # learned on the training fold only
    dtr, dte = apply_missing(dtr, rule, clinical), apply_missing(dte, rule, clinical)
    cols, clin = rule["img_cols"], model_clinical(clinical, rule)
    models = _fit(method, dtr, labels, cols, clin, seed + r, n_bootstrap, n_jobs=1, wang=wang, liu=liu)
    out = {"r": r, "f": f, "te": te, "p": {}, "n_features": {}, "extra": {}, "baselines": {}, "cutoff": {},
           "extra_cutoff": {},
           "n_dropped_for_missingness": len(rule["dropped_for_missingness"])}
    for lab, m in zip(labels, models):
        out["p"][lab] = _sigmoid(_lp(m, dte))
        out["n_features"][lab] = len(m["features"])
        # the cutoff this fold applies to its held-out cases: Youden on ITS training cases' predictions
        lab_tr = np.isfinite(dtr[lab].to_numpy(float))
        out["cutoff"][lab] = youden_cutoff(dtr.loc[lab_tr, lab].astype(int).to_numpy(),
                                           _sigmoid(_lp(m, dtr[lab_tr])))
        out["baselines"][lab] = {name: _logistic_baseline(dtr, dte, lab, bcols)
                                 for name, bcols in baselines.items()}
    if method == "atrx-fusion":
        est = models[0]["extra"]["imaging"]
        out["extra"]["imaging only"] = _sigmoid(est.imaging_score(dte[cols + clin].to_numpy(float)))
        out["extra"]["clinical only"] = _clinical_only(dtr, dte, labels[0], clinical)
        # the imaging model's own cutoff (Youden on this training fold), for its cross-validated classification
        out["n_features_imaging"] = int(len(est.imaging_["cols"]))
        out["imaging_model_chosen"] = est.imaging_choice_.get("chosen", "all imaging columns")
        out["extra_cutoff"]["imaging only"] = youden_cutoff(
            dtr[labels[0]].astype(int).to_numpy(), _sigmoid(est.imaging_score(dtr[cols + clin].to_numpy(float))))
    return out


def _cv_worker(job):
    return _cv_fold(job)


def _init_worker():
    from .models import _one_blas_thread
    _one_blas_thread()


def cv_splits(strata: pd.Series, repeats: int, folds: int, seed: int, k: Optional[int] = None):
    """(repetition, fold, train index, test index) for every outer fold: repetition r shuffles with seed + 1 + r
    (repetition 0 is the single cross-validation of earlier versions). ``k`` (default: ``folds`` capped by the
    smallest stratum) overrides the number of folds."""
    import warnings
    k = max(2, int(min(folds, strata.value_counts().min()))) if k is None else int(k)
    with warnings.catch_warnings():  # a stratum smaller than k (joint strata of two labels): spread as it can be
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [(r, f, tr, te) for r in range(repeats)
                for f, (tr, te) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed + 1 + r)
                                             .split(np.zeros(len(strata)), strata))], k


def label_strata(df: pd.DataFrame, labels: Sequence[str]) -> pd.Series:
    """The outer folds' strata: the labels' joint values, a missing label as its own value (``"1"``, ``"02"``)."""
    return df[list(labels)].apply(pd.to_numeric, errors="coerce").fillna(2).astype(int).astype(str).agg("".join,
                                                                                                        axis=1)


def label_folds(df: pd.DataFrame, labels: Sequence[str], folds: int) -> int:
    """The number of outer folds: ``folds`` capped by the smaller class of each label (never by a joint stratum,
    which with two labels and missing values can hold one case and would silently cut the CV to 2 folds)."""
    k = folds
    for lab in labels:
        counts = pd.to_numeric(df[lab], errors="coerce").dropna().value_counts()
        k = min(k, int(counts.min()) if len(counts) else k)
    return max(2, int(k))


def shared_fold_assignment(table: pd.DataFrame, labels: Sequence[str], *, repeats: int, folds: int,
                           seed: int) -> pd.DataFrame:
    """One outer-fold assignment for every method trained on ``table`` (rows: ``case_id``; column r: the fold of
    the case in repetition r): stratified on the labels' joint values, ``label_folds`` folds, repetition r shuffled
    with seed + 1 + r. Pass it as ``train_bundles(fold_assignment=...)`` to st (each label), mt and cmt: each method
    uses the assignment of its own cases, so a case is held out in the same fold by every method and the methods'
    repeated-CV AUCs are compared on identical folds. Cases without any of the labels are left out."""
    if "case_id" not in table.columns:
        raise InputError("a shared fold assignment needs a case_id column")
    df = table[table[list(labels)].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)].reset_index(drop=True)
    if df["case_id"].astype(str).duplicated().any():
        raise InputError("a shared fold assignment needs unique case_id values")
    jobs, _ = cv_splits(label_strata(df, labels), repeats, folds, seed, k=label_folds(df, labels, folds))
    out = np.full((len(df), repeats), -1, dtype=int)
    for r, f, tr, te in jobs:
        out[te, r] = f
    return pd.DataFrame(out, index=pd.Index(df["case_id"].astype(str), name="case_id"))


def splits_from_assignment(case_ids: Sequence[str], assignment: pd.DataFrame, repeats: int):
    """(repetition, fold, train index, test index) for the rows ``case_ids`` from a ``shared_fold_assignment``."""
    ids = pd.Index([str(c) for c in case_ids])
    missing = ids.difference(assignment.index)
    if len(missing):
        raise InputError(f"fold assignment: {len(missing)} case(s) not assigned ({', '.join(missing[:3])})")
    if assignment.shape[1] < repeats:
        raise InputError(f"fold assignment has {assignment.shape[1]} repetitions, {repeats} asked for")
    A = assignment.loc[ids].to_numpy(int)
    k = int(A.max()) + 1
    jobs = []
    for r in range(repeats):
        for f in range(k):
            te = np.flatnonzero(A[:, r] == f)
            if len(te):
                jobs.append((r, f, np.flatnonzero(A[:, r] != f), te))
    return jobs, k


def repeated_cv(method: str, df: pd.DataFrame, labels: List[str], img_cols: List[str], clinical: List[str],
                strata: pd.Series, *, repeats: int, folds: int, seed: int, n_bootstrap: int,
                n_jobs: int = 1, baselines: Optional[Dict[str, Sequence[str]]] = None,
                wang: Optional[dict] = None, missing_threshold: float = MISSING_THRESHOLD,
                liu: Optional[dict] = None, splits=None) -> dict:
    """Out-of-fold predictions (repeats, n) of the method, its clinical baselines and (Liu) the imaging-only and
    clinical-only parts, all on the same folds, and (``cutoffs``, repeats x n) the cutoff each case's fold chose on
    its training part (``extra_cutoffs``: the imaging-only model's). Missing values are handled inside each fold
    (``missing_rule``). Outer folds run in ``n_jobs`` processes (the results do not depend on ``n_jobs``: every
    fold's seed is fixed). ``splits``: (jobs, k) from ``splits_from_assignment`` instead of ``cv_splits(strata)``;
    ``fold`` (repeats x n): each case's outer fold per repetition."""
    if baselines is None:
        baselines = {k: v for k, v in BASELINES.items() if all(c in df.columns and df[c].notna().any() for c in v)}
    jobs, k = splits if splits is not None else cv_splits(strata, repeats, folds, seed)
    ctx = (method, df, labels, img_cols, clinical, baselines, seed, n_bootstrap, wang, missing_threshold, liu)
    n_jobs = max(1, min(int(n_jobs or 1), len(jobs)))
    if n_jobs > 1:
        _CV_INPUT["ctx"] = ctx  # inherited by the forked workers
        try:
            from .parallel import process_pool  # any start method: spawned workers get ctx once each
            with process_pool(n_jobs, _init_worker, shared=(__name__, "_CV_INPUT", {"ctx": ctx})) as pool:
                results = list(pool.map(_cv_worker, jobs))
        finally:
            _CV_INPUT.clear()
    else:
        results = [_cv_fold(j, ctx) for j in jobs]
    n = len(df)
    P = {lab: np.full((repeats, n), np.nan) for lab in labels}
    CUT = {lab: np.full((repeats, n), np.nan) for lab in labels}
    B = {lab: {b: np.full((repeats, n), np.nan) for b in baselines} for lab in labels}
    E = {e: np.full((repeats, n), np.nan) for e in (("imaging only", "clinical only") if method == "atrx-fusion" else ())}
    ECUT = {e: np.full((repeats, n), np.nan) for e in (("imaging only",) if method == "atrx-fusion" else ())}
    FOLD = np.full((repeats, n), -1, dtype=int)
    nfeat = {lab: [] for lab in labels}
    nfeat_imaging = [res["n_features_imaging"] for res in results if "n_features_imaging" in res]
    for res in results:
        r, te = res["r"], res["te"]
        FOLD[r, te] = res["f"]
        for e, v in res.get("extra_cutoff", {}).items():
            ECUT[e][r, te] = v
        for lab in labels:
            P[lab][r, te] = res["p"][lab]
            CUT[lab][r, te] = res["cutoff"][lab]
            nfeat[lab].append(res["n_features"][lab])
            for b, v in res["baselines"][lab].items():
                B[lab][b][r, te] = v
        for e, v in res["extra"].items():
            E[e][r, te] = v
    return {"oof": P, "baselines": B, "extra": E, "n_features": nfeat, "folds": k, "repeats": repeats,
            "cutoffs": CUT, "extra_cutoffs": ECUT, "fold": FOLD, "n_features_imaging": nfeat_imaging, "baseline_columns": {b: list(c) for b, c in baselines.items()},
            "n_dropped_for_missingness_per_fold": [res["n_dropped_for_missingness"] for res in results],
            "imaging_model_chosen_per_fold": [res["imaging_model_chosen"] for res in results
                                              if "imaging_model_chosen" in res]}


def train_bundles(table: pd.DataFrame, labels: Sequence[str], method: str, provenance: dict, *, trained_on: str,
                  synthetic: bool, intended_use: str, tasks: Optional[Sequence[str]] = None,
                  positive_labels: Optional[Sequence[str]] = None, negative_labels: Optional[Sequence[str]] = None,
                  clinical: Optional[Sequence[str]] = None, seed: int = 0, n_bootstrap: int = 100,
                  outer_folds: int = 5, repeats: int = 10, sequences=None, n_jobs: Optional[int] = None,
                  version: str = "1.0.0", report_path=None, name_prefix: str = "", wang: Optional[dict] = None,
                  features: Optional[str] = None, id_column: Optional[str] = None,
                  missing_threshold: float = MISSING_THRESHOLD, liu: Optional[dict] = None,
                  fold_assignment: Optional[pd.DataFrame] = None, imaging_bundle: bool = False,
                  _keep_plot: bool = False):
    """Train, cross-validate (``repeats`` x ``outer_folds`` nested) and package. Returns (bundles, evaluation
    dict); with ``report_path`` (no suffix) also writes <report_path>.html (figures) and <report_path>.json.
    ``sequences`` (e.g. "flair,t1,t1c"): train on those sequences' features and cases only (recorded in the
    bundle). ``n_jobs`` processes (default: CPUs, at most 4) run the outer folds and the final bootstrap.
    ``clinical`` (default: age and sex_male for st / mt / cmt as in Wang 2025; age, sex_male and vasari_score for
    atrx-fusion as Liu 2024's pre-operative variables, WHO grade only when named) are offered to the selection like
    any feature; those absent from the table are skipped. ``wang``: WangLasso parameters over its defaults (e.g.
    {"loss": "logistic", "alpha": 0.01}); ``liu``: LiuFusion parameters (e.g. {"ttest": "welch"}; default Student).
    ``fold_assignment`` (``shared_fold_assignment``, needs ``case_id``): the outer folds of every repetition, shared
    with the other methods trained on the same cases. ``imaging_bundle`` (atrx-fusion): also return the imaging
    model alone (Liu's imaging score) as a second bundle (method ``atrx-imaging``), evaluated on the same folds.
    Imaging columns: ours and standard PyRadiomics names (``imaging_columns``; ``diagnostics_*`` ignored), or those
    matching the regular expression ``features``; ``id_column`` names the case identifier column (default
    ``case_id`` when present). ``missing_threshold``: an imaging column is dropped (inside each training fold and
    for the final fit) when more than this fraction of the training cases miss it, else median-imputed there."""
    labels = list(labels)
    if id_column and id_column != "case_id":
        if id_column not in table.columns:
            raise InputError(f"--id-column: column '{id_column}' is not in the table")
        table = table.drop(columns=[c for c in ("case_id",) if c in table.columns]).assign(
            case_id=table[id_column].astype(str))
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}")
    if method in ("mt", "cmt") and len(labels) != 2:
        raise InputError(f"method {method} needs two labels (--label and --label2)")
    if method == "atrx-fusion" and len(labels) != 1:
        raise InputError("method atrx-fusion takes one label")
    if repeats < 1 or outer_folds < 2:
        raise InputError("repeats must be >= 1 and outer folds >= 2")
    if not 0.0 <= float(missing_threshold) < 1.0:
        raise InputError("the missing-data threshold must be a fraction in [0, 1)")
    for lab in labels:
        if lab not in table.columns:
            raise InputError(f"label column '{lab}' is not in the table")
        values = pd.to_numeric(table[lab], errors="coerce")
        invalid = table[lab][table[lab].notna() & ~values.isin([0, 1])]
        if len(invalid):
            shown = sorted(set(map(str, invalid)))[:5]
            raise InputError(f"label column '{lab}' must hold 0 / 1 (or be empty); found {', '.join(shown)}")
        if values.dropna().nunique() < 2:
            raise InputError(f"label column '{lab}' holds one class only ({values.notna().sum()} labelled rows): "
                             "a model needs both 0 and 1")
    n_jobs = min(4, os.cpu_count() or 1) if n_jobs is None else max(1, int(n_jobs))
    seq_info = None
    if sequences:
        table, seq_info = restrict_to_sequences(table, sequences)
        if table.empty:
            raise InputError(f"no case in the table has all of {', '.join(seq_info['sequences'])}")
    if method == "st" and len(labels) == 2:  # single-task: each label on its own cases
        results = [train_bundles(table, [lab], "st", provenance, trained_on=trained_on, synthetic=synthetic,
                                 intended_use=intended_use, tasks=[(tasks or labels)[i]],
                                 positive_labels=[(positive_labels or labels)[i]],
                                 negative_labels=[(negative_labels or [f"not {x}" for x in labels])[i]],
                                 clinical=clinical, seed=seed, n_bootstrap=n_bootstrap, outer_folds=outer_folds,
                                 repeats=repeats, sequences=seq_info["sequences"] if seq_info else None,
                                 n_jobs=n_jobs, version=version, name_prefix=name_prefix, wang=wang,
                                 features=features, missing_threshold=missing_threshold,
                                 fold_assignment=fold_assignment, _keep_plot=True)
                   for i, lab in enumerate(labels)]
        ev = {"tasks": [r[1]["tasks"][0] for r in results]}
        if report_path:
            _report(report_path, ev, [r[0][0] for r in results])
        for t in ev["tasks"]:
            t.pop("_plot", None)
        return [r[0][0] for r in results], ev
    tasks = list(tasks or labels)
    positive_labels = list(positive_labels or [f"{t} positive" for t in tasks])
    negative_labels = list(negative_labels or [f"{t} negative" for t in tasks])
    df = add_derived_columns(table)
    df = df[df[labels].notna().any(axis=1) if method in ("mt", "cmt") else df[labels[0]].notna()].reset_index(drop=True)
    default_clinical = list(LIU_DEFAULT_CLINICAL) if method == "atrx-fusion" else list(WANG_DEFAULT_CLINICAL)
    clinical = [c for c in (clinical if clinical is not None else default_clinical) if c in df.columns
                and df[c].notna().any()]
    exclude = set(labels) | set(clinical) | set(CLINICAL) | {"case_id", "sex", id_column or "case_id"}
    offered = imaging_columns(df.columns, features, exclude)
    if features:
        text = [c for c in offered if df[c].notna().any() and pd.to_numeric(df[c], errors="coerce").isna().all()]
        if text:
            raise InputError(f"--features '{features}' matches non-numeric column(s): {', '.join(text[:5])}"
                             f"{' ...' if len(text) > 5 else ''}; narrow the expression")
    img_cols = _usable(df, offered)
    if not img_cols:
        hint = (f"no column matches --features '{features}'" if features and not offered else
                "columns are recognised by our names (T1c_WT_..., mask_..., loc_...) or standard PyRadiomics names "
                "(original_..., log-sigma-..., wavelet-..., square..., ...); use --features REGEX for other names")
        raise InputError(f"no usable imaging feature columns (finite, non-constant) in the table ({hint})")
    df[img_cols] = df[img_cols].apply(pd.to_numeric, errors="coerce")
    seq_names = seq_info["sequences"] if seq_info else offered_sequences(img_cols)
    provenance = {**provenance, "sequences": seq_names}
    rule = missing_rule(df, img_cols, clinical, missing_threshold)  # the final fit's (all cases are its training)
    if not rule["img_cols"]:
        raise InputError(f"no imaging feature column is present in at least {1 - missing_threshold:.0%} of the cases "
                         f"(missing-data threshold {missing_threshold:.0%})")
    means = rule["means"]
    dfi = apply_missing(df, rule, clinical)
    clinical_final = model_clinical(clinical, rule)
    absent = absent_families(df, img_cols)
    missing_data = {
        "rule": "learned on the training cases (each outer fold; all cases for the final model): imaging column "
                f"dropped when more than {missing_threshold:.0%} of them miss it, else missing values = training "
                "median; clinical missing values = training mean, with a 0/1 '<variable>_missing' indicator offered "
                "to the model when some training cases miss the variable",
        "threshold": float(missing_threshold),
        "imaging_columns_dropped_final": rule["dropped_for_missingness"],
        "imaging_values_imputed_final": rule["n_imputed_values"],
        "clinical_missing": {c: int(df[c].isna().sum()) for c in clinical if df[c].isna().any()},
        "indicators_offered": [c + INDICATOR_SUFFIX for c in rule["indicators"]],
        "families_absent_cases": absent,
        "n_cases": int(len(df))}
    warn = [f"feature family {f} absent (all its columns missing) in {n} of {len(df)} cases: "
            + ("its columns are dropped (missing in more than the threshold)"
               if all(c in rule["dropped_for_missingness"] for c in img_cols if feature_family(c) == f)
               else "median-imputed inside the training folds where kept")
            for f, n in absent.items()]
    warn += [f"clinical variable {c} missing in {n} of {len(df)} cases: training mean imputed, indicator "
             f"{c}{INDICATOR_SUFFIX} offered" for c, n in missing_data["clinical_missing"].items()]
    missing_data["warnings"] = warn
    strat = label_strata(dfi, labels)
    if fold_assignment is not None:  # the folds shared with the other methods compared on these cases
        if "case_id" not in dfi.columns:
            raise InputError("a fold assignment needs a case_id column")
        splits = splits_from_assignment(dfi["case_id"].astype(str), fold_assignment, repeats)
    else:  # stratified on the labels; the number of folds capped by each label's smaller class
        splits = cv_splits(strat, repeats, outer_folds, seed, k=label_folds(dfi, labels, outer_folds))
    cv = repeated_cv(method, df, labels, img_cols, clinical, strat, repeats=repeats, folds=outer_folds, seed=seed,
                     n_bootstrap=n_bootstrap, n_jobs=n_jobs, wang=wang, missing_threshold=missing_threshold,
                     liu=liu, splits=splits)
    missing_data["imaging_columns_dropped_per_fold"] = {
        "mean": round(float(np.mean(cv["n_dropped_for_missingness_per_fold"])), 2),
        "max": int(np.max(cv["n_dropped_for_missingness_per_fold"]))}
    final = _fit(method, dfi, labels, rule["img_cols"], clinical_final, seed, n_bootstrap, n_jobs=n_jobs, wang=wang,
                 liu=liu)
    if method == "atrx-fusion":  # Liu's comparison of classifiers on the selected imaging features
        from .models import compare_classifiers
        est = final[0]["extra"]["imaging"]
        sel = [rule["img_cols"][j] for j in est.imaging_["cols"]]
        final[0]["info"]["classifier_comparison_cv_auc"] = compare_classifiers(
            dfi[sel].to_numpy(float), dfi[labels[0]].to_numpy(int), seed=seed)
        final[0]["info"]["classifier_comparison_note"] = ("5-fold CV AUC on the features selected from all cases "
                                                          "(selection not repeated per fold: optimistic, for ranking)")
        # Liu's best-of-9 imaging model is chosen anew inside every outer training fold: how often each won
        chosen = cv["imaging_model_chosen_per_fold"]
        counts = {c: chosen.count(c) for c in sorted(set(chosen), key=lambda c: (-chosen.count(c), c))}
        for info in (final[0]["info"], final[0]["extra"]["imaging_model"]["info"]):
            info["imaging_model_chosen_in_outer_folds"] = counts
    design = {"repeats": repeats, "folds": cv["folds"], "n_bootstrap": n_bootstrap, "seed": seed,
              "n_imaging_columns_offered": len(img_cols), "clinical_offered": clinical_final, "sequences": seq_names,
              "baseline_columns": cv["baseline_columns"]}
    if seq_info:
        design["sequence_restriction"] = seq_info
    bundles, task_evals = [], []
    fold_note = ("shared fold assignment (the same outer folds as the other methods trained on these cases)"
                 if fold_assignment is not None else "stratified on " + " x ".join(labels))
    design["fold_assignment"] = fold_note

    def package(i, lab, m, P_all, CUT_all, meth, compare_all, paired):
        """One bundle and its evaluation entry from a model's final fit ``m`` and its out-of-fold predictions."""
        keep = np.isfinite(dfi[lab].to_numpy(float))
        y = dfi.loc[keep, lab].astype(int).to_numpy()
        P = P_all[:, keep]
        p_mean = P.mean(0)
        p_train = _sigmoid(_lp(m, dfi[keep]))
        compare = {k2: v[:, keep].mean(0) for k2, v in compare_all.items()} if compare_all else None
        ev_cv = evaluate(y, p_mean, p_train=p_train, y_train=y, name=f"{tasks[i]} ({meth})",
                         compare=compare, seed=seed)
        ev_cv["cutoff_source"] = ("Youden index on the final model's training predictions applied to the "
                                  "repetition-averaged out-of-fold probabilities (the bundle's cutoff; figures only: "
                                  "the cross-validated classification figures are 'at_fold_cutoffs')")
        ev_cv["at_fold_cutoffs"] = at_fold_cutoffs(y, P, CUT_all[:, keep])
        # calibration of each repetition's pooled out-of-fold probabilities (not of their average)
        ev_cv["calibration_intercept_slope"] = calibration_summary(y, P, n_boot=500, seed=seed)
        ev_train = evaluate(y, p_train, p_train=p_train, y_train=y, name=f"{tasks[i]} ({meth}) training", seed=seed)
        rep = {"design": design, "model": repeated_cv_summary(y, P, seed=seed)}
        rep["baselines"] = {b: repeated_cv_summary(y, v[:, keep], seed=seed) for b, v in cv["baselines"][lab].items()}
        rep["comparisons"] = [compare_repeated(y, P, v[:, keep], f"{tasks[i]} ({meth})", b)
                              for b, v in cv["baselines"][lab].items()]
        if paired is not None:  # Liu: the fusion and its imaging model alone, per repetition on the same folds
            F, I = paired[0][:, keep], paired[1][:, keep]
            fi = compare_repeated(y, F, I, "fusion", "imaging only")
            fi["auc_fusion_per_repetition"] = repeated_cv_summary(y, F, seed=seed)["auc_per_repetition"]
            fi["auc_imaging_per_repetition"] = repeated_cv_summary(y, I, seed=seed)["auc_per_repetition"]
            fi["auc_fusion_mean"] = round(float(np.mean(fi["auc_fusion_per_repetition"])), 4)
            fi["auc_imaging_mean"] = round(float(np.mean(fi["auc_imaging_per_repetition"])), 4)
            fi["note"] = ("paired: both models' out-of-fold predictions come from the same outer folds of every "
                          "repetition (the imaging model is the one fitted inside each fusion fit); auc_diff = "
                          "fusion - imaging per repetition")
            rep["fusion_vs_imaging"] = fi
        nf = np.asarray(cv["n_features"][lab] if meth == method else cv["n_features_imaging"])
        rep["n_features_per_fold"] = {"mean": round(float(nf.mean()), 2), "min": int(nf.min()), "max": int(nf.max())}
        rep["n_features_final"] = len(m["features"])
        rep["fold"] = cv["fold"][:, keep].tolist()  # each case's outer fold per repetition (case order: case_id)
        cutoff = youden_cutoff(y, p_train)
        imputation = {**{c: v for c, v in rule["medians"].items() if c in m["features"]},
                      **{c: v for c, v in means.items() if c in m["features"]}}
        bundle = _bundle(m, dfi[keep], tasks[i], meth, cutoff, ev_cv, ev_train, rep, provenance, trained_on,
                         synthetic, intended_use, positive_labels[i], negative_labels[i], lab, imputation, seed,
                         version, name_prefix, missing_data)
        bundles.append(bundle)
        plot_compare = {**(compare or {}), **{b: v[:, keep].mean(0) for b, v in cv["baselines"][lab].items()}}
        task_evals.append({"task": tasks[i], "label": lab, "method": meth, "cross_validated": ev_cv,
                           "repeated_cv": rep,
                           "oof_probability": [round(float(v), 6) for v in p_mean],
                           "label_values": [int(v) for v in y],
                           "oof_probability_note": "mean over the repetitions of each case's out-of-fold probability",
                           "case_id": dfi.loc[keep, "case_id"].astype(str).tolist() if "case_id" in dfi else None,
                           "training": ev_train, "model": m["info"], "features": m["features"],
                           "missing_data": missing_data, "warnings": list(missing_data["warnings"]),
                           "cohort": cohort_table(dfi[keep], lab, clinical + m["features"][:10]),
                           "_plot": (y, p_mean, dfi.loc[keep, m["features"]], plot_compare)})

    for i, (lab, m) in enumerate(zip(labels, final)):
        if method != "atrx-fusion":
            package(i, lab, m, cv["oof"][lab], cv["cutoffs"][lab], method, None, None)
            continue
        F, I = cv["oof"][lab], cv["extra"]["imaging only"]
        package(i, lab, m, F, cv["cutoffs"][lab], method, cv["extra"], (F, I))
        if imaging_bundle:  # Liu's imaging model alone (the imaging score), same folds, same final fit
            package(i, lab, m["extra"]["imaging_model"], I, cv["extra_cutoffs"]["imaging only"], "atrx-imaging",
                    {"fusion": F, "clinical only": cv["extra"]["clinical only"]}, (F, I))
    ev = {"tasks": task_evals}
    if report_path:
        _report(report_path, ev, bundles)
    if not _keep_plot:
        for t in ev["tasks"]:
            t.pop("_plot", None)
    return bundles, ev


def _clinical_only(dtr, dte, label, clinical):
    from .models import _logit_fit
    if not clinical:
        return np.full(len(dte), float(dtr[label].mean()))
    C = dtr[clinical].to_numpy(float)
    mu, sd = C.mean(0), C.std(0)
    sd[sd == 0] = 1
    w, b, _ = _logit_fit((C - mu) / sd, dtr[label].to_numpy(float))
    return _sigmoid(b + ((dte[clinical].to_numpy(float) - mu) / sd) @ w)


def _bundle(m, df, task, method, cutoff, ev_cv, ev_train, rep, provenance, trained_on, synthetic, intended_use, pos,
            neg, label, imputation, seed, version, name_prefix, missing_data=None) -> ModelBundle:
    feats = list(m["features"])
    if not feats:
        raise InputError(f"{task}: the model kept no feature")
    groups: Dict[str, List[str]] = {}
    for f in feats:
        g = m["groups"][f]
        groups.setdefault(NOMOGRAM_NAMES.get(g, g), []).append(f)
    X = df[feats].to_numpy(float)
    coef = np.asarray(m["coef"], float)
    center, scale = np.asarray(m["center"], float), np.asarray(m["scale"], float)
    variables, nomogram = build_nomogram(feats, coef, center, scale, float(m["intercept"]), X, groups,
                                         units={"age": "years"})
    d, mod = rep["design"], rep["model"]
    metrics = {
        "auc_cv": mod["auc_mean"], "auc_cv_95ci": mod["auc_95ci_delong"],
        "auc_cv_95ci_bootstrap": mod["auc_95ci_bootstrap"],
        "auc_cv_method": (f"{d['repeats']} x stratified {d['folds']}-fold outer cross-validation (a different "
                          "shuffle per repetition) repeating every step inside the training folds; AUC of the "
                          "pooled out-of-fold predictions, mean over repetitions; 95% CI: DeLong (mean of the "
                          "repetitions' variances) and 2000 case-bootstrap resamples of the repetition mean"),
        "auc_cv_sd": mod["auc_sd"], "auc_cv_range": [mod["auc_min"], mod["auc_max"]],
        "auc_cv_repeats": d["repeats"], "auc_cv_folds": d["folds"],
        "auc_cv_per_repetition": mod["auc_per_repetition"],
        "baselines_cv": {b: {"auc": v["auc_mean"], "auc_sd": v["auc_sd"], "auc_range": [v["auc_min"], v["auc_max"]],
                             "auc_95ci": v["auc_95ci_delong"], "columns": d["baseline_columns"][b],
                             "model": "logistic regression fitted on the same outer training folds"}
                         for b, v in rep["baselines"].items()},
        "comparison_with_baselines": {c["b"]: {"auc_diff_mean": c["auc_diff_mean"], "auc_diff_sd": c["auc_diff_sd"],
                                               "auc_diff_range": [c["auc_diff_min"], c["auc_diff_max"]],
                                               "repetitions_model_better": c["repetitions_a_better"],
                                               "delong_p_mean_prediction": c["delong_mean_prediction"]["p"]}
                                      for c in rep["comparisons"]},
        "n_features_per_fold": rep["n_features_per_fold"],
        "auc_train_apparent": ev_train["auc"], "auprc_cv": ev_cv["auprc"], "brier_cv": ev_cv["brier"],
        "cv_probability": "mean over the repetitions of each case's out-of-fold probability (AUPRC, Brier, "
                          "cutoff metrics)",
        "cutoff_method": "Youden index on the final model's training predictions (the cutoff applied to new "
                         "cases); the cross-validated classification figures (at_cutoff_cv) use the cutoff chosen "
                         "inside each outer training fold, applied to its held-out cases",
        "at_cutoff_cv": ev_cv["at_fold_cutoffs"],
        "auc_cv_95ci_repetitions_x_bootstrap": mod.get("auc_95ci_repetitions_x_bootstrap"),
        "calibration_cv": ev_cv["calibration_intercept_slope"],
    }
    if rep.get("fusion_vs_imaging"):  # Liu: the fusion against its imaging model alone, same folds, per repetition
        fi = rep["fusion_vs_imaging"]
        metrics["fusion_vs_imaging_cv"] = {
            "auc_fusion_mean": fi["auc_fusion_mean"], "auc_imaging_mean": fi["auc_imaging_mean"],
            "auc_diff_mean": fi["auc_diff_mean"], "auc_diff_sd": fi["auc_diff_sd"],
            "auc_diff_range": [fi["auc_diff_min"], fi["auc_diff_max"]],
            "repetitions_fusion_better": fi["repetitions_a_better"], "repeats": fi["repeats"],
            "delong_p_mean_prediction": fi["delong_mean_prediction"]["p"], "note": fi["note"]}
    training = {"trained_on": trained_on, "n": int(ev_train["n"]), "n_positive": int(ev_train["n_positive"]),
                "label_column": label, "date": _dt.date.today().isoformat(),
                "software": f"glioma-radiogenomics {__version__}", "python": platform.python_version(),
                "method": m["info"]["method"], "method_details": m["info"], "seed": seed,
                "sequences": list(provenance.get("sequences") or []), "validation_design": d}
    if missing_data is not None:
        training["missing_data"] = missing_data
    clinical = [f for f in feats if f in CLINICAL or f.endswith(INDICATOR_SUFFIX)]
    return ModelBundle(
        task=task, name=f"{name_prefix}{task}-{method}", version=version, features=feats,
        center=[float(v) for v in center], scale=[float(v) for v in scale], coefficients=[float(v) for v in coef],
        intercept=float(m["intercept"]), cutoff=float(cutoff), variables=variables, nomogram=nomogram,
        feature_schema={**provenance, "clinical": clinical, "columns": feats}, training=training, metrics=metrics,
        synthetic=synthetic, positive_label=pos, negative_label=neg, intended_use=intended_use,
        encodings={k: v for k, v in ENCODINGS.items() if k in feats},
        imputation={k: float(v) for k, v in imputation.items() if k in feats})


def _report(path, ev: dict, bundles: List[ModelBundle]) -> None:
    from .io import atomic_write_json
    path = Path(path)
    sections = []
    for t in ev["tasks"]:
        plot = t.pop("_plot", None)
        figs = figures(*plot[:2], t["cross_validated"], features=plot[2], compare=plot[3]) if plot else {}
        if t.get("repeated_cv"):
            sections.append(_repeated_section(t))
        sections.append({"title": f"{t['task']}: out-of-fold, repetition-averaged probabilities (internal validation)",
                         "evaluation": t["cross_validated"], "figures": figs, "cohort": t["cohort"]})
        sections.append({"title": f"{t['task']}: training (apparent)", "evaluation": t["training"]})
    card = {}
    for b in bundles:
        card.update({f"{b.task}: model": f"{b.name} {b.version}", f"{b.task}: trained on": b.training["trained_on"],
                     f"{b.task}: n (positive)": f"{b.training['n']} ({b.training['n_positive']})",
                     f"{b.task}: synthetic": b.synthetic, f"{b.task}: features": len(b.features),
                     f"{b.task}: intended use": b.intended_use})
    from .evaluation import _png
    from .nomogram import plot_nomogram
    sections.insert(0, {"title": "Nomograms", "figures": {f"Nomogram {b.task}": _png(plot_nomogram(b))
                                                         for b in bundles}})
    write_report(path.parent / (path.name + ".html"), "Model evaluation", sections, card)
    atomic_write_json(path.parent / (path.name + ".json"), ev)


def _repeated_section(t: dict) -> dict:
    rep = t["repeated_cv"]
    d = rep["design"]
    rows = []
    for name, v in [(f"{t['task']} ({t['method']})", rep["model"])] + list(rep["baselines"].items()):
        rows.append([name, v["auc_mean"], v["auc_sd"], f"{v['auc_min']}-{v['auc_max']}",
                     "-".join(map(str, v["auc_95ci_delong"])), "-".join(map(str, v["auc_95ci_bootstrap"] or [])),
                     "-".join(map(str, v.get("auc_95ci_repetitions_x_bootstrap") or []))])
    for c in rep["comparisons"]:
        dl = c["delong_mean_prediction"]
        rows.append([f"difference vs {c['b']}", c["auc_diff_mean"], c["auc_diff_sd"],
                     f"{c['auc_diff_min']}-{c['auc_diff_max']}",
                     f"better in {c['repetitions_a_better']}/{c['repeats']} repetitions", "",
                     f"DeLong (mean prediction) z = {dl['z']}, p = {dl['p']:.3g}"])
    nf = rep["n_features_per_fold"]
    text = (f"{d['repeats']} repetitions x {d['folds']}-fold outer cross-validation, every selection step inside the "
            f"training folds; n = {rep['model']['n']} ({rep['model']['n_positive']} positive); sequences "
            f"{'+'.join(d['sequences']) or 'none'}; {d['n_imaging_columns_offered']} imaging columns offered, clinical "
            f"offered: {', '.join(d['clinical_offered']) or 'none'}; features per fold model {nf['mean']} "
            f"({nf['min']}-{nf['max']}), final model {rep['n_features_final']}. Baselines: logistic regression on "
            "the same training folds; differences: per-repetition spread (SD, range, repetitions won) first, the "
            "DeLong p-value of the repetition-averaged predictions last. CIs: DeLong and bootstrap = case sampling; "
            "repetitions x bootstrap = case sampling and the variability of refitting the whole pipeline "
            "(selection included). " + " ".join(t.get("warnings") or []))
    return {"title": f"{t['task']}: repeated nested cross-validation", "text": text,
            "table": {"columns": ["model", "AUC mean", "SD over repetitions", "min-max", "95% CI DeLong",
                                  "95% CI bootstrap", "95% CI repetitions x bootstrap"],
                      "rows": rows}}


SYNTHETIC_USE = ("SOFTWARE DEMONSTRATION ONLY. Trained on SYNTHETIC simulated cases; the probability has no "
                 "clinical meaning. Research use, not a diagnosis.")


def train_default_bundles(table: pd.DataFrame, provenance: dict, out_dir: Path, seed: int = 2025,
                          cohort_description: str = "synthetic cohort", n_bootstrap: int = 100,
                          report_dir: Optional[Path] = None, repeats: int = 10) -> List[Path]:
    """IDH + epilepsy: collaborative multi-task LASSO (Wang 2025); ATRX: Liu 2024 fusion on the IDH-mutant subset.
    Evaluation reports go to ``report_dir`` (default: ``out_dir``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_dir = Path(report_dir or out_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    bundles, _ = train_bundles(table, ["IDH", "epilepsy"], "cmt", provenance, trained_on=cohort_description,
                               synthetic=True, intended_use=SYNTHETIC_USE, tasks=["IDH", "epilepsy"],
                               positive_labels=["IDH-mutant", "glioma-associated epilepsy"],
                               negative_labels=["IDH-wildtype", "no epilepsy"], seed=seed, n_bootstrap=n_bootstrap,
                               repeats=repeats,
                               report_path=report_dir / "evaluation_IDH_epilepsy", name_prefix="default-")
    atrx, _ = train_bundles(table[table["IDH"] == 1], ["ATRX"], "atrx-fusion", provenance,
                            trained_on=cohort_description + ", IDH-mutant subset (Liu 2024 population)",
                            synthetic=True, intended_use=SYNTHETIC_USE + " ATRX model: intended for IDH-mutant "
                            "gliomas only.", tasks=["ATRX"], positive_labels=["ATRX-mutant"],
                            negative_labels=["ATRX-wildtype"], seed=seed, n_bootstrap=n_bootstrap,
                            repeats=repeats,
                            report_path=report_dir / "evaluation_ATRX", name_prefix="default-")
    return [b.save(out_dir / f"default_{b.task}.json") for b in bundles + atrx]
