"""Issue 17 leftovers: the Choi 2021 hybrid IDH entry of predictions.json ``bundle_tasks`` has a nomogram block
(choi.predict_entry, through nomogram.case_nomogram as the logistic tasks). Every screen draws the same list of
nomograms, render.nomogram_results: the report, the web results card (report.nomogram_figure, the report's figure)
and the Slicer nomogram plots (GliomaMRML.convert.nomogram_charts, the GliomaPredict / workflow Logic's charts; real
MRML). The blocks here are real ``case_nomogram`` blocks of a fitted logistic bundle (test_nomogram.fitted_bundle),
the format the Choi entry carries; the Choi bundle trained end to end is test_choi_bundle.py's."""
from __future__ import annotations

import base64
import json
import re

import pytest

from GliomaRadiogenomicsLib.predict import predict_one
from GliomaRadiogenomicsLib.render import nomogram_results, nomogram_synthetic, shim_rows
from test_nomogram import _plot_rows, _row, fitted_bundle
from test_shim_display import choi_entry

CHOI = "IDH (Choi 2021)"


@pytest.fixture(scope="module")
def doc():
    """A document with one logistic task (IDH, real model card) and a Choi entry with its own nomogram block (another
    case on the same axes: other points, another probability), as read back from predictions.json."""
    b = fitted_bundle()[0]
    idh = predict_one(b, _row(60, "M", 2), None)
    choi = predict_one(b, _row(35, "F", 3, mean=130.0), None)
    entry = choi_entry(probability=choi["probability"], label=b.label_for(choi["probability"]),
                       nomogram=choi["nomogram"], synthetic=True)
    d = {"case": {"id": "c1"}, "tasks": ["IDH", "grade"], "IDH": idh,
         "grade": {"probability": None, "label": "not available (sequence missing)", "cutoff": 0.5, "nomogram": None,
                   "reason": "needs T1c", "model": {"name": "g", "version": "1", "trained_on": "x",
                                                    "synthetic": False, "metrics": {}}},
         "bundle_tasks": [{"task": "recurrence pattern", "kind": "recurrence", "model": "rec", "version": "1",
                           "synthetic": True, "probability": 0.4, "label": "local", "cutoff": 0.5}, entry],
         "segmentation": {"volumes_ml": {"WT": 10.0}}, "warnings": [], "disclaimer": "research"}
    return json.loads(json.dumps(d))


def test_one_list_of_nomograms(doc):
    """The logistic tasks' nomograms, then the JSON-bundle entries' that have one, titled as their rows."""
    got = nomogram_results(doc)
    assert [t for t, _ in got] == ["IDH", CHOI]
    assert got[1][1] is doc["bundle_tasks"][1] and got[0][1] is doc["IDH"]
    assert [r.title for r in shim_rows(doc)] == ["recurrence pattern (Shim 2021)", CHOI]
    assert nomogram_synthetic(doc["bundle_tasks"][1]) and nomogram_synthetic(doc["IDH"])  # the fitted bundle's
    assert not nomogram_synthetic({**doc["bundle_tasks"][1], "synthetic": False})
    assert nomogram_results({**doc, "bundle_tasks": []}) == got[:1]


def test_web_card_draws_the_choi_nomogram_as_the_report(doc):
    """The web card's figure of the Choi entry is the report's figure of it, byte for byte; it sits on the Choi row
    of the bundle tasks (the recurrence row has none), and the logistic task's on its row, as before."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    from GliomaRadiogenomicsLib.report import render_report
    from GliomaWeb.app import result_card
    card = result_card(doc)
    rec, choi = card["shim"]
    assert rec["nomogram_png"] == "" and choi["title"] == CHOI
    assert choi["nomogram_png"].startswith("data:image/png;base64,") and not choi["nomogram_failed"]
    page = render_report(doc, analysis=None)
    for title, png in ((CHOI, choi["nomogram_png"]), ("IDH", card["rows"][0]["nomogram_png"])):
        m = re.search(rf"<img alt='nomogram {re.escape(title)}' src='data:image/png;base64,([^']+)'", page)
        assert m, title
        assert base64.b64decode(png.split(",", 1)[1]) == base64.b64decode(m.group(1)), title
    assert card["rows"][1]["nomogram_png"] == ""  # not available: no figure
    # a block the figure cannot draw: the card keeps the numbers and says so on the Choi row
    broken = json.loads(json.dumps(doc))
    broken["bundle_tasks"][1]["nomogram"]["axes"] = "not a list"
    choi = result_card(broken)["shim"][1]
    assert choi["nomogram_png"] == "" and choi["nomogram_failed"].startswith("nomogram figure failed")
    assert choi["result"].startswith("probability ")


def test_slicer_plots_draw_the_choi_nomogram(doc, mrml, tmp_path):
    """GliomaPredictLogic.finish (a background run's predictions.json) -> a chart per nomogram, the Choi entry's
    titled "IDH (Choi 2021)", with the entry's probability, SYNTHETIC, and the case at the entry's points."""
    from GliomaMRML.logic import GliomaPredictLogic
    from GliomaRadiogenomicsLib.nomogram import format_probability
    (tmp_path / "predictions.json").write_text(json.dumps(doc))
    _, table, charts = GliomaPredictLogic(mrml.scene).finish(tmp_path)
    assert list(charts) == ["IDH", "grade", CHOI] and charts["grade"] is None
    entry = doc["bundle_tasks"][1]
    chart = charts[CHOI]
    assert chart is not None and chart.GetName() == f"{CHOI} nomogram"
    assert chart.GetTitle().startswith(f"{CHOI}: probability {format_probability(entry['probability'])}")
    assert "SYNTHETIC" in chart.GetTitle()
    case = _plot_rows(chart)["This case"]
    nomo = entry["nomogram"]
    assert [r["points"] for r in case[:-2]] == pytest.approx([nomo["points"][a["name"]] for a in nomo["axes"]])
    assert case[-2]["points"] == pytest.approx(nomo["total_points"])
    # the logistic task's chart is the one it was: the IDH block's case
    idh_case = _plot_rows(charts["IDH"])["This case"]
    assert idh_case[-2]["points"] == pytest.approx(doc["IDH"]["nomogram"]["total_points"])
    assert table.GetTable().GetColumn(0).GetValue(2) == "recurrence pattern (Shim 2021)"
