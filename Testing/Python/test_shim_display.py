"""Issue 17 item 6: the Shim 2021 tasks (recurrence-pattern probability, Cox-LASSO risk group; predictions.json
``shim2021``) shown like the other tasks, from the one view model (render.shim_rows): the CLI summary lines, the
key result, the HTML and PDF report ("Shim 2021 tasks (DSC perfusion)"), the Slicer predictions table (real MRML)
and the web results card. A SYNTHETIC model says so; a task not computed says why; a document without ``shim2021``
shows nothing more. The end-to-end run (real bundles, real CBV phantom) is in test_cbv.py."""
from __future__ import annotations

import copy

import pytest

from GliomaRadiogenomicsLib.render import key_result_line, shim_rows, summary_lines
from test_report_status import html_text, pdf_text, squeeze, status_doc

NO_CBV = "needs a CBV map (DSC perfusion: --cbv FILE)"


def shim_doc():
    doc = status_doc()
    doc["shim2021"] = [
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
    assert shim.summary_lines(shim_doc()["shim2021"]) == [r.line() for r in shim_rows(shim_doc())]  # one definition
    key = key_result_line(shim_doc())
    assert "recurrence pattern probability 0.734 (distant, SYNTHETIC model)" in key
    assert "overall survival risk score +0.123 (high risk, imputed inputs)" in key
    assert "recurrence pattern not computed" in key
    # no shim2021 key: nothing changes
    plain = status_doc()
    assert shim_rows(plain) == [] and summary_lines(plain) == summary_lines({**plain, "shim2021": []})
    assert key_result_line(plain) == key_result_line({**plain, "shim2021": []})


def test_report_html_and_pdf_show_the_shim_table(tmp_path):
    from GliomaRadiogenomicsLib.report import render_report, write_report
    page = render_report(shim_doc(), analysis=None)
    text = html_text(page)
    assert "Shim 2021 tasks (DSC perfusion)" in page
    assert "<td>probability 0.734, distant (cutoff 0.5)</td>" in page
    assert "<td class='status-flag'>SYNTHETIC model</td>" in page and "80 SYNTHETIC cases (SYNTHETIC)" in page
    assert f"not computed: {NO_CBV}" in text
    assert page.index("Research probabilities</h2>") < page.index("Shim 2021 tasks") < page.index("Segmentation</h2>")
    assert "Shim 2021" not in render_report(status_doc(), analysis=None)  # no shim2021: no table
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
    assert result_card({**doc, "shim2021": []})["shim"] == []
