"""Issue 17 leftover: the GliomaPredict and workflow widgets show every task's nomogram through a "Nomogram:" selector
(a combo box of the .ui files; GliomaMRML.widgets.NomogramSelector fills it), whose items GliomaMRML.logic
.nomogram_choices decides: one per nomogram that has a plot chart, in render.nomogram_results order, labelled with the
title and marked SYNTHETIC when the model is.

The Slicer desktop GUI (Qt widgets, layouts, the plots module's ShowChartInLayout) cannot run here: the .ui files and
the widgets' wiring are checked as files (XML, the module's source), as test_packaging.py checks the .ui parameter
names; the choices come from the real Logic on real MRML (slicer-core), nothing mocked."""
from __future__ import annotations

import ast
import json
import xml.dom.minidom
from pathlib import Path

import pytest

from test_bundle_task_nomograms import CHOI, doc  # noqa: F401  (fixture: a document with a Choi 2021 nomogram)

REPO = Path(__file__).resolve().parents[2]
MODULES = [("GliomaPredict/GliomaPredict.py", "GliomaPredict/Resources/UI/GliomaPredict.ui"),
           ("GliomaRadiogenomics/GliomaRadiogenomics.py", "GliomaRadiogenomics/Resources/UI/GliomaRadiogenomics.ui")]


def _widgets(ui: Path) -> dict:
    """objectName -> <widget> element of a .ui file."""
    dom = xml.dom.minidom.parse(str(ui))
    return {w.getAttribute("name"): w for w in dom.getElementsByTagName("widget")}


def _property(widget, name: str):
    """The text of a widget's own <property name=...> (its first child element's text), or None."""
    for p in widget.childNodes:
        if p.nodeType == p.ELEMENT_NODE and p.tagName == "property" and p.getAttribute("name") == name:
            value = next(c for c in p.childNodes if c.nodeType == c.ELEMENT_NODE)
            return "".join(t.data for t in value.childNodes if t.nodeType == t.TEXT_NODE)
    return None


@pytest.mark.parametrize("module,ui", MODULES)
def test_ui_declares_the_nomogram_selector_and_the_widget_fills_it(module, ui):
    """The .ui file has a QComboBox ``nomogramComboBox``, disabled until a run fills it, labelled "Nomogram:"; it is
    no parameter-node field (a result, not an input). The widget hands it to widgets.NomogramSelector and fills it
    in ``onJobDone`` from logic.nomogram_choices (which shows the first chosen chart), not by showing one chart."""
    w = _widgets(REPO / ui)
    combo = w.get("nomogramComboBox")
    assert combo is not None and combo.getAttribute("class") == "QComboBox", sorted(w)
    assert _property(combo, "enabled") == "false"  # disabled and empty before a run
    assert not combo.getElementsByTagName("item")
    assert _property(combo, "SlicerParameterName") is None
    labels = [x for x in w.values() if x.getAttribute("class") == "QLabel" and _property(x, "text") == "Nomogram:"]
    assert len(labels) == 1 and _property(labels[0], "buddy") == "nomogramComboBox"
    src = (REPO / module).read_text()
    tree = ast.parse(src)
    widget_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Widget"))
    methods = {f.name: ast.get_source_segment(src, f) for f in widget_class.body if isinstance(f, ast.FunctionDef)}
    assert "widgets.NomogramSelector(self.ui.nomogramComboBox)" in methods["setup"]
    assert "self.nomograms.set(nomogram_choices(doc, charts))" in methods["onJobDone"]
    assert "ShowChartInLayout" not in src  # one place shows a chart: NomogramSelector.show
    assert "self.nomograms.clear()" in methods["onSceneStartClose"]  # the charts leave with the scene
    # a new run, or new input volumes: the previous results' nomograms are no longer offered
    on_run = next(f for f in widget_class.body if isinstance(f, ast.FunctionDef) and f.name == "onRun")
    first = next(st for st in on_run.body if not isinstance(st, (ast.Import, ast.ImportFrom))
                 and not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant)))
    assert ast.get_source_segment(src, first) == "self.nomograms.clear()"  # before anything can fail
    changed = methods["onParameterNodeModified"].split("if ids != self._volumeIds:")[1].split("self.ui.")[0]
    assert "self.nomograms.clear()" in changed


# the choices from a real prediction on the demo case: test_mrml.py::test_table_and_plot_nodes_from_a_real_prediction
# (it shares that module's prediction instead of running its own)


def test_choices_follow_the_one_list_of_nomograms(mrml, tmp_path, doc):
    """A background run's document (GliomaPredictLogic.finish) with a task that has no nomogram and a Choi 2021
    entry that has one: the task without a chart is left out, the Choi chart comes after the logistic tasks' titled
    as its row, and the SYNTHETIC marker follows each model (render.nomogram_synthetic), not the document."""
    from GliomaMRML.logic import GliomaPredictLogic, nomogram_choices
    doc = json.loads(json.dumps(doc))  # the module's fixture stays as it is
    doc["IDH"]["model"]["synthetic"] = False  # a real model: no marker; the Choi entry stays synthetic
    (tmp_path / "predictions.json").write_text(json.dumps(doc))
    _, _, charts = GliomaPredictLogic(mrml.scene).finish(tmp_path)
    assert list(charts) == ["IDH", "grade", CHOI] and charts["grade"] is None
    choices = nomogram_choices(doc, charts)
    assert [(c.title, c.label) for c in choices] == [("IDH", "IDH"), (CHOI, f"{CHOI} - SYNTHETIC model")]
    assert [c.chart for c in choices] == [charts["IDH"], charts[CHOI]]
    assert all(mrml.scene.GetNodeByID(c.chart.GetID()) is c.chart for c in choices)
    assert nomogram_choices({"tasks": ["grade"], "grade": doc["grade"]}, {"grade": None}) == []  # nothing to show
