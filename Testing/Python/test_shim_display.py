"""Issue 17 item 6: the Shim 2021 tasks (recurrence-pattern probability, Cox-LASSO risk group; predictions.json
``bundle_tasks``, ``shim2021`` in documents of schema version 1) shown like the other tasks, from the one view model
(render.shim_rows): the CLI summary lines, the key result, the HTML and PDF report ("Shim 2021 tasks (DSC
perfusion)"), the Slicer predictions table (real MRML) and the web results card. A SYNTHETIC model says so; a task
not computed says why; a document without the list shows nothing more. The end-to-end run (real bundles, real CBV
phantom) is in test_cbv.py."""
from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest

from GliomaRadiogenomicsLib.render import key_result_line, shim_lines, shim_rows, shim_title, summary_lines
from test_report_status import html_text, pdf_text, squeeze, status_doc

NO_CBV = "needs a CBV map (DSC perfusion: --cbv FILE)"


def shim_doc():
    doc = status_doc()
    doc["bundle_tasks"] = [
        {"task": "recurrence pattern", "kind": "recurrence", "model": "rec-mlp", "version": "0.1",
         "trained_on": "80 SYNTHETIC cases", "synthetic": True, "intended_use": "research",
         "probability": 0.7342, "label": "distant", "cutoff": 0.5, "top_shapley": [], "imputed": ""},
        {"task": "overall survival", "kind": "survival", "model": "os-cox-lasso", "version": "1.0",
         "trained_on": "UCSF 120 patients", "synthetic": False, "intended_use": "research",
         "risk_score": 0.1234, "risk_group": "high", "risk_group_cutoff": -0.05, "imputed": "rCBV_a;rCBV_b"},
        {"task": "recurrence pattern", "kind": "recurrence", "model": "rec-2", "version": None,
         "trained_on": "80 SYNTHETIC cases", "synthetic": True, "intended_use": "research",
         "probability": None, "label": None, "reason": NO_CBV},
    ]
    return doc


def test_shim_rows_texts_and_lines():
    from GliomaRadiogenomicsLib import shim
    rec, os_, off = shim_rows(shim_doc())
    assert rec.available and rec.result_text == "probability 0.734, distant (cutoff 0.5)"
    assert rec.status_text == "SYNTHETIC model" and rec.trained_on_text == "80 SYNTHETIC cases (SYNTHETIC)"
    assert rec.model == "rec-mlp v0.1"
    assert os_.result_text == "risk score +0.123, high risk (training median -0.050)"
    assert os_.statuses == ["imputed inputs"] and "rCBV_a, rCBV_b" in os_.status_detail
    assert not off.available and off.result_text == f"not computed: {NO_CBV}"
    assert off.status_text == "NOT COMPUTED; SYNTHETIC model" and off.model == "rec-2 v?"
    lines = summary_lines(shim_doc())
    assert ("recurrence pattern (Shim 2021): probability 0.734, distant (cutoff 0.5) [SYNTHETIC model]; model "
            "rec-mlp v0.1 [SYNTHETIC-trained], trained on 80 SYNTHETIC cases") in lines
    assert f"recurrence pattern (Shim 2021): not computed: {NO_CBV} [NOT COMPUTED; SYNTHETIC model]; model rec-2 v? " \
           "[SYNTHETIC-trained], trained on 80 SYNTHETIC cases" in lines
    assert shim.summary_lines(shim_doc()["bundle_tasks"]) == shim_lines(shim_doc())  # one definition
    assert shim_lines(shim_doc()) == ["Shim 2021 tasks (DSC perfusion):"] + [r.line() for r in shim_rows(shim_doc())]
    at = lines.index("Shim 2021 tasks (DSC perfusion):")  # the Slicer status label's lines: heading, then rows
    assert lines[at:at + 4] == shim_lines(shim_doc())
    key = key_result_line(shim_doc())
    assert "recurrence pattern probability 0.734 (distant, SYNTHETIC model)" in key
    assert "overall survival risk score +0.123 (high risk, imputed inputs)" in key
    assert "recurrence pattern not computed" in key
    # no bundle_tasks key: nothing changes
    plain = status_doc()
    assert shim_rows(plain) == [] and summary_lines(plain) == summary_lines({**plain, "bundle_tasks": []})
    assert key_result_line(plain) == key_result_line({**plain, "bundle_tasks": []})


def test_a_schema_version_1_document_is_read_from_its_shim2021_key():
    """Documents written before the rename (schema version 1) have the same list under ``shim2021``: every reader
    takes it through render.bundle_task_entries (one definition), so they show the same rows, heading, summary
    lines, key result and report table; a document with the new key reads only that."""
    from GliomaRadiogenomicsLib.render import LEGACY_BUNDLE_TASKS_KEY, bundle_task_entries, shim_table
    from GliomaRadiogenomicsLib.report import render_report
    new = shim_doc()
    old = {k: v for k, v in new.items() if k != "bundle_tasks"}
    old.update(schema_version=1, **{LEGACY_BUNDLE_TASKS_KEY: new["bundle_tasks"]})
    assert LEGACY_BUNDLE_TASKS_KEY == "shim2021"
    assert bundle_task_entries(old) == bundle_task_entries(new) == new["bundle_tasks"]
    assert len(shim_rows(old)) == 3 and shim_rows(old) == shim_rows(new)
    assert shim_title(old) == shim_title(new) != ""
    assert summary_lines(old) == summary_lines(new) and key_result_line(old) == key_result_line(new)
    assert shim_table(old) == shim_table(new)
    assert "<td>probability 0.734, distant (cutoff 0.5)</td>" in render_report(old, analysis=None)
    from GliomaRadiogenomicsLib.cli import print_summary
    printed = []
    for doc in (old, new):
        buf = io.StringIO()
        print_summary(doc, Path("out"), stream=buf)
        printed.append(buf.getvalue())
    assert printed[0] == printed[1] and "\nShim 2021 tasks (DSC perfusion):\n" in printed[0]
    # the new key wins (even when empty) over a stale old one; neither: none
    assert bundle_task_entries({**old, "bundle_tasks": []}) == [] and bundle_task_entries(status_doc()) == []


def test_report_html_and_pdf_show_the_shim_table(tmp_path):
    from GliomaRadiogenomicsLib.report import render_report, write_report
    page = render_report(shim_doc(), analysis=None)
    text = html_text(page)
    assert "Shim 2021 tasks (DSC perfusion)" in page
    assert "<td>probability 0.734, distant (cutoff 0.5)</td>" in page
    assert "<td class='status-flag'>SYNTHETIC model</td>" in page and "80 SYNTHETIC cases (SYNTHETIC)" in page
    assert f"not computed: {NO_CBV}" in text
    assert page.index("Research probabilities</h2>") < page.index("Shim 2021 tasks") < page.index("Segmentation</h2>")
    assert "Shim 2021" not in render_report(status_doc(), analysis=None)  # no bundle_tasks: no table
    write_report(shim_doc(), None, tmp_path / "report.html")
    pdf = squeeze(pdf_text(tmp_path / "report.pdf"))
    for s in ("Shim 2021 tasks (DSC perfusion)", "probability 0.734, distant (cutoff 0.5)",
              "risk score +0.123, high risk", "NOT COMPUTED; SYNTHETIC model", NO_CBV):
        assert squeeze(s) in pdf, s


def test_slicer_table_has_the_shim_rows(mrml):
    from GliomaMRML.convert import predictions_to_table_node
    node = predictions_to_table_node(shim_doc(), mrml.scene)
    t = node.GetTable()
    got = [[t.GetColumn(j).GetValue(i) for j in range(t.GetNumberOfColumns())] for i in range(t.GetNumberOfRows())]
    assert [r[0] for r in got] == ["IDH", "epilepsy", "ATRX", "grade", "recurrence pattern (Shim 2021)",
                                   "overall survival (Shim 2021)", "recurrence pattern (Shim 2021)"]
    assert got[4][1:5] == ["probability 0.734", "SYNTHETIC model", "distant (cutoff 0.5)", "n/a"]
    assert got[4][7].startswith("YES")
    assert got[5][1:4] == ["risk score +0.123", "imputed inputs", "high risk (training median -0.050)"]
    assert got[6][2] == "NOT COMPUTED; SYNTHETIC model" and got[6][3] == f"not computed ({NO_CBV})"
    plain = predictions_to_table_node(status_doc(), mrml.scene).GetTable()
    assert plain.GetNumberOfRows() == 4


def test_web_results_card_has_the_shim_rows():
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    from GliomaWeb.app import result_card
    doc = shim_doc()
    for t in doc["tasks"]:  # the card's nomogram figures are not what this test is about
        doc[t] = {**copy.deepcopy(doc[t]), "nomogram": None}
    doc["ATRX"]["model"]["synthetic"] = False  # the SYNTHETIC banner then comes from the Shim models alone
    card = result_card(doc)
    assert [r["result"] for r in card["shim"]] == [r.result_text for r in shim_rows(doc)]
    assert card["shim"][0]["status"] == "SYNTHETIC model" and "(SYNTHETIC)" in card["shim"][0]["trained_on"]
    assert card["shim"][2]["result"] == f"not computed: {NO_CBV}"
    assert card["synthetic"].startswith("SYNTHETIC")
    assert result_card({**doc, "bundle_tasks": []})["shim"] == []


# --- the heading and the model cards of the JSON-bundle tasks ----------------------------------------------------

def choi_entry(**kw):
    from GliomaRadiogenomicsLib.shim import entry_card
    bundle = {"method": "Choi 2021 model 2: ResNet34 + hybrid logistic", "cutoff": 0.5,
              "metrics": {"validation": "repeated nested CV, 2 complete repetition(s), out-of-fold AUC",
                          "auc_cv_hybrid": {"per_repetition": [0.81, 0.85], "mean": 0.83},
                          "auc_cv_cnn": {"mean": 0.77}, "auc_cv_age": {"mean": 0.64}, "n": 60, "n_positive": 25},
              "training": {"n": 60, "n_positive": 25, "trained_on": "TCGA-LGG 60 cases"}}
    return {"task": "IDH", "kind": "choi", "paper": "Choi 2021", "model": "choi2021-hybrid-IDH-flair",
            "version": "1.0", "trained_on": "TCGA-LGG 60 cases", "synthetic": False,
            "intended_use": "research: IDH status of adult diffuse glioma", "probability": 0.61, "label": "IDH-mutant",
            "cutoff": 0.5, "card": entry_card("choi", bundle), **kw}


def survival_entry():
    from GliomaRadiogenomicsLib.shim import entry_card
    bundle = {"card": {"method": "Cox-LASSO radiomic risk score (Shim 2021)"},
              "risk_group_rule": "high risk when the risk score exceeds the TRAINING median (Shim 2021)",
              "metrics": {"cindex_cv": 0.684, "cindex_cv_95ci_bootstrap": [0.61, 0.75], "td_auc_times": [365, 730],
                          "td_auc_cv": [0.71, 0.69], "logrank_p_cv_median": 0.0123,
                          "validation": "internal (repeated nested CV) only"},
              "training": {"n": 120, "events": 61, "trained_on": "UCSF 120 patients"}}
    return {**shim_doc()["bundle_tasks"][1], "card": entry_card("survival", bundle)}


def test_the_heading_is_one_definition_for_every_screen():
    """render.shim_title is the heading of the JSON-bundle tasks: the report's, the CLI summary's, the Slicer status
    label's (render.summary_lines) and the web card's; a Choi 2021 row alone is not called a Shim 2021 task. No
    screen spells the heading itself."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    from GliomaRadiogenomicsLib.cli import print_summary
    from GliomaRadiogenomicsLib.render import CHOI_TITLE, SHIM_TITLE
    from GliomaRadiogenomicsLib.report import render_report
    from GliomaWeb.app import result_card
    from test_render import REPO
    choi_only = {**status_doc(), "bundle_tasks": [choi_entry()]}
    both = {**status_doc(), "bundle_tasks": shim_doc()["bundle_tasks"] + [choi_entry()]}
    assert shim_title(shim_doc()) == SHIM_TITLE and shim_title(choi_only) == CHOI_TITLE
    assert shim_title(both) == "Further tasks (Choi 2021, Shim 2021)" and shim_title(status_doc()) == ""
    for doc in (shim_doc(), choi_only, both):
        title = shim_title(doc)
        for t in doc["tasks"]:  # the card's nomogram figures are not what this test is about
            doc[t] = {**copy.deepcopy(doc[t]), "nomogram": None}
        assert f"<h3>{title}</h3>" in render_report(doc, analysis=None)
        buf = io.StringIO()
        print_summary(doc, Path("out"), stream=buf)
        assert f"\n{title}:\n" in buf.getvalue()
        assert f"{title}:" in summary_lines(doc)
        assert result_card(doc)["shim_title"] == title
    assert "Shim 2021 tasks" not in render_report(choi_only, analysis=None)
    lib = "GliomaRadiogenomics/GliomaRadiogenomicsLib/"
    for path in (lib + "report.py", lib + "cli.py", "Web/GliomaWeb/app.py", "GliomaRadiogenomics/GliomaMRML/convert.py",
                 "GliomaRadiogenomics/GliomaRadiogenomics.py", "GliomaPredict/GliomaPredict.py"):
        src = (REPO / path).read_text()
        assert "Further tasks" not in src and "SHIM_TITLE" not in src and "tasks (DSC perfusion)" not in src, path


def test_report_and_web_show_the_model_cards_of_the_bundle_tasks():
    """The model card of each bundle_tasks entry (render.shim_card_rows, from what its bundle records: shim.entry_card):
    intended use, training data, SYNTHETIC, CV AUC with its CI / the C-index with its CI for Cox; in the HTML report
    under Model cards and in the web card, the same rows."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    from GliomaRadiogenomicsLib.report import render_report
    from GliomaWeb.app import result_card
    doc = shim_doc()
    doc["bundle_tasks"] = [doc["bundle_tasks"][0], survival_entry(), choi_entry()]
    for t in doc["tasks"]:
        doc[t] = {**copy.deepcopy(doc[t]), "nomogram": None}
    page = render_report(doc, analysis=None)
    cards = page[page.index("Model cards</h2>"):]
    assert "<h3>overall survival (Shim 2021)</h3>" in cards and "<h3>IDH (Choi 2021)</h3>" in cards
    for row in ("<th>C-index (95% CI)</th><td>0.68 (95% CI 0.61-0.75, case bootstrap)</td>",
                "<th>Time-dependent AUC</th><td>0.71 at 365 days, 0.69 at 730 days</td>",
                "<th>Training data</th><td>UCSF 120 patients; 120 cases (61 events)</td>",
                "<th>Intended use</th><td>research: IDH status of adult diffuse glioma</td>",
                "<th>AUC (95% CI)</th><td>0.83 (no CI recorded); mean of 2 repetition(s)</td>",
                "<th>Compared (CV AUC)</th><td>CNN alone 0.77, age alone 0.64</td>",
                "<th>Model</th><td>rec-mlp v0.1  [SYNTHETIC: demonstration only]</td>",
                "<th>Validation status</th><td>SYNTHETIC: trained and validated on simulated data only; not "
                "validated on patients</td>"):
        assert row in cards, row
    web = result_card(doc)["shim"]
    assert [dict(r["model_card"]) for r in web] == [dict(r.card) for r in shim_rows(doc)]
    assert dict(web[1]["model_card"])["C-index (95% CI)"] == "0.68 (95% CI 0.61-0.75, case bootstrap)"
