"""Shim 2021 tasks at prediction time: the recurrence pattern (``recurrence.py``, MLP on rCBV features) and the
Cox-LASSO risk score (``survival.py``). Both come as JSON bundles of their own formats; this module tells them from
the logistic model bundles (``bundle.py``), applies them to a feature table (``predict --bundle``) and to one case
of the run path (``run --bundle``, when the case has a CBV map).

At run time the Shim tasks need rCBV features of the shim2021 preset. When the run's preset is another one (the
default wang2025 for IDH / epilepsy / ATRX), they are extracted once more from the same preprocessed case and
segmentation, with the shim2021 preset, on rCBV (perfusion.py); their provenance is the run's (segmentation,
registration, N4) with the shim2021 preset's keys and the rCBV definition. Without a CBV map each Shim task is
listed as unavailable with the reason (no T1c substitute).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import pandas as pd

NO_CBV = ("needs a CBV map (DSC perfusion: --cbv FILE, or cbv.nii.gz in the case folder); without it the Shim 2021 "
          "tasks are not computed (no T1c substitute)")


def json_bundle_kind(path) -> Optional[str]:
    """'recurrence' / 'survival' for the Shim 2021 JSON bundles, 'choi' for the Choi 2021 hybrid IDH bundle (JSON +
    CNN weights, choi.py), None for anything else (a logistic model bundle, or a broken file: ``bundle.load_bundle``
    then says what is wrong with it)."""
    from .bundle import read_bundle_json
    from .choi import CHOI_FORMAT
    from .recurrence import RECURRENCE_FORMAT
    from .survival import SURVIVAL_FORMAT
    try:
        d = read_bundle_json(path)
    except Exception:  # unreadable or refused: load_bundle gives the clear message
        return None
    fmt = d.get("format") if isinstance(d, dict) else None
    return {RECURRENCE_FORMAT: "recurrence", SURVIVAL_FORMAT: "survival", CHOI_FORMAT: "choi"}.get(fmt)


def load_json_bundle(path) -> Tuple[str, dict]:
    """(kind, checked bundle) of a JSON bundle of its own format (Shim 2021 recurrence / survival, Choi 2021 hybrid:
    its weights file's SHA-256 checked here); BundleError for anything else."""
    from .bundle import BundleError
    kind = json_bundle_kind(path)
    if kind == "recurrence":
        from .recurrence import load_recurrence_bundle
        return kind, load_recurrence_bundle(path)
    if kind == "survival":
        from .survival import load_survival_bundle
        return kind, load_survival_bundle(path)
    if kind == "choi":
        from .choi import load_choi_bundle
        return kind, load_choi_bundle(path)
    raise BundleError(f"{path}: not a Shim 2021 recurrence or survival bundle, nor a Choi 2021 hybrid bundle")


def check_offered(b: dict, columns, prov: Optional[dict], schema: dict, what: str = "") -> List[str]:
    """The checks every JSON bundle makes on offered features: FeatureMismatchError for a missing feature or a hard
    provenance difference against ``schema``; returns the soft differences (or the no-provenance warning).
    ``what`` names the feature kind in the message (e.g. 'rCBV ')."""
    from .bundle import FeatureMismatchError
    from .provenance import compare
    missing = [f for f in b["features"] if f not in set(columns)]
    if missing:
        raise FeatureMismatchError(f"model '{b['name']}' needs {len(missing)} {what}feature(s) that were not "
                                   f"offered: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if prov is None:
        return [f"model '{b['name']}': no provenance: the features were NOT checked against the model's"]
    hard, soft = compare(b["name"], schema, prov)
    if hard:
        raise FeatureMismatchError(f"model '{b['name']}' refuses these features: " + "; ".join(hard))
    return soft


def apply_json_bundle(kind: str, b: dict, table: pd.DataFrame, prov: Optional[dict],
                      id_column: str = "case_id") -> pd.DataFrame:
    """Predictions of a recurrence bundle (probability, label, top Shapley contributions) or a survival bundle (risk
    score and group) per row; FeatureMismatchError where the features are missing or made differently; the soft
    provenance differences in ``attrs["warnings"]``."""
    if kind == "recurrence":
        from .recurrence import predict_recurrence
        return predict_recurrence(b, table, prov)
    from .survival import bundle_risk
    warns = check_offered(b, table.columns, prov, b["feature_schema"])
    rows = []
    for _, r in table.iterrows():
        risk = bundle_risk(b, {f: pd.to_numeric(r[f], errors="coerce") for f in b["features"]})
        rows.append({"risk_score": risk["risk_score"], "risk_group": risk["risk_group"],
                     "imputed": ";".join(risk["imputed"]), "synthetic_model": b["synthetic"], "model": b["name"]})
    res = pd.DataFrame(rows)
    if id_column in table.columns:
        res.insert(0, id_column, table[id_column].astype(str).to_numpy())
    res.attrs["warnings"] = warns
    return res


def _shim_features(analysis):
    """(values, provenance) of the shim2021 preset on rCBV for an analysed case (features.extract_features on the
    run's preprocessed case and segmentation; rCBV made here when the run's preset did not need it), with the run's
    atlas features (loc_ / vasari_ / t2flair_, computed when a bundle needs them: pipeline.options_for_bundles)."""
    from .features import extract_features, load_preset
    from .perfusion import REFERENCE_REGION, rcbv_image
    from .pipeline import ATLAS_FEATURE_PREFIXES
    if analysis.features.provenance.get("preset") == "shim2021":
        return analysis.features.values, analysis.features.provenance
    pre = analysis.pre
    record = analysis.features.provenance.get("rcbv_reference")
    if "rcbv" not in pre.images:
        pre.images["rcbv"], record = rcbv_image(pre, analysis.label)
        pre.steps.append(f"rCBV for the Shim 2021 bundles: CBV / {record['mean_cbv']:g} (mean CBV of "
                         f"{record['volume_ml']:g} mL contralateral normal-appearing white matter)")
    f = extract_features(pre, analysis.label, load_preset("shim2021"))
    prov = {**analysis.features.provenance, **f.provenance, "rcbv_normalization": REFERENCE_REGION,
            "rcbv_reference": record}
    atlas = {k: v for k, v in analysis.features.values.items() if k.startswith(ATLAS_FEATURE_PREFIXES)}
    return {**atlas, **f.values}, prov


def case_predictions(analysis, bundles: List[Tuple[str, dict]]) -> Tuple[List[dict], List[str]]:
    """One entry per JSON bundle for an analysed case (predictions.json ``bundle_tasks``): probability and label
    (recurrence; Choi 2021 hybrid IDH, kind 'choi': choi.case_predictions, no CBV needed) or risk score and group
    (survival), the model, what it was trained on and whether it is SYNTHETIC; ``None`` and the reason where the
    case has no CBV map, no tumour or features the model refuses (Choi: a sequence its input variant needs)."""
    from .io import InputError
    out, warnings = [], []
    table = prov = None
    reason = None
    if "cbv" not in analysis.pre.images:
        reason = NO_CBV
    elif analysis.volumes_ml.get("WT", 0) <= 0:
        reason = "no tumour segmented: no rCBV features"
    elif any(kind != "choi" for kind, _ in bundles):
        values, prov = _shim_features(analysis)
        table = pd.DataFrame([values])
    for kind, b in bundles:
        if kind == "choi":  # Choi 2021 hybrid IDH: CNN on the case's images + shape / loci / age
            from .choi import case_predictions as choi_case
            e, w = choi_case(analysis, b)
            e["card"] = entry_card(kind, b)
            warnings += w
            _entry_warnings(e, b, warnings)
            out.append(e)
            continue
        e = {"task": b.get("task", kind), "kind": kind, "model": b["name"], "version": b.get("version"),
             "trained_on": b["training"].get("trained_on"), "synthetic": bool(b["synthetic"]),
             "intended_use": b.get("intended_use"), "card": entry_card(kind, b)}
        if kind == "recurrence":
            e.update(probability=None, label=None)
        else:
            e.update(risk_score=None, risk_group=None)
        if table is None:
            e["reason"] = reason
        else:
            try:
                r = apply_json_bundle(kind, b, table, prov)
            except InputError as exc:  # FeatureMismatchError: the model refuses these features
                e["reason"] = str(exc)
            else:
                row = r.iloc[0].to_dict()
                if kind == "recurrence":
                    e.update(probability=float(row["probability"]), label=row["label"], cutoff=b["cutoff"],
                             top_shapley=row.get("top_shapley"), imputed=row.get("imputed") or "")
                else:
                    e.update(risk_score=float(row["risk_score"]), risk_group=row["risk_group"],
                             risk_group_cutoff=b["risk_group_cutoff"], imputed=row.get("imputed") or "")
                warnings += r.attrs.get("warnings", [])
        _entry_warnings(e, b, warnings)
        out.append(e)
    return out, warnings


def synthetic_model_warning(task: str, model: str) -> str:
    """The document warning of an entry whose model was trained on SYNTHETIC data (written by the run, required by
    predict.validate_predictions)."""
    return f"{task} model '{model}' trained on SYNTHETIC data: demonstration only"


def not_computed_warning(task: str, reason: str) -> str:
    """The document warning of an entry not computed, with its reason (written by the run, required by
    predict.validate_predictions)."""
    return f"{task}: not computed: {reason}"


def _entry_warnings(e: dict, b: dict, warnings: List[str]) -> None:
    """The run's warnings of one entry: a SYNTHETIC model, a task not computed (with the reason)."""
    if e["synthetic"]:
        warnings.append(synthetic_model_warning(e["task"], b["name"]))
    if e.get("reason"):
        warnings.append(not_computed_warning(e["task"], e["reason"]))


def entry_card(kind: str, b: dict) -> dict:
    """What the model card of a ``bundle_tasks`` entry shows (render.shim_card_rows), from what its bundle records:
    method, validation, cases; the CV AUC with its 95% CI and the metrics at the cutoff (recurrence), the hybrid's
    CV AUC beside the CNN alone and age alone (Choi 2021: repetitions and CI), or the C-index with its CI,
    the time-dependent AUC, the log-rank test and the risk-group rule (Cox-LASSO); the training data's licence and
    caveats when its data card records them. Keys the bundle lacks are left out."""
    m, t = b.get("metrics") or {}, b.get("training") or {}
    card = {"method": (b.get("card") or {}).get("method") or b.get("method") or t.get("method"),
            "validation": "; ".join(str(v) for v in (m.get("validation"), m.get("method")) if v) or None,
            "validation_status": m.get("validation_status"), "n": t.get("n", m.get("n")),
            "data_licence": (t.get("data_card") or {}).get("licence"),
            "caveats": (t.get("data_card") or {}).get("caveats")}
    if kind == "survival":
        card.update(events=t.get("events"), cindex_cv=m.get("cindex_cv"),
                    cindex_cv_95ci=m.get("cindex_cv_95ci_bootstrap"),
                    td_auc=dict(zip(map(str, m.get("td_auc_times") or []), m.get("td_auc_cv") or [])) or None,
                    logrank_p_cv_median=m.get("logrank_p_cv_median"), risk_group_rule=b.get("risk_group_rule"))
    elif kind == "recurrence":
        card.update(n_positive=t.get("n_positive"), auc_cv=m.get("auc_cv"), auc_cv_95ci=m.get("auc_cv_95ci"),
                    auc_cv_95ci_method="DeLong", at_cutoff=m.get(f"at_cutoff_{b.get('cutoff', 0.5):g}_mean_oof"))
    else:  # choi: the hybrid's out-of-fold AUC per repetition
        from .bundle import cv_auc
        hybrid = m.get("auc_cv_hybrid") or {}
        card.update(n_positive=t.get("n_positive", m.get("n_positive")), auc_cv=cv_auc(m),
                    auc_cv_95ci=m.get("auc_cv_95ci"), auc_cv_95ci_method=m.get("auc_cv_95ci_method"),
                    auc_cv_per_repetition=hybrid.get("per_repetition"),
                    auc_cv_cnn=(m.get("auc_cv_cnn") or {}).get("mean"),
                    auc_cv_age=(m.get("auc_cv_age") or {}).get("mean"))
    return {k: v for k, v in card.items() if v is not None}


def summary_lines(entries: List[dict]) -> List[str]:
    """The run summary's lines for the JSON-bundle tasks (CLI): render.shim_lines (the heading, then a line per
    row), the one view model."""
    from .render import BUNDLE_TASKS_KEY, shim_lines
    return shim_lines({BUNDLE_TASKS_KEY: entries})
