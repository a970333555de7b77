"""predictions.json schema version 2: validate_predictions checks the JSON-bundle task entries (``bundle_tasks``;
``shim2021`` in schema version 1; docs/predictions-schema.md): the list under its version's key, each entry's keys
and types, its value (probability with label and cutoff, or risk score with group and training median) or none with
the reason, the value consistent with the entry, the paper its kind's, the document's warnings carrying its reason and
its SYNTHETIC model (as shim._entry_warnings writes them), the Choi nomogram's numbers. One document per rule; the
documents the runs write pass (test_cbv.py, test_choi_bundle.py call validate_predictions on them)."""
from __future__ import annotations

import copy
import json

import pytest

from GliomaRadiogenomicsLib.predict import SchemaError, predict_one, validate_predictions
from test_nomogram import _row, fitted_bundle
from test_shim_display import NO_CBV, choi_entry, shim_doc, survival_entry

CHOI = "predictions: bundle_tasks[2] (IDH, model 'choi2021-hybrid-IDH-flair')"
REC = "predictions: bundle_tasks[0] (recurrence pattern, model 'rec-mlp')"
SURV = "predictions: bundle_tasks[1] (overall survival, model 'os-cox-lasso')"
OFF = "predictions: bundle_tasks[3] (recurrence pattern, model 'rec-2')"


@pytest.fixture(scope="module")
def valid():
    """A schema version 2 document as the run writes it: a recurrence probability (SYNTHETIC), a survival risk group,
    a Choi 2021 entry with the case on its nomogram (a real case_nomogram block), a recurrence task not computed;
    the warnings from shim._entry_warnings."""
    from GliomaRadiogenomicsLib.shim import _entry_warnings
    b = fitted_bundle()[0]
    res = predict_one(b, _row(35, "F", 3, mean=130.0), None)
    p = res["probability"]
    rec, _, off = copy.deepcopy(shim_doc()["bundle_tasks"])
    rec["card"] = off["card"] = {"method": "MLP"}
    choi = choi_entry(probability=p, label="IDH-mutant" if p >= 0.5 else "IDH-wildtype", nomogram=res["nomogram"],
                      imputed="")
    entries = [rec, survival_entry(), choi, off]
    warnings = []
    for e in entries:
        _entry_warnings(e, {"name": e["model"]}, warnings)
    doc = {"schema": "glioma-radiogenomics-predictions", "schema_version": 2, "case": {"id": "c1"}, "inputs": {},
           "segmentation": {"volumes_ml": {"WT": 10.0, "ET": 1.0, "NCR": 0.5, "ED": 8.5}}, "tasks": [],
           "disclaimer": "research", "warnings": warnings, "bundle_tasks": entries}
    return json.loads(json.dumps(doc))  # as read back from predictions.json


def test_the_valid_documents_pass(valid):
    validate_predictions(valid)
    old = {k: v for k, v in valid.items() if k != "bundle_tasks"}
    validate_predictions({**old, "schema_version": 1, "shim2021": valid["bundle_tasks"]})  # version 1: its key
    validate_predictions({**valid, "bundle_tasks": []})
    validate_predictions(old)  # a run without JSON bundles has no list
    validate_predictions({**old, "schema_version": 1})


def _set(path, value):
    def f(doc):
        *head, last = path
        node = doc
        for k in head:
            node = node[k]
        node[last] = value
    return f


def _drop(path):
    def f(doc):
        *head, last = path
        node = doc
        for k in head:
            node = node[k]
        del node[last]
    return f


def _survival_low(doc):
    e = doc["bundle_tasks"][1]
    e["risk_group"] = "low" if e["risk_score"] > e["risk_group_cutoff"] else "high"


def _choi_other_label(doc):
    e = doc["bundle_tasks"][2]
    e["label"] = "IDH-wildtype" if e["label"] == "IDH-mutant" else "IDH-mutant"


def _points_off(doc):
    n = doc["bundle_tasks"][2]["nomogram"]
    n["total_points"] = n["total_points"] + 50.0


def _no_synthetic_warning(doc):
    doc["warnings"] = [w for w in doc["warnings"] if "rec-mlp" not in w]


def _no_reason_warning(doc):
    doc["warnings"] = [w for w in doc["warnings"] if "not computed" not in w]


def _duplicate(doc):
    doc["bundle_tasks"].append(copy.deepcopy(doc["bundle_tasks"][0]))


def _v2_with_old_key(doc):
    doc["shim2021"] = doc.pop("bundle_tasks")


def _v1_with_new_key(doc):
    doc["schema_version"] = 1


def _v1_bad_entry(doc):
    doc["schema_version"] = 1
    doc["shim2021"] = doc.pop("bundle_tasks")
    doc["shim2021"][0]["kind"] = "cox"


VIOLATIONS = {
    "list is not a list": (_set(["bundle_tasks"], {"task": "IDH"}),
                           "predictions: 'bundle_tasks' must be a list of entries, not dict"),
    "entry not an object": (_set(["bundle_tasks", 0], "IDH"),
                            "predictions: bundle_tasks[0] must be an object, not str"),
    "key missing": (_drop(["bundle_tasks", 2, "card"]), "predictions: bundle_tasks[2].card missing"),
    "task empty": (_set(["bundle_tasks", 0, "task"], " "), "predictions: bundle_tasks[0].task must be a non-empty"),
    "kind unknown": (_set(["bundle_tasks", 1, "kind"], "cox"),
                     "predictions: bundle_tasks[1].kind is 'cox': must be one of recurrence, survival, choi"),
    "model not a name": (_set(["bundle_tasks", 1, "model"], 3), "predictions: bundle_tasks[1].model must be the model"),
    "version a number": (_set(["bundle_tasks", 0, "version"], 1.0), REC + ".version must be a string or null"),
    "synthetic not a boolean": (_set(["bundle_tasks", 0, "synthetic"], "yes"), REC + ".synthetic must be a boolean"),
    "card not an object": (_set(["bundle_tasks", 1, "card"], []), SURV + ".card must be an object"),
    "choi entry with Shim's paper": (_set(["bundle_tasks", 2, "paper"], "Shim 2021"),
                                     CHOI + ": paper 'Shim 2021' does not match kind 'choi' (Choi 2021)"),
    "Shim entry with Choi's paper": (_set(["bundle_tasks", 0, "paper"], "Choi 2021"),
                                     REC + ": paper 'Choi 2021' does not match kind 'recurrence'"),
    "choi entry without its paper": (_drop(["bundle_tasks", 2, "paper"]),
                                     CHOI + ": paper 'Shim 2021' does not match kind 'choi'"),
    "an entry twice": (_duplicate, "predictions: bundle_tasks[4] (recurrence pattern, model 'rec-mlp'): the same task "
                                   "and model twice"),
    "imputed a list": (_set(["bundle_tasks", 1, "imputed"], ["rCBV_a"]), SURV + ".imputed must be the ';'-separated"),
    "reason empty": (_set(["bundle_tasks", 3, "reason"], ""), OFF + ".reason must be a non-empty string"),
    "value missing": (_drop(["bundle_tasks", 1, "risk_score"]), SURV + ".risk_score missing (null with a reason"),
    "null without a reason": (_drop(["bundle_tasks", 3, "reason"]), OFF + ": probability is null without a reason"),
    "reason not in the warnings": (_no_reason_warning, OFF + ": its reason is not in the document's warnings"),
    "a value and a reason": (_set(["bundle_tasks", 0, "reason"], NO_CBV), REC + ": a probability and a reason"),
    "probability a string": (_set(["bundle_tasks", 0, "probability"], "0.7"), REC + ".probability must be a number"),
    "probability not finite": (_set(["bundle_tasks", 0, "probability"], float("nan")),
                               REC + ".probability must be a number"),
    "probability above 1": (_set(["bundle_tasks", 0, "probability"], 1.5), REC + ".probability 1.5 outside [0, 1]"),
    "label missing": (_set(["bundle_tasks", 0, "label"], None), REC + ".label must be a non-empty string"),
    "cutoff missing": (_drop(["bundle_tasks", 0, "cutoff"]), REC + ".cutoff must be a number in [0, 1]"),
    "choi label against its cutoff": (_choi_other_label, CHOI + ": label 'IDH-"),
    "risk group a word": (_set(["bundle_tasks", 1, "risk_group"], "medium"), SURV + ".risk_group must be 'high' or"),
    "risk group on the wrong side": (_survival_low, SURV + ": risk_group 'low' but risk score 0.1234 is above the "
                                                           "training median -0.05"),
    "no training median": (_set(["bundle_tasks", 1, "risk_group_cutoff"], None), SURV + ".risk_group_cutoff"),
    "nomogram on a Shim entry": (_set(["bundle_tasks", 0, "nomogram"], {"points": {}, "total_points": 0}),
                                 REC + ": a nomogram, but only Choi 2021 entries have one"),
    "nomogram not an object": (_set(["bundle_tasks", 2, "nomogram"], [1, 2]),
                               CHOI + ".nomogram must be an object"),
    "nomogram without its total": (_drop(["bundle_tasks", 2, "nomogram", "total_points"]),
                                   CHOI + ".nomogram.total_points missing"),
    "nomogram points do not add up": (_points_off, CHOI + ".nomogram points do not add up to total_points"),
    "nomogram probability not the entry's": (_set(["bundle_tasks", 2, "nomogram", "probability"], 0.999),
                                             CHOI + ": the nomogram's probability 0.999 is not the entry's"),
    "SYNTHETIC without its warning": (_no_synthetic_warning, REC + ": a SYNTHETIC model without its warning"),
    "version 2 with the old key": (_v2_with_old_key, "predictions: schema version 2 has no 'shim2021' key"),
    "version 1 with the new key": (_v1_with_new_key, "predictions: schema version 1 has no 'bundle_tasks' key"),
    "version 1 entries are checked": (_v1_bad_entry, "predictions: shim2021[0].kind is 'cox'"),
}


@pytest.mark.parametrize("rule", list(VIOLATIONS))
def test_each_rule_is_checked_with_a_clear_message(valid, rule):
    """A document breaking one rule is refused with a message naming the entry (its index, task and model), the key
    and what is wrong."""
    change, message = VIOLATIONS[rule]
    doc = copy.deepcopy(valid)
    change(doc)
    with pytest.raises(SchemaError) as exc:
        validate_predictions(doc)
    assert str(exc.value).startswith(message), (rule, str(exc.value))
