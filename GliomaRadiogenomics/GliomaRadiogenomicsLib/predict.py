"""Predictions with nomogram points, as the predictions.json document (schema in docs/predictions-schema.md).

Outputs are research probabilities, not diagnoses.
"""
from __future__ import annotations

import datetime as _dt
from typing import Dict, List, Mapping, Optional

import pandas as pd

from . import __version__
from .bundle import FeatureMismatchError, ModelBundle, bundle_preset, select_bundles
from .case import SEQUENCE_NAMES, sex_male
from .nomogram import case_nomogram

# 2: the JSON-bundle tasks' list is "bundle_tasks" (render.BUNDLE_TASKS_KEY); version 1 called it "shim2021",
# which render.bundle_task_entries still reads
SCHEMA_VERSION = 2

DISCLAIMER = ("Research probabilities from statistical models, not diagnoses. They must not guide treatment "
              "without histopathological and molecular confirmation.")


def feature_row_with_derived(row: Mapping[str, object]) -> Dict[str, object]:
    out = dict(row)
    if "sex_male" not in out:
        out["sex_male"] = sex_male(out.get("sex"), where=f"case {out.get('case_id', '')}".strip())
    return out


def predict_one(bundle: ModelBundle, row: Mapping[str, object], provenance: Optional[dict] = None) -> dict:
    row = feature_row_with_derived(row)
    settings = bundle.check_features(list(row.keys()), provenance)  # hard differences raise; soft ones come back
    r = bundle.predict_proba_row(row)
    p = r["probability"]
    return {
        "probability": round(p, 6),
        "label": bundle.label_for(p),
        "cutoff": round(bundle.cutoff, 6),
        "nomogram": case_nomogram(bundle, r, r["imputed"]),  # the bundle's axes + this case on each
        "feature_contributions": r["feature_contributions"],
        "model": bundle.model_card(),
        "warnings": settings + r["warnings"],
        "provenance_warnings": settings,   # soft differences between the model's training features and these
    }


def predict_case(analysis, bundles: List[ModelBundle]) -> dict:
    case = analysis.case
    warnings = list(analysis.warnings)
    if case.clinical.get("age") is None:
        warnings.append("age not given: models that use age replace it by their training mean (--age)")
    if case.clinical.get("sex") is None:
        warnings.append("sex not given: models that use sex replace it by their training proportion (--sex)")
    tasks = {}
    bundles, unavailable = select_bundles(bundles, list(analysis.pre.images))
    for task, (reason, b) in unavailable.items():
        tasks[task] = {"probability": None, "label": "not available (sequence missing)", "cutoff": b.cutoff,
                       "nomogram": None, "model": {**b.model_card(), "applied": False}, "reason": reason,
                       "warnings": [reason]}
        warnings.append(f"{task}: {reason}")
    for b in bundles:
        if analysis.volumes_ml.get("WT", 0) <= 0:
            tasks[b.task] = {"probability": None, "label": "not available (no tumor segmented)",
                             "cutoff": b.cutoff, "nomogram": None, "model": b.model_card(), "warnings": []}
            continue
        try:
            preset = bundle_preset(b)  # the run's own features unless the bundle's preset was extracted too
            res = predict_one(b, analysis.feature_row(preset), analysis.features_for(preset).provenance)
        except FeatureMismatchError as exc:
            tasks[b.task] = {"probability": None, "label": "not available", "cutoff": b.cutoff, "nomogram": None,
                             "model": b.model_card(), "reason": str(exc), "warnings": [str(exc)]}
            warnings.append(str(exc))
            continue
        if b.synthetic:
            res["warnings"].insert(0, f"{b.task} model trained on SYNTHETIC data: demonstration only")
        if b.task == "ATRX":
            idh = tasks.get("IDH", {}).get("probability")
            if idh is not None and idh < 0.5:
                use = ("the ATRX model is meant for IDH-mutant gliomas; the IDH model suggests IDH-wildtype here, "
                       "so the ATRX probability is out of its intended use")
                res["warnings"].append(use)
                res["out_of_intended_use"] = use  # render.task_status: the row's status
        warnings.extend(res["warnings"])
        tasks[b.task] = res
    doc = {
        "schema": "glioma-radiogenomics-predictions", "schema_version": SCHEMA_VERSION,
        "case": {"id": case.case_id, "synthetic": bool(case.synthetic), "clinical": case.clinical},
        "inputs": {SEQUENCE_NAMES[s]: case.paths.get(s, "(in memory)") for s in case.images},
        "sequences": sequence_info(case, analysis.pre),
        "input_quality": input_quality(case, analysis.pre),
        "segmentation": {"volumes_ml": analysis.volumes_ml,
                         "labels": {"1": "necrosis", "2": "edema", "3": "enhancing"},
                         "file": "segmentation.nii.gz",
                         "grid": f"native grid of the reference sequence ({SEQUENCE_NAMES[analysis.pre.reference]})"},
        "preprocessing": {"steps": analysis.pre.steps, "brain_mask": analysis.pre.brain_mask_method},
        "features": {"n": len(analysis.features.values), **analysis.features.provenance},
        "disclaimer": DISCLAIMER,
        "software": {"name": "glioma-radiogenomics", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warnings": list(dict.fromkeys(warnings + input_quality(case, analysis.pre))),
    }
    if analysis.preset_features:  # bundles trained on another preset read these (run writes features.<preset>.csv)
        doc["features"]["other_presets"] = {f.provenance.get("preset", name): {"n": len(f.values), **f.provenance}
                                            for name, f in analysis.preset_features.items()}
    doc.update(tasks)
    doc["tasks"] = [t for t in ("IDH", "epilepsy", "ATRX") if t in tasks] + [t for t in tasks
                                                                            if t not in ("IDH", "epilepsy", "ATRX")]
    return doc


def _grid_spacing(pre) -> float:
    ref = pre.images.get(pre.reference) if getattr(pre, "images", None) else None
    return float(min(ref.GetSpacing())) if ref is not None else 1.0


def sequence_info(case, pre=None) -> Dict[str, dict]:
    """Each input sequence as acquired (its native grid, before any resampling): voxel spacing, size, slice
    spacing (the spacing along the image's third axis, the one a PACS pages through) and number of slices."""
    out = {}
    for s in [q for q in SEQUENCE_NAMES if q in case.images]:
        img = case.images[s]
        sp, size = [round(float(v), 3) for v in img.GetSpacing()], [int(v) for v in img.GetSize()]
        out[SEQUENCE_NAMES[s]] = {"spacing_mm": sp, "size": size, "slice_thickness_mm": sp[2] if len(sp) > 2 else None,
                                  "n_slices": size[2] if len(size) > 2 else 1,
                                  "reference": bool(pre is not None and s == getattr(pre, "reference", None)),
                                  "file": str(case.paths.get(s, "(in memory)"))}
    return out


def input_quality(case, pre) -> List[str]:
    """Input-quality warnings a reader must see beside the results: thick slices resampled to the working grid
    ("FLAIR 5.5 mm slices resampled to 1 mm"), strongly anisotropic voxels, a doubtful brain mask (brainmask.py's
    warnings, a volume outside the adult range)."""
    grid = _grid_spacing(pre)
    notes = []
    for name, info in sequence_info(case, pre).items():
        sp = info["spacing_mm"]
        if max(sp) > 1.5 * grid:
            notes.append(f"{name} {format_mm(max(sp))} mm slices resampled to {format_mm(grid)} mm: detail across "
                         "the slices is interpolated, shape and texture features are less reliable")
        elif max(sp) > 2.5 * min(sp):
            notes.append(f"{name} voxels {' x '.join(format_mm(v) for v in sp)} mm are strongly anisotropic")
    # the brain mask's own warnings (a threshold mask on a head that is not skull-stripped) and its volume check
    # (preprocess): the automatic segmentation is confined to the mask, so these belong beside the results
    notes += [str(w) for w in getattr(pre, "brain_mask_warnings", None) or []]
    notes += [str(w) for w in getattr(pre, "warnings", None) or [] if str(w).startswith("brain mask volume")]
    return notes


def format_mm(v: float) -> str:
    return f"{float(v):.2f}".rstrip("0").rstrip(".")


def predict_table(bundle: ModelBundle, table: pd.DataFrame, provenance: Optional[dict] = None,
                  id_column: str = "case_id") -> pd.DataFrame:
    """Batch prediction: one row per case (``id_column``, task, probability, label, total_points (exact, as in
    predictions.json), status (render.task_status: valid / extrapolated / imputed inputs / SYNTHETIC model), model
    name and version, synthetic flag, warnings joined by " | "). Soft provenance
    differences come back in the frame's ``attrs["warnings"]``; hard ones raise FeatureMismatchError. Columns are
    matched by name; a bundle trained on prefixed names (``T1c_WT_original_firstorder_Mean``) also reads a table of
    standard PyRadiomics names of one sequence and region (``train.map_standard_names``, with a warning)."""
    from .train import map_standard_names
    if id_column != "case_id" and id_column not in table.columns:
        raise FeatureMismatchError(f"the table has no id column '{id_column}' (--id-column)")
    mapping, note = map_standard_names(bundle.features, list(table.columns))
    if mapping:
        table = table.assign(**{f: table[c] for f, c in mapping.items()})
    settings = ([note] if note else []) + bundle.check_features(
        list(table.columns) + (["sex_male"] if "sex" in table.columns else []), provenance)
    from .render import STATUS_WORDS, task_status
    rows = []
    for _, r in table.iterrows():
        res = predict_one(bundle, r.to_dict(), None)
        if bundle.synthetic:
            res["warnings"].insert(0, f"{bundle.task} model trained on SYNTHETIC data: demonstration only")
        statuses, _ = task_status(res)  # the one status definition (render.py), as in the report and the CLI
        rows.append({id_column: r.get(id_column), "task": bundle.task, "probability": res["probability"],
                     "label": res["label"], "total_points": res["nomogram"]["total_points"],
                     "status": "; ".join(STATUS_WORDS[q] for q in statuses),
                     "model": f"{bundle.name} v{bundle.version}", "synthetic": bool(bundle.synthetic),
                     "warnings": " | ".join(dict.fromkeys(settings + res["warnings"]))})
    out = pd.DataFrame(rows)
    out.attrs["warnings"] = list(settings)
    return out


class SchemaError(ValueError):
    pass


def validate_predictions(doc: dict) -> None:
    """Check a predictions document (schema version 2, or 1: see docs/predictions-schema.md), its JSON-bundle task
    entries included (``_check_bundle_tasks``). Raises SchemaError saying which key is wrong and why."""
    def need(cond, msg):
        if not cond:
            raise SchemaError(msg)
    need(isinstance(doc, dict), "predictions: not an object")
    for k in ("case", "inputs", "segmentation", "warnings", "tasks", "disclaimer"):
        need(k in doc, f"predictions: missing '{k}'")
    need(isinstance(doc["warnings"], list), "predictions: 'warnings' must be a list")
    need(isinstance(doc["segmentation"].get("volumes_ml"), dict), "predictions: segmentation.volumes_ml missing")
    for r in ("WT", "ET", "NCR", "ED"):
        need(r in doc["segmentation"]["volumes_ml"], f"predictions: segmentation volume of {r} missing")
    for t in doc["tasks"]:
        need(t in doc, f"predictions: task {t} listed but missing")
        r = doc[t]
        for k in ("probability", "label", "cutoff", "nomogram", "model"):
            need(k in r, f"predictions: {t}.{k} missing")
        if r["model"].get("applied") is False:  # no applicable model (sequence missing): a reason, never a number
            need(r["probability"] is None and bool(r.get("reason")), f"predictions: {t} not applied without a reason")
        for k in ("name", "version", "trained_on", "synthetic", "metrics"):
            need(k in r["model"], f"predictions: {t}.model.{k} missing")
        need(isinstance(r["model"]["synthetic"], bool), f"predictions: {t}.model.synthetic must be a boolean")
        if r["probability"] is not None:
            need(0.0 <= r["probability"] <= 1.0, f"predictions: {t}.probability outside [0, 1]")
            _check_nomogram(need, f"predictions: {t}.nomogram", r["nomogram"])
    _check_bundle_tasks(need, doc)


def _check_nomogram(need, where: str, n) -> None:
    """A case's nomogram block (nomogram.case_nomogram): its points, total and linear predictor, the points adding up
    to the total."""
    need(isinstance(n, dict), f"{where} must be an object when there is a probability")
    for k in ("points", "total_points", "linear_predictor"):
        need(k in n, f"{where}.{k} missing")
    need(isinstance(n["points"], dict) and all(_is_number(v) for v in n["points"].values())
         and _is_number(n["total_points"]), f"{where}: points and total_points must be numbers")
    need(abs(sum(n["points"].values()) - n["total_points"]) < 0.05 * max(1, len(n["points"])),
         f"{where} points do not add up to total_points")


def _is_number(v) -> bool:
    import math
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


BUNDLE_TASK_KINDS = {"recurrence": "Shim 2021", "survival": "Shim 2021", "choi": "Choi 2021"}  # kind -> its paper


def _check_bundle_tasks(need, doc: dict) -> None:
    """The JSON-bundle task entries (``bundle_tasks``; ``shim2021`` in schema version 1; docs/predictions-schema.md):
    the list under the key of the document's schema version; each entry an object with its keys and their types;
    its kind's value (a probability in [0, 1] with its label and cutoff, or a risk score with its group and the
    training median) or none with the reason; the value consistent with the entry (the risk group on the side of the
    cutoff the score is, the Choi label at its cutoff, the Choi nomogram's probability the entry's); the paper the
    kind's; the document's warnings carrying the entry's reason and its SYNTHETIC model, as the run writes them
    (shim.not_computed_warning, shim.synthetic_model_warning); no entry twice."""
    from .render import BUNDLE_TASKS_KEY, LEGACY_BUNDLE_TASKS_KEY
    from .shim import not_computed_warning, synthetic_model_warning
    version = doc.get("schema_version")
    if version is not None and version != 1:
        need(LEGACY_BUNDLE_TASKS_KEY not in doc,
             f"predictions: schema version {version} has no '{LEGACY_BUNDLE_TASKS_KEY}' key (its list is "
             f"'{BUNDLE_TASKS_KEY}' since version 2)")
    if version == 1:
        need(BUNDLE_TASKS_KEY not in doc, f"predictions: schema version 1 has no '{BUNDLE_TASKS_KEY}' key (its list "
                                          f"is '{LEGACY_BUNDLE_TASKS_KEY}'; 'bundle_tasks' needs schema_version 2)")
    key = LEGACY_BUNDLE_TASKS_KEY if version == 1 else BUNDLE_TASKS_KEY
    if key not in doc:
        return
    entries = doc[key]
    need(isinstance(entries, list), f"predictions: '{key}' must be a list of entries, not {type(entries).__name__}")
    warnings = [str(w) for w in doc["warnings"]]
    seen = set()
    for i, e in enumerate(entries):
        where = f"predictions: {key}[{i}]"
        need(isinstance(e, dict), f"{where} must be an object, not {type(e).__name__}")
        for k in ("task", "kind", "model", "version", "trained_on", "synthetic", "intended_use", "card"):
            need(k in e, f"{where}.{k} missing")
        need(isinstance(e["task"], str) and e["task"].strip() != "", f"{where}.task must be a non-empty string")
        need(e["kind"] in BUNDLE_TASK_KINDS,
             f"{where}.kind is {e['kind']!r}: must be one of {', '.join(BUNDLE_TASK_KINDS)}")
        need(isinstance(e["model"], str) and e["model"].strip() != "", f"{where}.model must be the model's name")
        where = f"predictions: {key}[{i}] ({e['task']}, model '{e['model']}')"
        for k in ("version", "trained_on", "intended_use"):
            need(e[k] is None or isinstance(e[k], str), f"{where}.{k} must be a string or null")
        need(isinstance(e["synthetic"], bool), f"{where}.synthetic must be a boolean")
        need(isinstance(e["card"], dict), f"{where}.card must be an object")
        paper = e.get("paper", "Shim 2021")
        need(paper == BUNDLE_TASK_KINDS[e["kind"]],
             f"{where}: paper {paper!r} does not match kind '{e['kind']}' ({BUNDLE_TASK_KINDS[e['kind']]})")
        need((e["task"], e["model"]) not in seen, f"{where}: the same task and model twice")
        seen.add((e["task"], e["model"]))
        need(e.get("imputed") in (None, "") or isinstance(e["imputed"], str),
             f"{where}.imputed must be the ';'-separated names of the imputed features")
        reason = e.get("reason")
        need(reason is None or (isinstance(reason, str) and reason.strip() != ""),
             f"{where}.reason must be a non-empty string when given")
        value_key = "risk_score" if e["kind"] == "survival" else "probability"
        need(value_key in e, f"{where}.{value_key} missing (null with a reason when not computed)")
        value = e[value_key]
        if value is None:
            need(bool(reason), f"{where}: {value_key} is null without a reason")
            need(not_computed_warning(e["task"], reason) in warnings,
                 f"{where}: its reason is not in the document's warnings ('{e['task']}: not computed: ...')")
        else:
            need(reason is None, f"{where}: a {value_key} and a reason ({reason!r}): one or the other")
            need(_is_number(value), f"{where}.{value_key} must be a number")
            if e["kind"] == "survival":
                cut = e.get("risk_group_cutoff")
                need(_is_number(cut), f"{where}.risk_group_cutoff (the training median) must be a number")
                need(e.get("risk_group") in ("high", "low"), f"{where}.risk_group must be 'high' or 'low'")
                need(e["risk_group"] == ("high" if value > cut else "low"),
                     f"{where}: risk_group '{e['risk_group']}' but risk score {value} is "
                     f"{'above' if value > cut else 'not above'} the training median {cut}")
            else:
                need(0.0 <= value <= 1.0, f"{where}.probability {value} outside [0, 1]")
                need(isinstance(e.get("label"), str) and e["label"] != "", f"{where}.label must be a non-empty string")
                cut = e.get("cutoff")
                need(_is_number(cut) and 0.0 <= cut <= 1.0, f"{where}.cutoff must be a number in [0, 1]")
                if e["kind"] == "choi":
                    from .choi import CHOI_LABELS
                    want = CHOI_LABELS[int(value >= cut)]
                    need(e["label"] == want, f"{where}: label '{e['label']}' but probability {value} at cutoff "
                                             f"{cut} gives '{want}'")
        if e.get("nomogram") is not None:
            need(e["kind"] == "choi", f"{where}: a nomogram, but only Choi 2021 entries have one")
            need(value is not None, f"{where}: a nomogram without a probability")
            _check_nomogram(need, f"{where}.nomogram", e["nomogram"])
            p = e["nomogram"].get("probability")
            need(p is None or (_is_number(p) and abs(p - value) <= 1e-6),
                 f"{where}: the nomogram's probability {p} is not the entry's {value}")
        if e["synthetic"]:
            need(synthetic_model_warning(e["task"], e["model"]) in warnings,
                 f"{where}: a SYNTHETIC model without its warning in the document's warnings")
