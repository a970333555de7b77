"""One renderer of predictions (issue 12 item 7): the CLI summary, the HTML report, the PDF lines, the Slicer table
node, the GliomaPredict label and the web rows all take their per-task facts from render.task_rows."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from GliomaRadiogenomicsLib.render import summary_lines, task_rows

REPO = Path(__file__).resolve().parents[2]


def _doc():
    model = {"name": "tcga_lgg_IDH_flair", "version": "1.0", "trained_on": "64 TCGA-LGG patients", "synthetic": False,
             "metrics": {"auc_cv": 0.75, "auc_cv_95ci": [0.58, 0.93]}}
    return {
        "case": {"id": "case-7", "synthetic": False},
        "tasks": ["IDH", "epilepsy"],
        "IDH": {"probability": 0.73456, "label": "IDH-mutant", "cutoff": 0.5,
                "nomogram": {"total_points": 57.25, "points": {"age": 20.0, "imaging score": 37.25}},
                "model": model},
        "epilepsy": {"probability": None, "label": "not available (sequence missing)", "cutoff": None,
                     "reason": "needs T1c, the case has FLAIR only", "nomogram": None,
                     "model": {**model, "name": "synthetic_epilepsy", "trained_on": "SYNTHETIC cohort",
                               "synthetic": True, "metrics": {}}},
        "segmentation": {"volumes_ml": {"WT": 12.5, "TC": 0.0, "ET": 0.0}},
        "warnings": ["brain mask by threshold"],
        "disclaimer": "Research probabilities, not diagnoses.",
    }


def test_task_rows_format_and_unavailable_task():
    rows = task_rows(_doc())
    assert [r.task for r in rows] == ["IDH", "epilepsy"]
    idh, epi = rows
    assert idh.available and idh.probability_text == "0.735" and idh.points_text == "57.2"
    assert idh.auc_text == "0.75 (0.58-0.93)" and idh.model == "tcga_lgg_IDH_flair v1.0"
    assert idh.points_breakdown == "age 20.0, imaging score 37.2"
    assert not epi.available and epi.probability_text == "n/a" and epi.points_text == "n/a"
    assert epi.cutoff_text == "n/a" and epi.trained_on_text == "SYNTHETIC cohort (SYNTHETIC)"
    lines = summary_lines(_doc())
    assert lines[0].startswith("IDH: 0.73 (IDH-mutant) [valid], 57.2 points; model tcga_lgg_IDH_flair v1.0")
    assert lines[1] == "epilepsy: not available (needs T1c, the case has FLAIR only)"
    assert "Warnings: brain mask by threshold" in lines
    assert any("SYNTHETIC" in line for line in lines[2:]) and lines[-1] == "Research probabilities, not diagnoses."


def test_cli_summary_and_html_report_use_the_rows():
    from GliomaRadiogenomicsLib.cli import print_summary
    from GliomaRadiogenomicsLib.report import render_report
    doc = _doc()
    buf = io.StringIO()
    print_summary(doc, Path("out"), stream=buf)
    text = buf.getvalue()
    for r in task_rows(doc):
        assert re.search(rf"^{r.task}\s+{re.escape(r.probability_text)}\s+{re.escape(r.label)}", text, re.M), text
        assert f"trained on: {r.trained_on_text}" in text
    assert "needs T1c, the case has FLAIR only" in text and "[SYNTHETIC-trained]" in text
    doc.update(preprocessing={"steps": []}, features={"n": 0}, inputs={}, software={"name": "g", "version": "0"},
               created="now")
    html = render_report(doc, analysis=None)
    assert "<td>0.735</td>" in html and "<td>0.75 (0.58-0.93)</td>" in html
    assert "not available (sequence missing) (needs T1c, the case has FLAIR only)" in html


def test_slicer_table_node_uses_the_rows(mrml):
    from GliomaMRML.convert import predictions_to_table_node
    node = predictions_to_table_node(_doc(), mrml.scene)
    t = node.GetTable()
    got = [[t.GetColumn(j).GetValue(i) for j in range(t.GetNumberOfColumns())] for i in range(t.GetNumberOfRows())]
    assert got[0][:5] == ["IDH", "0.735", "valid", "IDH-mutant", "57.2"]
    assert got[1][1] == "n/a" and got[1][2] == "NOT AVAILABLE; SYNTHETIC model"
    assert "needs T1c" in got[1][3] and got[1][7].startswith("YES") and "needs T1c" in got[1][8]


def test_no_second_renderer_in_the_adapters():
    """The adapters must not format probabilities themselves (the duplication issue 12 item 7 removed)."""
    pattern = re.compile(r"\[.probability.\]\s*:\s*\.\d+f")
    offenders = []
    for path in [REPO / "GliomaRadiogenomics/GliomaRadiogenomicsLib/cli.py",
                 REPO / "GliomaRadiogenomics/GliomaRadiogenomicsLib/report.py",
                 REPO / "GliomaRadiogenomics/GliomaMRML/convert.py",
                 REPO / "Web/GliomaWeb/app.py",
                 REPO / "GliomaPredict/GliomaPredict.py"]:
        src = path.read_text(encoding="utf-8")
        # the nomogram chart titles format the probability of one task inside a figure; the tables / lines may not
        for m in pattern.finditer(src):
            line = src[:m.start()].count("\n") + 1
            text = src.splitlines()[line - 1]
            if "set_title" not in text and "SetTitle" not in text and "total points" not in text:
                offenders.append(f"{path.name}:{line}: {text.strip()}")
    assert not offenders, offenders


def test_synthetic_note_names_only_the_synthetic_models():
    """A run whose IDH model is real and whose epilepsy model is SYNTHETIC must not say "the default models were
    trained on SYNTHETIC data" (the CLI summary and the web card said so of every model once any was)."""
    from GliomaRadiogenomicsLib.cli import print_summary
    from GliomaRadiogenomicsLib.render import synthetic_models_note
    doc = _doc()
    want = "SYNTHETIC: the epilepsy model was trained on simulated data; its numbers demonstrate the software only."
    assert synthetic_models_note(doc) == want and want in summary_lines(doc)
    buf = io.StringIO()
    print_summary(doc, Path("out"), stream=buf)
    assert want in buf.getvalue() and "default models were trained on SYNTHETIC" not in buf.getvalue()
    doc["IDH"]["model"] = {**doc["IDH"]["model"], "synthetic": True}
    assert synthetic_models_note(doc) == ("SYNTHETIC: the IDH and epilepsy models were trained on simulated data; "
                                          "their numbers demonstrate the software only.")
    doc["IDH"]["model"]["synthetic"] = doc["epilepsy"]["model"]["synthetic"] = False
    assert synthetic_models_note(doc) == "" and not any("SYNTHETIC" in line for line in summary_lines(doc))


def test_default_models_line_says_what_each_shipped_default_was_trained_on(tmp_path):
    """The Slicer modules' banner (widgets.show_disclaimer) is computed from the shipped bundles, so it calls a task's
    models SYNTHETIC exactly when their JSON says so (the .ui text once said it of all three after IDH and ATRX
    became real-data models)."""
    import json
    from types import SimpleNamespace
    from GliomaMRML.widgets import show_disclaimer
    from GliomaRadiogenomicsLib.bundle import default_bundle_paths, default_models_line
    line = default_models_line()
    by_task = {}
    for p in default_bundle_paths():
        d = json.loads(p.read_text())
        by_task.setdefault(d["task"], []).append(d)
    assert set(by_task) == {"IDH", "epilepsy", "ATRX"}
    for task, ds in by_task.items():
        part = next(x for x in line.removeprefix("Default models: ").rstrip(".").split("; ")
                    if x.startswith(task + " - "))
        assert ("SYNTHETIC" in part) == any(d["synthetic"] for d in ds), part
        for d in ds:
            if not d["synthetic"]:
                assert "real patients" in part and "TCGA-LGG" in part and str(d["training"]["n"]) in part, part
    # a family that mixes a real and a SYNTHETIC bundle names both
    real = next(p for p in default_bundle_paths() if not json.loads(p.read_text())["synthetic"])
    fake = json.loads(real.read_text())
    fake["synthetic"] = True
    (tmp_path / "s.json").write_text(json.dumps(fake))
    mixed = default_models_line([real, tmp_path / "s.json"])
    assert "real patients and SYNTHETIC data (demonstration only)" in mixed, mixed
    ui = SimpleNamespace(disclaimerLabel=SimpleNamespace(text=""))
    show_disclaimer(ui)
    assert ui.disclaimerLabel.text == "Research probabilities, not diagnoses. " + line
    for ui_file in REPO.glob("*/Resources/UI/*.ui"):   # no static claim about the default models' training data
        assert "Default models are trained on SYNTHETIC" not in ui_file.read_text(), ui_file
