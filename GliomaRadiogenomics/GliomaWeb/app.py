"""Web twin of the Slicer modules on trame-slicer: real MRML, slice / 3D views and segment editing rendered
server-side, the same Logic as the desktop modules (GliomaMRML.logic), a Glioma panel for the workflow.

    glioma-radiogenomics web [--case DIR] [--port N]      # serves on 127.0.0.1

Workflow: load a case (server folder or the built-in SYNTHETIC demo case; trame-slicer's own upload button also
works) -> Segment (necrosis / edema / enhancing segments, editable with trame-slicer's paint, erase, threshold,
islands, undo) -> Predict (on the segmentation as edited) -> probabilities, labels, model provenance (trained on,
SYNTHETIC or not) and nomogram points in the panel; report and edited segmentation downloadable.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # headless server-side rendering

from trame.app import TrameApp  # noqa: E402
from trame.widgets import html  # noqa: E402
from trame.widgets.vuetify3 import VBtn, VCard, VCardText, VCardTitle, VDivider, VSelect, VTextField  # noqa: E402
from trame_slicer import module as trame_slicer_module  # noqa: E402
from trame_slicer.app.logic import SegmentationAppLogic  # noqa: E402
from trame_slicer.app.ui import SegmentationAppUI  # noqa: E402
from trame_slicer.core import SlicerApp  # noqa: E402

DISCLAIMER = "Research probabilities, not diagnoses."


def model_items(nodes=None) -> list:
    """The web app's segmentation model list: the registry's models (GliomaSegmentLogic.model_choices, as in the
    Slicer module) as selector items (title + availability). Models that cannot run from here are disabled: not
    available (the reason is in the title), or needing a model folder the web panel does not ask for."""
    from GliomaMRML.logic import GliomaSegmentLogic
    items = []
    for c in GliomaSegmentLogic.model_choices(nodes):
        web_ok = c["state"] in ("ready", "download")
        title = c["label"] if web_ok or not c["available"] else f"{c['title']} - needs a model folder (CLI / Slicer)"
        items.append({"title": title, "value": c["id"], "disabled": not web_ok})
    return items


class GliomaWebApp(TrameApp):
    def __init__(self, server=None, case_dir: Optional[str] = None, work_dir: Optional[str] = None,
                 spacing: float = 1.0, brain_mask: str = "auto", bundles=None, backend: str = "auto"):
        super().__init__(server)
        self.default_backend = backend or "auto"  # the model selected at start (the user can change it)
        self.bundles = list(bundles or []) or None  # model bundle files (None: the shipped default bundles)
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        self.work = Path(work_dir or tempfile.mkdtemp(prefix="glioma-web-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.server.enable_module({"serve": {"glioma_files": str(self.work)}})
        self._logic = SegmentationAppLogic(self.server, self.slicer_app)
        self._ui = SegmentationAppUI(self.server, self._logic.layout_manager)
        self._logic.set_ui(self._ui)
        from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
        self.preprocess_options = PreprocessOptions(spacing=spacing, brain_mask=brain_mask)
        self.nodes = None
        self.clinical = {}
        self.segmentation = None
        self.n_predictions = 0
        s = self.state
        s.trame__title = "Glioma Radiogenomics (web)"
        s.glioma_case_dir = case_dir or ""
        s.glioma_status = "Load a case to start. " + DISCLAIMER
        s.glioma_results = []
        s.glioma_case_synthetic = False
        s.glioma_report_url = ""
        s.glioma_seg_url = ""
        s.glioma_volume_loaded = False
        s.glioma_models = model_items()
        s.glioma_backend = self.default_backend
        self._build_panel()
        if case_dir:
            self.load_case(case_dir)

    # ------------------------------------------------------------------ UI
    @property
    def ui(self):
        return self._ui.layout

    def _build_panel(self):
        self._ui.layout.title.set_text("Glioma Radiogenomics")
        with self._ui.layout.appbar:
            VBtn("Demo case", click=self.load_demo, classes="mx-1", id="glioma-demo", size="small")
            VBtn("Segment", click=self.segment, classes="mx-1", id="glioma-segment", size="small",
                 disabled=("!glioma_volume_loaded",))
            VBtn("Predict", click=self.predict, classes="mx-1", id="glioma-predict", size="small",
                 disabled=("!glioma_volume_loaded",))
        with self._ui.layout.footer:
            html.Span("{{ glioma_status }}", id="glioma-status", classes="text-caption mx-2")
        with self._ui.layout.drawer:
            with VCard(classes="ma-2", id="glioma-panel"):
                VCardTitle("Glioma Radiogenomics")
                with VCardText():
                    VTextField(v_model=("glioma_case_dir",), label="Case folder on the server", density="compact",
                               id="glioma-case-dir")
                    VBtn("Load case folder", click=lambda: self.load_case(self.state.glioma_case_dir), size="small",
                         id="glioma-load")
                    VSelect(v_model=("glioma_backend",), items=("glioma_models",), item_props=True,
                            label="Segmentation model", density="compact", id="glioma-backend")
                    VDivider(classes="my-2")
                    with html.Table(id="glioma-results", style="font-size: 12px; width: 100%"):
                        html.Caption("SYNTHETIC case (simulated glioma): the numbers demonstrate the software only",
                                     v_if="glioma_case_synthetic && glioma_results.length")
                        with html.Tr():
                            for h in ("task", "probability", "status", "label", "points", "trained on"):
                                html.Th(h)
                        with html.Tr(v_for="r in glioma_results", key="r.task"):
                            html.Td("{{ r.task }}")
                            html.Td("{{ r.probability }}", classes="glioma-probability")
                            html.Td("{{ r.status }}", classes="glioma-status", title=("r.status_detail",))
                            html.Td("{{ r.label }}")
                            html.Td("{{ r.points }}")
                            html.Td("{{ r.trained_on }}")
                    html.Div("{{ r.task }} nomogram: {{ r.nomogram }}", v_for="r in glioma_results",
                             style="font-size: 11px")
                    html.A("report.html", href=("glioma_report_url",), target="_blank", v_if="glioma_report_url",
                           id="glioma-report", classes="mr-2")
                    html.A("segmentation.nii.gz", href=("glioma_seg_url",), v_if="glioma_seg_url",
                           id="glioma-seg-download")
                    html.Div(DISCLAIMER, classes="text-caption mt-2")
        self._ui.layout.flush_content()  # the layout was sent when built: send it again with the panel

    # ------------------------------------------------------------------ actions (the modules' Logic)
    def _show(self, nodes):
        from GliomaMRML.logic import reference_node
        self.slicer_app.display_manager.show_volume(reference_node(nodes), do_reset_views=True)
        self._logic._segment_editor_logic.on_volume_changed(reference_node(nodes))
        self._logic.data.is_volume_loaded = True
        self.state.glioma_volume_loaded = True

    def load_case(self, folder: str):
        from GliomaMRML.logic import load_case_folder_into_scene
        try:
            self.scene.Clear()  # before preloading: the Paint effect needs a clean scene
            self.nodes, self.clinical, case_id = load_case_folder_into_scene(self.scene, folder)
            self.segmentation = None
            self.state.glioma_case_synthetic = False
            self.state.glioma_results = []
            self._show(self.nodes)
            self.state.glioma_models = model_items(self.nodes)  # availability for this case's sequences
            if any(i["value"] == self.state.glioma_backend and i["disabled"] for i in self.state.glioma_models):
                self.state.glioma_backend = "auto"
            elif self.state.glioma_backend == "auto" and self.default_backend != "auto":
                self.state.glioma_backend = self.default_backend
            self.state.glioma_status = f"case {case_id} loaded (FLAIR shown). {DISCLAIMER}"
        except Exception as exc:  # shown to the user, the server keeps running
            self.state.glioma_status = f"could not load {folder}: {exc}"

    def load_demo(self):
        folder = self.work / "demo_case"
        if not (folder / "flair.nii.gz").exists():
            from GliomaRadiogenomicsLib.synthetic import make_demo_case
            make_demo_case(downsample=2).save(folder)
        self.load_case(str(folder))
        self.state.glioma_case_synthetic = True
        self.state.glioma_status = "SYNTHETIC demo case loaded. " + DISCLAIMER

    def segment(self):
        from GliomaMRML.logic import GliomaSegmentLogic, reference_node
        self.state.glioma_status = "segmenting..."
        self.server.state.flush()
        try:
            for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") - 1, -1, -1):
                self.scene.RemoveNode(self.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode"))
            self.segmentation = GliomaSegmentLogic(self.scene).segment(self.nodes, backend=self.state.glioma_backend,
                                                                       preprocess_options=self.preprocess_options)
            self._logic._segment_editor_logic.on_volume_changed(reference_node(self.nodes))
            self.state.glioma_status = "segmentation ready: edit it with the brush panel, then Predict"
        except Exception as exc:
            self.state.glioma_status = f"segmentation failed: {exc}"

    def predict(self):
        import SimpleITK as sitk
        from GliomaMRML.convert import segmentation_node_to_label_image
        from GliomaMRML.logic import GliomaPredictLogic, reference_node
        from GliomaRadiogenomicsLib.io import write_image
        from GliomaRadiogenomicsLib.render import any_synthetic_model, task_rows
        seg = self.segmentation or next(iter(self.scene.GetNodesByClass("vtkMRMLSegmentationNode")), None)
        if seg is None:
            self.state.glioma_status = "segment first (or draw the tumor with the brush)"
            return
        self.state.glioma_status = "predicting..."
        self.server.state.flush()
        try:
            logic = GliomaPredictLogic(self.scene)
            doc, _, _ = logic.predict(self.nodes, seg, self.clinical, preprocess_options=self.preprocess_options,
                                      synthetic_case=bool(self.state.glioma_case_synthetic), bundles=self.bundles)
            logic.save_report(self.work / "report.html")
            label = segmentation_node_to_label_image(seg, reference_node(self.nodes))
            write_image(sitk.Cast(label, sitk.sitkUInt8), self.work / "segmentation.nii.gz")
            rows = [{"task": r.task, "probability": r.probability_text, "status": r.status_text,
                     "status_detail": r.status_detail,
                     "label": r.label + (f" ({r.reason})" if r.reason else ""), "points": r.points_text,
                     "trained_on": r.trained_on_text, "nomogram": r.points_breakdown} for r in task_rows(doc)]
            self.state.glioma_results = rows
            self.state.glioma_report_url = "/glioma_files/report.html"
            self.state.glioma_seg_url = "/glioma_files/segmentation.nii.gz"
            self.n_predictions += 1
            summary = "; ".join(f"{r['task']} {r['probability']} ({r['label']}, {r['points']} points)" for r in rows)
            synthetic = any_synthetic_model(doc)
            self.state.glioma_status = ("predictions ready (run {}, WT {:.1f} mL): {}{}{}. ".format(
                self.n_predictions, doc["segmentation"]["volumes_ml"]["WT"], summary,
                " - models trained on SYNTHETIC data" if synthetic else "",
                " - SYNTHETIC case" if doc["case"]["synthetic"] else "") + DISCLAIMER)
            self._logic.data.is_drawer_visible = True  # show the drawer: segment editor + the results panel
            self._logic.data.active_tool = "SegmentEditorUI"
            self.last_document = doc
        except Exception as exc:
            self.state.glioma_status = f"prediction failed: {exc}"


def serve(case_dir: Optional[str] = None, port: int = 8080, open_browser: bool = False, **kw) -> None:
    app = GliomaWebApp(case_dir=case_dir, **kw)
    app.server.start(port=port, host="127.0.0.1", open_browser=open_browser)
