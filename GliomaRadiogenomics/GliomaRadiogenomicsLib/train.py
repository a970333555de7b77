"""Training: the papers' estimators (models.py) -> model bundles (bundle.py) + an evaluation report (evaluation.py).

``train_bundles(table, labels, method)``:
  st / mt / cmt  Wang 2025 (one bundle per label; mt and cmt need two labels, st trains each label on its own);
  atrx-fusion    Liu 2024 (one label: imaging score + age + sex + WHO grade + VASARI score).
Performance is estimated by an outer stratified 5-fold cross-validation that repeats every step (filtering,
bootstrap selection, penalty choice, fusion) inside each fold; the final model is then fitted on all cases. The
cutoff is the Youden index of the final model's training predictions, applied to the out-of-fold predictions.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from . import __version__
from .bundle import ModelBundle, build_nomogram
from .evaluation import cohort_table, evaluate, figures, write_report, youden_cutoff
from .models import LiuFusion, WangLasso, _sigmoid, correlation_keep

CLINICAL = ("age", "sex_male", "who_grade", "vasari_score")
IMAGING_PREFIXES = ("mask_", "T1_", "T1c_", "T2_", "FLAIR_", "loc_", "vasari_F", "t2flair_")
METHODS = ("st", "mt", "cmt", "atrx-fusion")
NOMOGRAM_NAMES = {"age": "Age (years)", "sex_male": "Sex (male = 1)", "who_grade": "WHO grade",
                  "vasari_score": "VASARI score"}
ENCODINGS = {"sex_male": {"M": 1.0, "MALE": 1.0, "F": 0.0, "FEMALE": 0.0}}


def add_derived_columns(df: pd.DataFrame) -> pd.DataFrame:
    """sex (M/F) -> sex_male (1/0); WHO grade and VASARI score as numbers."""
    df = df.copy()
    if "sex" in df.columns and "sex_male" not in df.columns:
        df["sex_male"] = df["sex"].map(
            lambda s: np.nan if pd.isna(s) else float(str(s).strip().upper() in ("M", "MALE")))
    for c in ("who_grade", "vasari_score", "age"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def imaging_columns(columns: Sequence[str]) -> List[str]:
    return [c for c in columns if c.startswith(IMAGING_PREFIXES) and not c.endswith(("_n", "_score"))]



def drop_correlated(X: np.ndarray, names: List[str], threshold: float = 0.99):
    keep = correlation_keep(X, threshold)
    return X[:, keep], [names[k] for k in keep]


def _usable(df: pd.DataFrame, cols: List[str]) -> List[str]:
    """Imaging columns that are finite for every case and not constant."""
    X = df[cols].to_numpy(float)
    ok = np.isfinite(X).all(0) & (np.nanstd(X, 0) > 1e-12)
    return [c for c, k in zip(cols, ok) if k]


# ----------------------------------------------------------------------------------------------------------------
# fitting one method on one table (used for the final model and inside each outer fold)
# ----------------------------------------------------------------------------------------------------------------
def _fit(method: str, df: pd.DataFrame, labels: List[str], img_cols: List[str], clinical: List[str], seed: int,
         n_bootstrap: int):
    """Returns a list (one per label) of linear models {features, center, scale, coef, intercept, groups, info}."""
    if method == "atrx-fusion":
        cols = img_cols + clinical
        y = df[labels[0]].to_numpy(float)
        est = LiuFusion(clinical=tuple(clinical), random_state=seed).fit(df[cols].to_numpy(float), y, cols)
        lm = est.linear_model()
        lm["info"] = {"method": "Liu 2024 fusion", **lm.pop("imaging")}
        lm["extra"] = {"imaging": est}
        return [lm]
    X = df[img_cols + clinical].to_numpy(float)
    Y = df[labels].to_numpy(float)
    est = WangLasso(method=method, n_bootstrap=n_bootstrap, n_jobs=min(4, os.cpu_count() or 1),
                    random_state=seed).fit(X, Y, img_cols + clinical)
    out = []
    for t in range(len(labels)):
        m = est.task_model(t)
        m["groups"] = {f: ("Radiomics score" if f not in CLINICAL else f) for f in m["features"]}
        sel = est.selection_
        m["info"] = {"method": {"st": "single-task LASSO", "mt": "multi-task LASSO",
                                "cmt": "collaborative multi-task LASSO"}[method] + " (Wang 2025)",
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


def _impute(df: pd.DataFrame, clinical: List[str], means: Dict[str, float]) -> pd.DataFrame:
    df = df.copy()
    for c in clinical:
        df[c] = df[c].fillna(means[c])
    return df


def train_bundles(table: pd.DataFrame, labels: Sequence[str], method: str, provenance: dict, *, trained_on: str,
                  synthetic: bool, intended_use: str, tasks: Optional[Sequence[str]] = None,
                  positive_labels: Optional[Sequence[str]] = None, negative_labels: Optional[Sequence[str]] = None,
                  clinical: Optional[Sequence[str]] = None, seed: int = 0, n_bootstrap: int = 100,
                  outer_folds: int = 5, version: str = "1.0.0", report_path=None, name_prefix: str = "",
                  _keep_plot: bool = False):
    """Train, cross-validate and package. Returns (bundles, evaluation dict); with ``report_path`` (no suffix)
    also writes <report_path>.html (figures) and <report_path>.json (numbers)."""
    labels = list(labels)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if method in ("mt", "cmt") and len(labels) != 2:
        raise ValueError(f"method {method} needs two labels (--label and --label2)")
    if method == "atrx-fusion" and len(labels) != 1:
        raise ValueError("method atrx-fusion takes one label")
    for lab in labels:
        if lab not in table.columns:
            raise ValueError(f"label column '{lab}' is not in the table")
    if method == "st" and len(labels) == 2:  # single-task: each label on its own cases
        results = [train_bundles(table, [lab], "st", provenance, trained_on=trained_on, synthetic=synthetic,
                                 intended_use=intended_use, tasks=[(tasks or labels)[i]],
                                 positive_labels=[(positive_labels or labels)[i]],
                                 negative_labels=[(negative_labels or [f"not {x}" for x in labels])[i]],
                                 clinical=clinical, seed=seed, n_bootstrap=n_bootstrap, outer_folds=outer_folds,
                                 version=version, name_prefix=name_prefix, _keep_plot=True)
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
    default_clinical = list(CLINICAL) if method == "atrx-fusion" else []
    clinical = [c for c in (clinical if clinical is not None else default_clinical) if c in df.columns
                and df[c].notna().any()]
    img_cols = _usable(df, imaging_columns(df.columns))
    if not img_cols:
        raise ValueError("no usable imaging feature columns (finite, non-constant) in the table")
    means = {c: float(df[c].mean()) for c in clinical}
    dfi = _impute(df, clinical, means)
    strat = dfi[labels].fillna(2).astype(int).astype(str).agg("".join, axis=1)
    # outer cross-validation
    oof = {lab: np.full(len(dfi), np.nan) for lab in labels}
    oof_extra = {"imaging only": np.full(len(dfi), np.nan), "clinical only": np.full(len(dfi), np.nan)}
    k = int(min(outer_folds, strat.value_counts().min()))
    for tr, te in StratifiedKFold(max(k, 2), shuffle=True, random_state=seed + 1).split(dfi, strat):
        dtr, dte = df.iloc[tr], df.iloc[te]
        m_tr = {c: float(dtr[c].mean()) for c in clinical}
        dtr, dte = _impute(dtr, clinical, m_tr), _impute(dte, clinical, m_tr)
        models = _fit(method, dtr, labels, img_cols, clinical, seed, n_bootstrap)
        for lab, m in zip(labels, models):
            oof[lab][te] = _sigmoid(_lp(m, dte))
        if method == "atrx-fusion":
            est = models[0]["extra"]["imaging"]
            oof_extra["imaging only"][te] = _sigmoid(est.imaging_score(dte[img_cols + clinical].to_numpy(float)))
            oof_extra["clinical only"][te] = _clinical_only(dtr, dte, labels[0], clinical)
    final = _fit(method, dfi, labels, img_cols, clinical, seed, n_bootstrap)
    if method == "atrx-fusion":  # Liu's comparison of classifiers on the selected imaging features
        from .models import compare_classifiers
        est = final[0]["extra"]["imaging"]
        sel = [img_cols[j] for j in est.imaging_["cols"]]
        final[0]["info"]["classifier_comparison_cv_auc"] = compare_classifiers(
            dfi[sel].to_numpy(float), dfi[labels[0]].to_numpy(int), seed=seed)
        final[0]["info"]["classifier_comparison_note"] = ("5-fold CV AUC on the features selected from all cases "
                                                          "(selection not repeated per fold: optimistic, for ranking)")
    bundles, task_evals = [], []
    for i, (lab, m) in enumerate(zip(labels, final)):
        keep = np.isfinite(dfi[lab].to_numpy(float))
        y = dfi.loc[keep, lab].astype(int).to_numpy()
        p_train = _sigmoid(_lp(m, dfi[keep]))
        compare = ({k2: v[keep] for k2, v in oof_extra.items()} if method == "atrx-fusion" else None)
        ev_cv = evaluate(y, oof[lab][keep], p_train=p_train, y_train=y, name=f"{tasks[i]} ({method})",
                         compare=compare, seed=seed)
        ev_train = evaluate(y, p_train, p_train=p_train, y_train=y, name=f"{tasks[i]} ({method}) training", seed=seed)
        cutoff = youden_cutoff(y, p_train)
        bundle = _bundle(m, dfi[keep], tasks[i], method, cutoff, ev_cv, ev_train, provenance, trained_on, synthetic,
                         intended_use, positive_labels[i], negative_labels[i], lab, means, seed, version, name_prefix)
        bundles.append(bundle)
        task_evals.append({"task": tasks[i], "label": lab, "method": method, "cross_validated": ev_cv,
                           "oof_probability": [round(float(v), 6) for v in oof[lab][keep]],
                           "case_id": dfi.loc[keep, "case_id"].astype(str).tolist() if "case_id" in dfi else None,
                           "training": ev_train, "model": m["info"], "features": m["features"],
                           "cohort": cohort_table(dfi[keep], lab, clinical + m["features"][:10]),
                           "_plot": (y, oof[lab][keep], dfi.loc[keep, m["features"]], compare)})
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


def _bundle(m, df, task, method, cutoff, ev_cv, ev_train, provenance, trained_on, synthetic, intended_use, pos, neg,
            label, means, seed, version, name_prefix) -> ModelBundle:
    feats = list(m["features"])
    if not feats:
        raise ValueError(f"{task}: the model kept no feature")
    groups: Dict[str, List[str]] = {}
    for f in feats:
        g = m["groups"][f]
        groups.setdefault(NOMOGRAM_NAMES.get(g, g), []).append(f)
    X = df[feats].to_numpy(float)
    coef = np.asarray(m["coef"], float)
    center, scale = np.asarray(m["center"], float), np.asarray(m["scale"], float)
    variables, nomogram = build_nomogram(feats, coef, center, scale, float(m["intercept"]), X, groups,
                                         units={"age": "years"})
    metrics = {
        "auc_cv": ev_cv["auc"], "auc_cv_95ci": ev_cv["auc_95ci_delong"],
        "auc_cv_95ci_bootstrap": ev_cv["auc_95ci_bootstrap"],
        "auc_cv_method": "stratified 5-fold outer cross-validation repeating every step; 95% CI DeLong "
                         "(and 2000 bootstrap resamples)",
        "auc_train_apparent": ev_train["auc"], "auprc_cv": ev_cv["auprc"], "brier_cv": ev_cv["brier"],
        "cutoff_method": "Youden index on the final model's training predictions",
        "at_cutoff_cv": {k: v for k, v in ev_cv["at_cutoff"].items() if k != "confusion_matrix"},
    }
    training = {"trained_on": trained_on, "n": int(ev_train["n"]), "n_positive": int(ev_train["n_positive"]),
                "label_column": label, "date": _dt.date.today().isoformat(),
                "software": f"glioma-radiogenomics {__version__}", "python": platform.python_version(),
                "method": m["info"]["method"], "method_details": m["info"], "seed": seed}
    clinical = [f for f in feats if f in CLINICAL]
    return ModelBundle(
        task=task, name=f"{name_prefix}{task}-{method}", version=version, features=feats,
        center=[float(v) for v in center], scale=[float(v) for v in scale], coefficients=[float(v) for v in coef],
        intercept=float(m["intercept"]), cutoff=float(cutoff), variables=variables, nomogram=nomogram,
        feature_schema={**provenance, "clinical": clinical, "columns": feats}, training=training, metrics=metrics,
        synthetic=synthetic, positive_label=pos, negative_label=neg, intended_use=intended_use,
        encodings={k: v for k, v in ENCODINGS.items() if k in feats},
        imputation={k: means[k] for k in clinical if k in means})


def _report(path, ev: dict, bundles: List[ModelBundle]) -> None:
    from .io import atomic_write_json
    path = Path(path)
    sections = []
    for t in ev["tasks"]:
        plot = t.pop("_plot", None)
        figs = figures(*plot[:2], t["cross_validated"], features=plot[2], compare=plot[3]) if plot else {}
        sections.append({"title": f"{t['task']}: out-of-fold (internal validation)", "evaluation": t["cross_validated"],
                         "figures": figs, "cohort": t["cohort"]})
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
    atomic_write_json(path.parent / (path.name + ".json"), ev, backup=True)


SYNTHETIC_USE = ("SOFTWARE DEMONSTRATION ONLY. Trained on SYNTHETIC simulated cases; the probability has no "
                 "clinical meaning. Research use, not a diagnosis.")


def train_default_bundles(table: pd.DataFrame, provenance: dict, out_dir: Path, seed: int = 2025,
                          cohort_description: str = "synthetic cohort", n_bootstrap: int = 100,
                          report_dir: Optional[Path] = None) -> List[Path]:
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
                               report_path=report_dir / "evaluation_IDH_epilepsy", name_prefix="default-")
    atrx, _ = train_bundles(table[table["IDH"] == 1], ["ATRX"], "atrx-fusion", provenance,
                            trained_on=cohort_description + ", IDH-mutant subset (Liu 2024 population)",
                            synthetic=True, intended_use=SYNTHETIC_USE + " ATRX model: intended for IDH-mutant "
                            "gliomas only.", tasks=["ATRX"], positive_labels=["ATRX-mutant"],
                            negative_labels=["ATRX-wildtype"], seed=seed, n_bootstrap=n_bootstrap,
                            report_path=report_dir / "evaluation_ATRX", name_prefix="default-")
    return [b.save(out_dir / f"default_{b.task}.json") for b in bundles + atrx]
